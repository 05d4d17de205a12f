//! The voice-stream flow: a caller's audio in, partial and final transcripts out, and every final
//! stored as the customer's voice turn, so agent assist, answers and escalation see what was
//! said. The WebSocket and its messages are `api::voice`'s; the audio work is `speech::stream`'s.
//!
//! 1. check the caller's `start` (a sample rate and language the model can take);
//! 2. run the stream on its own task: voice activity, partials, finals;
//! 3. for each final: score it and append it to the conversation (`conversation`), or only
//!    score it when the stream belongs to no conversation.

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Desk;
use crate::conversation::NewTurn;
use crate::conversation::escalation::Escalation;
use crate::error::{Error, Result};
use crate::runtime::asr::AsrPool;
use crate::speech::audio::{PcmEncoding, check_rate};
use crate::speech::stream::{self, Inbound, Outbound, StreamConfig, StreamFormat};
use crate::speech::vad::VadConfig;
use crate::store::conversations::{Party, TurnMood};
use crate::vocab::{Channel, Role};

/// What a caller declares before the audio.
#[derive(Debug, Clone)]
pub struct VoiceStart {
    pub sample_rate: u32,
    pub encoding: PcmEncoding,
    /// `None` or `auto`: detected per utterance.
    pub language: Option<String>,
    /// Finals are stored as this conversation's customer turns, written as `party`.
    pub conversation: Option<(String, Party)>,
}

/// A started stream: its audio format and whose conversation its finals go to.
#[derive(Debug, Clone)]
pub struct VoiceSession {
    pub format: StreamFormat,
    pub conversation: Option<(String, Party)>,
}

/// What a final utterance became: its sentiment, and when the stream belongs to a conversation
/// the turn it was stored as and the conversation's escalation state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoredFinal {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<TurnMood>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

impl Desk {
    /// Step 1: the stream's session, or what is wrong with its start.
    pub fn voice_start(&self, asr: &AsrPool, start: VoiceStart) -> Result<VoiceSession> {
        let format = StreamFormat {
            sample_rate: start.sample_rate,
            encoding: start.encoding,
            language: start.language.filter(|l| !l.is_empty() && l != "auto"),
        };
        check_rate(format.sample_rate).map_err(|e| Error::invalid(e.to_string()))?;
        if let Some(l) = &format.language {
            asr.check_language(l).map_err(Error::invalid)?;
        }
        Ok(VoiceSession {
            format,
            conversation: start.conversation,
        })
    }

    /// Step 2: the stream, on its own task so that a full inbound channel (audio arriving
    /// faster than it is taken) waits for the session instead of stalling the transport.
    pub fn voice_run(
        &self,
        asr: AsrPool,
        session: &VoiceSession,
        audio: mpsc::Receiver<Inbound>,
        events: mpsc::Sender<Outbound>,
    ) -> JoinHandle<()> {
        let v = &self.config.voice;
        let cfg = StreamConfig {
            vad: VadConfig {
                threshold: v.vad_threshold,
                end_silence_ms: v.end_silence_ms,
                ..VadConfig::default()
            },
            partial_every_ms: v.partial_every_ms,
            ..StreamConfig::default()
        };
        tokio::spawn(stream::run(asr, cfg, session.format.clone(), audio, events))
    }

    /// Step 3: a final utterance, scored and, in a conversation, stored as the customer's turn.
    pub async fn voice_final(&self, session: &VoiceSession, text: &str) -> Result<StoredFinal> {
        let Some((id, party)) = &session.conversation else {
            let signals = self.conversations.read(text).await?;
            return Ok(StoredFinal {
                sentiment: signals.mood,
                ..StoredFinal::default()
            });
        };
        let turn = NewTurn {
            party: party.clone(),
            channel: Channel::Voice,
            role: Role::Customer,
            text: text.to_string(),
        };
        let view = self.conversations.add_turn(id, turn).await?;
        let last = view.record.turns.last();
        Ok(StoredFinal {
            turn: last.map(|t| t.seq),
            sentiment: last.and_then(|t| {
                Some(TurnMood {
                    label: t.sentiment?,
                    valence: t.valence?,
                })
            }),
            escalation: Some(view.escalation),
        })
    }
}
