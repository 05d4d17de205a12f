//! Hybrid retrieval: dense vectors find paraphrases and cross-language matches, BM25 keyword
//! matching finds exact strings (order numbers, product codes) that embeddings blur. The two
//! rankings are fused with reciprocal rank fusion (Cormack et al., 2009), which needs no score
//! calibration between them; each hit also reports its cosine similarity, which is calibrated
//! across queries and is what an answer threshold should use.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Knowledge, blocking, text};
use crate::error::{Error, Result};
use crate::runtime::embed::TextKind;
use crate::store::SearchFilter;
use crate::store::vector::embedded::dot;

/// RRF's constant: dampens the weight of the very first ranks.
const RRF_K: f64 = 60.0;
/// Candidates taken from each ranking per requested hit.
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
    /// Fused relevance in (0, 1]: 1 when a card is first in both rankings.
    pub score: f64,
    /// Cosine similarity between the query and the passage (the calibrated signal).
    pub similarity: f32,
    /// BM25 score of the passage's keyword match (0 when no keyword matched).
    pub keyword_score: f64,
    /// The passage of the card that matched best.
    pub passage: String,
}

impl Knowledge {
    pub async fn search(&self, query: &str, top_k: usize, filters: Filters) -> Result<Vec<Hit>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::invalid("invalid_request", "query must not be empty"));
        }
        let filter = SearchFilter {
            tags: filters.tags.iter().map(|t| t.trim().to_lowercase()).collect(),
            language: filters.language.map(|l| l.trim().to_string()),
            channel: filters.channel.map(|c| c.trim().to_lowercase()),
        };
        let candidates = (top_k * FANOUT).max(20);
        let qvec = self.embed.embed(vec![query.to_string()], TextKind::Query).await?.pop().unwrap_or_default();
        let dense = self.index.search(qvec.clone(), candidates, filter.clone()).await?;
        let terms = text::query_terms(query);
        let (store, f) = (self.store.clone(), filter.clone());
        let keyword = blocking(move || store.keyword_search(&terms, &f, candidates)).await?;

        // chunk id -> (card, fused score, cosine if known, keyword score)
        let mut fused: HashMap<i64, (String, f64, Option<f32>, f64)> = HashMap::new();
        for (rank, h) in dense.iter().enumerate() {
            let e = fused.entry(h.chunk_id).or_insert((h.card_id.clone(), 0.0, None, 0.0));
            e.1 += 1.0 / (RRF_K + rank as f64 + 1.0);
            e.2 = Some(h.score);
        }
        for (rank, (chunk, card, score)) in keyword.iter().enumerate() {
            let e = fused.entry(*chunk).or_insert((card.clone(), 0.0, None, 0.0));
            e.1 += 1.0 / (RRF_K + rank as f64 + 1.0);
            e.3 = *score;
        }
        // Best chunk per card.
        let mut best: HashMap<String, (i64, f64, Option<f32>, f64)> = HashMap::new();
        for (chunk, (card, s, cos, kw)) in fused {
            let e = best.entry(card).or_insert((chunk, s, cos, kw));
            if s > e.1 {
                *e = (chunk, s, cos, kw);
            }
        }
        let mut ranked: Vec<(String, (i64, f64, Option<f32>, f64))> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.1.total_cmp(&a.1.1).then(a.0.cmp(&b.0)));
        ranked.truncate(top_k);

        let ids: Vec<i64> = ranked.iter().map(|(_, (c, ..))| *c).collect();
        let store = self.store.clone();
        let (texts, vectors) = blocking(move || {
            let texts = store.chunk_texts(&ids)?;
            // Keyword-only hits have no cosine yet: compute it from their stored vectors.
            let mut vectors = HashMap::new();
            for (_, card, _, _) in &texts {
                for c in store.card_chunks(card)? {
                    vectors.insert(c.chunk_id, c.vector);
                }
            }
            Ok((texts, vectors))
        })
        .await?;
        let text_of: HashMap<i64, (String, String)> = texts.into_iter().map(|(id, _, title, t)| (id, (title, t))).collect();
        let max = 2.0 / (RRF_K + 1.0);
        Ok(ranked
            .into_iter()
            .filter_map(|(card_id, (chunk, s, cos, kw))| {
                // A card archived between the ranking and this read is simply left out.
                let (title, passage) = text_of.get(&chunk)?.clone();
                let similarity = cos.or_else(|| vectors.get(&chunk).map(|v| dot(&qvec, v))).unwrap_or(0.0);
                Some(Hit { card_id, title, score: (s / max).min(1.0), similarity, keyword_score: kw, passage })
            })
            .collect())
    }
}
