//! A live voice stream: PCM in, partial and final transcripts out.
//!
//! The caller's audio is resampled to 16 kHz and cut into utterances by the voice-activity
//! segmenter. While someone speaks, the utterance so far is transcribed every
//! `partial_every_ms` of new audio (one at a time: a partial that is still decoding is not
//! queued again), and when they stop, the whole utterance is transcribed once more for its
//! `final`. Finals go out in the order the utterances were spoken. A silent stream costs no
//! model time at all: only the detector's 16 ms frames.
//!
//! The session is transport-free: `api::voice` feeds it WebSocket frames and sends its events.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;

use super::audio::{self, PcmEncoding, StreamResampler};
use super::vad::{Segmenter, VadConfig, VadEvent};
use crate::runtime::ModelError;
use crate::runtime::asr::{AsrOptions, AsrPool, Transcript};

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub vad: VadConfig,
    pub partial_every_ms: u64,
    /// Longest a final may wait for a free decoder before the utterance is reported lost.
    pub final_wait: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            vad: VadConfig::default(),
            partial_every_ms: 1000,
            final_wait: Duration::from_secs(30),
        }
    }
}

/// What the caller declared in its `start` message.
#[derive(Debug, Clone)]
pub struct StreamFormat {
    pub sample_rate: u32,
    pub encoding: PcmEncoding,
    pub language: Option<String>,
}

pub enum Inbound {
    Audio(Vec<u8>),
    Stop,
}

/// What the caller is still saying: the utterance so far.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Partial {
    pub utterance: u32,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// An utterance, transcribed once it ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Final {
    pub utterance: u32,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub language: String,
    /// The model's time on the utterance (queueing for a decoder not included).
    pub decode_ms: u64,
}

#[derive(Debug, Clone)]
pub enum Outbound {
    Partial(Partial),
    Final(Final),
    Error { code: String, message: String },
}

fn error(code: &str, message: impl Into<String>) -> Outbound {
    Outbound::Error {
        code: code.into(),
        message: message.into(),
    }
}

/// A transcription under way: (utterance, start_ms, end_ms, result).
type Job =
    std::pin::Pin<Box<dyn Future<Output = (u32, u64, u64, Result<Transcript, ModelError>)> + Send>>;

/// Runs a stream until the caller stops it (or goes away). Returns once every final is out.
pub async fn run(
    asr: AsrPool,
    cfg: StreamConfig,
    format: StreamFormat,
    mut inbound: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Outbound>,
) {
    let mut resampler = match StreamResampler::new(format.sample_rate) {
        Ok(r) => r,
        Err(e) => {
            let _ = out.send(error("bad_format", e.to_string())).await;
            return;
        }
    };
    let mut seg = Segmenter::new(cfg.vad);
    let mut leftover = Vec::new();
    let mut checked = EncodingCheck::new(format.encoding);
    let opts = AsrOptions {
        language: format.language.clone(),
        ..Default::default()
    };
    let mut utterance: u32 = 0;
    let mut last_partial_len = 0usize;
    let mut partial: Option<Job> = None;
    let mut finals = FuturesOrdered::new();
    let mut stopping = false;
    // The last utterance whose final went out (or was found empty): partials of it are stale.
    let mut settled: u32 = 0;

    loop {
        tokio::select! {
            msg = inbound.recv(), if !stopping => {
                let mut events = Vec::new();
                match msg {
                    Some(Inbound::Audio(bytes)) => {
                        if let Err(m) = checked.feed(&bytes) {
                            let _ = out.send(error("bad_audio", m)).await;
                            stopping = true;
                            continue;
                        }
                        // Inline on the reactor, unlike the model: resampling a 20 ms frame and
                        // scoring it for voice take microseconds (earshot runs at about 1/3000
                        // of real time), less than handing the frame to a thread would.
                        let samples = audio::pcm_to_f32(format.encoding, &bytes, &mut leftover);
                        let at16k = resampler.push(&samples);
                        events.extend(seg.push(&at16k));
                    }
                    Some(Inbound::Stop) | None => {
                        let tail = resampler.finish();
                        events.extend(seg.push(&tail));
                        events.extend(seg.finish());
                        stopping = true;
                    }
                }
                for ev in events {
                    match ev {
                        VadEvent::Start { .. } => {
                            utterance += 1;
                            last_partial_len = 0;
                        }
                        VadEvent::End { start_ms, end_ms, samples } => {
                            // Its final supersedes a partial still decoding: dropping that
                            // cancels it, so the final gets the decoder sooner.
                            partial = None;
                            let (asr, opts, wait, id) = (asr.clone(), opts.clone(), cfg.final_wait, utterance);
                            finals.push_back(async move {
                                let r = transcribe_waiting(&asr, samples, opts, wait).await;
                                (id, start_ms, end_ms, r)
                            });
                        }
                    }
                }
                // A partial of the utterance so far, when enough new audio came and none is
                // decoding.
                if partial.is_none()
                    && let Some((start_ms, so_far)) = seg.current()
                    && (so_far.len() - last_partial_len) as u64 * 1000 / 16_000 >= cfg.partial_every_ms
                {
                    last_partial_len = so_far.len();
                    let samples = so_far.to_vec();
                    let end_ms = start_ms + samples.len() as u64 * 1000 / 16_000;
                    let (asr, id) = (asr.clone(), utterance);
                    let opts = AsrOptions { draft: true, ..opts.clone() };
                    partial = Some(Box::pin(async move {
                        (id, start_ms, end_ms, asr.transcribe(samples, opts).await)
                    }));
                }
            }
            Some((id, start_ms, end_ms, r)) = finals.next(), if !finals.is_empty() => {
                settled = id;
                let msg = match r {
                    Ok(t) if t.text.is_empty() => continue,
                    Ok(t) => Outbound::Final(Final {
                        utterance: id,
                        text: t.text,
                        start_ms,
                        end_ms,
                        language: t.language,
                        decode_ms: t.decode_ms,
                    }),
                    Err(e) => error("transcription_failed", format!("utterance {id} ({start_ms}-{end_ms} ms) was not transcribed: {e}")),
                };
                if out.send(msg).await.is_err() {
                    return;
                }
            }
            (id, start_ms, end_ms, r) = async { partial.as_mut().expect("guarded").await }, if partial.is_some() => {
                partial = None;
                // Until the utterance's final is out, which supersedes it. (On a slow machine a
                // partial may land after the speaker stopped but before the final: still news.)
                if let Ok(t) = r
                    && id > settled
                    && !t.text.is_empty()
                    && out.send(Outbound::Partial(Partial { utterance: id, text: t.text, start_ms, end_ms })).await.is_err()
                {
                    return;
                }
            }
            else => {}
        }
        if stopping && finals.is_empty() {
            return;
        }
    }
}

/// A final is worth waiting for: when the decoders are all busy it retries for a while rather
/// than losing what the caller said.
async fn transcribe_waiting(
    asr: &AsrPool,
    samples: Vec<f32>,
    opts: AsrOptions,
    wait: Duration,
) -> Result<Transcript, ModelError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match asr.transcribe(samples.clone(), opts.clone()).await {
            Err(ModelError::Overloaded(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// Notices audio that is not in the declared encoding, from its first half second.
///
/// - 16-bit PCM declared as f32: read as floats, its bytes give huge or non-finite values.
/// - f32 declared as 16-bit: the high half of each float lands in a narrow band of i16 values
///   (the exponent bits of numbers below 1), which real 16-bit audio never does.
struct EncodingCheck {
    encoding: PcmEncoding,
    seen: Vec<u8>,
    done: bool,
}

impl EncodingCheck {
    const WINDOW: usize = 16_000;

    fn new(encoding: PcmEncoding) -> Self {
        EncodingCheck {
            encoding,
            seen: Vec::new(),
            done: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        self.seen
            .extend_from_slice(&bytes[..bytes.len().min(Self::WINDOW)]);
        if self.seen.len() < Self::WINDOW {
            return Ok(());
        }
        self.done = true;
        let data = std::mem::take(&mut self.seen);
        match self.encoding {
            PcmEncoding::PcmF32le => {
                let vals: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let wild = vals
                    .iter()
                    .filter(|v| !v.is_finite() || v.abs() > 2.0)
                    .count();
                if wild * 20 > vals.len() {
                    return Err(format!(
                        "{wild} of the first {} samples are not audio as pcm_f32le (values outside [-1, 1]): is the audio pcm_s16le?",
                        vals.len()
                    ));
                }
            }
            PcmEncoding::PcmS16le => {
                // The share of 4-byte groups whose 16-bit half at `at` looks like the high half
                // of a float below 1.
                let floaty = |at: usize| {
                    let n = data
                        .chunks_exact(4)
                        .filter(|c| {
                            let h = u16::from_le_bytes([c[at], c[at + 1]]) & 0x7fff;
                            (0x3800..0x3f81).contains(&h)
                        })
                        .count();
                    n as f64 / (data.len() / 4).max(1) as f64
                };
                if floaty(2) > 0.8 && floaty(0) < 0.3 {
                    return Err("the audio looks like 32-bit floats, not pcm_s16le: declare encoding pcm_f32le".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_a_wrong_declared_encoding() {
        let speechlike: Vec<f32> = (0..8000)
            .map(|i| ((i as f32) * 0.05).sin() * 0.3 + 0.01)
            .collect();
        let f32_bytes: Vec<u8> = speechlike.iter().flat_map(|v| v.to_le_bytes()).collect();
        let s16_bytes: Vec<u8> = speechlike
            .iter()
            .flat_map(|v| ((v * 32767.0) as i16).to_le_bytes())
            .chain(std::iter::repeat_n(0u8, 16_000))
            .collect();
        assert!(
            EncodingCheck::new(PcmEncoding::PcmS16le)
                .feed(&f32_bytes)
                .is_err()
        );
        assert!(
            EncodingCheck::new(PcmEncoding::PcmF32le)
                .feed(&f32_bytes)
                .is_ok()
        );
        assert!(
            EncodingCheck::new(PcmEncoding::PcmS16le)
                .feed(&s16_bytes)
                .is_ok()
        );
        let loud: Vec<u8> = (0..8000i32)
            .flat_map(|i| (((i * 37) % 20000 - 10000) as i16).to_le_bytes())
            .collect();
        assert!(
            EncodingCheck::new(PcmEncoding::PcmF32le)
                .feed(&loud)
                .is_err()
        );
    }
}
