//! Conversations, their turns, the answers the service gave in them, and feedback on those
//! answers. One customer may have many conversations (one per channel contact); every answer is
//! kept with what it cited, so feedback and analytics can use it later.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now};

pub(super) const SCHEMA: &str = r#"
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

/// How recent a customer's other conversation must be for its context to carry into a new one
/// (they moved from chat to voice, or to an agent).
pub const CARRY_HOURS: i64 = 24;

/// Columns added after the first release, with their types: added to older databases on open.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("turns", "sentiment", "TEXT"),
    ("turns", "valence", "REAL"),
    ("conversations", "resolved_at", "TEXT"),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Turn {
    /// Position in the conversation, from 1.
    #[serde(default)]
    pub seq: i64,
    /// `customer`, `bot` or `agent`.
    pub role: String,
    pub channel: String,
    pub text: String,
    pub at: String,
    /// negative | neutral | positive, for customer turns once scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<String>,
    /// P(positive) - P(negative), in [-1, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valence: Option<f32>,
}

/// A turn's sentiment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnMood {
    pub label: String,
    pub valence: f32,
}

/// A conversation with every turn, oldest first.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConversationRecord {
    pub id: String,
    pub customer_id: Option<String>,
    /// The channel it started on.
    pub channel: String,
    pub created_at: String,
    pub updated_at: String,
    /// When the issue was marked resolved (`POST /v1/conversations/{id}/resolve`); a new turn
    /// reopens it.
    pub resolved_at: Option<String>,
    pub turns: Vec<Turn>,
}

/// One of a customer's conversations, for the customer view.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConversationSummary {
    pub id: String,
    /// The channel it started on.
    pub channel: String,
    /// Every channel its turns came from.
    pub channels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub turns: i64,
    pub last_customer_text: Option<String>,
    pub resolved_at: Option<String>,
}

/// One of a customer's other contacts, as the repeated-contacts rule reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub channels: Vec<String>,
    pub resolved: bool,
    /// The customer's first turns (up to three), what the contact was about.
    pub opening: String,
}

/// An answer the service gave, as a hand-off summary reads it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GivenAnswer {
    pub question: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_reason: Option<String>,
    pub at: String,
}

/// `seq` is set by the caller from the turn's position; the row id only orders.
fn turn_from_row(r: &rusqlite::Row) -> rusqlite::Result<Turn> {
    Ok(Turn {
        seq: r.get(0)?,
        role: r.get(1)?,
        channel: r.get(2)?,
        text: r.get(3)?,
        at: r.get(4)?,
        sentiment: r.get(5)?,
        valence: r.get::<_, Option<f64>>(6)?.map(|v| v as f32),
    })
}

const TURN_COLUMNS: &str = "id, role, channel, text, at, sentiment, valence";

/// A card an answer drew on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Citation {
    pub card_id: String,
    pub title: String,
    pub score: f32,
}

/// One answer as it is recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub id: String,
    pub conversation_id: String,
    pub customer_id: Option<String>,
    pub channel: String,
    pub question: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    pub handoff_reason: Option<String>,
    pub confidence: f32,
    pub model: Option<String>,
    /// The question's sentiment, when scored.
    #[serde(skip)]
    pub question_mood: Option<TurnMood>,
}

impl Store {
    /// Appends one turn (creating the conversation on first use) and returns it as stored.
    /// Fails when the conversation belongs to another customer than `customer_id`.
    pub fn append_turn(
        &self,
        conversation_id: &str,
        customer_id: Option<&str>,
        channel: &str,
        role: &str,
        text: &str,
        mood: Option<&TurnMood>,
    ) -> Result<Turn, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, conversation_id, customer_id)?;
        let at = now();
        touch_conversation(&tx, conversation_id, customer_id, channel, &at)?;
        insert_turn(&tx, conversation_id, role, channel, text, &at, mood)?;
        let seq = turn_count(&tx, conversation_id)?;
        tx.commit()?;
        Ok(Turn {
            seq,
            role: role.into(),
            channel: channel.into(),
            text: text.into(),
            at,
            sentiment: mood.map(|m| m.label.clone()),
            valence: mood.map(|m| m.valence),
        })
    }

    /// The last `n` turns of the customer's most recently updated other conversation, when it
    /// was updated at or after `since` (RFC 3339): the context a customer brings when they move
    /// from one channel to another. Oldest first; empty when there is none.
    pub fn carried_turns(
        &self,
        customer_id: &str,
        except_conversation: &str,
        since: &str,
        n: usize,
    ) -> Result<Vec<Turn>, StoreError> {
        let previous: Option<String> = {
            let conn = self.conn.lock();
            conn.query_row(
                "SELECT id FROM conversations WHERE customer_id = ?1 AND id != ?2 AND updated_at >= ?3
                 ORDER BY updated_at DESC LIMIT 1",
                params![customer_id, except_conversation, since],
                |r| r.get(0),
            )
            .optional()?
        };
        match previous {
            Some(id) => self.recent_turns(&id, Some(customer_id), n),
            None => Ok(Vec::new()),
        }
    }

    /// The customer's conversations, most recent first, without their turns.
    pub fn customer_conversations(
        &self,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT c.id, c.channel, c.created_at, c.updated_at,
                    (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id),
                    (SELECT GROUP_CONCAT(DISTINCT t.channel) FROM turns t WHERE t.conversation_id = c.id),
                    (SELECT t.text FROM turns t WHERE t.conversation_id = c.id AND t.role = 'customer' ORDER BY t.id DESC LIMIT 1),
                    c.resolved_at
             FROM conversations c WHERE c.customer_id = ?1 ORDER BY c.updated_at DESC LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![customer_id, limit as i64], |r| {
                let channels: Option<String> = r.get(5)?;
                Ok(ConversationSummary {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                    turns: r.get(4)?,
                    channels: channels
                        .map(|c| c.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    last_customer_text: r.get(6)?,
                    resolved_at: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A conversation with all its turns; `None` when it does not exist. Fails when it belongs
    /// to another customer than `customer_id`.
    pub fn conversation(
        &self,
        id: &str,
        customer_id: Option<&str>,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let conn = self.conn.lock();
        check_owner(&conn, id, customer_id)?;
        let head = conn
            .query_row(
                "SELECT customer_id, channel, created_at, updated_at, resolved_at FROM conversations WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((customer_id, channel, created_at, updated_at, resolved_at)) = head else {
            return Ok(None);
        };
        let mut st = conn.prepare(&format!(
            "SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = ?1 ORDER BY id"
        ))?;
        let mut turns = st
            .query_map([id], turn_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        for (i, t) in turns.iter_mut().enumerate() {
            t.seq = i as i64 + 1;
        }
        Ok(Some(ConversationRecord {
            id: id.to_string(),
            customer_id,
            channel,
            created_at,
            updated_at,
            resolved_at,
            turns,
        }))
    }

    /// Marks a conversation's issue resolved (or open again). `false` when there is no such
    /// conversation.
    pub fn set_resolved(&self, id: &str, resolved: bool) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        let at = resolved.then(now);
        Ok(conn.execute(
            "UPDATE conversations SET resolved_at = ?2 WHERE id = ?1",
            params![id, at],
        )? == 1)
    }

    /// The customer's other conversations updated at or after `since` (RFC 3339), most recent
    /// first, at most `limit`.
    pub fn contacts_since(
        &self,
        customer_id: &str,
        except_conversation: &str,
        since: &str,
        limit: usize,
    ) -> Result<Vec<Contact>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT c.id, c.resolved_at IS NOT NULL,
                    (SELECT GROUP_CONCAT(DISTINCT t.channel) FROM turns t WHERE t.conversation_id = c.id),
                    (SELECT GROUP_CONCAT(x.text, ' ') FROM
                        (SELECT t.text FROM turns t WHERE t.conversation_id = c.id AND t.role = 'customer' ORDER BY t.id LIMIT 3) x)
             FROM conversations c
             WHERE c.customer_id = ?1 AND c.id != ?2 AND c.updated_at >= ?3
             ORDER BY c.updated_at DESC LIMIT ?4",
        )?;
        let rows = st
            .query_map(
                params![customer_id, except_conversation, since, limit as i64],
                |r| {
                    let channels: Option<String> = r.get(2)?;
                    Ok(Contact {
                        id: r.get(0)?,
                        resolved: r.get(1)?,
                        channels: channels
                            .map(|c| c.split(',').map(str::to_string).collect())
                            .unwrap_or_default(),
                        opening: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The answers the service gave in a conversation, oldest first.
    pub fn conversation_answers(&self, id: &str) -> Result<Vec<GivenAnswer>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT question, answer, citations, handoff, handoff_reason, at FROM answers
             WHERE conversation_id = ?1 ORDER BY at, rowid",
        )?;
        let rows = st
            .query_map([id], |r| {
                Ok((
                    GivenAnswer {
                        question: r.get(0)?,
                        answer: r.get(1)?,
                        citations: Vec::new(),
                        handoff: r.get(3)?,
                        handoff_reason: r.get(4)?,
                        at: r.get(5)?,
                    },
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mut a, cites)| {
                a.citations = serde_json::from_str(&cites).map_err(|e| {
                    StoreError::Corrupt(format!("citations of an answer in {id}: {e}"))
                })?;
                Ok(a)
            })
            .collect()
    }

    /// The last `n` turns of a conversation, oldest first; empty for a conversation not seen yet.
    /// Fails when the conversation belongs to another customer than `customer_id`.
    pub fn recent_turns(
        &self,
        conversation_id: &str,
        customer_id: Option<&str>,
        n: usize,
    ) -> Result<Vec<Turn>, StoreError> {
        let conn = self.conn.lock();
        check_owner(&conn, conversation_id, customer_id)?;
        let mut st = conn.prepare(&format!(
            "SELECT {TURN_COLUMNS} FROM turns WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let mut turns = st
            .query_map(params![conversation_id, n as i64], turn_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        turns.reverse();
        let total = turn_count(&conn, conversation_id)?;
        let first = total - turns.len() as i64;
        for (i, t) in turns.iter_mut().enumerate() {
            t.seq = first + i as i64 + 1;
        }
        Ok(turns)
    }

    /// Records a question and the service's answer in one transaction: the conversation (created
    /// on first use), the customer's turn, the bot's turn and the answer itself.
    pub fn record_answer(&self, a: &AnswerRecord) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, &a.conversation_id, a.customer_id.as_deref())?;
        let at = now();
        let (conv, channel) = (a.conversation_id.as_str(), a.channel.as_str());
        touch_conversation(&tx, conv, a.customer_id.as_deref(), channel, &at)?;
        let mood = a.question_mood.as_ref();
        insert_turn(&tx, conv, "customer", channel, &a.question, &at, mood)?;
        insert_turn(&tx, conv, "bot", channel, &a.answer, &at, None)?;
        tx.execute(
            "INSERT INTO answers (id, conversation_id, channel, question, answer, citations, handoff, handoff_reason, confidence, model, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                a.id,
                a.conversation_id,
                a.channel,
                a.question,
                a.answer,
                serde_json::to_string(&a.citations).expect("citations serialise"),
                a.handoff,
                a.handoff_reason,
                a.confidence,
                a.model,
                at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_answer(&self, id: &str) -> Result<Option<AnswerRecord>, StoreError> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT a.id, a.conversation_id, c.customer_id, a.channel, a.question, a.answer, a.citations,
                    a.handoff, a.handoff_reason, a.confidence, a.model
             FROM answers a JOIN conversations c ON c.id = a.conversation_id WHERE a.id = ?1",
            [id],
            |r| {
                Ok((
                    AnswerRecord {
                        id: r.get(0)?,
                        conversation_id: r.get(1)?,
                        customer_id: r.get(2)?,
                        channel: r.get(3)?,
                        question: r.get(4)?,
                        answer: r.get(5)?,
                        citations: Vec::new(),
                        handoff: r.get(7)?,
                        handoff_reason: r.get(8)?,
                        confidence: r.get(9)?,
                        model: r.get(10)?,
                        question_mood: None,
                    },
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?
        .map(|(mut a, cites)| {
            a.citations = serde_json::from_str(&cites)
                .map_err(|e| StoreError::Corrupt(format!("citations of answer {id}: {e}")))?;
            Ok(a)
        })
        .transpose()
    }

    /// Stores feedback on an answer; returns how many ratings the answer now has.
    pub fn add_feedback(
        &self,
        answer_id: &str,
        rating: &str,
        comment: Option<&str>,
        actor: &str,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM answers WHERE id = ?1", [answer_id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "no answer with id {answer_id}"
            )));
        }
        tx.execute(
            "INSERT INTO feedback (answer_id, rating, comment, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![answer_id, rating, comment, actor, now()],
        )?;
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM feedback WHERE answer_id = ?1",
            [answer_id],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(n as usize)
    }
}

/// Creates the conversation on first use, or marks it updated (keeping its first customer).
/// A new turn reopens a resolved issue: the customer is back about it.
fn touch_conversation(
    conn: &rusqlite::Connection,
    id: &str,
    customer_id: Option<&str>,
    channel: &str,
    at: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO conversations (id, customer_id, channel, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, resolved_at = NULL,
           customer_id = COALESCE(conversations.customer_id, excluded.customer_id)",
        params![id, customer_id, channel, at],
    )?;
    Ok(())
}

fn insert_turn(
    conn: &rusqlite::Connection,
    conversation_id: &str,
    role: &str,
    channel: &str,
    text: &str,
    at: &str,
    mood: Option<&TurnMood>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO turns (conversation_id, role, channel, text, at, sentiment, valence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![conversation_id, role, channel, text, at, mood.map(|m| &m.label), mood.map(|m| m.valence as f64)],
    )?;
    Ok(())
}

fn turn_count(conn: &rusqlite::Connection, conversation_id: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM turns WHERE conversation_id = ?1",
        [conversation_id],
        |r| r.get(0),
    )?)
}

/// A conversation id names one customer's conversation: another customer may not read or extend
/// it (ids come from channel frontends and could collide or be guessed).
fn check_owner(
    conn: &rusqlite::Connection,
    conversation_id: &str,
    customer_id: Option<&str>,
) -> Result<(), StoreError> {
    let owner: Option<Option<String>> = conn
        .query_row(
            "SELECT customer_id FROM conversations WHERE id = ?1",
            [conversation_id],
            |r| r.get(0),
        )
        .optional()?;
    match (owner.flatten(), customer_id) {
        (Some(owner), Some(given)) if owner != given => Err(StoreError::Conflict(format!(
            "conversation {conversation_id} belongs to another customer"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, conv: &str, customer: Option<&str>) -> AnswerRecord {
        AnswerRecord {
            id: id.into(),
            conversation_id: conv.into(),
            customer_id: customer.map(Into::into),
            channel: "chat".into(),
            question: format!("q {id}"),
            answer: format!("a {id}"),
            citations: vec![Citation {
                card_id: "c1".into(),
                title: "T".into(),
                score: 0.9,
            }],
            handoff: false,
            handoff_reason: None,
            confidence: 0.8,
            model: Some("m".into()),
            question_mood: None,
        }
    }

    #[test]
    fn answers_turns_and_feedback_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.record_answer(&record("a1", "conv", Some("cust")))
            .unwrap();
        s.record_answer(&record("a2", "conv", None)).unwrap();
        let turns = s.recent_turns("conv", Some("cust"), 3).unwrap();
        let texts: Vec<_> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["a a1", "q a2", "a a2"]);
        let seqs: Vec<_> = turns.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [2, 3, 4], "positions in the conversation");
        let a = s.get_answer("a1").unwrap().unwrap();
        assert_eq!(a.customer_id.as_deref(), Some("cust"));
        assert_eq!(a.citations[0].card_id, "c1");
        assert_eq!(s.add_feedback("a1", "up", None, "t").unwrap(), 1);
        assert!(matches!(
            s.add_feedback("nope", "up", None, "t"),
            Err(StoreError::NotFound(_))
        ));
        // Another customer may not extend or read the conversation.
        assert!(matches!(
            s.record_answer(&record("a3", "conv", Some("other"))),
            Err(StoreError::Conflict(_))
        ));
        assert!(s.get_answer("a3").unwrap().is_none());
        assert!(matches!(
            s.recent_turns("conv", Some("other"), 3),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn a_database_from_before_sentiment_gains_the_columns_and_keeps_its_turns() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join("kefu.sqlite3")).unwrap();
            conn.execute_batch(
                "CREATE TABLE conversations (id TEXT PRIMARY KEY, customer_id TEXT, channel TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
                 CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL, role TEXT NOT NULL, channel TEXT NOT NULL, text TEXT NOT NULL, at TEXT NOT NULL);
                 INSERT INTO conversations VALUES ('old', 'c', 'chat', 't', 't');
                 INSERT INTO turns (conversation_id, role, channel, text, at) VALUES ('old', 'customer', 'chat', 'hello', 't');",
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let mood = TurnMood {
            label: "negative".into(),
            valence: -0.7,
        };
        s.append_turn(
            "old",
            Some("c"),
            "voice",
            "customer",
            "still broken",
            Some(&mood),
        )
        .unwrap();
        let c = s.conversation("old", None).unwrap().unwrap();
        assert_eq!(c.turns.len(), 2);
        assert_eq!(c.turns[0].text, "hello");
        assert_eq!(c.turns[0].sentiment, None);
        assert_eq!(c.turns[1].sentiment.as_deref(), Some("negative"));
        assert_eq!(c.turns[1].seq, 2);
        drop(s);
        // Opening again is a no-op.
        assert!(Store::open(dir.path()).is_ok());
    }
}
