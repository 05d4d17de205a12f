//! A customer's data as one whole, for the data-protection duties of whoever runs kefu: erase
//! a customer (every conversation, turn, answer and feedback row, in one transaction), hand a
//! customer everything held about them, and let old data go after its retention period.
//!
//! Erased and expired rows must not linger in the file: `secure_delete` (set at open) zeroes
//! the freed content, and a checkpoint after an erasure truncates the write-ahead log, which
//! would otherwise still hold the pages as they were before.

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::answers::{GivenAnswer, answers_in};
use super::audit::audit;
use super::conversations::ConversationRecord;
use super::{Store, StoreError};
use crate::vocab::Channel;

/// What an erasure or a retention sweep removed, row by row.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Removed {
    pub conversations: u64,
    /// Turns typed or written (chat, e-mail, social, agent).
    pub turns: u64,
    /// Turns transcribed from speech.
    pub transcripts: u64,
    pub answers: u64,
    pub feedback: u64,
    pub audit: u64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, r: Removed) {
        self.conversations += r.conversations;
        self.turns += r.turns;
        self.transcripts += r.transcripts;
        self.answers += r.answers;
        self.feedback += r.feedback;
        self.audit += r.audit;
    }
}

/// How long each kind of data is kept, in days (`None`: for ever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub turns: Option<u32>,
    pub transcripts: Option<u32>,
    pub answers: Option<u32>,
    pub audit: Option<u32>,
}

/// Everything kefu holds about one customer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerExport {
    pub customer_id: String,
    pub exported_at: String,
    /// Oldest first, each with its turns and the answers given in it.
    pub conversations: Vec<ExportedConversation>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedConversation {
    #[serde(flatten)]
    pub record: ConversationRecord,
    pub answers: Vec<ExportedAnswer>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedAnswer {
    pub id: String,
    pub channel: Channel,
    #[serde(flatten)]
    pub answer: GivenAnswer,
    pub feedback: Vec<ExportedFeedback>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportedFeedback {
    pub rating: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: String,
}

/// The conversations of customer `?1`, as a subquery.
const THEIRS: &str = "SELECT id FROM conversations WHERE customer_id = ?1";

impl Store {
    /// Removes every conversation of the customer with its turns, answers and feedback, and
    /// records the erasure in the audit log by `actor`, with the counts and without the id.
    /// Nothing is removed when nothing is held (all counts zero, no audit entry).
    pub fn erase_customer(&self, customer_id: &str, actor: &str) -> Result<Removed, StoreError> {
        let removed = {
            let mut conn = self.conn.lock();
            let tx = conn.transaction()?;
            let voice = Channel::Voice;
            // What mining kept of their words (the question as asked, scrubbed): the cards
            // written from the agents' replies stay, with one piece of evidence fewer.
            tx.execute(
                &format!("DELETE FROM card_evidence WHERE conversation_id IN ({THEIRS})"),
                [customer_id],
            )?;
            let removed = Removed {
                feedback: tx.execute(
                    &format!("DELETE FROM feedback WHERE answer_id IN (SELECT id FROM answers WHERE conversation_id IN ({THEIRS}))"),
                    [customer_id],
                )? as u64,
                answers: tx.execute(
                    &format!("DELETE FROM answers WHERE conversation_id IN ({THEIRS})"),
                    [customer_id],
                )? as u64,
                transcripts: tx.execute(
                    &format!("DELETE FROM turns WHERE channel = ?2 AND conversation_id IN ({THEIRS})"),
                    params![customer_id, voice],
                )? as u64,
                turns: tx.execute(
                    &format!("DELETE FROM turns WHERE conversation_id IN ({THEIRS})"),
                    [customer_id],
                )? as u64,
                conversations: tx
                    .execute("DELETE FROM conversations WHERE customer_id = ?1", [customer_id])?
                    as u64,
                audit: 0,
            };
            if removed == Removed::default() {
                return Ok(removed);
            }
            let detail = serde_json::to_value(removed).expect("counts serialise");
            audit(
                &tx,
                &self.now(),
                actor,
                "customer_erased",
                None,
                None,
                &detail,
            )?;
            tx.commit()?;
            removed
        };
        self.truncate_wal()?;
        Ok(removed)
    }

    /// Everything held about the customer; `None` when nothing is.
    pub fn export_customer(&self, customer_id: &str) -> Result<Option<CustomerExport>, StoreError> {
        let ids: Vec<String> = {
            let conn = self.conn.lock();
            let mut st = conn.prepare(
                "SELECT id FROM conversations WHERE customer_id = ?1 ORDER BY created_at, id",
            )?;
            st.query_map([customer_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let owner = super::conversations::Party::Staff(Some(customer_id.to_string()));
        let mut conversations = Vec::with_capacity(ids.len());
        for id in ids {
            // Gone between the two reads (erased meanwhile): not theirs any more.
            let Some(record) = self.conversation(&id, &owner)? else {
                continue;
            };
            let answers = self.exported_answers(&id)?;
            conversations.push(ExportedConversation { record, answers });
        }
        Ok(Some(CustomerExport {
            customer_id: customer_id.to_string(),
            exported_at: self.now(),
            conversations,
        }))
    }

    fn exported_answers(&self, conversation_id: &str) -> Result<Vec<ExportedAnswer>, StoreError> {
        let conn = self.conn.lock();
        let mut fb = conn
            .prepare("SELECT rating, comment, at FROM feedback WHERE answer_id = ?1 ORDER BY id")?;
        let mut out = Vec::new();
        for (id, channel, answer) in answers_in(&conn, conversation_id)? {
            let feedback = fb
                .query_map([&id], |r| {
                    Ok(ExportedFeedback {
                        rating: r.get(0)?,
                        comment: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push(ExportedAnswer {
                id,
                channel,
                answer,
                feedback,
            });
        }
        Ok(out)
    }

    /// Deletes what is older than its retention period, as of the store's clock; then
    /// conversations left with nothing in them. One transaction.
    pub fn sweep(&self, keep: &Retention) -> Result<Removed, StoreError> {
        let cutoff = |days: Option<u32>| days.map(|d| self.hours_ago(i64::from(d) * 24));
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let mut removed = Removed::default();
        let voice = Channel::Voice;
        if let Some(c) = cutoff(keep.transcripts) {
            removed.transcripts = tx.execute(
                "DELETE FROM turns WHERE channel = ?1 AND at < ?2",
                params![voice, c],
            )? as u64;
        }
        if let Some(c) = cutoff(keep.turns) {
            removed.turns = tx.execute(
                "DELETE FROM turns WHERE channel != ?1 AND at < ?2",
                params![voice, c],
            )? as u64;
        }
        if let Some(c) = cutoff(keep.answers) {
            removed.feedback = tx.execute(
                "DELETE FROM feedback WHERE answer_id IN (SELECT id FROM answers WHERE at < ?1)",
                [&c],
            )? as u64;
            removed.answers = tx.execute("DELETE FROM answers WHERE at < ?1", [&c])? as u64;
        }
        if let Some(c) = cutoff(keep.audit) {
            removed.audit = tx.execute("DELETE FROM audit WHERE at < ?1", [&c])? as u64;
        }
        removed.conversations = delete_empty_conversations(&tx)?;
        tx.commit()?;
        drop(conn);
        if removed != Removed::default() {
            self.truncate_wal()?;
        }
        Ok(removed)
    }

    /// Writes the log into the database and empties it, so that no earlier page version stays
    /// readable in it.
    fn truncate_wal(&self) -> Result<(), StoreError> {
        self.conn
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// A conversation with no turn and no answer left holds nothing but who the customer was.
fn delete_empty_conversations(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    Ok(tx.execute(
        "DELETE FROM conversations WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = conversations.id)
           AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.conversation_id = conversations.id)",
        [],
    )? as u64)
}
