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
//!   A stream with no audio for `voice.idle_seconds` ends with `error idle_timeout`, one past
//!   `voice.max_stream_seconds` (open that long, or that much audio) with `stream_too_long`.
//!
//! Finals are appended to the conversation as the customer's voice turns, so agent assist and
//! the answer endpoint see what was said; with a `conversation_id`, a channel key must name the
//! customer (`customer_id`, or the `X-Kefu-Customer` header, signed for a widget key) and reaches
//! only that customer's conversation. A stream that cannot be served (too many streams, the
//! decoders saturated) is refused with close code 1013 (try again later) and a reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorObject};
use crate::desk::voice::{StoredFinal, VoiceStart};
use crate::runtime::asr::AsrPool;
use crate::speech::audio::PcmEncoding;
use crate::speech::stream::{Final, Inbound, Outbound, Partial};
use crate::vocab::Role;

/// Streams (or uploads) open now; a guard gives its place back however the request ends.
#[derive(Default)]
pub struct StreamCount(AtomicUsize);

pub struct Place(Arc<StreamCount>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StreamCount {
    pub fn take(self: &Arc<Self>, max: usize) -> Option<Place> {
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
    caller: Caller,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let asr = s.desk.speech()?.clone();
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
                Ok(_place) => session(s, asr, caller, socket).await,
            }
        }))
}

/// Everything the server sends, as one type: the protocol in the module documentation.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage {
    Started {
        model: String,
        sample_rate: u32,
    },
    Partial(Partial),
    Final {
        #[serde(flatten)]
        transcript: Final,
        #[serde(flatten)]
        stored: StoredFinal,
        /// Why the utterance could not be stored as a turn (the transcript still stands).
        #[serde(skip_serializing_if = "Option::is_none")]
        turn_error: Option<ErrorObject>,
    },
    Error {
        code: String,
        message: String,
    },
    Done,
}

impl ServerMessage {
    fn error(code: &str, message: impl std::fmt::Display) -> Self {
        ServerMessage::Error {
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    fn frame(&self) -> Message {
        let text = serde_json::to_string(self).expect("server messages serialise");
        Message::Text(Utf8Bytes::from(text))
    }
}

/// Ends the audio: the utterance under way is finalised, then `done`.
async fn stop(in_tx: &mut Option<mpsc::Sender<Inbound>>) {
    if let Some(tx) = in_tx.take() {
        let _ = tx.send(Inbound::Stop).await;
    }
}

async fn send(socket: &mut WebSocket, m: ServerMessage) -> bool {
    socket.send(m.frame()).await.is_ok()
}

async fn session(s: AppState, asr: AsrPool, caller: Caller, mut socket: WebSocket) {
    // 1. Wait for a valid `start`.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let session = loop {
        let next = tokio::time::timeout_at(deadline, socket.recv()).await;
        let m = match next {
            Err(_) => {
                send(
                    &mut socket,
                    ServerMessage::error("start_timeout", "no start message within 30 s"),
                )
                .await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(m))) => m,
        };
        let reply = match m {
            Message::Binary(_) => ServerMessage::error(
                "not_started",
                "audio before the start message was dropped: send {\"type\":\"start\",...} first",
            ),
            Message::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
                Ok(ClientMessage::Start {
                    sample_rate,
                    encoding,
                    language,
                    conversation_id,
                    customer_id,
                }) => {
                    // Finals become the customer's turns: the caller must be allowed to write
                    // them, for the customer it acts for.
                    let conversation = match conversation_id {
                        None => Ok(None),
                        Some(id) => caller
                            .turn_role(Some(Role::Customer))
                            .and_then(|_| caller.party(customer_id))
                            .map(|party| Some((id, party))),
                    };
                    match conversation {
                        Err(e) => ServerMessage::error(e.code.as_str(), e.message),
                        Ok(conversation) => {
                            let start = VoiceStart {
                                sample_rate,
                                encoding,
                                language,
                                conversation,
                            };
                            match s.desk.voice_start(&asr, start) {
                                Ok(session) => break session,
                                Err(e) => ServerMessage::error("bad_start", e),
                            }
                        }
                    }
                }
                Ok(ClientMessage::Stop) => ServerMessage::error("not_started", "stop before start"),
                Err(e) => ServerMessage::error(
                    "bad_message",
                    format!(
                        "{e}; expected {{\"type\":\"start\",\"sample_rate\":16000,\"encoding\":\"pcm_s16le\"}}"
                    ),
                ),
            },
            _ => continue,
        };
        send(&mut socket, reply).await;
    };
    let started = ServerMessage::Started {
        model: asr.id().to_string(),
        sample_rate: session.format.sample_rate,
    };
    if !send(&mut socket, started).await {
        return;
    }

    // 2. Run the session; relay frames in and events out. A stream ends when the client
    // stops, goes quiet for `idle_seconds`, or passes `max_stream_seconds` of time or audio.
    let v = &s.config.voice;
    let idle = Duration::from_secs(v.idle_seconds);
    let end_by = tokio::time::Instant::now() + Duration::from_secs(v.max_stream_seconds);
    let audio_cap = v.max_stream_seconds
        * u64::from(session.format.sample_rate)
        * session.format.encoding.width() as u64;
    let mut audio_bytes = 0u64;
    let mut last_audio = tokio::time::Instant::now();
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(64);
    // Aborted when the client goes, which drops the utterances it queued for decoding.
    let _run = AbortOnDropHandle::new(s.desk.voice_run(asr, &session, in_rx, out_tx));
    let mut in_tx = Some(in_tx);
    loop {
        tokio::select! {
            m = socket.recv(), if in_tx.is_some() => {
                match m {
                    Some(Ok(Message::Binary(b))) => {
                        last_audio = tokio::time::Instant::now();
                        audio_bytes += b.len() as u64;
                        if audio_bytes > audio_cap {
                            let m = format!("more than {} s of audio: open a new stream", v.max_stream_seconds);
                            send(&mut socket, ServerMessage::error("stream_too_long", m)).await;
                            stop(&mut in_tx).await;
                        } else if let Some(tx) = &in_tx
                            && tx.send(Inbound::Audio(b.to_vec())).await.is_err()
                        {
                            in_tx = None;
                        }
                    }
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientMessage>(&t) {
                        Ok(ClientMessage::Stop) => stop(&mut in_tx).await,
                        Ok(ClientMessage::Start { .. }) => {
                            send(&mut socket, ServerMessage::error("already_started", "this stream has started; send stop, then open a new stream")).await;
                        }
                        Err(e) => {
                            send(&mut socket, ServerMessage::error("bad_message", e)).await;
                        }
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    // Gone: everything it held is dropped with this function.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                }
            }
            _ = tokio::time::sleep_until((last_audio + idle).min(end_by)), if in_tx.is_some() => {
                let (code, m) = if tokio::time::Instant::now() >= end_by {
                    ("stream_too_long", format!("open for {} s, the longest a stream may be: open a new stream", v.max_stream_seconds))
                } else {
                    ("idle_timeout", format!("no audio for {} s: the stream is ended", v.idle_seconds))
                };
                send(&mut socket, ServerMessage::error(code, m)).await;
                // As if the client had sent stop: what was said is still finalised.
                stop(&mut in_tx).await;
            }
            ev = out_rx.recv() => {
                let Some(ev) = ev else { break };
                let out = match ev {
                    Outbound::Final(transcript) => {
                        let (stored, turn_error) = match s.desk.voice_final(&session, &transcript.text).await {
                            Ok(stored) => (stored, None),
                            Err(e) => (StoredFinal::default(), Some(ApiError::from(e).body().error)),
                        };
                        ServerMessage::Final { transcript, stored, turn_error }
                    }
                    Outbound::Partial(p) => ServerMessage::Partial(p),
                    Outbound::Error { code, message } => ServerMessage::Error { code, message },
                };
                if !send(&mut socket, out).await {
                    return;
                }
            }
        }
    }
    send(&mut socket, ServerMessage::Done).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Utf8Bytes::from_static("done"),
        })))
        .await;
}
