//! Voice activity: where utterances begin and end in a live stream.
//!
//! earshot's detector scores each 16 ms frame (256 samples at 16 kHz) between 0 and 1. A score
//! alone flickers, so the segmenter adds hysteresis: speech starts after `start_frames` voiced
//! frames in a row (a cough or a click is shorter), and an utterance ends after `end_silence`
//! of unvoiced frames (a pause between words is shorter). A little audio before the start is
//! kept (`pre_roll`), since the first consonant is quieter than the detector's threshold. An
//! utterance longer than Whisper's 30 s window is cut at `max_utterance`.

use earshot::Detector;

pub const FRAME: usize = 256;
const FRAME_MS: u64 = 16;

#[derive(Debug, Clone, Copy)]
pub struct VadConfig {
    pub threshold: f32,
    pub start_frames: usize,
    pub end_silence_ms: u64,
    pub pre_roll_ms: u64,
    pub max_utterance_ms: u64,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.5,
            start_frames: 3,
            end_silence_ms: 600,
            pre_roll_ms: 240,
            max_utterance_ms: 28_000,
        }
    }
}

/// What the segmenter saw in the audio it was just given.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// An utterance began; its first sample (pre-roll included) is at `start_ms`.
    Start { start_ms: u64 },
    /// The utterance ended: its audio, from `start_ms` to `end_ms` (trailing silence trimmed
    /// to a short tail).
    End {
        start_ms: u64,
        end_ms: u64,
        samples: Vec<f32>,
    },
}

pub struct Segmenter {
    cfg: VadConfig,
    detector: Box<Detector>,
    /// Samples not yet a whole frame.
    partial: Vec<f32>,
    /// Frames seen so far (the stream clock).
    frames: u64,
    /// Recent frames kept for the pre-roll while nobody speaks.
    history: std::collections::VecDeque<Vec<f32>>,
    voiced_run: usize,
    silent_run: u64,
    /// The utterance in progress: its start and audio.
    current: Option<(u64, Vec<f32>)>,
    /// Length of the utterance when its last voiced frame was seen.
    last_voiced_len: usize,
}

impl Segmenter {
    pub fn new(cfg: VadConfig) -> Self {
        Segmenter {
            cfg,
            detector: Detector::default_boxed(),
            partial: Vec::new(),
            frames: 0,
            history: Default::default(),
            voiced_run: 0,
            silent_run: 0,
            current: None,
            last_voiced_len: 0,
        }
    }

    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// The utterance so far (for partial transcripts), and where it started.
    pub fn current(&self) -> Option<(u64, &[f32])> {
        self.current.as_ref().map(|(s, a)| (*s, a.as_slice()))
    }

    /// Milliseconds of audio seen.
    pub fn now_ms(&self) -> u64 {
        self.frames * FRAME_MS
    }

    pub fn push(&mut self, samples: &[f32]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        self.partial.extend_from_slice(samples);
        let whole = self.partial.len() / FRAME * FRAME;
        let frames: Vec<Vec<f32>> = self.partial[..whole]
            .chunks(FRAME)
            .map(<[f32]>::to_vec)
            .collect();
        self.partial.drain(..whole);
        for f in frames {
            self.frame(f, &mut events);
        }
        events
    }

    /// End of stream: an utterance in progress ends here.
    pub fn finish(&mut self) -> Vec<VadEvent> {
        let mut events = Vec::new();
        if let Some((start, mut audio)) = self.current.take() {
            audio.extend_from_slice(&self.partial);
            self.partial.clear();
            events.push(self.end(start, audio));
        }
        events
    }

    fn frame(&mut self, f: Vec<f32>, events: &mut Vec<VadEvent>) {
        let score = self.detector.predict_f32(&f);
        self.frames += 1;
        let voiced = score >= self.cfg.threshold;
        match &mut self.current {
            None => {
                self.history.push_back(f);
                let keep = (self.cfg.pre_roll_ms / FRAME_MS) as usize + self.cfg.start_frames;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                self.voiced_run = if voiced { self.voiced_run + 1 } else { 0 };
                if self.voiced_run >= self.cfg.start_frames {
                    let audio: Vec<f32> = self.history.drain(..).flatten().collect();
                    let start = (self.frames * FRAME as u64 - audio.len() as u64) * 1000 / 16_000;
                    self.last_voiced_len = audio.len();
                    self.silent_run = 0;
                    self.current = Some((start, audio));
                    events.push(VadEvent::Start { start_ms: start });
                }
            }
            Some((start, audio)) => {
                audio.extend_from_slice(&f);
                if voiced {
                    self.silent_run = 0;
                    self.last_voiced_len = audio.len();
                } else {
                    self.silent_run += FRAME_MS;
                }
                let long = audio.len() as u64 * 1000 / 16_000 >= self.cfg.max_utterance_ms;
                if self.silent_run >= self.cfg.end_silence_ms || long {
                    let (start, audio) = (*start, std::mem::take(audio));
                    self.current = None;
                    self.voiced_run = 0;
                    events.push(self.end(start, audio));
                }
            }
        }
    }

    fn end(&mut self, start_ms: u64, mut audio: Vec<f32>) -> VadEvent {
        // Keep 200 ms after the last voiced frame: word endings trail off below the threshold.
        let tail = 16_000 / 5;
        audio.truncate((self.last_voiced_len + tail).min(audio.len()));
        let end_ms = start_ms + audio.len() as u64 * 1000 / 16_000;
        VadEvent::End {
            start_ms,
            end_ms,
            samples: audio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_makes_no_utterance_and_the_clock_counts_frames() {
        let mut s = Segmenter::new(VadConfig::default());
        let mut ev = s.push(&vec![0.0; 16_000 * 3 + 100]);
        ev.extend(s.finish());
        assert!(ev.is_empty(), "{ev:?}");
        assert!(!s.in_speech());
        // 3 s = 187 whole 16 ms frames; the last 100 + 48 samples wait for a whole frame.
        assert_eq!(s.now_ms(), 187 * 16);
    }
}
