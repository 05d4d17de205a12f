//! Knowledge cards and their versions: every change is one transaction with its chunks and its
//! audit entry (see the module guarantees in `store`).

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::audit::audit;
use super::chunks::{NewChunk, remove_chunks};
use super::{Store, StoreError, json_list, parse_list, vector_blob};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<CardStatus>,
    pub tag: Option<String>,
    pub text: Option<String>,
    pub language: Option<String>,
    /// Cards usable on this channel (those for every channel among them).
    pub channel: Option<String>,
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

/// A new card at version 1 in `status`, with its first version and audit entry, inside the
/// caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_card(
    tx: &Transaction<'_>,
    id: &str,
    status: CardStatus,
    content: &CardContent,
    actor: &str,
    action: &str,
    at: &str,
    detail: &serde_json::Value,
) -> Result<Card, StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO cards ({CARD_COLUMNS}) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
        ),
        params![
            id,
            status.as_str(),
            content.title,
            content.body,
            json_list(&content.tags),
            content.language,
            json_list(&content.channels),
            at
        ],
    )?;
    insert_version(tx, id, 1, status, content, actor, at)?;
    audit(tx, at, actor, action, Some(id), Some(1), detail)?;
    Ok(get_card(tx, id)?.expect("inserted in this transaction"))
}

impl Store {
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
        let card = insert_card(
            &tx,
            id,
            CardStatus::Draft,
            content,
            actor,
            action,
            &self.now(),
            &detail,
        )?;
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
        let at = self.now();
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
        audit(&tx, &at, actor, action, Some(id), Some(version), &detail)?;
        let card = get_card(&tx, id)?.expect("updated in this transaction");
        tx.commit()?;
        Ok(card)
    }

    pub fn list_cards(&self, f: &ListFilter) -> Result<(Vec<Card>, usize), StoreError> {
        let conn = self.conn.lock();
        let where_sql = "WHERE (?1 IS NULL OR status = ?1)
              AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(cards.tags) WHERE value = ?2))
              AND (?3 IS NULL OR instr(lower(title), lower(?3)) > 0 OR instr(lower(body), lower(?3)) > 0)
              AND (?4 IS NULL OR language = ?4)
              AND (?5 IS NULL OR json_array_length(channels) = 0
                   OR EXISTS (SELECT 1 FROM json_each(cards.channels) WHERE value = ?5))";
        let args = params![
            f.status.map(CardStatus::as_str),
            f.tag,
            f.text,
            f.language,
            f.channel
        ];
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM cards {where_sql}"),
            args,
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards {where_sql} ORDER BY updated_at DESC, id DESC LIMIT ?6 OFFSET ?7"
        ))?;
        let rows = stmt.query_map(
            params![
                f.status.map(CardStatus::as_str),
                f.tag,
                f.text,
                f.language,
                f.channel,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SearchFilter;

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
