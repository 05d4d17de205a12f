//! Vector backends behind one trait: the in-process index (default) and, at scale, an external
//! engine. The `chunks` table in SQLite is the source of truth; a backend indexes it.

pub mod embedded;
pub mod qdrant;

use async_trait::async_trait;

use super::{ChunkMeta, SearchFilter};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The caller's vector does not fit the index (another embedding model).
    #[error("vector has {got} dimensions, the index holds {expected}")]
    Dimension { expected: usize, got: usize },
    /// The backend was reached but cannot serve this index (a collection made for another
    /// embedding model): an operator's configuration error, not transient.
    #[error("vector backend unusable: {0}")]
    Unusable(String),
    /// The backend cannot be reached or failed; the system's fault, usually transient.
    #[error("vector backend {backend} unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
}

/// Per language, the sum of the vectors (f64, so that many adds and removes do not drift) and
/// their count.
pub type LanguageSums = std::collections::HashMap<String, (Vec<f64>, usize)>;

/// The language centroids (means) from their sums.
pub fn centroids(sums: &LanguageSums) -> std::collections::HashMap<String, (Vec<f32>, usize)> {
    sums.iter()
        .map(|(lang, (sum, n))| {
            (
                lang.clone(),
                (sum.iter().map(|x| (x / *n as f64) as f32).collect(), *n),
            )
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Point {
    pub chunk_id: i64,
    pub vector: Vec<f32>,
    pub meta: ChunkMeta,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub chunk_id: i64,
    pub card_id: String,
    /// Cosine similarity (vectors are unit length).
    pub score: f32,
}

#[async_trait]
pub trait VectorIndex: Send + Sync {
    fn name(&self) -> &'static str;
    /// True when the index keeps nothing itself and is loaded from the store at start.
    fn is_ephemeral(&self) -> bool;
    /// Whether it can serve now, and if not why (for /readyz).
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
    /// Replaces every point of `card_id` with `points` (none: removes the card).
    async fn upsert_card(&self, card_id: &str, points: Vec<Point>) -> Result<(), VectorError>;
    /// The `k` nearest chunks that pass `filter`, best first.
    async fn search(
        &self,
        query: Vec<f32>,
        k: usize,
        filter: SearchFilter,
    ) -> Result<Vec<VectorHit>, VectorError>;
    /// Per language: the mean of the indexed vectors and how many there are.
    async fn language_centroids(
        &self,
    ) -> Result<std::collections::HashMap<String, (Vec<f32>, usize)>, VectorError>;
    /// The chunk ids held per card, ascending, for checking that the index agrees with the
    /// store (a card edited since it was indexed has new chunk ids).
    async fn indexed_chunks(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<i64>>, VectorError>;
}
