//! The card vectors in Qdrant, through qdrant-client (gRPC), for when one machine is not enough:
//! Qdrant shards and replicates the collection across its nodes.
//!
//! One point per chunk: the id is the store's chunk id, the payload the card id and the filter
//! fields (language, tags, channels), each with a keyword payload index so that filters run
//! inside Qdrant. SQLite stays the source of truth: this index can always be rebuilt from it.
//!
//! Qdrant may be down when kefu starts or go away while it runs. The index then reports itself
//! not ready (with the reason, for /readyz), every call fails at once with `Unavailable` (503 to
//! HTTP callers) instead of waiting out timeouts, and a watchdog reconnects every two seconds.
//! Writes missed meanwhile are kept by the knowledge layer and replayed once it is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, PointStruct, QueryPointsBuilder, ScrollPointsBuilder,
    UpsertPointsBuilder, Value, VectorParamsBuilder, vector_output, vectors_config,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::{Point, VectorError, VectorHit, VectorIndex};
use crate::config::VectorConfig;
use crate::store::SearchFilter;

const BACKEND: &str = "qdrant";
/// Points per scroll page when reading the whole collection.
const PAGE: u32 = 1000;

enum State {
    Ready,
    /// Cannot be reached (or failed); the watchdog keeps trying.
    Down(String),
    /// Reached, but the collection does not fit (another embedding model): no retry helps.
    Unusable(String),
}

pub struct QdrantIndex {
    client: Qdrant,
    cfg: VectorConfig,
    dim: usize,
    state: RwLock<State>,
    /// Per language, the sum of the indexed vectors (f64: many adds and removes must not drift)
    /// and their count: the language centroids, which Qdrant does not compute. Read from the
    /// collection at every (re)connect and kept up to date by `upsert_card`.
    sums: Mutex<HashMap<String, (Vec<f64>, usize)>>,
}

fn unavailable(e: impl std::fmt::Display) -> VectorError {
    VectorError::Unavailable {
        backend: BACKEND,
        message: e.to_string(),
    }
}

impl QdrantIndex {
    /// A client for the configured server; nothing is contacted yet (see [`QdrantIndex::connect`]).
    pub fn new(cfg: &VectorConfig, dim: usize) -> Result<Arc<Self>, VectorError> {
        let client = Qdrant::from_url(&cfg.url)
            .api_key(cfg.api_key.clone())
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(2000)))
            // The server's version is checked by using it; the client's check only logs.
            .skip_compatibility_check()
            .build()
            .map_err(unavailable)?;
        Ok(Arc::new(QdrantIndex {
            client,
            cfg: cfg.clone(),
            dim,
            state: RwLock::new(State::Down("not connected yet".into())),
            sums: Mutex::new(HashMap::new()),
        }))
    }

    /// Creates the collection (and its payload indexes) when it does not exist, checks that an
    /// existing one holds vectors of this embedder's dimension with cosine distance, and reads
    /// the language centroids. `Err(VectorError::Unusable)` is a configuration error.
    pub async fn connect(&self) -> Result<(), VectorError> {
        let result = self.try_connect().await;
        *self.state.write() = match &result {
            Ok(()) => State::Ready,
            Err(VectorError::Unusable(m)) => State::Unusable(m.clone()),
            Err(e) => State::Down(e.to_string()),
        };
        result
    }

    async fn try_connect(&self) -> Result<(), VectorError> {
        let name = &self.cfg.collection;
        let exists = self
            .client
            .collection_exists(name)
            .await
            .map_err(unavailable)?;
        if exists {
            let info = self
                .client
                .collection_info(name)
                .await
                .map_err(unavailable)?;
            let params = info
                .result
                .and_then(|r| r.config)
                .and_then(|c| c.params)
                .and_then(|p| p.vectors_config)
                .and_then(|v| v.config);
            match params {
                Some(vectors_config::Config::Params(p))
                    if p.size as usize == self.dim && p.distance == Distance::Cosine as i32 => {}
                Some(vectors_config::Config::Params(p)) => {
                    return Err(VectorError::Unusable(format!(
                        "Qdrant collection {name:?} holds {}-dimensional vectors (distance {}), the embedder makes {}-dimensional cosine vectors: it was made for another embedding model. Use another [vector] collection, or delete it and run `kefu index rebuild`",
                        p.size, p.distance, self.dim
                    )));
                }
                _ => {
                    return Err(VectorError::Unusable(format!(
                        "Qdrant collection {name:?} has named vectors; kefu needs one unnamed vector per point: use another [vector] collection"
                    )));
                }
            }
        } else {
            self.client
                .create_collection(
                    CreateCollectionBuilder::new(name)
                        .vectors_config(
                            VectorParamsBuilder::new(self.dim as u64, Distance::Cosine)
                                .on_disk(self.cfg.on_disk),
                        )
                        .shard_number(self.cfg.shard_number)
                        .replication_factor(self.cfg.replication_factor),
                )
                .await
                .map_err(unavailable)?;
            tracing::info!(collection = %name, dim = self.dim, shards = self.cfg.shard_number, replicas = self.cfg.replication_factor, "Qdrant collection created");
        }
        // Idempotent: creating an index that exists is a no-op.
        for field in ["card_id", "language", "tags", "channels"] {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword)
                        .wait(true),
                )
                .await
                .map_err(unavailable)?;
        }
        let sums = self.read_sums().await?;
        *self.sums.lock() = sums;
        Ok(())
    }

    /// Reconnects every two seconds while Qdrant is down. Runs for the life of the process.
    pub fn spawn_watchdog(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let Some(me) = me.upgrade() else { return };
                if matches!(*me.state.read(), State::Down(_)) && me.connect().await.is_ok() {
                    tracing::info!(url = %me.cfg.url, "Qdrant is reachable again");
                }
            }
        });
    }

    fn check(&self) -> Result<(), VectorError> {
        match &*self.state.read() {
            State::Ready => Ok(()),
            State::Down(m) => Err(unavailable(format!("{} ({m})", self.cfg.url))),
            State::Unusable(m) => Err(VectorError::Unusable(m.clone())),
        }
    }

    /// Marks the index down after a failed call, so the next calls fail fast until the
    /// watchdog has reconnected.
    fn failed(&self, e: QdrantError) -> VectorError {
        let message = e.to_string();
        tracing::warn!(error = %message, "Qdrant call failed: marking the vector index unavailable");
        *self.state.write() = State::Down(message.clone());
        unavailable(message)
    }

    /// Every point of the collection, `with_vectors` or not, page by page.
    async fn scroll_all(
        &self,
        filter: Option<Filter>,
        with_vectors: bool,
    ) -> Result<Vec<(i64, HashMap<String, Value>, Option<Vec<f32>>)>, VectorError> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.cfg.collection)
                .limit(PAGE)
                .with_payload(true)
                .with_vectors(with_vectors);
            if let Some(f) = &filter {
                req = req.filter(f.clone());
            }
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let page = self.client.scroll(req).await.map_err(|e| self.failed(e))?;
            for p in page.result {
                let Some(id) = p.id.as_ref().and_then(point_id) else {
                    continue;
                };
                let vector =
                    p.vectors
                        .as_ref()
                        .and_then(|v| v.get_vector())
                        .and_then(|v| match v {
                            vector_output::Vector::Dense(d) => Some(d.data),
                            _ => None,
                        });
                out.push((id, p.payload, vector));
            }
            match page.next_page_offset {
                Some(o) => offset = Some(o),
                None => return Ok(out),
            }
        }
    }

    async fn read_sums(&self) -> Result<HashMap<String, (Vec<f64>, usize)>, VectorError> {
        let mut sums: HashMap<String, (Vec<f64>, usize)> = HashMap::new();
        for (_, payload, vector) in self.scroll_all(None, true).await? {
            if let (Some(lang), Some(v)) = (text(&payload, "language"), vector) {
                add(&mut sums, &lang, &v, 1.0);
            }
        }
        Ok(sums)
    }

    pub fn collection(&self) -> &str {
        &self.cfg.collection
    }
}

fn point_id(id: &qdrant_client::qdrant::PointId) -> Option<i64> {
    use qdrant_client::qdrant::point_id::PointIdOptions;
    match id.point_id_options {
        Some(PointIdOptions::Num(n)) => i64::try_from(n).ok(),
        _ => None,
    }
}

fn text(payload: &HashMap<String, Value>, key: &str) -> Option<String> {
    payload.get(key).and_then(|v| v.as_str()).cloned()
}

/// Adds `sign` times `v` to its language's sum (a vector Qdrant normalised is the same unit
/// vector the store holds: the embedder's vectors are unit length).
fn add(sums: &mut HashMap<String, (Vec<f64>, usize)>, lang: &str, v: &[f32], sign: f64) {
    let e = sums
        .entry(lang.to_string())
        .or_insert_with(|| (vec![0.0; v.len()], 0));
    if e.0.len() != v.len() {
        return;
    }
    for (s, x) in e.0.iter_mut().zip(v) {
        *s += sign * *x as f64;
    }
    if sign > 0.0 {
        e.1 += 1;
    } else {
        e.1 = e.1.saturating_sub(1);
    }
    if e.1 == 0 {
        sums.remove(lang);
    }
}

fn card_filter(card_id: &str) -> Filter {
    Filter::must([Condition::matches("card_id", card_id.to_string())])
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn is_ephemeral(&self) -> bool {
        false
    }

    fn readiness(&self) -> Result<(), String> {
        self.check().map_err(|e| e.to_string())
    }

    async fn upsert_card(&self, card_id: &str, points: Vec<Point>) -> Result<(), VectorError> {
        self.check()?;
        if let Some(p) = points.iter().find(|p| p.vector.len() != self.dim) {
            return Err(VectorError::Dimension {
                expected: self.dim,
                got: p.vector.len(),
            });
        }
        // The card's old vectors leave the centroids with it.
        let old = self.scroll_all(Some(card_filter(card_id)), true).await?;
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.cfg.collection)
                    .points(card_filter(card_id))
                    .wait(true),
            )
            .await
            .map_err(|e| self.failed(e))?;
        {
            let mut sums = self.sums.lock();
            for (_, payload, vector) in &old {
                if let (Some(lang), Some(v)) = (text(payload, "language"), vector) {
                    add(&mut sums, &lang, v, -1.0);
                }
            }
        }
        if points.is_empty() {
            return Ok(());
        }
        let structs: Vec<PointStruct> = points
            .iter()
            .map(|p| {
                let mut payload = Payload::new();
                payload.insert("card_id", card_id.to_string());
                payload.insert("language", p.meta.language.clone());
                payload.insert("tags", p.meta.tags.clone());
                payload.insert("channels", p.meta.channels.clone());
                PointStruct::new(p.chunk_id as u64, p.vector.clone(), payload)
            })
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.cfg.collection, structs).wait(true))
            .await
            .map_err(|e| self.failed(e))?;
        let mut sums = self.sums.lock();
        for p in &points {
            add(&mut sums, &p.meta.language, &p.vector, 1.0);
        }
        Ok(())
    }

    async fn search(
        &self,
        query: Vec<f32>,
        k: usize,
        filter: SearchFilter,
    ) -> Result<Vec<VectorHit>, VectorError> {
        self.check()?;
        if query.len() != self.dim {
            return Err(VectorError::Dimension {
                expected: self.dim,
                got: query.len(),
            });
        }
        let mut must: Vec<Condition> = Vec::new();
        if let Some(l) = &filter.language {
            must.push(Condition::matches("language", l.clone()));
        }
        for t in &filter.tags {
            must.push(Condition::matches("tags", t.clone()));
        }
        if let Some(c) = &filter.channel {
            // A card with no channels is usable on every channel.
            must.push(
                Filter::should([
                    Condition::is_empty("channels"),
                    Condition::matches("channels", c.clone()),
                ])
                .into(),
            );
        }
        let mut req = QueryPointsBuilder::new(&self.cfg.collection)
            .query(query)
            .limit(k as u64)
            .with_payload(true);
        if !must.is_empty() {
            req = req.filter(Filter::must(must));
        }
        let res = self.client.query(req).await.map_err(|e| self.failed(e))?;
        Ok(res
            .result
            .into_iter()
            .filter_map(|p| {
                Some(VectorHit {
                    chunk_id: p.id.as_ref().and_then(point_id)?,
                    card_id: text(&p.payload, "card_id")?,
                    score: p.score,
                })
            })
            .collect())
    }

    async fn language_centroids(&self) -> Result<HashMap<String, (Vec<f32>, usize)>, VectorError> {
        self.check()?;
        Ok(super::centroids(&self.sums.lock()))
    }

    async fn indexed_chunks(&self) -> Result<HashMap<String, Vec<i64>>, VectorError> {
        self.check()?;
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        for (id, payload, _) in self.scroll_all(None, false).await? {
            if let Some(card) = text(&payload, "card_id") {
                out.entry(card).or_default().push(id);
            }
        }
        for ids in out.values_mut() {
            ids.sort_unstable();
        }
        Ok(out)
    }
}
