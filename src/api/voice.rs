//! Voice channels: `GET /v1/voice/stream` upgrades to a WebSocket that takes a caller's audio
//! as they speak and returns partial and final transcripts.
//!
//! Protocol (JSON text messages, binary audio):
//! - client: `{"type":"start","sample_rate":8000,"encoding":"pcm_s16le","language":"zh",
//!   "conversation_id":"c1","customer_id":"u1"}`, then binary frames of any size, then
//!   `{"type":"stop"}`;
//! - server: `started`; `partial {utterance, text, start_ms, end_ms}` while someone speaks;
//!   `final {utterance, text, start_ms, end_ms, language, decode_ms, sentiment?, turn?,
//!   escalation?}` per utterance; `error {code, message}` for protocol faults (the stream goes
//!   on unless the fault makes the audio unusable); `done` after the last final, then a close.
//!
//! Finals are appended to the conversation as the customer's voice turns, so agent assist and
//! the answer endpoint see what was said. A stream that cannot be served (too many streams, the
//! decoders saturated) is refused with close code 1013 (try again later) and a reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::conversation::NewTurn;
use crate::runtime::asr::AsrPool;
use crate::speech::audio::{PcmEncoding, check_rate};
use crate::speech::stream::{self, Inbound, Outbound, StreamConfig, StreamFormat};
use crate::speech::vad::VadConfig;

/// Streams open now; a guard gives its place back however the stream ends.
#[derive(Default)]
pub struct StreamCount(AtomicUsize);

struct Place(Arc<StreamCount>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StreamCount {
    fn take(self: &Arc<Self>, max: usize) -> Option<Place> {
        let mut n = self.0.load(Ordering::SeqCst);
        loop {
            if n >= max {
                return None;
            }
            match self
                .0
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(Place(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    pub fn open(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Start {
        sample_rate: u32,
        encoding: PcmEncoding,
        #[serde(default)]
        language: Option<String>,
        #[serde(default)]
        conversation_id: Option<String>,
        #[serde(default)]
        customer_id: Option<String>,
    },
    Stop,
}

/// How long a connection may stay open without sending `start`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Live transcription over a WebSocket (see the module documentation for the protocol).
#[utoipa::path(get, path = "/v1/voice/stream", tag = "voice",
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 503, description = "No speech model is loaded", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voice_stream(
    State(s): State<AppState>,
    _caller: Caller,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(asr) = s.asr.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no speech model is loaded (models.asr = \"none\")",
        ));
    };
    // Decided before the upgrade, answered after it: a WebSocket client reads a close reason
    // more readily than an HTTP status from a failed handshake.
    let max = s.config.voice.max_streams;
    let admitted = if asr.saturated() {
        Err(format!(
            "speech decoders are saturated ({} queued); try again shortly",
            asr.queued()
        ))
    } else {
        s.streams.take(max).ok_or_else(|| {
            format!("{max} voice streams are open, the most this server takes; try again shortly")
        })
    };
    Ok(ws
        .max_message_size(4 << 20)
        .on_upgrade(move |mut socket| async move {
            match admitted {
                Err(reason) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1013,
                            reason: Utf8Bytes::from(reason),
                        })))
                        .await;
                }
                // The place is held until the session ends, however it ends.
                Ok(_place) => session(s, asr, socket).await,
            }
        }))
}

fn msg(v: Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn err(code: &str, message: impl std::fmt::Display) -> Message {
    msg(json!({"type": "error", "code": code, "message": message.to_string()}))
}

async fn session(s: AppState, asr: AsrPool, mut socket: WebSocket) {
    // 1. Wait for a valid `start`.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let (format, conversation, customer) = loop {
        let next = tokio::time::timeout_at(deadline, socket.recv()).await;
        let m = match next {
            Err(_) => {
                let _ = socket
                    .send(err("start_timeout", "no start message within 30 s"))
                    .await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(m))) => m,
        };
        match m {
            Message::Binary(_) => {
                let _ = socket
                    .send(err("not_started", "audio before the start message was dropped: send {\"type\":\"start\",...} first"))
                    .await;
            }
            Message::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
                Ok(ClientMessage::Start {
                    sample_rate,
                    encoding,
                    language,
                    conversation_id,
                    customer_id,
                }) => {
                    let format = StreamFormat {
                        sample_rate,
                        encoding,
                        language: language.filter(|l| !l.is_empty() && l != "auto"),
                    };
                    if let Err(e) = check_rate(format.sample_rate) {
                        let _ = socket.send(err("bad_start", e)).await;
                        continue;
                    }
                    if let Some(l) = &format.language
                        && let Err(e) = asr.check_language(l)
                    {
                        let _ = socket.send(err("bad_start", e)).await;
                        continue;
                    }
                    break (format, conversation_id, customer_id);
                }
                Ok(ClientMessage::Stop) => {
                    let _ = socket.send(err("not_started", "stop before start")).await;
                }
                Err(e) => {
                    let _ = socket
                        .send(err("bad_message", format!("{e}; expected {{\"type\":\"start\",\"sample_rate\":16000,\"encoding\":\"pcm_s16le\"}}")))
                        .await;
                }
            },
            _ => {}
        }
    };
    if socket
        .send(msg(
            json!({"type": "started", "model": asr.id(), "sample_rate": format.sample_rate}),
        ))
        .await
        .is_err()
    {
        return;
    }

    // 2. Run the session; relay frames in and events out.
    let v = &s.config.voice;
    let cfg = StreamConfig {
        vad: VadConfig {
            threshold: v.vad_threshold,
            end_silence_ms: v.end_silence_ms,
            ..VadConfig::default()
        },
        partial_every_ms: v.partial_every_ms,
        ..StreamConfig::default()
    };
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(64);
    // Its own task, so that a full inbound channel (audio arriving faster than it is taken)
    // waits for the session instead of stalling it; aborted when the client goes, which drops
    // the utterances it queued for decoding.
    let _run = AbortOnDropHandle::new(tokio::spawn(stream::run(asr, cfg, format, in_rx, out_tx)));
    let mut in_tx = Some(in_tx);
    loop {
        tokio::select! {
            m = socket.recv(), if in_tx.is_some() => {
                match m {
                    Some(Ok(Message::Binary(b))) => {
                        if let Some(tx) = &in_tx
                            && tx.send(Inbound::Audio(b.to_vec())).await.is_err()
                        {
                            in_tx = None;
                        }
                    }
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientMessage>(&t) {
                        Ok(ClientMessage::Stop) => {
                            if let Some(tx) = in_tx.take() {
                                let _ = tx.send(Inbound::Stop).await;
                            }
                        }
                        Ok(ClientMessage::Start { .. }) => {
                            let _ = socket.send(err("already_started", "this stream has started; send stop, then open a new stream")).await;
                        }
                        Err(e) => {
                            let _ = socket.send(err("bad_message", e)).await;
                        }
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    // Gone: everything it held is dropped with this function.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                }
            }
            ev = out_rx.recv() => {
                let Some(ev) = ev else { break };
                let out = match ev {
                    Outbound::Final { utterance, text, start_ms, end_ms, language, decode_ms } => {
                        let mut m = json!({
                            "type": "final", "utterance": utterance, "text": text,
                            "start_ms": start_ms, "end_ms": end_ms, "language": language,
                            "decode_ms": decode_ms,
                        });
                        enrich(&s, &mut m, &text, conversation.as_deref(), customer.as_deref()).await;
                        m
                    }
                    other => serde_json::to_value(other).unwrap_or(Value::Null),
                };
                if socket.send(msg(out)).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = socket.send(msg(json!({"type": "done"}))).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Utf8Bytes::from_static("done"),
        })))
        .await;
}

/// Sentiment of the utterance, and, when the stream belongs to a conversation, the turn it was
/// stored as with the conversation's escalation state.
async fn enrich(
    s: &AppState,
    m: &mut Value,
    text: &str,
    conversation: Option<&str>,
    customer: Option<&str>,
) {
    match conversation {
        Some(id) => {
            let turn = NewTurn {
                customer_id: customer.map(str::to_string),
                channel: "voice".into(),
                role: "customer".into(),
                text: text.to_string(),
            };
            match s.conversations.add_turn(id, turn).await {
                Ok(view) => {
                    if let Some(t) = view.record.turns.last() {
                        m["turn"] = json!(t.seq);
                        if let (Some(label), Some(valence)) = (&t.sentiment, t.valence) {
                            m["sentiment"] = json!({"label": label, "valence": valence});
                        }
                    }
                    m["escalation"] = json!(view.escalation);
                }
                Err(e) => {
                    let e = ApiError::from(e).body();
                    m["turn_error"] = json!({"code": e.error.code, "message": e.error.message});
                }
            }
        }
        None => {
            if let Ok(Some(mood)) = s.conversations.score(text).await {
                m["sentiment"] = json!({"label": mood.label, "valence": mood.valence});
            }
        }
    }
}
