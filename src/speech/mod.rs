//! Voice: audio decoding and resampling (`audio`), voice activity (`vad`), live streaming
//! sessions that cut a caller's audio into utterances and transcribe them (`stream`), and the
//! error rates of transcripts (`score`). Nothing here knows about HTTP or WebSockets;
//! `api::voice` and `api::openai` speak those.

pub mod audio;
pub mod score;
pub mod stream;
pub mod vad;
