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
pub mod extract;
pub mod gaps;
pub mod guard;
pub mod import;
pub mod mining;
pub mod prompts;
pub mod rerank;
pub mod retrieval;
pub mod support;
pub mod translate;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::error::{Error, Result, blocking};
use crate::runtime::embed::{EmbedPool, TextKind};
use crate::store::vector::{Point, VectorIndex};
use crate::store::{
    AuditEntry, Card, CardContent, CardStatus, CardVersion, Change, ChunkChange, ListFilter,
    NewChunk, Store,
};
use crate::text;
use card::{CardInput, CardPatch};

/// Who did something, for the audit log (`role:name`).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Two versions of a card and the line diff of their title and body.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CardDiff {
    pub from: CardVersion,
    pub to: CardVersion,
    pub title: Vec<card::DiffLine>,
    pub body: Vec<card::DiffLine>,
}

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
    /// Published cards the index does not hold.
    pub missing: Vec<String>,
    /// Published cards the index holds other chunks of (edited since it was indexed).
    pub stale: Vec<String>,
    /// Cards in the index that are not published.
    pub stray: Vec<String>,
    pub consistent: bool,
    /// Card changes the index missed while it was down, waiting to be applied.
    pub pending: usize,
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

    /// Whether the store answers, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.ping()).await
    }

    /// How many cards are in each state. Reads the store on this thread: call it off the
    /// reactor (the metrics scrape does).
    pub fn count_by_status_blocking(&self) -> Result<Vec<(CardStatus, usize)>> {
        Ok(self.store.count_by_status()?)
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

    /// A text being written, before it is saved: what publishing it would find, and its body
    /// rendered for preview. The body is held to the same size limit as a card's.
    pub fn check_text(
        &self,
        content: &CardContent,
    ) -> Result<(Vec<crate::error::Finding>, String)> {
        card::within_size(&content.body, self.max_card_bytes)?;
        Ok((
            self.checker.check(content),
            card::preview_html(&content.body),
        ))
    }

    /// What the compliance checks find in a text before it is published (a mined draft is
    /// stored with them, so the reviewer sees them first).
    pub fn findings(&self, content: &CardContent) -> Vec<crate::error::Finding> {
        self.checker.check(content)
    }

    /// The published card whose best chunk is nearest to `vector` (a unit passage vector),
    /// with that chunk's cosine.
    pub async fn nearest_published(&self, vector: Vec<f32>) -> Result<Option<(String, f32)>> {
        let hits = self
            .index
            .search(vector, 1, crate::store::SearchFilter::default())
            .await?;
        Ok(hits.into_iter().next().map(|h| (h.card_id, h.score)))
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

    /// What changed from version `from` to version `to` of a card.
    pub async fn diff(&self, id: &str, from: i64, to: i64) -> Result<CardDiff> {
        let versions = self.versions(id).await?;
        let find = |v: i64| {
            versions
                .iter()
                .find(|c| c.version == v)
                .ok_or_else(|| Error::NotFound(format!("card {id} has no version {v}")))
        };
        let (a, b) = (find(from)?, find(to)?);
        Ok(CardDiff {
            from: a.clone(),
            to: b.clone(),
            title: card::diff_lines(&a.content.title, &b.content.title),
            body: card::diff_lines(&a.content.body, &b.content.body),
        })
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
    /// truth; when the index fails (an external backend that is down), the card is remembered
    /// as pending and applied when the index is back, so the write the client asked for is not
    /// failed after it was committed.
    async fn sync_index(&self, card_id: &str) {
        if let Err(e) = self.index_card(card_id).await {
            tracing::error!(card = card_id, error = %e, "vector index update failed; kept as pending and applied when the index is back");
            let (store, id) = (self.store.clone(), card_id.to_string());
            if let Err(e) = blocking(move || store.mark_index_pending(&id)).await {
                tracing::error!(card = card_id, error = %e, "could not record the pending index update; `kefu index verify` will find it");
            }
        }
    }

    /// Makes the index hold exactly the card's committed chunks (none for a card that is not
    /// published).
    async fn index_card(&self, card_id: &str) -> Result<()> {
        let (store, id) = (self.store.clone(), card_id.to_string());
        let chunks = blocking(move || store.card_chunks(&id)).await?;
        let points = chunks
            .into_iter()
            .map(|c| Point {
                chunk_id: c.chunk_id,
                vector: c.vector,
                meta: c.meta,
            })
            .collect();
        Ok(self.index.upsert_card(card_id, points).await?)
    }

    /// Whether the vector index lives outside the process (and so keeps what it holds).
    pub fn index_is_external(&self) -> bool {
        !self.index.is_ephemeral()
    }

    /// Whether the vector index can serve, and if not why.
    pub fn index_readiness(&self) -> std::result::Result<(), String> {
        self.index.readiness()
    }

    /// Applies the index updates missed while the index was down; returns how many.
    pub async fn apply_pending(&self) -> Result<usize> {
        let store = self.store.clone();
        let pending = blocking(move || store.index_pending()).await?;
        for id in &pending {
            let _guard = self.lock_for(id).lock().await;
            self.index_card(id).await?;
            let (store, id) = (self.store.clone(), id.clone());
            blocking(move || store.clear_index_pending(&id)).await?;
        }
        if !pending.is_empty() {
            tracing::info!(
                cards = pending.len(),
                "applied the vector index updates missed while it was down"
            );
        }
        Ok(pending.len())
    }

    /// Compares the index with the store and queues every card that differs (missing, stale or
    /// stray) for [`Knowledge::apply_pending`]; returns how many.
    pub async fn reconcile(&self) -> Result<usize> {
        let status = self.index_status().await?;
        let ids: Vec<String> = status
            .missing
            .into_iter()
            .chain(status.stale)
            .chain(status.stray)
            .collect();
        let n = ids.len();
        let store = self.store.clone();
        blocking(move || {
            for id in &ids {
                store.mark_index_pending(id)?;
            }
            Ok(())
        })
        .await?;
        Ok(n)
    }

    /// For an external index: whenever it becomes reachable, reconcile it with the store, and
    /// while it is reachable apply any update it missed. Runs for the life of the process.
    pub fn spawn_index_repair(self: &Arc<Self>) {
        if self.index.is_ephemeral() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut was_ready = false;
            loop {
                let Some(k) = me.upgrade() else { return };
                let ready = k.index.readiness().is_ok();
                if ready {
                    let result = async {
                        if !was_ready {
                            k.reconcile().await?;
                        }
                        k.apply_pending().await
                    }
                    .await;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "vector index repair failed; retrying");
                    }
                }
                was_ready = ready;
                drop(k);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
    }

    /// Writes every published card into the index, `batch` cards between checkpoints, calling
    /// `progress(done, total)`. With `reembed`, each card is chunked and embedded again with
    /// the current embedder first (the stored vectors are replaced); without, the stored
    /// vectors are copied. Resumable: an interrupted rebuild continues after the last
    /// checkpoint. Cards the index holds that are not published are removed at the end.
    pub async fn rebuild_index(
        &self,
        reembed: bool,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<usize> {
        let key = format!(
            "rebuild_cursor:{}:{}",
            self.index.name(),
            if reembed { "reembed" } else { "copy" }
        );
        let (store, k) = (self.store.clone(), key.clone());
        let (ids, cursor) = blocking(move || Ok((store.published_ids()?, store.meta(&k)?))).await?;
        let total = ids.len();
        let start = cursor
            .as_deref()
            .map_or(0, |c| ids.partition_point(|id| id.as_str() <= c));
        if start > 0 {
            tracing::info!(done = start, total, "resuming an interrupted rebuild");
        }
        let system = Actor("system:rebuild".into());
        for (n, chunk) in ids[start..].chunks(batch.max(1)).enumerate() {
            for id in chunk {
                let _guard = self.lock_for(id).lock().await;
                if reembed {
                    self.reembed(id, &system).await?;
                }
                self.index_card(id).await?;
            }
            let (store, k, last) = (
                self.store.clone(),
                key.clone(),
                chunk.last().cloned().unwrap_or_default(),
            );
            blocking(move || store.set_meta(&k, &last)).await?;
            progress((start + (n + 1) * batch.max(1)).min(total), total);
        }
        let status = self.index_status().await?;
        for id in &status.stray {
            self.index.upsert_card(id, Vec::new()).await?;
        }
        let (store, fp) = (self.store.clone(), self.embedder_fingerprint());
        blocking(move || {
            if reembed {
                store.set_meta("embedder", &fp)?;
            }
            store.delete_meta(&key)
        })
        .await?;
        Ok(total)
    }

    pub async fn update(&self, id: &str, patch: CardPatch, actor: &Actor) -> Result<Card> {
        if patch.is_empty() {
            return Err(Error::invalid(
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

    /// Archives a card (a rejected draft with the reviewer's `reason`, kept in the audit log).
    pub async fn archive(&self, id: &str, actor: &Actor, reason: Option<String>) -> Result<Card> {
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
            match reason {
                Some(reason) => serde_json::json!({ "reason": reason }),
                None => serde_json::json!({}),
            },
        );
        self.commit(&card, change).await
    }

    /// Loads the vector index from the store (for backends that keep nothing themselves), after
    /// re-embedding every published card when the embedder changed since they were indexed.
    pub async fn prepare_index(&self) -> Result<()> {
        let fingerprint = self.embedder_fingerprint();
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

    /// What the stored vectors were made by, kept in the store's meta as `embedder`.
    fn embedder_fingerprint(&self) -> String {
        format!("{}:{}", self.embed.id(), self.embed.dim())
    }

    /// Chunks and embeds a published card again with the current embedder and commits the new
    /// chunks, leaving the vector index to the caller. The caller holds the card's lock.
    async fn reembed(&self, id: &str, actor: &Actor) -> Result<()> {
        let card = self.get(id).await?;
        let chunks = self.chunk(&card.content).await?;
        let change = Change::new(
            actor.0.clone(),
            "reindex",
            CardStatus::Published,
            ChunkChange::Replace(chunks),
            serde_json::json!({}),
        );
        let (store, version) = (self.store.clone(), card.version);
        let id = id.to_string();
        blocking(move || store.update_card(&id, version, change)).await?;
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
            self.reembed(&id, &system).await?;
            // An in-process index is loaded from the store right after this.
            if !self.index.is_ephemeral() {
                self.sync_index(&id).await;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    pub async fn index_status(&self) -> Result<IndexStatus> {
        let store = self.store.clone();
        let expected = blocking(move || store.published_chunk_ids()).await?;
        let actual = self.index.indexed_chunks().await?;
        let mut missing = Vec::new();
        let mut stale = Vec::new();
        for (id, chunks) in &expected {
            match actual.get(id) {
                None if chunks.is_empty() => {}
                None => missing.push(id.clone()),
                Some(held) if held != chunks => stale.push(id.clone()),
                Some(_) => {}
            }
        }
        let published: std::collections::HashSet<&String> =
            expected.iter().map(|(id, _)| id).collect();
        let mut stray: Vec<String> = actual
            .keys()
            .filter(|id| !published.contains(id))
            .cloned()
            .collect();
        stray.sort();
        let store = self.store.clone();
        let pending = blocking(move || store.index_pending()).await?.len();
        Ok(IndexStatus {
            backend: self.index.name().to_string(),
            embedder: self.embed.id().to_string(),
            published_cards: expected.len(),
            indexed_cards: actual.len(),
            vectors: actual.values().map(Vec::len).sum(),
            consistent: missing.is_empty() && stale.is_empty() && stray.is_empty(),
            missing,
            stale,
            stray,
            pending,
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
