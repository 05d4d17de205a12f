//! Classification heads over sentence embeddings: a linear layer and a softmax, trained here
//! (`kefu train`) on labelled data and stored as a small JSON file with its provenance.
//!
//! Why a linear head and not a fine-tuned transformer: no package here ships a sentiment
//! transformer with weights (../shared/MODELS.md), the service already runs a multilingual
//! sentence embedder for retrieval, and a head over its vectors costs one dot product per label
//! on top of an embedding the turn may need anyway. Training is a few seconds of full-batch
//! gradient descent, so it is written out here rather than pulling in a training framework.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// `labels.len()` rows of `dim` weights, a bias per label, and where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearHead {
    pub labels: Vec<String>,
    /// The embedder whose vectors the head reads (a head is meaningless on another model's).
    pub embedder: String,
    pub dim: usize,
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    /// Sources, sample sizes, training settings and held-out accuracy, for people to read.
    pub provenance: serde_json::Value,
}

/// How a head is trained.
#[derive(Debug, Clone, Copy)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f32,
    /// L2 penalty on the weights.
    pub l2: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 300,
            learning_rate: 0.5,
            l2: 1e-3,
        }
    }
}

impl LinearHead {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::Load {
            model: "classification head".into(),
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let head: LinearHead = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        head.check().map_err(bad)?;
        Ok(head)
    }

    /// Whether labels, weights and bias agree in shape (a file edited by hand, or cut
    /// short, must not be read as a head).
    pub fn check(&self) -> Result<(), String> {
        let shape_ok = !self.labels.is_empty()
            && self.weights.len() == self.labels.len()
            && self.bias.len() == self.labels.len()
            && self.weights.iter().all(|w| w.len() == self.dim);
        if shape_ok {
            Ok(())
        } else {
            Err("labels, weights and bias do not agree in shape".into())
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        save_json(path, self)
    }

    /// Label probabilities for one embedding.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b)
            .collect();
        softmax(&logits)
    }

    /// Multinomial logistic regression by full-batch gradient descent. Classes are weighted by
    /// the inverse of their frequency, so a small class (neutral lines) is not drowned out.
    /// Features are standardised while training (sentence embeddings share a large common
    /// component and small per-dimension spreads, which makes plain gradient descent crawl) and
    /// the scaling is folded back into the weights and bias, so prediction reads raw vectors.
    pub fn train(
        labels: Vec<String>,
        embedder: String,
        xs: &[Vec<f32>],
        ys: &[usize],
        p: TrainParams,
    ) -> Self {
        let (k, dim, n) = (labels.len(), xs.first().map_or(0, Vec::len), xs.len());
        let mut mean = vec![0f32; dim];
        for x in xs {
            mean.iter_mut().zip(x).for_each(|(m, v)| *m += v / n as f32);
        }
        let mut std = vec![0f32; dim];
        for x in xs {
            for ((s, v), m) in std.iter_mut().zip(x).zip(&mean) {
                *s += (v - m) * (v - m) / n as f32;
            }
        }
        std.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
        let zs: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| {
                x.iter()
                    .zip(&mean)
                    .zip(&std)
                    .map(|((v, m), s)| (v - m) / s)
                    .collect()
            })
            .collect();

        let mut counts = vec![0usize; k];
        ys.iter().for_each(|&y| counts[y] += 1);
        let class_weight: Vec<f32> = counts
            .iter()
            .map(|&c| n as f32 / (k as f32 * c.max(1) as f32))
            .collect();
        let total: f32 = ys.iter().map(|&y| class_weight[y]).sum();
        let mut w = vec![vec![0f32; dim]; k];
        let mut b = vec![0f32; k];
        for _ in 0..p.epochs {
            let mut gw = vec![vec![0f32; dim]; k];
            let mut gb = vec![0f32; k];
            for (z, &y) in zs.iter().zip(ys) {
                let logits: Vec<f32> = w
                    .iter()
                    .zip(&b)
                    .map(|(wc, bc)| wc.iter().zip(z).map(|(a, b)| a * b).sum::<f32>() + bc)
                    .collect();
                let prob = softmax(&logits);
                let cw = class_weight[y] / total;
                for c in 0..k {
                    let g = (prob[c] - if c == y { 1.0 } else { 0.0 }) * cw;
                    gb[c] += g;
                    gw[c].iter_mut().zip(z).for_each(|(gi, zi)| *gi += g * zi);
                }
            }
            for c in 0..k {
                b[c] -= p.learning_rate * gb[c];
                for (wi, gi) in w[c].iter_mut().zip(&gw[c]) {
                    *wi -= p.learning_rate * (gi + p.l2 * *wi);
                }
            }
        }
        // w·(x - mean)/std + b  =  (w/std)·x + (b - Σ w·mean/std)
        for c in 0..k {
            for j in 0..dim {
                w[c][j] /= std[j];
                b[c] -= w[c][j] * mean[j];
            }
        }
        LinearHead {
            labels,
            embedder,
            dim,
            weights: w,
            bias: b,
            provenance: serde_json::Value::Null,
        }
    }

    /// The index of the most probable label.
    pub fn argmax(probs: &[f32]) -> usize {
        probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    }
}

/// Writes `value` as JSON to `path` through a temporary file, so a reader never sees half a
/// file. The temporary name is unique per process: two servers training on first start must
/// not share one.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(tmp, path)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_separates_separable_classes_and_survives_a_round_trip() {
        // Three clusters around different axes of a 4-d space.
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..60 {
            let c = i % 3;
            let mut x = vec![0.05 * ((i * 7 % 5) as f32 - 2.0); 4];
            x[c] += 1.0;
            xs.push(x);
            ys.push(c);
        }
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        let head = LinearHead::train(labels, "test".into(), &xs, &ys, TrainParams::default());
        for (x, &y) in xs.iter().zip(&ys) {
            assert_eq!(LinearHead::argmax(&head.predict(x)), y);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.json");
        head.save(&path).unwrap();
        let back = LinearHead::load(&path).unwrap();
        assert_eq!(back.predict(&xs[4]), head.predict(&xs[4]));
    }

    #[test]
    fn a_head_of_the_wrong_shape_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.json");
        std::fs::write(
            &path,
            r#"{"labels":["a","b"],"embedder":"e","dim":2,"weights":[[1,2]],"bias":[0,0],"provenance":null}"#,
        )
        .unwrap();
        assert!(LinearHead::load(&path).is_err());
    }
}
