//! Knowledge cards: their lifecycle (draft -> in_review -> published -> archived), the compliance
//! checks that guard publishing, and keeping the retrieval index in step with the cards.
//!
//! Only published cards have chunks, and chunks are written in the same SQLite transaction as the
//! card's status, so "what is searchable" and "what is published" cannot drift apart, crash or not.
//! Operations on one card are serialised (a striped lock), so two edits racing on the same card
//! can neither interleave their index updates nor lose one another.

pub mod answer;
pub mod assist;
pub mod card;
pub mod compliance;
pub mod guard;
pub mod import;
pub mod prompts;
pub mod retrieval;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::runtime::embed::{EmbedPool, TextKind};
use crate::store::vector::{Point, VectorIndex};
use crate::store::{
    AuditEntry, Card, CardContent, CardStatus, CardVersion, Change, ChunkChange, ListFilter,
    NewChunk, Store, StoreError,
};
use card::{CardInput, CardPatch};

/// Who did something, for the audit log (`role:name`).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

pub struct Knowledge {
    store: Arc<Store>,
    embed: EmbedPool,
    index: Arc<dyn VectorIndex>,
    checker: compliance::Checker,
    max_card_bytes: usize,
    locks: Vec<Mutex<()>>,
}

/// Whether the vector index holds exactly the published cards' chunks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexStatus {
    pub backend: String,
    pub embedder: String,
    pub published_cards: usize,
    pub indexed_cards: usize,
    pub vectors: usize,
    /// Published cards whose chunks are missing from the index or differ in number.
    pub missing: Vec<String>,
    /// Cards in the index that are not published.
    pub stray: Vec<String>,
    pub consistent: bool,
}

fn store_err(e: StoreError) -> Error {
    match e {
        StoreError::NotFound(m) => Error::NotFound(m),
        StoreError::Conflict(m) => Error::Conflict(m),
        other => Error::Store(other),
    }
}

/// Runs a store call on the blocking pool: SQLite with `synchronous=FULL` waits for the disk.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("store task failed: {e}")))?
        .map_err(store_err)
}

impl Knowledge {
    pub fn new(
        store: Arc<Store>,
        embed: EmbedPool,
        index: Arc<dyn VectorIndex>,
        allow: &[String],
        max_card_bytes: usize,
    ) -> Self {
        Knowledge {
            store,
            embed,
            index,
            checker: compliance::Checker::new(allow),
            max_card_bytes,
            locks: (0..64).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn embedder(&self) -> &EmbedPool {
        &self.embed
    }

    pub fn index_backend(&self) -> &'static str {
        self.index.name()
    }

    fn lock_for(&self, id: &str) -> &Mutex<()> {
        let h = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.locks[h % self.locks.len()]
    }

    pub async fn create(&self, input: CardInput, actor: &Actor) -> Result<Card> {
        let content = input.validate(self.max_card_bytes)?;
        let id = uuid::Uuid::now_v7().to_string();
        let (store, actor) = (self.store.clone(), actor.0.clone());
        blocking(move || {
            store.create_card(
                &id,
                &content,
                &actor,
                "create",
                serde_json::json!({ "title": content.title }),
            )
        })
        .await
    }

    /// Records a rating of an answer the service gave.
    pub async fn feedback(
        &self,
        answer_id: &str,
        rating: &'static str,
        comment: Option<String>,
        actor: &str,
    ) -> Result<usize> {
        let (store, id, actor) = (self.store.clone(), answer_id.to_string(), actor.to_string());
        blocking(move || store.add_feedback(&id, rating, comment.as_deref(), &actor)).await
    }

    pub async fn get(&self, id: &str) -> Result<Card> {
        let (store, id2) = (self.store.clone(), id.to_string());
        blocking(move || store.get_card(&id2))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no card with id {id}")))
    }

    pub async fn list(&self, filter: ListFilter) -> Result<(Vec<Card>, usize)> {
        let store = self.store.clone();
        blocking(move || store.list_cards(&filter)).await
    }

    pub async fn versions(&self, id: &str) -> Result<Vec<CardVersion>> {
        self.get(id).await?;
        let (store, id) = (self.store.clone(), id.to_string());
        blocking(move || store.versions(&id)).await
    }

    pub async fn audit(&self, card_id: Option<String>, limit: usize) -> Result<Vec<AuditEntry>> {
        let store = self.store.clone();
        blocking(move || store.audit_log(card_id.as_deref(), limit)).await
    }

    /// Embeds a card's passages. The title goes in front of every passage: "How long do refunds
    /// take" must find the passage that only says "7 to 10 working days".
    async fn chunk(&self, c: &CardContent) -> Result<Vec<NewChunk>> {
        let passages = text::passages(&c.body);
        let inputs: Vec<String> = passages
            .iter()
            .map(|p| format!("{}\n{p}", c.title))
            .collect();
        let vectors = self.embed.embed(inputs, TextKind::Passage).await?;
        Ok(passages
            .into_iter()
            .zip(vectors)
            .map(|(p, vector)| {
                let terms = text::terms(&format!("{}\n{p}", c.title)).join(" ");
                NewChunk {
                    text: p,
                    terms,
                    vector,
                }
            })
            .collect())
    }

    /// Commits a change and brings the vector index in line with what was committed.
    async fn commit(&self, card: &Card, change: Change) -> Result<Card> {
        let touches_index = !matches!(change.chunks, ChunkChange::Keep);
        let (store, id, version) = (self.store.clone(), card.id.clone(), card.version);
        let updated = blocking(move || store.update_card(&id, version, change)).await?;
        if touches_index {
            self.sync_index(&updated.id).await;
        }
        Ok(updated)
    }

    /// Copies a card's committed chunks into the vector index. The store already holds the
    /// truth; an index that fails here is repaired from it at the next start, so the write the
    /// client asked for is not failed after it was committed.
    async fn sync_index(&self, card_id: &str) {
        let (store, id) = (self.store.clone(), card_id.to_string());
        let result = async {
            let chunks = blocking(move || store.card_chunks(&id)).await?;
            let points = chunks
                .into_iter()
                .map(|c| Point {
                    chunk_id: c.chunk_id,
                    vector: c.vector,
                    meta: c.meta,
                })
                .collect();
            self.index
                .upsert_card(card_id, points)
                .await
                .map_err(Error::from)
        }
        .await;
        if let Err(e) = result {
            tracing::error!(card = card_id, error = %e, "vector index update failed; it will be rebuilt from the store at the next start");
        }
    }

    pub async fn update(&self, id: &str, patch: CardPatch, actor: &Actor) -> Result<Card> {
        if patch.is_empty() {
            return Err(Error::invalid(
                "invalid_request",
                "the patch changes nothing: give at least one of title, body, tags, language, channels",
            ));
        }
        let _guard = self.lock_for(id).lock().await;
        let card = self.get(id).await?;
        if let Some(v) = patch.expected_version
            && v != card.version
        {
            return Err(Error::Conflict(format!(
                "card {id} is at version {}, not {v}: reload it and apply your change again",
                card.version
            )));
        }
        let content = patch.apply(&card.content).validate(self.max_card_bytes)?;
        let chunks = if card.status == CardStatus::Published {
            // A live card stays compliant: the edit is refused rather than published with PII.
            let findings = self.checker.check(&content);
            if !findings.is_empty() {
                return Err(Error::Compliance(findings));
            }
            ChunkChange::Replace(self.chunk(&content).await?)
        } else {
            ChunkChange::Keep
        };
        let detail = serde_json::json!({ "fields": changed_fields(&card.content, &content) });
        let change = Change::new(actor.0.clone(), "update", card.status, chunks, detail);
        self.commit(
            &card,
            Change {
                content: Some(content),
                ..change
            },
        )
        .await
    }

    pub async fn submit(&self, id: &str, actor: &Actor) -> Result<Card> {
        let _guard = self.lock_for(id).lock().await;
        let card = self.get(id).await?;
        match card.status {
            CardStatus::Draft => {
                let change = Change::new(
                    actor.0.clone(),
                    "submit",
                    CardStatus::InReview,
                    ChunkChange::Keep,
                    serde_json::json!({}),
                );
                self.commit(&card, change).await
            }
            CardStatus::InReview => Ok(card),
            s => Err(Error::Conflict(format!(
                "card {id} is {}; only a draft can be submitted for review",
                s.as_str()
            ))),
        }
    }

    pub async fn publish(&self, id: &str, actor: &Actor) -> Result<Card> {
        let _guard = self.lock_for(id).lock().await;
        let card = self.get(id).await?;
        if card.status == CardStatus::Published {
            return Ok(card);
        }
        let findings = self.checker.check(&card.content);
        if !findings.is_empty() {
            let detail = serde_json::json!({ "checks": findings.iter().map(|f| &f.check).collect::<Vec<_>>() });
            let change = Change::new(
                actor.0.clone(),
                "publish_refused",
                card.status,
                ChunkChange::Keep,
                detail,
            );
            // The refusal is part of the card's history too; its failure must not hide the 422.
            if let Err(e) = self.commit(&card, change).await {
                tracing::warn!(error = %e, "could not record a refused publish in the audit log");
            }
            return Err(Error::Compliance(findings));
        }
        let chunks = self.chunk(&card.content).await?;
        let detail = serde_json::json!({ "chunks": chunks.len() });
        let change = Change::new(
            actor.0.clone(),
            "publish",
            CardStatus::Published,
            ChunkChange::Replace(chunks),
            detail,
        );
        self.commit(&card, change).await
    }

    pub async fn archive(&self, id: &str, actor: &Actor) -> Result<Card> {
        let _guard = self.lock_for(id).lock().await;
        let card = self.get(id).await?;
        if card.status == CardStatus::Archived {
            return Ok(card);
        }
        let change = Change::new(
            actor.0.clone(),
            "archive",
            CardStatus::Archived,
            ChunkChange::Remove,
            serde_json::json!({}),
        );
        self.commit(&card, change).await
    }

    /// Loads the vector index from the store (for backends that keep nothing themselves), after
    /// re-embedding every published card when the embedder changed since they were indexed.
    pub async fn prepare_index(&self) -> Result<()> {
        let fingerprint = format!("{}:{}", self.embed.id(), self.embed.dim());
        let store = self.store.clone();
        let previous = blocking(move || store.meta("embedder")).await?;
        if previous.as_deref().is_some_and(|p| p != fingerprint) {
            tracing::warn!(from = previous.as_deref().unwrap_or(""), to = %fingerprint, "the embedding model changed: re-embedding every published card");
            self.reembed_all().await?;
        }
        let (store, fp) = (self.store.clone(), fingerprint.clone());
        blocking(move || store.set_meta("embedder", &fp)).await?;
        if self.index.is_ephemeral() {
            let store = self.store.clone();
            let chunks = blocking(move || store.all_chunks()).await?;
            let mut by_card: HashMap<String, Vec<Point>> = HashMap::new();
            for c in chunks {
                by_card.entry(c.card_id).or_default().push(Point {
                    chunk_id: c.chunk_id,
                    vector: c.vector,
                    meta: c.meta,
                });
            }
            for (card, points) in by_card {
                self.index.upsert_card(&card, points).await?;
            }
        }
        Ok(())
    }

    async fn reembed_all(&self) -> Result<()> {
        let store = self.store.clone();
        let ids = blocking(move || store.published_ids()).await?;
        let bar = indicatif::ProgressBar::new(ids.len() as u64);
        bar.set_message("re-embedding cards");
        let system = Actor("system:reindex".into());
        for id in ids {
            let _guard = self.lock_for(&id).lock().await;
            let card = self.get(&id).await?;
            let chunks = self.chunk(&card.content).await?;
            let change = Change::new(
                system.0.clone(),
                "reindex",
                CardStatus::Published,
                ChunkChange::Replace(chunks),
                serde_json::json!({}),
            );
            self.commit(&card, change).await?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    pub async fn index_status(&self) -> Result<IndexStatus> {
        let store = self.store.clone();
        let expected = blocking(move || store.published_chunk_counts()).await?;
        let actual = self.index.card_counts().await?;
        let missing: Vec<String> = expected
            .iter()
            .filter(|(id, n)| actual.get(id) != Some(n))
            .map(|(id, _)| id.clone())
            .collect();
        let published: std::collections::HashSet<&String> =
            expected.iter().map(|(id, _)| id).collect();
        let mut stray: Vec<String> = actual
            .keys()
            .filter(|id| !published.contains(id))
            .cloned()
            .collect();
        stray.sort();
        Ok(IndexStatus {
            backend: self.index.name().to_string(),
            embedder: self.embed.id().to_string(),
            published_cards: expected.len(),
            indexed_cards: actual.len(),
            vectors: actual.values().sum(),
            consistent: missing.is_empty() && stray.is_empty(),
            missing,
            stray,
        })
    }
}

fn changed_fields(a: &CardContent, b: &CardContent) -> Vec<&'static str> {
    let mut f = Vec::new();
    if a.title != b.title {
        f.push("title");
    }
    if a.body != b.body {
        f.push("body");
    }
    if a.tags != b.tags {
        f.push("tags");
    }
    if a.language != b.language {
        f.push("language");
    }
    if a.channels != b.channels {
        f.push("channels");
    }
    f
}
