//! The in-process vector index: exact (flat) cosine search over unit vectors kept in one
//! contiguous array. Exact search has recall 1.0 and at 10,000 cards costs about a millisecond
//! on one core, so an approximate graph would buy nothing at the embedded scale; larger
//! deployments move to an external engine. It persists nothing itself: the store's `chunks`
//! table holds the vectors and the index is loaded from it at start.

use crate::vecmath::dot;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{Point, VectorError, VectorHit, VectorIndex};
use crate::store::{ChunkMeta, SearchFilter};

#[derive(Default)]
struct Inner {
    dim: usize,
    /// Row-major, `dim` floats per row.
    data: Vec<f32>,
    chunk_ids: Vec<i64>,
    cards: Vec<Arc<str>>,
    metas: Vec<Arc<ChunkMeta>>,
    rows_of_card: HashMap<Arc<str>, Vec<usize>>,
    /// Per language: the sum of its vectors (f64, so that many adds and removes do not drift)
    /// and their count, for the language centroids.
    language_sums: HashMap<String, (Vec<f64>, usize)>,
}

pub struct EmbeddedIndex {
    inner: Arc<RwLock<Inner>>,
}

impl EmbeddedIndex {
    pub fn new(dim: usize) -> Self {
        EmbeddedIndex {
            inner: Arc::new(RwLock::new(Inner {
                dim,
                ..Default::default()
            })),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().chunk_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remove_card(&mut self, card: &str) {
        let Some(mut rows) = self.rows_of_card.remove(card) else {
            return;
        };
        // Highest first, so every swap_remove moves a row that is not itself being removed.
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for row in rows {
            let d = self.dim;
            self.account(row * d, -1.0);
            let last = self.chunk_ids.len() - 1;
            if row != last {
                let moved_card = self.cards[last].clone();
                if let Some(v) = self.rows_of_card.get_mut(&moved_card) {
                    for r in v.iter_mut().filter(|r| **r == last) {
                        *r = row;
                    }
                }
                self.data.copy_within(last * d..(last + 1) * d, row * d);
            }
            self.data.truncate(last * self.dim);
            self.chunk_ids.swap_remove(row);
            self.cards.swap_remove(row);
            self.metas.swap_remove(row);
        }
    }

    /// Adds (`sign` 1) or subtracts (-1) the row starting at `offset` to its language's sum.
    fn account(&mut self, offset: usize, sign: f64) {
        let row = offset / self.dim;
        let lang = self.metas[row].language.clone();
        let dim = self.dim;
        let entry = self
            .language_sums
            .entry(lang)
            .or_insert_with(|| (vec![0.0; dim], 0));
        for (acc, x) in entry.0.iter_mut().zip(&self.data[offset..offset + dim]) {
            *acc += sign * f64::from(*x);
        }
        entry.1 = if sign > 0.0 { entry.1 + 1 } else { entry.1 - 1 };
        if entry.1 == 0 {
            let lang = self.metas[row].language.clone();
            self.language_sums.remove(&lang);
        }
    }

    fn search(&self, q: &[f32], k: usize, filter: &SearchFilter) -> Vec<VectorHit> {
        let mut heap: BinaryHeap<MinScore> = BinaryHeap::with_capacity(k + 1);
        for (row, v) in self.data.chunks_exact(self.dim).enumerate() {
            if !filter.accepts(&self.metas[row]) {
                continue;
            }
            let s = dot(q, v);
            if heap.len() < k {
                heap.push(MinScore(s, row));
            } else if heap.peek().is_some_and(|m| s > m.0) {
                heap.pop();
                heap.push(MinScore(s, row));
            }
        }
        let mut hits: Vec<VectorHit> = heap
            .into_iter()
            .map(|MinScore(score, row)| VectorHit {
                chunk_id: self.chunk_ids[row],
                card_id: self.cards[row].to_string(),
                score,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
        hits
    }
}

/// Ordered so that a max-heap of it keeps the lowest score on top.
struct MinScore(f32, usize);
impl PartialEq for MinScore {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for MinScore {}
impl PartialOrd for MinScore {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for MinScore {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

#[async_trait]
impl VectorIndex for EmbeddedIndex {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn is_ephemeral(&self) -> bool {
        true
    }

    async fn upsert_card(&self, card_id: &str, points: Vec<Point>) -> Result<(), VectorError> {
        let mut g = self.inner.write();
        if let Some(p) = points.iter().find(|p| p.vector.len() != g.dim) {
            return Err(VectorError::Dimension {
                expected: g.dim,
                got: p.vector.len(),
            });
        }
        g.remove_card(card_id);
        if points.is_empty() {
            return Ok(());
        }
        let card: Arc<str> = card_id.into();
        let mut rows = Vec::with_capacity(points.len());
        for p in points {
            let row = g.chunk_ids.len();
            rows.push(row);
            g.data.extend_from_slice(&p.vector);
            g.chunk_ids.push(p.chunk_id);
            g.cards.push(card.clone());
            g.metas.push(Arc::new(p.meta));
            let d = g.dim;
            g.account(row * d, 1.0);
        }
        g.rows_of_card.insert(card, rows);
        Ok(())
    }

    async fn search(
        &self,
        query: Vec<f32>,
        k: usize,
        filter: SearchFilter,
    ) -> Result<Vec<VectorHit>, VectorError> {
        let dim = self.inner.read().dim;
        if query.len() != dim {
            return Err(VectorError::Dimension {
                expected: dim,
                got: query.len(),
            });
        }
        let inner = self.inner.clone();
        // A scan over a large index is milliseconds of CPU: keep it off the async reactor.
        tokio::task::spawn_blocking(move || inner.read().search(&query, k, &filter))
            .await
            .map_err(|e| VectorError::Unavailable {
                backend: "embedded",
                message: e.to_string(),
            })
    }

    async fn language_centroids(&self) -> Result<HashMap<String, (Vec<f32>, usize)>, VectorError> {
        Ok(super::centroids(&self.inner.read().language_sums))
    }

    async fn indexed_chunks(&self) -> Result<HashMap<String, Vec<i64>>, VectorError> {
        let g = self.inner.read();
        Ok(g.rows_of_card
            .iter()
            .map(|(card, rows)| {
                let mut ids: Vec<i64> = rows.iter().map(|r| g.chunk_ids[*r]).collect();
                ids.sort_unstable();
                (card.to_string(), ids)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, v: [f32; 2], lang: &str) -> Point {
        Point {
            chunk_id: id,
            vector: v.to_vec(),
            meta: ChunkMeta {
                language: lang.into(),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn replaces_removes_and_filters() {
        let idx = EmbeddedIndex::new(2);
        idx.upsert_card(
            "a",
            vec![point(1, [1.0, 0.0], "en"), point(2, [0.0, 1.0], "en")],
        )
        .await
        .unwrap();
        idx.upsert_card("b", vec![point(3, [0.8, 0.6], "zh")])
            .await
            .unwrap();
        let hits = idx
            .search(vec![1.0, 0.0], 2, SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        // Removing "a" moves b's row; b must still be found and filtered correctly.
        idx.upsert_card("a", vec![]).await.unwrap();
        assert_eq!(idx.len(), 1);
        let zh = SearchFilter {
            language: Some("zh".into()),
            ..Default::default()
        };
        assert_eq!(
            idx.search(vec![1.0, 0.0], 5, zh).await.unwrap()[0].card_id,
            "b"
        );
        let en = SearchFilter {
            language: Some("en".into()),
            ..Default::default()
        };
        assert!(idx.search(vec![1.0, 0.0], 5, en).await.unwrap().is_empty());
        assert!(
            idx.search(vec![1.0], 5, SearchFilter::default())
                .await
                .is_err()
        );
    }
}
