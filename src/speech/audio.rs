//! Audio in, 16 kHz mono f32 out: what Whisper and the voice-activity detector read.
//!
//! Files are decoded with symphonia (WAV, FLAC, MP3, OGG/Vorbis, and OGG/Opus through libopus,
//! which symphonia lacks), mixed down to mono and resampled with rubato's FFT resampler.
//! Streams are resampled chunk by chunk with the same resampler, keeping its state between
//! chunks.

use std::io::Cursor;
use std::sync::OnceLock;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// The sample rate of everything past this module.
pub const RATE: u32 = 16_000;

/// Bad audio is the caller's fault: each case maps to a 4xx with this message.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(
        "the file is not audio in a format this service reads (WAV, FLAC, MP3, OGG/Vorbis, OGG/Opus): {0}"
    )]
    NotAudio(String),
    #[error("the audio is damaged or truncated: {0}")]
    Corrupt(String),
    #[error("the file holds no audio samples")]
    Empty,
    #[error("the audio is {secs:.0} s long; at most {max:.0} s per file")]
    TooLong { secs: f64, max: f64 },
    #[error("sample rate {0} Hz is not supported (8000 to 192000 Hz)")]
    BadRate(u32),
}

/// A decoded file, ready for the model.
pub struct Decoded {
    /// 16 kHz mono.
    pub samples: Vec<f32>,
    pub source_rate: u32,
    pub channels: usize,
}

impl Decoded {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / RATE as f64
    }
}

fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut r);
        r.register_audio_decoder::<symphonia_adapter_libopus::OpusDecoder>();
        r
    })
}

pub fn check_rate(rate: u32) -> Result<(), AudioError> {
    if (8_000..=192_000).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::BadRate(rate))
    }
}

/// The source rate up to which `max_seconds` holds in full; above it the limit shrinks in
/// proportion, so that decoding work is bounded by samples, not by seconds: a 192 kHz file of
/// silence compresses to almost nothing and would otherwise cost four times a 48 kHz one.
const FULL_LIMIT_RATE: f64 = 48_000.0;

/// Decodes a whole file. `extension` (from the upload's file name) only helps the format probe;
/// the bytes decide. Stops with `TooLong` as soon as more than `max_seconds` are decoded (fewer
/// above 48 kHz, see [`FULL_LIMIT_RATE`]), so an hour-long file costs no more than the limit,
/// and resamples each packet as it comes: only 16 kHz samples are held, whatever the source.
pub fn decode_file(
    bytes: Vec<u8>,
    extension: Option<&str>,
    max_seconds: f64,
) -> Result<Decoded, AudioError> {
    // The demuxers are third-party code reading hostile bytes: a header that overflows their
    // arithmetic panicked (found by the property test below). That is a damaged file, not a
    // failed server.
    std::panic::catch_unwind(|| decode_unguarded(bytes, extension, max_seconds)).unwrap_or_else(
        |_| {
            Err(AudioError::Corrupt(
                "the file's headers are inconsistent (the decoder could not read them)".into(),
            ))
        },
    )
}

fn decode_unguarded(
    bytes: Vec<u8>,
    extension: Option<&str>,
    max_seconds: f64,
) -> Result<Decoded, AudioError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = extension {
        hint.with_extension(e);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| AudioError::NotAudio(e.to_string()))?;
    let track = format
        .default_track(TrackType::Audio)
        .or_else(|| format.first_track(TrackType::Audio))
        .ok_or_else(|| AudioError::NotAudio("no audio track".into()))?;
    let track_id = track.id;
    let expected_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::NotAudio("the audio track has no codec parameters".into()))?
        .clone();
    let mut decoder = codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::NotAudio(e.to_string()))?;

    let mut mono: Vec<f32> = Vec::new();
    let mut out: Vec<f32> = Vec::new();
    let mut resampler: Option<(u32, StreamResampler)> = None;
    let mut frames = 0u64;
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    let mut interleaved: Vec<f32> = Vec::new();
    let mut bad_packets = 0usize;
    let mut packets = 0usize;
    let mut truncated = false;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A file cut short ends in an unexpected EOF inside a packet.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        packets += 1;
        match decoder.decode(&packet) {
            Ok(buf) => {
                rate = buf.spec().rate();
                channels = buf.spec().channels().count().max(1);
                check_rate(rate)?;
                buf.copy_to_vec_interleaved::<f32>(&mut interleaved);
                mono.clear();
                mono.extend(
                    interleaved
                        .chunks_exact(channels)
                        .map(|f| f.iter().sum::<f32>() / channels as f32),
                );
                frames += mono.len() as u64;
                let secs = frames as f64 / rate as f64;
                let max = max_seconds * (FULL_LIMIT_RATE / rate as f64).min(1.0);
                if secs > max {
                    return Err(AudioError::TooLong { secs, max });
                }
                let r = match &mut resampler {
                    Some((at, r)) if *at == rate => r,
                    Some((at, _)) => {
                        return Err(AudioError::Corrupt(format!(
                            "the sample rate changes from {at} Hz to {rate} Hz mid-file"
                        )));
                    }
                    None => &mut resampler.insert((rate, StreamResampler::new(rate)?)).1,
                };
                out.extend(r.push(&mono));
            }
            // One bad packet in a long file is noise; a file of them is not audio.
            Err(SymError::DecodeError(_)) => bad_packets += 1,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        }
    }
    if packets > 0 && bad_packets * 2 > packets {
        return Err(AudioError::Corrupt(format!(
            "{bad_packets} of {packets} packets could not be decoded"
        )));
    }
    if let Some(n) = expected_frames
        && frames * 100 < n * 98
    {
        truncated = true;
    }
    if truncated {
        return Err(AudioError::Corrupt(format!(
            "the file ends early, after {:.2} s{}",
            frames as f64 / rate.max(1) as f64,
            expected_frames
                .map(|n| format!(
                    " of the {:.2} s its header declares",
                    n as f64 / rate.max(1) as f64
                ))
                .unwrap_or_default()
        )));
    }
    let Some((_, mut r)) = resampler.filter(|_| frames > 0) else {
        return Err(AudioError::Empty);
    };
    // The resampler holds back `delay` samples: flush them with a chunk of silence, drop as many
    // from the front, and keep the clip's own length.
    out.extend(r.push(&vec![0.0; rate as usize / 50]));
    out.extend(r.finish());
    out.drain(..r.delay().min(out.len()));
    out.truncate((frames * u64::from(RATE)).div_ceil(u64::from(rate)) as usize);
    Ok(Decoded {
        samples: out,
        source_rate: rate,
        channels,
    })
}

/// Resamples a live stream to 16 kHz, a chunk at a time. The FFT resampler takes fixed input
/// chunks, so up to one chunk (20 ms) waits here for the next frame.
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl StreamResampler {
    pub fn new(rate: u32) -> Result<Self, AudioError> {
        check_rate(rate)?;
        let inner = if rate == RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    rate as usize,
                    RATE as usize,
                    rate as usize / 50,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| AudioError::Corrupt(format!("resampler: {e}")))?,
            )
        };
        Ok(StreamResampler {
            inner,
            pending: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Feeds samples at the stream's rate; returns what is ready at 16 kHz.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        let Some(r) = &mut self.inner else {
            return samples.to_vec();
        };
        self.pending.extend_from_slice(samples);
        let mut ready = Vec::new();
        loop {
            let need = r.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            self.out.resize(r.output_frames_next(), 0.0);
            let n_out = self.out.len();
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(&self.pending[..need], 1, need),
                InterleavedSlice::new_mut(&mut self.out, 1, n_out),
            ) else {
                break;
            };
            match r.process_into_buffer(&input, &mut output, None) {
                Ok((used, made)) => {
                    ready.extend_from_slice(&self.out[..made]);
                    self.pending.drain(..used);
                }
                Err(_) => break,
            }
        }
        ready
    }

    /// Output samples the resampler lags its input by (0 at 16 kHz).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// The rest, padded with silence to a whole chunk, at the end of the stream.
    pub fn finish(&mut self) -> Vec<f32> {
        let Some(r) = &self.inner else {
            return Vec::new();
        };
        if self.pending.is_empty() {
            return Vec::new();
        }
        let need = r.input_frames_next();
        let pad = need - self.pending.len() % need;
        let tail = vec![0.0; pad];
        self.push(&tail)
    }
}

/// Little-endian PCM bytes to f32 samples. `leftover` keeps a partial sample between frames,
/// since WebSocket frames may split a sample anywhere.
pub fn pcm_to_f32(encoding: PcmEncoding, bytes: &[u8], leftover: &mut Vec<u8>) -> Vec<f32> {
    let width = encoding.width();
    let mut data = std::mem::take(leftover);
    data.extend_from_slice(bytes);
    let whole = data.len() / width * width;
    let out = data[..whole]
        .chunks_exact(width)
        .map(|c| match encoding {
            PcmEncoding::PcmS16le => i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0,
            PcmEncoding::PcmF32le => {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                // NaN or wild values (a wrong declared encoding) must not reach the model.
                if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            }
        })
        .collect();
    leftover.extend_from_slice(&data[whole..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PcmEncoding {
    PcmS16le,
    PcmF32le,
}

impl PcmEncoding {
    /// Bytes per sample.
    pub fn width(self) -> usize {
        match self {
            PcmEncoding::PcmS16le => 2,
            PcmEncoding::PcmF32le => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Damaged audio (a real WAV with bytes changed, cut or extended, or noise under any
        /// name) is an error, never a panic.
        #[test]
        fn damaged_audio_decodes_or_fails_cleanly(
            flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..12),
            cut in 0usize..2200,
            noise in proptest::collection::vec(any::<u8>(), 0..600),
            ext in proptest::sample::select(vec!["wav", "mp3", "flac", "ogg", "m4a", "webm", "txt"]),
        ) {
            let mut w = wav(22_050, 2, &tone(22_050, 0.05, 300.0));
            for (at, b) in flips {
                let i = at % w.len();
                w[i] = b;
            }
            w.truncate(cut.min(w.len()));
            w.extend_from_slice(&noise);
            let _ = decode_file(w, Some(ext), 5.0);
            let _ = decode_file(noise, Some(ext), 5.0);
        }

        /// Frames split anywhere: every whole sample comes out once, the rest waits.
        #[test]
        fn pcm_frames_split_anywhere_keep_every_sample(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            split in 0usize..400,
        ) {
            for enc in [PcmEncoding::PcmS16le, PcmEncoding::PcmF32le] {
                let mut left = Vec::new();
                let at = split.min(bytes.len());
                let mut n = pcm_to_f32(enc, &bytes[..at], &mut left).len();
                n += pcm_to_f32(enc, &bytes[at..], &mut left).len();
                prop_assert_eq!(n, bytes.len() / enc.width());
                prop_assert!(left.len() < enc.width());
            }
        }
    }

    fn tone(rate: u32, secs: f32, hz: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (i as f32 / rate as f32 * hz * std::f32::consts::TAU).sin() * 0.5)
            .collect()
    }

    fn wav(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
        let mut data = Vec::new();
        for s in samples {
            for _ in 0..channels {
                data.extend(((s * 32767.0) as i16).to_le_bytes());
            }
        }
        let mut out = Vec::new();
        out.extend(b"RIFF");
        out.extend((36 + data.len() as u32).to_le_bytes());
        out.extend(b"WAVEfmt ");
        out.extend(16u32.to_le_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(channels.to_le_bytes());
        out.extend(rate.to_le_bytes());
        out.extend((rate * 2 * channels as u32).to_le_bytes());
        out.extend((2 * channels).to_le_bytes());
        out.extend(16u16.to_le_bytes());
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn decodes_stereo_44k_wav_to_16k_mono() {
        let d = decode_file(wav(44_100, 2, &tone(44_100, 1.0, 440.0)), Some("wav"), 60.0).unwrap();
        assert_eq!((d.source_rate, d.channels), (44_100, 2));
        assert!(
            (d.samples.len() as i64 - 16_000).abs() < 200,
            "{}",
            d.samples.len()
        );
        let peak = d.samples.iter().fold(0f32, |a, s| a.max(s.abs()));
        assert!((0.4..0.6).contains(&peak), "{peak}");
    }

    #[test]
    fn refuses_bad_files() {
        assert!(matches!(
            decode_file(b"hello, not audio".to_vec(), None, 60.0),
            Err(AudioError::NotAudio(_))
        ));
        let mut w = wav(16_000, 1, &tone(16_000, 2.0, 300.0));
        w.truncate(w.len() / 2);
        let e = decode_file(w, None, 60.0).err().unwrap();
        assert!(matches!(e, AudioError::Corrupt(_)), "{e}");
        let e = decode_file(wav(16_000, 1, &tone(16_000, 3.0, 300.0)), None, 2.0)
            .err()
            .unwrap();
        assert!(matches!(e, AudioError::TooLong { .. }), "{e}");
        assert!(matches!(
            decode_file(wav(16_000, 1, &[]), None, 60.0),
            Err(AudioError::Empty | AudioError::NotAudio(_))
        ));
    }

    /// The decode bomb of issue 16: silence at 192 kHz compresses to nothing, so its limit is
    /// a quarter of the seconds a 48 kHz file gets.
    #[test]
    fn high_rates_get_a_proportionally_shorter_limit() {
        let e = decode_file(wav(192_000, 1, &vec![0.0; 192_000 * 3]), None, 10.0)
            .err()
            .unwrap();
        match e {
            AudioError::TooLong { max, .. } => assert_eq!(max, 2.5),
            e => panic!("{e}"),
        }
        let d = decode_file(wav(48_000, 1, &vec![0.0; 48_000 * 3]), None, 10.0).unwrap();
        assert_eq!(d.samples.len(), 48_000);
    }

    #[test]
    fn stream_resampling_matches_length_and_keeps_leftover_bytes() {
        let mut r = StreamResampler::new(48_000).unwrap();
        let src = tone(48_000, 1.0, 200.0);
        let mut out = Vec::new();
        for chunk in src.chunks(777) {
            out.extend(r.push(chunk));
        }
        out.extend(r.finish());
        assert!((out.len() as i64 - 16_000).abs() < 700, "{}", out.len());
        let mut left = Vec::new();
        let a = pcm_to_f32(PcmEncoding::PcmS16le, &[0, 64, 0], &mut left);
        assert_eq!((a.len(), left.len()), (1, 1));
        let b = pcm_to_f32(PcmEncoding::PcmS16le, &[192], &mut left);
        assert_eq!(b, vec![-0.5]);
        assert!(StreamResampler::new(0).is_err());
    }
}
