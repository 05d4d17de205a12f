//! Voice: audio decoding and resampling (`audio`), voice activity (`vad`), and live streaming
//! sessions that cut a caller's audio into utterances and transcribe them (`stream`). Nothing
//! here knows about HTTP or WebSockets; `api::voice` and `api::openai` speak those.

pub mod audio;
pub mod stream;
pub mod vad;
