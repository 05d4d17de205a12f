//! What a customer turn says besides its words: its sentiment (three-way), its emotions (anger,
//! frustration, confusion, urgency, gratitude; several at once) and its intent, all read from
//! the one sentence embedding of the turn by linear heads. Adding a signal adds a dot product,
//! not an embedding pass.
//!
//! The sentiment and emotion heads are trained from labelled data by [`super::training`]
//! (`kefu train signals`, or on first start); intents at start and whenever an admin changes
//! them ([`super::intents`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::intents::Intents;
use crate::runtime::ModelError;
use crate::runtime::classify::LinearHead;
use crate::runtime::embed::{EmbedPool, TextKind};
use crate::store::conversations::{TurnEmotions, TurnIntent};
use crate::text::{LanguageGuess, detect_language, guess_language};
use crate::vocab::{Emotion, Sentiment as Label};

/// The sentiment head's outputs, in order.
pub const LABELS: [Label; 3] = [Label::Negative, Label::Neutral, Label::Positive];

/// Bumped whenever the training data or the file's shape changes, so that a server trains the
/// new heads on first start instead of loading stale ones.
pub const HEADS_VERSION: u32 = 1;

/// Where the heads for `embedder` live in the models cache.
pub fn heads_path(models_dir: &Path, embedder: &str) -> PathBuf {
    models_dir
        .join("heads")
        .join(format!("signals-v{HEADS_VERSION}-{embedder}.json"))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentiment {
    /// negative | neutral | positive
    pub label: Label,
    /// Probability of `label`.
    pub score: f32,
    /// Probability of each label.
    pub scores: Scores,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Scores {
    pub negative: f32,
    pub neutral: f32,
    pub positive: f32,
}

impl Sentiment {
    /// Valence in [-1, 1]: P(positive) - P(negative). The mood trend is computed on this.
    pub fn valence(&self) -> f32 {
        self.scores.positive - self.scores.negative
    }
}

/// Everything read from one text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reading {
    /// `None` for a text with no letters.
    pub language: Option<LanguageGuess>,
    pub sentiment: Sentiment,
    pub emotions: TurnEmotions,
    pub intent: TurnIntent,
}

/// One emotion's two-way head (absent, present) and the score from which it counts as present.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmotionHead {
    pub head: LinearHead,
    /// Chosen for the best F1 on out-of-fold scores of the taught turns (train and dev).
    pub threshold: f32,
}

/// The trained heads, as one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heads {
    pub embedder: String,
    pub dim: usize,
    /// Each language's mean training vector, subtracted before every head reads a vector: what
    /// separates languages in the embedding space is then not learnt as what separates labels.
    pub centers: BTreeMap<String, Vec<f32>>,
    pub sentiment: LinearHead,
    pub emotions: BTreeMap<Emotion, EmotionHead>,
    /// The built-in intents' example vectors (centered), from the train and dev splits: the
    /// intent head is trained over them and an admin's examples at start ([`super::intents`]).
    pub intent_examples: BTreeMap<String, Vec<Vec<f32>>>,
    /// The intent head over the built-in intents alone: what a server without an admin's
    /// intents uses, without training at start.
    pub intent_head: LinearHead,
    /// Sources, sample sizes, settings and dev-split figures, for people to read.
    pub provenance: serde_json::Value,
}

impl Heads {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::Load {
            model: "signal heads".into(),
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let heads: Heads = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        heads.sentiment.check().map_err(bad)?;
        heads.intent_head.check().map_err(bad)?;
        for e in heads.emotions.values() {
            e.head.check().map_err(bad)?;
        }
        let dims_agree = heads.sentiment.dim == heads.dim
            && heads.emotions.values().all(|e| e.head.dim == heads.dim)
            && heads.intent_head.dim == heads.dim
            && heads.centers.values().all(|c| c.len() == heads.dim)
            && heads
                .intent_examples
                .values()
                .flatten()
                .all(|v| v.len() == heads.dim);
        if !dims_agree || heads.emotions.len() != <Emotion as strum::VariantArray>::VARIANTS.len() {
            return Err(bad(
                "the heads do not agree with each other: run `kefu train signals`".into(),
            ));
        }
        Ok(heads)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::runtime::classify::save_json(path, self)
    }

    /// Whether these heads were taught the support turns this build carries.
    pub fn taught_current_turns(&self) -> bool {
        self.provenance["support_turns_sha256"].as_str()
            == Some(super::training::support_turns_digest().as_str())
    }

    /// The vector every head reads: the text's language center taken away, at unit length.
    pub fn center(&self, x: &[f32], text: &str) -> Vec<f32> {
        center_with(&self.centers, x, text)
    }

    /// The built-in intents' examples, as (intent, centered vector).
    pub fn intent_examples(&self) -> Vec<(String, Vec<f32>)> {
        self.intent_examples
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| (n.clone(), v.clone())))
            .collect()
    }

    /// Examples per built-in intent.
    pub fn intent_counts(&self) -> BTreeMap<String, usize> {
        self.intent_examples
            .iter()
            .map(|(n, vs)| (n.clone(), vs.len()))
            .collect()
    }

    pub fn sentiment(&self, centered: &[f32]) -> Sentiment {
        to_sentiment(&self.sentiment.predict(centered))
    }

    pub fn emotions(&self, centered: &[f32]) -> TurnEmotions {
        let scores: BTreeMap<Emotion, f32> = self
            .emotions
            .iter()
            .map(|(e, h)| (*e, h.head.predict(centered)[1]))
            .collect();
        let mut present: Vec<Emotion> = self
            .emotions
            .iter()
            .filter(|(e, h)| scores[*e] >= h.threshold)
            .map(|(e, _)| *e)
            .collect();
        present.sort_by(|a, b| scores[b].total_cmp(&scores[a]));
        TurnEmotions { present, scores }
    }
}

/// The understanding of a running server: the embedding workers plus the heads.
#[derive(Clone)]
pub struct Understanding {
    pool: EmbedPool,
    heads: Arc<Heads>,
    intents: Arc<Intents>,
    /// Topic vectors already computed, by text: the repeated-contacts rule compares a
    /// customer's earlier openings again on every read of their conversations.
    topics: Arc<parking_lot::Mutex<std::collections::HashMap<String, Vec<f32>>>>,
}

/// Topic vectors kept; the cache is emptied when it reaches this (a few MB).
const TOPIC_CACHE: usize = 4096;

impl Understanding {
    pub fn new(
        pool: EmbedPool,
        heads: Arc<Heads>,
        intents: Arc<Intents>,
    ) -> Result<Self, ModelError> {
        if heads.embedder != pool.id() || heads.dim != pool.dim() {
            return Err(ModelError::Manifest {
                path: "signal heads".into(),
                message: format!(
                    "the heads were trained on {} ({} dims) but the embedder is {} ({} dims): run `kefu train signals`",
                    heads.embedder,
                    heads.dim,
                    pool.id(),
                    pool.dim()
                ),
            });
        }
        Ok(Understanding {
            pool,
            heads,
            intents,
            topics: Default::default(),
        })
    }

    pub fn provenance(&self) -> &serde_json::Value {
        &self.heads.provenance
    }

    pub fn intents(&self) -> &Arc<Intents> {
        &self.intents
    }

    /// Reads each text: one embedding batch on the worker pool, then every head over it.
    pub async fn read(&self, texts: Vec<String>) -> Result<Vec<Reading>, ModelError> {
        let vectors = self.pool.embed(texts.clone(), TextKind::Query).await?;
        let intents = self.intents.current();
        Ok(vectors
            .iter()
            .zip(&texts)
            .map(|(v, t)| {
                let x = self.heads.center(v, t);
                Reading {
                    language: guess_language(t),
                    sentiment: self.heads.sentiment(&x),
                    emotions: self.heads.emotions(&x),
                    intent: intents.classify(&x),
                }
            })
            .collect())
    }

    /// Vectors for comparing what texts are about: the vectors the heads read (language center
    /// taken away, unit length), so cosines spread out where raw sentence embeddings bunch together (e5's
    /// unrelated sentences score ~0.8). The cosine of two is their similarity.
    pub async fn topic_vectors(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut found: std::collections::HashMap<String, Vec<f32>> = {
            let cache = self.topics.lock();
            texts
                .iter()
                .filter_map(|t| cache.get(t).map(|v| (t.clone(), v.clone())))
                .collect()
        };
        let mut missing: Vec<String> = texts
            .iter()
            .filter(|t| !found.contains_key(*t))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let vectors = self.pool.embed(missing.clone(), TextKind::Query).await?;
            let mut cache = self.topics.lock();
            if cache.len() + missing.len() > TOPIC_CACHE {
                cache.clear();
            }
            for (t, v) in missing.into_iter().zip(vectors) {
                let centered = self.heads.center(&v, &t);
                cache.insert(t.clone(), centered.clone());
                found.insert(t, centered);
            }
        }
        Ok(texts.iter().map(|t| found[t].clone()).collect())
    }
}

pub(super) fn center_with(centers: &BTreeMap<String, Vec<f32>>, x: &[f32], text: &str) -> Vec<f32> {
    let mut v: Vec<f32> = match centers.get(detect_language(text)) {
        Some(c) => x.iter().zip(c).map(|(a, b)| a - b).collect(),
        None => x.to_vec(),
    };
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|a| *a /= norm);
    }
    v
}

fn to_sentiment(p: &[f32]) -> Sentiment {
    let i = LinearHead::argmax(p);
    Sentiment {
        label: LABELS[i],
        score: p[i],
        scores: Scores {
            negative: p[0],
            neutral: p[1],
            positive: p[2],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::training::HEAD_PARAMS;

    fn tiny_heads() -> Heads {
        let xs = [vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]];
        let head = |labels: &[&str], ys: &[usize]| {
            let labels = labels.iter().map(|l| l.to_string()).collect();
            LinearHead::train(labels, "e".into(), &xs[..ys.len()], ys, HEAD_PARAMS)
        };
        Heads {
            embedder: "e".into(),
            dim: 2,
            centers: [("en".to_string(), vec![0.1, 0.1])].into_iter().collect(),
            sentiment: head(&["negative", "neutral", "positive"], &[0, 1, 2]),
            emotions: <Emotion as strum::VariantArray>::VARIANTS
                .iter()
                .map(|e| {
                    let h = head(&["absent", "present"], &[0, 1]);
                    (
                        *e,
                        EmotionHead {
                            head: h,
                            threshold: 0.5,
                        },
                    )
                })
                .collect(),
            intent_examples: [("billing".to_string(), vec![vec![1.0, 0.0]])]
                .into_iter()
                .collect(),
            intent_head: head(&["billing", "other"], &[0, 1]),
            provenance: serde_json::Value::Null,
        }
    }

    #[test]
    fn heads_survive_a_round_trip_and_a_file_that_disagrees_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signals.json");
        let heads = tiny_heads();
        heads.save(&path).unwrap();
        let back = Heads::load(&path).unwrap();
        let x = back.center(&[0.3, 0.9], "hello");
        assert!(
            (x.iter().map(|a| a * a).sum::<f32>() - 1.0).abs() < 1e-5,
            "unit length"
        );
        assert_eq!(back.sentiment(&x), heads.sentiment(&x));
        assert_eq!(back.emotions(&x), heads.emotions(&x));

        let mut bad = tiny_heads();
        bad.intent_examples
            .insert("refund".into(), vec![vec![1.0, 0.0, 0.0]]);
        bad.save(&path).unwrap();
        assert!(Heads::load(&path).is_err(), "a 3-d example in 2-d heads");
        let mut missing = tiny_heads();
        missing.emotions.remove(&Emotion::Anger);
        missing.save(&path).unwrap();
        assert!(Heads::load(&path).is_err(), "an emotion without a head");
    }

    #[test]
    fn heads_taught_other_support_turns_are_known_as_stale() {
        let mut heads = tiny_heads();
        assert!(
            !heads.taught_current_turns(),
            "no record of what they were taught"
        );
        heads.provenance = serde_json::json!({"support_turns_sha256": "0".repeat(64)});
        assert!(!heads.taught_current_turns(), "other turns");
        heads.provenance = serde_json::json!({"support_turns_sha256": super::super::training::support_turns_digest()});
        assert!(heads.taught_current_turns());
    }
}
