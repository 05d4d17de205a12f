//! Conversations and their turns. One customer may have many conversations (one per channel
//! contact); a conversation id belongs to the customer who first used it.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::text::LanguageGuess;
use std::collections::BTreeMap;

use crate::vocab::{Channel, Emotion, Role, Sentiment};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Turn {
    /// Position in the conversation, from 1.
    #[serde(default)]
    pub seq: i64,
    pub role: Role,
    pub channel: Channel,
    pub text: String,
    pub at: String,
    /// For customer turns once scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    /// P(positive) - P(negative), in [-1, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valence: Option<f32>,
    /// The language it was written or spoken in, with a confidence (turns stored before
    /// kefu read it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguageGuess>,
    /// For customer turns once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotions: Option<TurnEmotions>,
    /// For customer turns once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<TurnIntent>,
}

/// The emotions a customer turn shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TurnEmotions {
    /// Those whose score reaches the emotion's threshold, strongest first.
    pub present: Vec<Emotion>,
    /// Every emotion's score, in [0, 1].
    #[schema(value_type = Object)]
    pub scores: BTreeMap<Emotion, f32>,
}

/// What the customer wants: an intent of the built-in taxonomy or one an admin defined, or
/// `other` when no intent is confident enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TurnIntent {
    pub name: String,
    /// The head's probability for the intent it chose, in [0, 1] (for `other` below the
    /// confidence floor: the best intent's, which fell short).
    pub confidence: f32,
}

/// A turn's sentiment as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnMood {
    pub label: Sentiment,
    pub valence: f32,
}

/// What kefu read in a turn as it arrived, stored with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnSignals {
    /// Customer turns, when sentiment is on.
    pub mood: Option<TurnMood>,
    pub language: Option<LanguageGuess>,
    pub emotions: Option<TurnEmotions>,
    pub intent: Option<TurnIntent>,
}

/// A conversation with every turn, oldest first.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConversationRecord {
    pub id: String,
    pub customer_id: Option<String>,
    /// The channel it started on.
    pub channel: Channel,
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
    pub channel: Channel,
    /// Every channel its turns came from.
    pub channels: Vec<Channel>,
    pub created_at: String,
    pub updated_at: String,
    pub turns: i64,
    pub last_customer_text: Option<String>,
    pub resolved_at: Option<String>,
}

/// What the staff's conversation list filters on in the store.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// The channel it started on.
    pub channel: Option<Channel>,
    pub resolved: Option<bool>,
    /// A customer turn was read as this intent.
    pub intent: Option<String>,
}

/// One of a customer's other contacts, as the repeated-contacts rule reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub channels: Vec<Channel>,
    pub resolved: bool,
    /// The customer's first turns (up to three), what the contact was about.
    pub opening: String,
}

/// `seq` is set by the caller from the turn's position; the row id only orders.
fn turn_from_row(r: &rusqlite::Row) -> rusqlite::Result<Turn> {
    let (language, confidence, mixed_with): (Option<String>, Option<f64>, Option<String>) =
        (r.get(7)?, r.get(8)?, r.get(9)?);
    let emotions: Option<String> = r.get(10)?;
    let (intent, intent_confidence): (Option<String>, Option<f64>) = (r.get(11)?, r.get(12)?);
    Ok(Turn {
        seq: r.get(0)?,
        role: r.get(1)?,
        channel: r.get(2)?,
        text: r.get(3)?,
        at: r.get(4)?,
        sentiment: r.get(5)?,
        valence: r.get::<_, Option<f64>>(6)?.map(|v| v as f32),
        language: language.map(|language| LanguageGuess {
            language,
            confidence: confidence.unwrap_or(0.0) as f32,
            mixed_with,
        }),
        // A value this kefu cannot read (written by another version) reads as not scored.
        emotions: emotions.and_then(|e| serde_json::from_str(&e).ok()),
        intent: intent.map(|name| TurnIntent {
            name,
            confidence: intent_confidence.unwrap_or(0.0) as f32,
        }),
    })
}

const TURN_COLUMNS: &str = "id, role, channel, text, at, sentiment, valence, language, language_confidence, language_mixed, emotions, intent, intent_confidence";

/// Who acts on a conversation, as its ownership check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// An agent, an admin or kefu itself: every conversation. A customer, when stated, must be
    /// the conversation's owner (409 otherwise) and owns a conversation it starts.
    Staff(Option<String>),
    /// A channel acting for this customer: only the customer's own conversations exist for it,
    /// and another's answers 404 as if it did not exist, so ids cannot be probed.
    Customer(String),
}

impl Party {
    /// The customer a new conversation belongs to.
    pub fn customer(&self) -> Option<&str> {
        match self {
            Party::Staff(c) => c.as_deref(),
            Party::Customer(c) => Some(c),
        }
    }
}

impl Store {
    /// Appends one turn (creating the conversation on first use) and returns it as stored.
    /// Fails when the conversation is not `party`'s.
    pub fn append_turn(
        &self,
        conversation_id: &str,
        party: &Party,
        channel: Channel,
        role: Role,
        text: &str,
        signals: &TurnSignals,
    ) -> Result<Turn, StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, conversation_id, party)?;
        check_room(&tx, conversation_id, 1, self.max_turns)?;
        let at = self.now();
        touch_conversation(&tx, conversation_id, party.customer(), channel, &at)?;
        insert_turn(&tx, conversation_id, role, channel, text, &at, signals)?;
        let seq = turn_count(&tx, conversation_id)?;
        tx.commit()?;
        Ok(Turn {
            seq,
            role,
            channel,
            text: text.into(),
            at,
            sentiment: signals.mood.as_ref().map(|m| m.label),
            valence: signals.mood.as_ref().map(|m| m.valence),
            language: signals.language.clone(),
            emotions: signals.emotions.clone(),
            intent: signals.intent.clone(),
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
            Some(id) => self.recent_turns(&id, &Party::Staff(Some(customer_id.into())), n),
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
                        .map(|c| channel_list(&c))
                        .transpose()?
                        .unwrap_or_default(),
                    last_customer_text: r.get(6)?,
                    resolved_at: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A conversation with all its turns; `None` when it does not exist. Fails when it is not
    /// `party`'s.
    pub fn conversation(
        &self,
        id: &str,
        party: &Party,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let conn = self.conn.lock();
        check_owner(&conn, id, party)?;
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

    /// The ids of the most recently updated conversations that match, newest first, at most
    /// `limit` (the staff list; the filters that need a conversation's escalation apply above).
    pub fn recent_conversations(
        &self,
        filter: &ConversationFilter,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock();
        let mut st = conn.prepare(
            "SELECT c.id FROM conversations c
             WHERE (?1 IS NULL OR c.channel = ?1)
               AND (?2 IS NULL OR (c.resolved_at IS NOT NULL) = ?2)
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM turns t
                                          WHERE t.conversation_id = c.id AND t.intent = ?3))
             ORDER BY c.updated_at DESC, c.id DESC LIMIT ?4",
        )?;
        let ids = st
            .query_map(
                params![filter.channel, filter.resolved, filter.intent, limit as i64],
                |r| r.get(0),
            )?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// Whether `role` has said anything in the conversation yet.
    pub fn has_turn_by(&self, conversation_id: &str, role: Role) -> Result<bool, StoreError> {
        Ok(self.conn.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM turns WHERE conversation_id = ?1 AND role = ?2)",
            params![conversation_id, role],
            |r| r.get(0),
        )?)
    }

    /// Marks a conversation's issue resolved (or open again). `false` when there is no such
    /// conversation; fails when it is not `party`'s.
    pub fn set_resolved(
        &self,
        id: &str,
        party: &Party,
        resolved: bool,
    ) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        check_owner(&conn, id, party)?;
        let at = resolved.then(|| self.now());
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
                            .map(|c| channel_list(&c))
                            .transpose()?
                            .unwrap_or_default(),
                        opening: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The last `n` turns of a conversation, oldest first; empty for a conversation not seen yet.
    /// Fails when the conversation is not `party`'s.
    pub fn recent_turns(
        &self,
        conversation_id: &str,
        party: &Party,
        n: usize,
    ) -> Result<Vec<Turn>, StoreError> {
        let conn = self.conn.lock();
        check_owner(&conn, conversation_id, party)?;
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
}

/// Creates the conversation on first use, or marks it updated (keeping its first customer).
/// A new turn reopens a resolved issue: the customer is back about it.
pub(super) fn touch_conversation(
    conn: &rusqlite::Connection,
    id: &str,
    customer_id: Option<&str>,
    channel: Channel,
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

pub(super) fn insert_turn(
    conn: &rusqlite::Connection,
    conversation_id: &str,
    role: Role,
    channel: Channel,
    text: &str,
    at: &str,
    signals: &TurnSignals,
) -> Result<(), StoreError> {
    let (mood, lang) = (signals.mood.as_ref(), signals.language.as_ref());
    conn.execute(
        "INSERT INTO turns (conversation_id, role, channel, text, at, sentiment, valence, language, language_confidence, language_mixed, emotions, intent, intent_confidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            conversation_id,
            role,
            channel,
            text,
            at,
            mood.map(|m| m.label),
            mood.map(|m| m.valence as f64),
            lang.map(|l| &l.language),
            lang.map(|l| l.confidence as f64),
            lang.and_then(|l| l.mixed_with.as_ref()),
            signals
                .emotions
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
            signals.intent.as_ref().map(|i| &i.name),
            signals.intent.as_ref().map(|i| i.confidence as f64),
        ],
    )?;
    Ok(())
}

/// `GROUP_CONCAT(DISTINCT channel)` back into channels.
fn channel_list(joined: &str) -> rusqlite::Result<Vec<Channel>> {
    joined
        .split(',')
        .map(|c| {
            c.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        })
        .collect()
}

fn turn_count(conn: &rusqlite::Connection, conversation_id: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM turns WHERE conversation_id = ?1",
        [conversation_id],
        |r| r.get(0),
    )?)
}

/// A conversation holds at most `max` turns: an unbounded one grows every read and every
/// history query, and no person reads the 501st turn of one contact.
pub(super) fn check_room(
    conn: &rusqlite::Connection,
    conversation_id: &str,
    adding: usize,
    max: usize,
) -> Result<(), StoreError> {
    let n = turn_count(conn, conversation_id)? as usize;
    if n + adding > max {
        return Err(StoreError::Conflict(format!(
            "conversation {conversation_id} holds {n} turns, the most one may \
             (limits.max_conversation_turns): start a new conversation"
        )));
    }
    Ok(())
}

/// A conversation id names one customer's conversation: another customer may not read or extend
/// it (ids come from channel frontends and could collide or be guessed). A conversation that does
/// not exist yet is anyone's to start.
pub(super) fn check_owner(
    conn: &rusqlite::Connection,
    conversation_id: &str,
    party: &Party,
) -> Result<(), StoreError> {
    let owner: Option<Option<String>> = conn
        .query_row(
            "SELECT customer_id FROM conversations WHERE id = ?1",
            [conversation_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(owner) = owner else {
        return Ok(());
    };
    match (owner, party) {
        (Some(owner), Party::Staff(Some(given))) if &owner != given => Err(StoreError::Conflict(
            format!("conversation {conversation_id} belongs to another customer"),
        )),
        (owner, Party::Customer(me)) if owner.as_ref() != Some(me) => Err(StoreError::NotFound(
            format!("no conversation {conversation_id}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::answers::{AnswerRecord, Citation};

    fn record(id: &str, conv: &str, customer: Option<&str>) -> AnswerRecord {
        AnswerRecord {
            id: id.into(),
            conversation_id: conv.into(),
            customer_id: customer.map(Into::into),
            channel: Channel::Chat,
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
            question_signals: TurnSignals::default(),
            answer_language: None,
        }
    }

    fn staff(c: Option<&str>) -> Party {
        Party::Staff(c.map(Into::into))
    }

    #[test]
    fn answers_turns_and_feedback_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.record_answer(&record("a1", "conv", Some("cust")), &staff(Some("cust")))
            .unwrap();
        s.record_answer(&record("a2", "conv", None), &staff(None))
            .unwrap();
        let turns = s.recent_turns("conv", &staff(Some("cust")), 3).unwrap();
        let texts: Vec<_> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["a a1", "q a2", "a a2"]);
        let seqs: Vec<_> = turns.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [2, 3, 4], "positions in the conversation");
        let a = s.get_answer("a1").unwrap().unwrap();
        assert_eq!(a.customer_id.as_deref(), Some("cust"));
        assert_eq!(a.citations[0].card_id, "c1");
        assert_eq!(
            s.add_feedback("a1", &staff(None), "up", None, "t").unwrap(),
            1
        );
        assert!(matches!(
            s.add_feedback("nope", &staff(None), "up", None, "t"),
            Err(StoreError::NotFound(_))
        ));
        // Staff naming another customer are told the conversation is someone else's.
        assert!(matches!(
            s.record_answer(&record("a3", "conv", Some("other")), &staff(Some("other"))),
            Err(StoreError::Conflict(_))
        ));
        assert!(s.get_answer("a3").unwrap().is_none());
        assert!(matches!(
            s.recent_turns("conv", &staff(Some("other")), 3),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn a_customer_reaches_only_their_own_conversations() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (me, other) = (
            Party::Customer("me".into()),
            Party::Customer("other".into()),
        );
        s.record_answer(&record("a1", "mine", Some("me")), &me)
            .unwrap();
        s.append_turn(
            "staff-started",
            &staff(None),
            Channel::Chat,
            Role::Agent,
            "hi",
            &TurnSignals::default(),
        )
        .unwrap();
        assert_eq!(s.recent_turns("mine", &me, 5).unwrap().len(), 2);
        for conv in ["mine", "staff-started"] {
            let denied = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound(_)));
            assert!(denied(s.conversation(conv, &other).map(|_| ())), "{conv}");
            assert!(
                denied(s.recent_turns(conv, &other, 5).map(|_| ())),
                "{conv}"
            );
            assert!(
                denied(s.set_resolved(conv, &other, true).map(|_| ())),
                "{conv}"
            );
            assert!(denied(
                s.append_turn(
                    conv,
                    &other,
                    Channel::Chat,
                    Role::Customer,
                    "x",
                    &TurnSignals::default(),
                )
                .map(|_| ())
            ));
        }
        assert!(matches!(
            s.add_feedback("a1", &other, "down", None, "t"),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.add_feedback("a1", &me, "up", None, "t").unwrap(), 1);
        // Nothing the other customer tried was stored or changed.
        let c = s.conversation("mine", &me).unwrap().unwrap();
        assert_eq!(c.turns.len(), 2);
        assert!(c.resolved_at.is_none());
        // A new id is theirs to start.
        s.append_turn(
            "theirs",
            &other,
            Channel::Chat,
            Role::Customer,
            "hello",
            &TurnSignals::default(),
        )
        .unwrap();
        assert_eq!(
            s.conversation("theirs", &staff(None))
                .unwrap()
                .unwrap()
                .customer_id
                .as_deref(),
            Some("other")
        );
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
            label: Sentiment::Negative,
            valence: -0.7,
        };
        s.append_turn(
            "old",
            &staff(Some("c")),
            Channel::Voice,
            Role::Customer,
            "still broken",
            &TurnSignals {
                mood: Some(mood),
                ..TurnSignals::default()
            },
        )
        .unwrap();
        let c = s.conversation("old", &staff(None)).unwrap().unwrap();
        assert_eq!(c.turns.len(), 2);
        assert_eq!(c.turns[0].text, "hello");
        assert_eq!(c.turns[0].sentiment, None);
        assert_eq!(c.turns[1].sentiment, Some(Sentiment::Negative));
        assert_eq!(c.turns[1].seq, 2);
        drop(s);
        // Opening again is a no-op.
        assert!(Store::open(dir.path()).is_ok());
    }
}
