//! The answers the service gave, with what they cited, and feedback on them: kept so that
//! hand-off summaries, feedback and analytics can read them later.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::conversations::{
    Party, TurnSignals, check_owner, check_room, insert_turn, touch_conversation,
};
use super::{Store, StoreError};
use crate::text::LanguageGuess;
use crate::vocab::{Channel, HandoffReason, Role};

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
    pub channel: Channel,
    pub question: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    pub handoff_reason: Option<HandoffReason>,
    pub confidence: f32,
    pub model: Option<String>,
    /// What was read in the question (its sentiment, its language).
    #[serde(skip)]
    pub question_signals: TurnSignals,
    /// The reply's language.
    #[serde(skip)]
    pub answer_language: Option<LanguageGuess>,
}

/// An answer the service gave, as a hand-off summary reads it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GivenAnswer {
    pub question: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_reason: Option<HandoffReason>,
    pub at: String,
}

impl Store {
    /// Records a question and the service's answer in one transaction: the conversation (created
    /// on first use), the customer's turn, the bot's turn and the answer itself.
    /// Fails when the conversation is not `party`'s.
    pub fn record_answer(&self, a: &AnswerRecord, party: &Party) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, &a.conversation_id, party)?;
        check_room(&tx, &a.conversation_id, 2, self.max_turns)?;
        let at = self.now();
        let (conv, channel) = (a.conversation_id.as_str(), a.channel);
        touch_conversation(&tx, conv, party.customer(), channel, &at)?;
        insert_turn(
            &tx,
            conv,
            Role::Customer,
            channel,
            &a.question,
            &at,
            &a.question_signals,
        )?;
        let reply = TurnSignals {
            language: a.answer_language.clone(),
            ..TurnSignals::default()
        };
        insert_turn(&tx, conv, Role::Bot, channel, &a.answer, &at, &reply)?;
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
                        question_signals: TurnSignals::default(),
                        answer_language: None,
                    },
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?
        .map(|(mut a, cites)| {
            a.citations = citations(id, &cites)?;
            Ok(a)
        })
        .transpose()
    }

    /// The answers the service gave in a conversation, oldest first.
    pub fn conversation_answers(&self, id: &str) -> Result<Vec<GivenAnswer>, StoreError> {
        Ok(answers_in(&self.conn.lock(), id)?
            .into_iter()
            .map(|(_, _, a)| a)
            .collect())
    }

    /// Stores feedback on an answer; returns how many ratings the answer now has.
    /// A customer rates only answers given in their own conversations; another's answer is
    /// not found for them.
    pub fn add_feedback(
        &self,
        answer_id: &str,
        party: &Party,
        rating: &str,
        comment: Option<&str>,
        actor: &str,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let conversation: Option<String> = tx
            .query_row(
                "SELECT conversation_id FROM answers WHERE id = ?1",
                [answer_id],
                |r| r.get(0),
            )
            .optional()?;
        let not_found = || StoreError::NotFound(format!("no answer with id {answer_id}"));
        let conversation = conversation.ok_or_else(not_found)?;
        if let Party::Customer(_) = party {
            // Not found as an answer: the message must not name the conversation.
            check_owner(&tx, &conversation, party).map_err(|e| match e {
                StoreError::NotFound(_) => not_found(),
                e => e,
            })?;
        }
        tx.execute(
            "INSERT INTO feedback (answer_id, rating, comment, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![answer_id, rating, comment, actor, self.now()],
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

/// The answers given in a conversation, oldest first, with their ids and channels.
pub(super) fn answers_in(
    conn: &Connection,
    conversation_id: &str,
) -> Result<Vec<(String, Channel, GivenAnswer)>, StoreError> {
    let mut st = conn.prepare(
        "SELECT id, channel, question, answer, citations, handoff, handoff_reason, at FROM answers
         WHERE conversation_id = ?1 ORDER BY at, rowid",
    )?;
    let rows = st
        .query_map([conversation_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Channel>(1)?,
                GivenAnswer {
                    question: r.get(2)?,
                    answer: r.get(3)?,
                    citations: Vec::new(),
                    handoff: r.get(5)?,
                    handoff_reason: r.get(6)?,
                    at: r.get(7)?,
                },
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, channel, mut a, cites)| {
            a.citations = citations(&id, &cites)?;
            Ok((id, channel, a))
        })
        .collect()
}

/// An answer's citations as stored (a JSON list).
fn citations(answer_id: &str, stored: &str) -> Result<Vec<Citation>, StoreError> {
    serde_json::from_str(stored)
        .map_err(|e| StoreError::Corrupt(format!("citations of answer {answer_id}: {e}")))
}
