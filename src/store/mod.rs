//! Persistence. SQLite (WAL, `synchronous=FULL`: a write acknowledged to a client survives a
//! crash of the process and of the machine) holds cards, their versions, the audit log, and the
//! retrieval chunks with their vectors and keyword terms. SQLite is the source of truth: a vector
//! backend ([`vector`]) is an index over the `chunks` table and can always be rebuilt from it.
//!
//! Every change to a card is one transaction: the card row, its version row, its chunks, its
//! keyword terms and its audit entry commit together or not at all, so the index can never
//! disagree with the cards after a crash. Writers name the version they read (compare-and-set);
//! a card changed in between is a conflict, never a lost update.
//!
//! Nothing here knows about models: vectors are just `f32` blobs.

pub mod conversations;
pub mod vector;

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the data directory {path}: {message}")]
    Open { path: String, message: String },
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// The record changed since the caller read it (or does not exist).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Draft,
    InReview,
    Published,
    Archived,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Draft => "draft",
            CardStatus::InReview => "in_review",
            CardStatus::Published => "published",
            CardStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => CardStatus::Draft,
            "in_review" => CardStatus::InReview,
            "published" => CardStatus::Published,
            "archived" => CardStatus::Archived,
            _ => return None,
        })
    }
}

/// What an author writes on a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardContent {
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub language: String,
    /// Channels the card may be used on; empty means every channel.
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Card {
    pub id: String,
    pub status: CardStatus,
    pub version: i64,
    #[serde(flatten)]
    pub content: CardContent,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CardVersion {
    pub version: i64,
    pub status: CardStatus,
    #[serde(flatten)]
    pub content: CardContent,
    pub actor: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub card_id: Option<String>,
    pub version: Option<i64>,
    pub detail: serde_json::Value,
}

/// A retrieval unit of a published card: its text, keyword terms and vector.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub text: String,
    pub terms: String,
    pub vector: Vec<f32>,
}

/// A chunk as search presents it.
#[derive(Debug, Clone)]
pub struct ChunkRow {
    pub chunk_id: i64,
    pub card_id: String,
    pub language: String,
    pub title: String,
    pub text: String,
    pub vector: Vec<f32>,
}

/// A stored chunk with what a vector index needs to filter it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub chunk_id: i64,
    pub card_id: String,
    pub vector: Vec<f32>,
    pub meta: ChunkMeta,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkMeta {
    pub language: String,
    pub tags: Vec<String>,
    pub channels: Vec<String>,
}

impl From<&CardContent> for ChunkMeta {
    fn from(c: &CardContent) -> Self {
        ChunkMeta {
            language: c.language.clone(),
            tags: c.tags.clone(),
            channels: c.channels.clone(),
        }
    }
}

/// Filters shared by keyword and vector search.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// The card must carry every one of these tags.
    pub tags: Vec<String>,
    pub language: Option<String>,
    /// The card must be usable on this channel (cards with no channels are usable on all).
    pub channel: Option<String>,
}

impl SearchFilter {
    pub fn accepts(&self, m: &ChunkMeta) -> bool {
        self.language.as_ref().is_none_or(|l| &m.language == l)
            && self.tags.iter().all(|t| m.tags.contains(t))
            && self
                .channel
                .as_ref()
                .is_none_or(|c| m.channels.is_empty() || m.channels.contains(c))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<CardStatus>,
    pub tag: Option<String>,
    pub text: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// One change to a card, committed atomically by [`Store::update_card`].
pub struct Change {
    /// New content; `None` keeps the current one.
    pub content: Option<CardContent>,
    pub status: CardStatus,
    pub chunks: ChunkChange,
    /// For the audit log: who, what, and the particulars.
    pub actor: String,
    pub action: &'static str,
    pub detail: serde_json::Value,
}

impl Change {
    /// A change that keeps the content.
    pub fn new(
        actor: String,
        action: &'static str,
        status: CardStatus,
        chunks: ChunkChange,
        detail: serde_json::Value,
    ) -> Self {
        Change {
            content: None,
            status,
            chunks,
            actor,
            action,
            detail,
        }
    }
}

/// What a change does to a card's chunks.
pub enum ChunkChange {
    Keep,
    Replace(Vec<NewChunk>),
    Remove,
}

pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS cards (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL,
    language TEXT NOT NULL,
    channels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_status ON cards(status, updated_at);
CREATE TABLE IF NOT EXISTS card_versions (
    card_id TEXT NOT NULL REFERENCES cards(id),
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL,
    language TEXT NOT NULL,
    channels TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (card_id, version)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id TEXT NOT NULL REFERENCES cards(id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_card ON chunks(card_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(terms, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vocab USING fts5vocab(chunk_terms, 'row');
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    card_id TEXT,
    version INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_card ON audit(card_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Cards whose committed chunks an external vector index has not taken yet (it was down).
CREATE TABLE IF NOT EXISTS index_pending (card_id TEXT PRIMARY KEY, since TEXT NOT NULL);
"#;

pub fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// The time `hours` ago, in the stored format (RFC 3339 UTC, so strings compare as times).
pub fn hours_ago(hours: i64) -> String {
    rfc3339(time::OffsetDateTime::now_utc() - time::Duration::hours(hours))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formats every UTC time")
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

fn parse_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("list column {s:?}: {e}")))
}

fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const CARD_COLUMNS: &str =
    "id, status, version, title, body, tags, language, channels, created_at, updated_at";

fn card_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Card, String, String, String)> {
    let status: String = r.get(1)?;
    Ok((
        Card {
            id: r.get(0)?,
            status: CardStatus::Draft,
            version: r.get(2)?,
            content: CardContent {
                title: r.get(3)?,
                body: r.get(4)?,
                tags: vec![],
                language: r.get(6)?,
                channels: vec![],
            },
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        },
        status,
        r.get(5)?,
        r.get(7)?,
    ))
}

fn finish_card(
    (mut c, status, tags, channels): (Card, String, String, String),
) -> Result<Card, StoreError> {
    c.status = CardStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("card {} has status {status:?}", c.id)))?;
    c.content.tags = parse_list(&tags)?;
    c.content.channels = parse_list(&channels)?;
    Ok(c)
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let conn = Connection::open(data_dir.join("kefu.sqlite3"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(conversations::SCHEMA)?;
        for (table, column, ty) in conversations::ADDED_COLUMNS {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// A cheap query, for readiness checks.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.lock().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Remembers that the vector index missed this card's last change.
    pub fn mark_index_pending(&self, card_id: &str) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO index_pending (card_id, since) VALUES (?1, ?2) ON CONFLICT(card_id) DO NOTHING",
            params![card_id, now()],
        )?;
        Ok(())
    }

    pub fn index_pending(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT card_id FROM index_pending ORDER BY since, card_id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn clear_index_pending(&self, card_id: &str) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute("DELETE FROM index_pending WHERE card_id = ?1", [card_id])?;
        Ok(())
    }

    pub fn create_card(
        &self,
        id: &str,
        content: &CardContent,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<Card, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            &format!("INSERT INTO cards ({CARD_COLUMNS}) VALUES (?1, 'draft', 1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"),
            params![id, content.title, content.body, json_list(&content.tags), content.language, json_list(&content.channels), at],
        )?;
        insert_version(&tx, id, 1, CardStatus::Draft, content, actor, &at)?;
        audit(&tx, actor, action, Some(id), Some(1), &detail)?;
        let card = get_card(&tx, id)?.expect("inserted in this transaction");
        tx.commit()?;
        Ok(card)
    }

    pub fn get_card(&self, id: &str) -> Result<Option<Card>, StoreError> {
        get_card(&self.conn.lock(), id)
    }

    /// Applies a change to a card if it is still at `expected_version`: new content and/or status,
    /// its chunks, one version row when the content or status changed, and an audit entry.
    pub fn update_card(
        &self,
        id: &str,
        expected_version: i64,
        change: Change,
    ) -> Result<Card, StoreError> {
        let Change {
            content,
            status,
            chunks,
            actor,
            action,
            detail,
        } = change;
        let actor = actor.as_str();
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let current =
            get_card(&tx, id)?.ok_or_else(|| StoreError::NotFound(format!("no card {id}")))?;
        if current.version != expected_version {
            return Err(StoreError::Conflict(format!(
                "card {id} is at version {}, not {expected_version}: it changed meanwhile; read it again and retry",
                current.version
            )));
        }
        let content = content.as_ref().unwrap_or(&current.content);
        let changed = content != &current.content || status != current.status;
        let version = if changed {
            current.version + 1
        } else {
            current.version
        };
        let at = now();
        if changed {
            tx.execute(
                "UPDATE cards SET status = ?2, version = ?3, title = ?4, body = ?5, tags = ?6, language = ?7, channels = ?8, updated_at = ?9 WHERE id = ?1",
                params![id, status.as_str(), version, content.title, content.body, json_list(&content.tags), content.language, json_list(&content.channels), at],
            )?;
            insert_version(&tx, id, version, status, content, actor, &at)?;
        }
        match chunks {
            ChunkChange::Keep => {}
            ChunkChange::Remove => remove_chunks(&tx, id)?,
            ChunkChange::Replace(new) => {
                remove_chunks(&tx, id)?;
                for (seq, c) in new.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO chunks (card_id, seq, text, vector) VALUES (?1, ?2, ?3, ?4)",
                        params![id, seq as i64, c.text, vector_blob(&c.vector)],
                    )?;
                    let rowid = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT INTO chunk_terms (rowid, terms) VALUES (?1, ?2)",
                        params![rowid, c.terms],
                    )?;
                }
            }
        }
        audit(&tx, actor, action, Some(id), Some(version), &detail)?;
        let card = get_card(&tx, id)?.expect("updated in this transaction");
        tx.commit()?;
        Ok(card)
    }

    pub fn list_cards(&self, f: &ListFilter) -> Result<(Vec<Card>, usize), StoreError> {
        let conn = self.conn.lock();
        let where_sql = "WHERE (?1 IS NULL OR status = ?1)
              AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(cards.tags) WHERE value = ?2))
              AND (?3 IS NULL OR instr(lower(title), lower(?3)) > 0 OR instr(lower(body), lower(?3)) > 0)";
        let args = params![f.status.map(CardStatus::as_str), f.tag, f.text];
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM cards {where_sql}"),
            args,
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards {where_sql} ORDER BY updated_at DESC, id DESC LIMIT ?4 OFFSET ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                f.status.map(CardStatus::as_str),
                f.tag,
                f.text,
                f.limit as i64,
                f.offset as i64
            ],
            card_from_row,
        )?;
        let mut cards = Vec::new();
        for r in rows {
            cards.push(finish_card(r?)?);
        }
        Ok((cards, total as usize))
    }

    pub fn versions(&self, id: &str) -> Result<Vec<CardVersion>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT version, status, title, body, tags, language, channels, actor, at FROM card_versions WHERE card_id = ?1 ORDER BY version",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (version, status, title, body, tags, language, channels, actor, at) = r?;
            out.push(CardVersion {
                version,
                status: CardStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("version status {status:?}")))?,
                content: CardContent {
                    title,
                    body,
                    tags: parse_list(&tags)?,
                    language,
                    channels: parse_list(&channels)?,
                },
                actor,
                at,
            });
        }
        Ok(out)
    }

    pub fn audit_log(
        &self,
        card_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, at, actor, action, card_id, version, detail FROM audit WHERE (?1 IS NULL OR card_id = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![card_id, limit as i64], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                card_id: r.get(4)?,
                version: r.get(5)?,
                detail: serde_json::from_str(&r.get::<_, String>(6)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every chunk with its vector and filter fields, for building an in-memory index.
    pub fn all_chunks(&self) -> Result<Vec<StoredChunk>, StoreError> {
        self.chunks_of(None)
    }

    /// The stored chunks of one card, in order.
    pub fn card_chunks(&self, card_id: &str) -> Result<Vec<StoredChunk>, StoreError> {
        self.chunks_of(Some(card_id))
    }

    fn chunks_of(&self, card_id: Option<&str>) -> Result<Vec<StoredChunk>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, c.vector, k.language, k.tags, k.channels FROM chunks c JOIN cards k ON k.id = c.card_id
              WHERE (?1 IS NULL OR c.card_id = ?1) ORDER BY c.card_id, c.seq",
        )?;
        let rows = stmt.query_map([card_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                meta_columns(r, 3)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (chunk_id, card_id, blob, meta) = r?;
            out.push(StoredChunk {
                chunk_id,
                card_id,
                vector: blob_vector(&blob),
                meta: meta.parse()?,
            });
        }
        Ok(out)
    }

    /// The chunks with these ids (those still stored), with their card's title and the vector.
    pub fn chunk_rows(&self, ids: &[i64]) -> Result<Vec<ChunkRow>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, k.language, k.title, c.text, c.vector FROM chunks c JOIN cards k ON k.id = c.card_id WHERE c.id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt
                .query_row([id], |r| {
                    Ok(ChunkRow {
                        chunk_id: r.get(0)?,
                        card_id: r.get(1)?,
                        language: r.get(2)?,
                        title: r.get(3)?,
                        text: r.get(4)?,
                        vector: blob_vector(&r.get::<_, Vec<u8>>(5)?),
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// How many chunks contain each term, and how many chunks there are: the inputs of IDF.
    pub fn term_frequencies(
        &self,
        terms: &[String],
    ) -> Result<(usize, HashMap<String, usize>), StoreError> {
        let conn = self.conn.lock();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached("SELECT doc FROM chunk_vocab WHERE term = ?1")?;
        let mut df = HashMap::new();
        for t in terms {
            let n: Option<i64> = stmt.query_row([t], |r| r.get(0)).optional()?;
            df.insert(t.clone(), n.unwrap_or(0) as usize);
        }
        Ok((total as usize, df))
    }

    /// BM25 keyword search over chunk terms. `terms` are already normalised tokens; any of them
    /// may match. Returns (chunk id, card id, score) best first, the score positive.
    pub fn keyword_search(
        &self,
        terms: &[String],
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<(i64, String, f64)>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Quoted, so that FTS5 reads every term as a plain string, never as query syntax.
        let expr = terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR ");
        let conn = self.conn.lock();
        // FTS5 ranks inside the subquery (its `ORDER BY rank LIMIT` path); only the best rows
        // are joined. Only published cards have chunks, so no status check is needed.
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.card_id, -f.rank, k.language, k.tags, k.channels
               FROM (SELECT rowid, rank FROM chunk_terms WHERE chunk_terms MATCH ?1 ORDER BY rank LIMIT ?2) f
               JOIN chunks c ON c.id = f.rowid JOIN cards k ON k.id = c.card_id
              ORDER BY f.rank",
        )?;
        // Filters are applied to a generous candidate list rather than in SQL, so that the
        // keyword and vector paths share one definition of what a filter accepts.
        let rows = stmt.query_map(params![expr, (limit * 8).max(64) as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                meta_columns(r, 3)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (chunk_id, card_id, score, meta) = r?;
            if filter.accepts(&meta.parse()?) {
                out.push((chunk_id, card_id, score));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Published cards and how many chunks each has, for checking that an index agrees.
    /// Every published card with its chunk ids, ascending: what the vector index must hold.
    pub fn published_chunk_ids(&self) -> Result<Vec<(String, Vec<i64>)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT k.id, c.id FROM cards k LEFT JOIN chunks c ON c.card_id = k.id
             WHERE k.status = 'published' ORDER BY k.id, c.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let mut out: Vec<(String, Vec<i64>)> = Vec::new();
        for row in rows {
            let (card, chunk) = row?;
            if out.last().is_none_or(|(c, _)| *c != card) {
                out.push((card, Vec::new()));
            }
            if let Some(id) = chunk {
                out.last_mut().expect("pushed above").1.push(id);
            }
        }
        Ok(out)
    }

    pub fn published_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT id FROM cards WHERE status = 'published' ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn count_by_status(&self) -> Result<Vec<(CardStatus, usize)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM cards GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (s, n) = r?;
            if let Some(s) = CardStatus::parse(&s) {
                out.push((s, n as usize));
            }
        }
        Ok(out)
    }
}

/// The language, tags and channels columns of a card, as read from a row at `at..at + 3`.
struct MetaColumns(String, String, String);

fn meta_columns(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<MetaColumns> {
    Ok(MetaColumns(r.get(at)?, r.get(at + 1)?, r.get(at + 2)?))
}

impl MetaColumns {
    fn parse(self) -> Result<ChunkMeta, StoreError> {
        Ok(ChunkMeta {
            language: self.0,
            tags: parse_list(&self.1)?,
            channels: parse_list(&self.2)?,
        })
    }
}

fn get_card(conn: &Connection, id: &str) -> Result<Option<Card>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
            [id],
            card_from_row,
        )
        .optional()?;
    row.map(finish_card).transpose()
}

fn insert_version(
    tx: &Transaction<'_>,
    id: &str,
    version: i64,
    status: CardStatus,
    c: &CardContent,
    actor: &str,
    at: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO card_versions (card_id, version, status, title, body, tags, language, channels, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![id, version, status.as_str(), c.title, c.body, json_list(&c.tags), c.language, json_list(&c.channels), actor, at],
    )?;
    Ok(())
}

fn remove_chunks(tx: &Transaction<'_>, card_id: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM chunk_terms WHERE rowid IN (SELECT id FROM chunks WHERE card_id = ?1)",
        [card_id],
    )?;
    tx.execute("DELETE FROM chunks WHERE card_id = ?1", [card_id])?;
    Ok(())
}

fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    card_id: Option<&str>,
    version: Option<i64>,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, card_id, version, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now(), actor, action, card_id, version, detail.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(title: &str) -> CardContent {
        CardContent {
            title: title.into(),
            body: "body".into(),
            tags: vec!["a".into()],
            language: "en".into(),
            channels: vec![],
        }
    }

    fn edit(title: &str) -> Change {
        let c = Change::new(
            "admin".into(),
            "update",
            CardStatus::Draft,
            ChunkChange::Keep,
            serde_json::json!({}),
        );
        Change {
            content: Some(content(title)),
            ..c
        }
    }

    fn status(s: CardStatus, chunks: ChunkChange) -> Change {
        Change::new("admin".into(), "status", s, chunks, serde_json::json!({}))
    }

    #[test]
    fn versions_and_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = s
            .create_card(
                "c1",
                &content("one"),
                "admin",
                "create",
                serde_json::json!({}),
            )
            .unwrap();
        assert_eq!((c.version, c.status), (1, CardStatus::Draft));
        assert_eq!(s.update_card("c1", 1, edit("two")).unwrap().version, 2);
        // A writer that read version 1 must not overwrite version 2.
        assert!(matches!(
            s.update_card("c1", 1, edit("three")),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.get_card("c1").unwrap().unwrap().content.title, "two");
        assert_eq!(s.versions("c1").unwrap().len(), 2);
        assert_eq!(s.audit_log(Some("c1"), 10).unwrap().len(), 2);
    }

    #[test]
    fn chunks_follow_the_card_and_keyword_search_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_card(
            "c1",
            &content("one"),
            "admin",
            "create",
            serde_json::json!({}),
        )
        .unwrap();
        let chunk = NewChunk {
            text: "reset code".into(),
            terms: "reset code sku4411".into(),
            vector: vec![1.0, 0.0],
        };
        s.update_card(
            "c1",
            1,
            status(CardStatus::Published, ChunkChange::Replace(vec![chunk])),
        )
        .unwrap();
        let hits = s
            .keyword_search(&["sku4411".into()], &SearchFilter::default(), 5)
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(s.all_chunks().unwrap()[0].vector, vec![1.0, 0.0]);
        let (total, df) = s
            .term_frequencies(&["reset".into(), "absent".into()])
            .unwrap();
        assert_eq!((total, df["reset"], df["absent"]), (1, 1, 0));
        s.update_card("c1", 2, status(CardStatus::Archived, ChunkChange::Remove))
            .unwrap();
        assert!(
            s.keyword_search(&["sku4411".into()], &SearchFilter::default(), 5)
                .unwrap()
                .is_empty()
        );
        assert!(s.all_chunks().unwrap().is_empty());
        // Reopening sees the same state.
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get_card("c1").unwrap().unwrap().status,
            CardStatus::Archived
        );
    }
}
