//! What cards were mined from: per card, the resolved conversations that taught it (the
//! evidence), each with the turns read, the customer's question and the drafted wording (both
//! already scrubbed of personal data), and the draft's vector, which later drafts are compared
//! with. A card is created from its first conversation and its evidence in one transaction, so
//! a mining job that stops half-way leaves either both or neither.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::cards::insert_card;
use super::{Card, CardContent, CardStatus, Store, StoreError, blob_vector, vector_blob};

/// One conversation a card was mined from, or merged into it as more evidence.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    pub conversation_id: String,
    /// The turns read, by position in the conversation.
    pub turns: Vec<i64>,
    /// The customer's question, as asked (personal data removed).
    pub question: String,
    /// The card the chat model drafted from this conversation.
    pub wording: String,
    /// How close that draft was to the card it was merged into (`None`: it created the card).
    pub similarity: Option<f32>,
    pub at: String,
}

/// Evidence about to be stored, with the draft's vector.
pub struct NewEvidence {
    pub conversation_id: String,
    pub turns: Vec<i64>,
    pub question: String,
    pub wording: String,
    pub similarity: Option<f32>,
    pub vector: Vec<f32>,
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    card_id: &str,
    e: &NewEvidence,
    at: &str,
) -> Result<bool, StoreError> {
    let turns = serde_json::to_string(&e.turns).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(tx.execute(
        "INSERT OR IGNORE INTO card_evidence
             (card_id, conversation_id, turns, question, wording, similarity, vector, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            card_id,
            e.conversation_id,
            turns,
            e.question,
            e.wording,
            e.similarity,
            vector_blob(&e.vector),
            at
        ],
    )? > 0)
}

impl Store {
    /// A card drafted from a conversation: created straight into review (nothing mined
    /// reaches customers before an admin publishes it), with its first evidence.
    pub fn create_mined_card(
        &self,
        id: &str,
        content: &CardContent,
        evidence: &NewEvidence,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<Card, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let at = self.now();
        let card = insert_card(
            &tx,
            id,
            CardStatus::InReview,
            content,
            actor,
            "mined",
            &at,
            detail,
        )?;
        insert(&tx, id, evidence, &at)?;
        tx.commit()?;
        Ok(card)
    }

    /// Adds a conversation's draft to an existing card as more evidence (once per
    /// conversation). Returns whether it was new.
    pub fn add_evidence(&self, card_id: &str, evidence: &NewEvidence) -> Result<bool, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let added = insert(&tx, card_id, evidence, &self.now())?;
        tx.commit()?;
        Ok(added)
    }

    /// The card a conversation was already mined into, if any (a job run twice does nothing
    /// twice).
    pub fn mined_from(&self, conversation_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT card_id FROM card_evidence WHERE conversation_id = ?1 LIMIT 1",
                [conversation_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A card's evidence, oldest first.
    pub fn evidence(&self, card_id: &str) -> Result<Vec<Evidence>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT conversation_id, turns, question, wording, similarity, at
             FROM card_evidence WHERE card_id = ?1 ORDER BY at, conversation_id",
        )?;
        let rows = stmt.query_map([card_id], |r| {
            let turns: String = r.get(1)?;
            Ok(Evidence {
                conversation_id: r.get(0)?,
                turns: serde_json::from_str(&turns).unwrap_or_default(),
                question: r.get(2)?,
                wording: r.get(3)?,
                similarity: r.get(4)?,
                at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored draft vector of cards that are not archived, with its card: what a new
    /// draft is compared with to find the card it repeats.
    pub fn evidence_vectors(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT e.card_id, e.vector FROM card_evidence e JOIN cards c ON c.id = e.card_id
             WHERE c.status != ?1",
        )?;
        let rows = stmt.query_map([CardStatus::Archived.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                blob_vector(&r.get::<_, Vec<u8>>(1)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
