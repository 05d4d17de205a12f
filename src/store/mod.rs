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

pub mod answers;
pub mod audit;
pub mod cards;
pub mod chunks;
pub mod conversations;
pub mod customers;
pub mod insights;
pub mod intents;
pub mod jobs;
pub mod mined;
mod schema;
pub mod vector;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

pub use audit::AuditEntry;
pub use cards::{Card, CardContent, CardStatus, CardVersion, Change, ChunkChange, ListFilter};
pub use chunks::{ChunkMeta, ChunkRow, NewChunk, SearchFilter, StoredChunk};

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

impl StoreError {
    /// Whether SQLite failed because the disk (or a quota) is full. SQLite rolls the statement
    /// or transaction back, so nothing of the failed write remains.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }
}

pub struct Store {
    conn: Mutex<Connection>,
    clock: Clock,
    /// Most turns one conversation holds (`limits.max_conversation_turns`).
    max_turns: usize,
}

/// Turns per conversation when the configuration does not say.
pub const DEFAULT_MAX_TURNS: usize = 500;

/// The store's clock: the system's, moved by an offset that only a test moves (retention is
/// tested by letting days pass, not by waiting for them). Every time the store writes or
/// compares is read from it.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(self.0.load(Ordering::SeqCst))
    }

    /// Moves the clock forward (a test's days passing).
    pub fn advance(&self, by: time::Duration) {
        self.0.fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

/// A time in the stored format (RFC 3339, UTC), which sorts as text.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
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

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_clock(data_dir, Clock::default())
    }

    /// Opens the store with a clock a test moves.
    pub fn open_with_clock(data_dir: &Path, clock: Clock) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let path = data_dir.join("kefu.sqlite3");
        let damaged = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message: format!(
                "{message}: the database is damaged. Restore it from a backup, or recover what \
                 is readable with `sqlite3 kefu.sqlite3 .recover | sqlite3 recovered.sqlite3`"
            ),
        };
        let mut conn = Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
        )
        .map_err(|e| damaged(e.to_string()))?;
        // A damaged file otherwise opens and then fails request by request, while readiness
        // says ok. quick_check reads every page once (seconds for gigabytes), not the indexes'
        // contents against their tables.
        let problems: Vec<String> = conn
            .prepare("PRAGMA quick_check(5)")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| damaged(e.to_string()))?;
        if problems != ["ok"] {
            return Err(damaged(problems.join("; ")));
        }
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            clock,
            max_turns: DEFAULT_MAX_TURNS,
        })
    }

    /// Now, in the stored format (RFC 3339 UTC, so strings compare as times).
    pub fn now(&self) -> String {
        rfc3339(self.clock.now())
    }

    /// The store's clock now.
    pub fn clock_now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// The time `hours` ago, in the stored format.
    pub fn hours_ago(&self, hours: i64) -> String {
        rfc3339(self.clock.now() - time::Duration::hours(hours))
    }

    /// Writes reach the disk before they are acknowledged (`synchronous = FULL`): a test that
    /// kills the process cannot show it, since the page cache survives a SIGKILL.
    #[cfg(test)]
    fn durability(&self) -> (String, i64) {
        let c = self.conn.lock();
        let mode = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        (mode, sync)
    }

    /// The most turns one conversation may hold; more are refused (409).
    pub fn with_max_turns(mut self, n: usize) -> Store {
        self.max_turns = n;
        self
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
}

/// The vocabulary enums are stored as their wire names, so the database reads as the API does.
macro_rules! sql_text {
    ($($t:ty),+) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}
use crate::vocab::{Channel, HandoffReason, JobKind, JobState, Role, Sentiment};
sql_text!(Channel, Role, Sentiment, HandoffReason, JobKind, JobState);

#[cfg(test)]
mod tests {
    use super::*;

    /// WAL with `synchronous = FULL`: an acknowledged write survives a power cut, not only a
    /// killed process (2 is FULL).
    #[test]
    fn every_commit_is_on_disk_before_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.durability(), ("wal".to_string(), 2));
    }
}
