//! The transcription flow for one uploaded recording (OpenAI's `/v1/audio/transcriptions`):
//! check that the named model and language are the ones loaded, decode the file (any container
//! and rate the audio module reads), then transcribe it. Formatting the transcript is `api`'s.

use super::Desk;
use crate::error::{Error, ErrorCode, Result};
use crate::runtime::asr::{AsrOptions, AsrPool, Transcript};
use crate::speech::audio::{self, AudioError};

/// One recording to transcribe.
pub struct TranscribeRequest {
    pub audio: bytes::Bytes,
    /// The upload's file name: its extension helps pick the decoder.
    pub file_name: Option<String>,
    /// The model the client named (`whisper-1` names the loaded one).
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    /// Word timestamps as well as segments.
    pub words: bool,
}

impl Desk {
    /// The transcript and the recording's length in seconds.
    pub async fn transcribe(&self, req: TranscribeRequest) -> Result<(Transcript, f64)> {
        let asr = self.speech()?;
        if let Some(m) = &req.model
            && m != "whisper-1"
            && m != asr.id()
        {
            return Err(Error::bad(
                ErrorCode::ModelNotFound,
                format!(
                    "model {m:?} is not loaded; this server transcribes with {:?} (\"whisper-1\" also names it)",
                    asr.id()
                ),
            ));
        }
        if let Some(l) = &req.language {
            asr.check_language(l).map_err(Error::invalid)?;
        }
        if let Some(p) = &req.prompt {
            AsrPool::check_prompt(p).map_err(Error::invalid)?;
        }
        if req.audio.is_empty() {
            return Err(Error::bad(ErrorCode::InvalidAudio, "the file is empty"));
        }
        let ext = req
            .file_name
            .as_deref()
            .and_then(|n| n.rsplit_once('.'))
            .map(|(_, e)| e.to_ascii_lowercase());
        let max = self.config.voice.max_audio_seconds as f64;
        let bytes = req.audio;
        let decoded = tokio::task::spawn_blocking(move || {
            audio::decode_file(bytes.to_vec(), ext.as_deref(), max)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("audio decoding failed: {e}")))?
        .map_err(|e| {
            let code = match e {
                AudioError::TooLong { .. } => ErrorCode::AudioTooLong,
                _ => ErrorCode::InvalidAudio,
            };
            Error::bad(code, e.to_string())
        })?;
        let duration = decoded.seconds();
        let options = AsrOptions {
            language: req.language,
            prompt: req.prompt,
            words: req.words,
            draft: false,
        };
        let transcript = asr.transcribe(decoded.samples, options).await?;
        Ok((transcript, duration))
    }
}
