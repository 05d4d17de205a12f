//! Hybrid retrieval. Dense vectors find paraphrases and cross-language matches; exact keyword
//! matching finds the strings embeddings blur (order numbers, product codes). Candidates come
//! from both (the vector index's nearest chunks per language and FTS5's BM25 best chunks), and
//! each is scored
//!
//!   score = (cosine - language offset + W * coverage) / (1 + W)
//!
//! where the language offset removes the embedding's preference for the question's own
//! language ([`language_offsets`]) and coverage is the IDF-weighted share of the query's terms that the chunk contains
//! exactly, in [0, 1]. Unlike reciprocal rank fusion, this stays calibrated across queries:
//! a code that matches one card out of ten thousand gives that card coverage near 1, while words
//! every card shares give almost nothing, whatever their rank. W is sized to the spread of e5
//! cosines (relevant and unrelated passages differ by 0.03 to 0.15): a full exact match outweighs
//! a small semantic edge, a partial one only breaks near-ties.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Knowledge, blocking};
use crate::error::{Error, Result};
use crate::runtime::embed::TextKind;
use crate::store::SearchFilter;
use crate::text;
use crate::vecmath::dot;

/// Weight of exact-term coverage against cosine similarity.
const KEYWORD_WEIGHT: f32 = 0.2;
/// Pseudo-count of the shrinkage of language centroids (see [`language_offsets`]).
const CENTROID_PRIOR: f32 = 1.0;
/// Candidates taken from each source per requested hit.
const FANOUT: usize = 4;

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Cards must carry all of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    pub language: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub card_id: String,
    pub title: String,
    /// Relevance in [0, 1]: cosine similarity, corrected for language bias, raised by
    /// exact-term coverage. Use it to rank; compare `similarity` against thresholds.
    pub score: f32,
    /// Cosine similarity between the query and the passage.
    pub similarity: f32,
    /// IDF-weighted share of the query's terms found verbatim in the passage, in [0, 1].
    pub keyword_coverage: f32,
    /// The passage of the card that matched best.
    pub passage: String,
    /// The query as translated into the card's language, when the card was found through that
    /// translation (cross-language search).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translated_query: Option<String>,
}

/// How much closer the query sits to each language's passages than to passages on average.
///
/// Multilingual encoders like e5 keep a language-identity direction in every vector: a Chinese
/// question is closer to every Chinese passage than to any English one, whatever the topic (on
/// a mixed knowledge base, cross-language questions found their card first 0 times in 12).
/// Subtracting the query's similarity to the language's centroid removes that direction
/// (mean-centering per language; Libovický et al., 2020, "On the Language Neutrality of
/// Pre-trained Multilingual Representations"). A language with few passages has a noisy
/// centroid, so its offset is shrunk towards zero by n / (n + CENTROID_PRIOR).
fn language_offsets(
    q: &[f32],
    centroids: &HashMap<String, (Vec<f32>, usize)>,
) -> HashMap<String, f32> {
    let total: usize = centroids.values().map(|(_, n)| n).sum();
    if centroids.len() < 2 || total == 0 {
        return HashMap::new();
    }
    let to_lang: HashMap<&String, f32> =
        centroids.iter().map(|(l, (c, _))| (l, dot(q, c))).collect();
    let overall: f32 = centroids
        .iter()
        .map(|(l, (_, n))| to_lang[l] * *n as f32)
        .sum::<f32>()
        / total as f32;
    centroids
        .iter()
        .map(|(l, (_, n))| {
            let shrink = *n as f32 / (*n as f32 + CENTROID_PRIOR);
            (l.clone(), shrink * (to_lang[l] - overall))
        })
        .collect()
}

/// Robertson–Spärck Jones IDF, as BM25 uses it; never negative.
fn idf(total: usize, df: usize) -> f32 {
    (1.0 + (total as f32 - df as f32 + 0.5) / (df as f32 + 0.5)).ln()
}

impl Knowledge {
    /// The languages the published cards are written in.
    pub async fn languages(&self) -> Result<Vec<String>> {
        let mut langs: Vec<String> = self.index.language_centroids().await?.into_keys().collect();
        langs.sort();
        Ok(langs)
    }

    pub async fn search(&self, query: &str, top_k: usize, filters: Filters) -> Result<Vec<Hit>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::invalid("query must not be empty"));
        }
        let filter = SearchFilter {
            tags: filters
                .tags
                .iter()
                .map(|t| t.trim().to_lowercase())
                .collect(),
            language: filters.language.map(|l| l.trim().to_string()),
            channel: filters.channel.map(|c| c.trim().to_lowercase()),
        };
        let candidates = (top_k * FANOUT).max(20);
        let qvec = self
            .embed
            .embed(vec![query.to_string()], TextKind::Query)
            .await?
            .pop()
            .unwrap_or_default();
        let centroids = self.index.language_centroids().await?;
        let offsets = language_offsets(&qvec, &centroids);
        let dense = if filter.language.is_none() && centroids.len() > 1 {
            // One search per language, so that each language's best passages are candidates
            // even when the other language's passages all have a higher raw cosine.
            let mut all = Vec::new();
            for lang in centroids.keys() {
                let f = SearchFilter {
                    language: Some(lang.clone()),
                    ..filter.clone()
                };
                all.extend(self.index.search(qvec.clone(), candidates, f).await?);
            }
            all
        } else {
            self.index
                .search(qvec.clone(), candidates, filter.clone())
                .await?
        };
        let terms = text::query_terms(query);
        let store = self.store.clone();
        let mut ids: Vec<i64> = dense.iter().map(|h| h.chunk_id).collect();
        let (rows, weights) = blocking(move || {
            let (total, df) = store.term_frequencies(&terms)?;
            let total = total.max(1);
            // A term in more than half of all chunks carries almost no information but makes
            // the OR query score most of the index: it counts for coverage, not for candidates.
            let rare: Vec<String> = terms
                .iter()
                .filter(|t| df[*t] * 2 <= total)
                .cloned()
                .collect();
            let keyword = store.keyword_search(&rare, &filter, candidates)?;
            ids.extend(keyword.iter().map(|(id, ..)| *id));
            let mut seen = HashSet::new();
            ids.retain(|id| seen.insert(*id));
            let rows = store.chunk_rows(&ids)?;
            let weights: Vec<(String, f32)> = terms
                .iter()
                .map(|t| (t.clone(), idf(total, df[t])))
                .collect();
            Ok((rows, weights))
        })
        .await?;
        let weight_sum: f32 = weights.iter().map(|(_, w)| w).sum();
        let mut best: HashMap<String, Hit> = HashMap::new();
        for row in rows {
            // A card archived meanwhile is already gone from `rows`.
            let similarity = dot(&qvec, &row.vector);
            let chunk_terms: HashSet<String> = text::terms(&format!("{}\n{}", row.title, row.text))
                .into_iter()
                .collect();
            // fold from +0.0: `Sum` of no f32 values is -0.0, which would show in the JSON.
            let matched = weights
                .iter()
                .filter(|(t, _)| chunk_terms.contains(t))
                .fold(0.0f32, |acc, (_, w)| acc + w);
            let keyword_coverage = if weight_sum > 0.0 {
                matched / weight_sum
            } else {
                0.0
            };
            let centered = similarity - offsets.get(&row.language).copied().unwrap_or(0.0);
            let score = ((centered + KEYWORD_WEIGHT * keyword_coverage) / (1.0 + KEYWORD_WEIGHT))
                .clamp(0.0, 1.0);
            let hit = Hit {
                card_id: row.card_id.clone(),
                title: row.title,
                score,
                similarity,
                keyword_coverage,
                passage: row.text,
                translated_query: None,
            };
            match best.get(&row.card_id) {
                Some(h) if h.score >= score => {}
                _ => {
                    best.insert(row.card_id, hit);
                }
            }
        }
        let mut hits: Vec<Hit> = best.into_values().collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.card_id.cmp(&b.card_id))
        });
        hits.truncate(top_k);
        Ok(hits)
    }
}
