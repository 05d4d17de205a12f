//! The database schema and its migrations. `PRAGMA user_version` says which numbered step a
//! database has reached; opening it runs the steps after that one, each in its own transaction
//! with the version bump, so a crash mid-migration leaves the database at the last whole step.
//!
//! Never edit a step that has shipped: add the next one. A database from a newer kefu (a version
//! above the last step here) is refused rather than guessed at.

use rusqlite::Connection;

use super::StoreError;

/// One numbered change to the schema.
struct Step {
    version: i64,
    what: &'static str,
    apply: fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
}

const STEPS: &[Step] = &[
    Step {
        version: 1,
        what: "cards, versions, chunks, keyword index, audit, conversations, turns, answers, feedback",
        apply: baseline,
    },
    Step {
        version: 2,
        what: "each turn's language, with a confidence and the other language of a mixed text",
        apply: turn_language,
    },
    Step {
        version: 3,
        what: "each turn's emotions and intent; the intents an admin defines",
        apply: turn_understanding,
    },
    Step {
        version: 4,
        what: "background jobs; the conversations a card was mined from (its evidence)",
        apply: mining,
    },
];

fn mining(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE jobs (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             kind TEXT NOT NULL,
             subject TEXT NOT NULL,
             state TEXT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             result TEXT,
             error TEXT,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL,
             UNIQUE (kind, subject)
         );
         CREATE INDEX jobs_state ON jobs(state, id);
         CREATE TABLE card_evidence (
             card_id TEXT NOT NULL REFERENCES cards(id),
             conversation_id TEXT NOT NULL,
             turns TEXT NOT NULL,
             question TEXT NOT NULL,
             wording TEXT NOT NULL,
             similarity REAL,
             vector BLOB NOT NULL,
             at TEXT NOT NULL,
             PRIMARY KEY (card_id, conversation_id)
         );
         CREATE INDEX card_evidence_conversation ON card_evidence(conversation_id);",
    )
}

fn turn_understanding(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE turns ADD COLUMN emotions TEXT;
         ALTER TABLE turns ADD COLUMN intent TEXT;
         ALTER TABLE turns ADD COLUMN intent_confidence REAL;
         CREATE TABLE intents (
             name TEXT PRIMARY KEY,
             description TEXT NOT NULL,
             examples TEXT NOT NULL,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL
         );",
    )
}

fn turn_language(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE turns ADD COLUMN language TEXT;
         ALTER TABLE turns ADD COLUMN language_confidence REAL;
         ALTER TABLE turns ADD COLUMN language_mixed TEXT;",
    )
}

/// The schema as it stood when versioning began. Databases written before then carry no version
/// but may hold every table already, some from before the sentiment and resolution columns were
/// added: `IF NOT EXISTS` and the column check bring each of them to the same shape, data kept.
fn baseline(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(BASELINE)?;
    for (table, column, ty) in [
        ("turns", "sentiment", "TEXT"),
        ("turns", "valence", "REAL"),
        ("conversations", "resolved_at", "TEXT"),
    ] {
        let present: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if !present {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

/// The version a fresh database ends at.
pub(super) fn latest() -> i64 {
    STEPS.last().map_or(0, |s| s.version)
}

/// Brings the database to the latest step.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let at: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if at > latest() {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {at}, newer than this kefu knows ({}): run the kefu that wrote it, or a newer one",
            latest()
        )));
    }
    for step in STEPS.iter().filter(|s| s.version > at) {
        let tx = conn.transaction()?;
        (step.apply)(&tx)?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
        tracing::info!(
            version = step.version,
            what = step.what,
            "database schema migrated"
        );
    }
    Ok(())
}

const BASELINE: &str = r#"
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
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    customer_id TEXT,
    channel TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_customer ON conversations(customer_id, updated_at);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    role TEXT NOT NULL,
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    sentiment TEXT,
    valence REAL
);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation_id, id);
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    channel TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    handoff INTEGER NOT NULL,
    handoff_reason TEXT,
    confidence REAL NOT NULL,
    model TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_conversation ON answers(conversation_id, at);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id TEXT NOT NULL REFERENCES answers(id),
    rating TEXT NOT NULL,
    comment TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(answer_id);
"#;
