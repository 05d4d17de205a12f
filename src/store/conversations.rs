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
    at TEXT NOT NULL
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Turn {
    /// `customer`, `bot` or `agent`.
    pub role: String,
    pub channel: String,
    pub text: String,
    pub at: String,
}

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
}

impl Store {
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
        let mut st = conn.prepare(
            "SELECT role, channel, text, at FROM turns WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut turns = st
            .query_map(params![conversation_id, n as i64], |r| {
                Ok(Turn {
                    role: r.get(0)?,
                    channel: r.get(1)?,
                    text: r.get(2)?,
                    at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        turns.reverse();
        Ok(turns)
    }

    /// Records a question and the service's answer in one transaction: the conversation (created
    /// on first use), the customer's turn, the bot's turn and the answer itself.
    pub fn record_answer(&self, a: &AnswerRecord) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, &a.conversation_id, a.customer_id.as_deref())?;
        let at = now();
        tx.execute(
            "INSERT INTO conversations (id, customer_id, channel, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at,
               customer_id = COALESCE(conversations.customer_id, excluded.customer_id)",
            params![a.conversation_id, a.customer_id, a.channel, at],
        )?;
        for (role, text) in [("customer", &a.question), ("bot", &a.answer)] {
            tx.execute(
                "INSERT INTO turns (conversation_id, role, channel, text, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.conversation_id, role, a.channel, text, at],
            )?;
        }
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
}
