//! The conversation, not only the last question: how the customer feels turn by turn, and when
//! a human must step in.
//!
//! - [`sentiment`]: the three-way sentiment head over sentence embeddings and its reproducible
//!   training (`kefu train sentiment`).
//! - [`escalation`]: the policy that flags a conversation whose mood is turning, and the mood
//!   trend.
//!
//! [`Conversations`] ties them to the store: every customer turn is scored as it arrives, and a
//! conversation's escalation state is recomputed from its turns when read, so a changed policy
//! applies to old conversations too.

pub mod escalation;
pub mod sentiment;

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::knowledge::blocking;
use crate::store::Store;
use crate::store::conversations::{ConversationRecord, ConversationSummary, Turn, TurnMood};
use escalation::{Escalation, EscalationPolicy, MoodTrend};
use sentiment::SentimentModel;

/// Longest turn accepted, in characters.
pub const MAX_TURN_CHARS: usize = 8000;
pub const CHANNELS: [&str; 5] = ["chat", "social", "email", "voice", "agent"];
pub const ROLES: [&str; 3] = ["customer", "bot", "agent"];

pub struct Conversations {
    store: Arc<Store>,
    sentiment: Option<SentimentModel>,
    policy: EscalationPolicy,
}

/// A turn to append.
#[derive(Debug, Clone)]
pub struct NewTurn {
    pub customer_id: Option<String>,
    pub channel: String,
    pub role: String,
    pub text: String,
}

/// A conversation as agents and dashboards read it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    #[serde(flatten)]
    pub record: ConversationRecord,
    pub mood: MoodTrend,
    pub escalation: Escalation,
}

/// One customer across channels.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    /// Most recent first (at most 50).
    pub conversations: Vec<ConversationSummary>,
    /// Every channel the customer used.
    pub channels: Vec<String>,
    /// The latest conversation's mood and escalation.
    pub latest: Option<ConversationView>,
    /// One line for a person taking over: contacts, channels, the last thing asked, the mood.
    pub summary: String,
}

impl Conversations {
    /// The customer's conversations across channels; `None` when none is known.
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerView>> {
        validate_id("customer id", customer_id)?;
        let (store, id) = (self.store.clone(), customer_id.to_string());
        let conversations = blocking(move || store.customer_conversations(&id, 50)).await?;
        let Some(first) = conversations.first() else {
            return Ok(None);
        };
        let latest = self.get(&first.id, Some(customer_id)).await?;
        let mut channels: Vec<String> = conversations
            .iter()
            .flat_map(|c| c.channels.iter().cloned())
            .collect();
        channels.sort();
        channels.dedup();
        let mut summary = format!(
            "{} conversation(s) over {}; last contact {}",
            conversations.len(),
            channels.join(", "),
            first.updated_at
        );
        if let Some(text) = conversations
            .iter()
            .find_map(|c| c.last_customer_text.as_ref())
        {
            summary.push_str(&format!("; last asked: \"{}\"", truncate(text, 160)));
        }
        if let Some(v) = &latest {
            summary.push_str(&format!("; mood {}", v.mood.direction));
            if let Some(f) = v.escalation.reasons.first() {
                summary.push_str(&format!("; flagged ({}: {})", f.reason, f.detail));
            }
        }
        Ok(Some(CustomerView {
            customer_id: customer_id.to_string(),
            channels,
            conversations,
            latest,
            summary,
        }))
    }

    pub fn new(
        store: Arc<Store>,
        sentiment: Option<SentimentModel>,
        policy: EscalationPolicy,
    ) -> Self {
        Conversations {
            store,
            sentiment,
            policy,
        }
    }

    pub fn sentiment(&self) -> Option<&SentimentModel> {
        self.sentiment.as_ref()
    }

    /// The sentiment of a customer's text, or `None` when sentiment is disabled.
    pub async fn score(&self, text: &str) -> Result<Option<TurnMood>> {
        let Some(model) = &self.sentiment else {
            return Ok(None);
        };
        let s = model.classify(vec![text.to_string()]).await?;
        Ok(s.first().map(|s| TurnMood {
            label: s.label.to_string(),
            valence: s.valence(),
        }))
    }

    /// Appends a turn (scored when it is the customer's) and returns the conversation after it.
    pub async fn add_turn(&self, conversation_id: &str, t: NewTurn) -> Result<ConversationView> {
        validate_id("conversation id", conversation_id)?;
        if let Some(c) = &t.customer_id {
            validate_id("customer_id", c)?;
        }
        if !CHANNELS.contains(&t.channel.as_str()) {
            return Err(Error::invalid(
                "invalid_request",
                format!("channel must be one of {}", CHANNELS.join(", ")),
            ));
        }
        if !ROLES.contains(&t.role.as_str()) {
            return Err(Error::invalid(
                "invalid_request",
                format!("role must be one of {}", ROLES.join(", ")),
            ));
        }
        let text = t.text.trim().to_string();
        if text.is_empty() || text.chars().count() > MAX_TURN_CHARS {
            return Err(Error::invalid(
                "invalid_request",
                format!("text must be 1 to {MAX_TURN_CHARS} characters"),
            ));
        }
        let mood = if t.role == "customer" {
            self.score(&text).await?
        } else {
            None
        };
        let (store, id) = (self.store.clone(), conversation_id.to_string());
        blocking(move || {
            store.append_turn(
                &id,
                t.customer_id.as_deref(),
                &t.channel,
                &t.role,
                &text,
                mood.as_ref(),
            )
        })
        .await?;
        self.get(conversation_id, None)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {conversation_id} vanished")))
    }

    pub async fn get(
        &self,
        conversation_id: &str,
        customer_id: Option<&str>,
    ) -> Result<Option<ConversationView>> {
        let (store, id, cust) = (
            self.store.clone(),
            conversation_id.to_string(),
            customer_id.map(str::to_string),
        );
        let Some(record) = blocking(move || store.conversation(&id, cust.as_deref())).await? else {
            return Ok(None);
        };
        Ok(Some(self.view(record)))
    }

    /// The escalation state the conversation would have with one more customer turn (the
    /// question the answer endpoint is about to record).
    pub async fn assess_with(
        &self,
        conversation_id: &str,
        customer_id: Option<&str>,
        question: &str,
        mood: Option<&TurnMood>,
    ) -> Result<Escalation> {
        let mut turns = match self.get(conversation_id, customer_id).await? {
            Some(v) => v.record.turns,
            None => Vec::new(),
        };
        turns.push(Turn {
            seq: turns.last().map_or(1, |t| t.seq + 1),
            role: "customer".into(),
            channel: String::new(),
            text: question.to_string(),
            at: String::new(),
            sentiment: mood.map(|m| m.label.clone()),
            valence: mood.map(|m| m.valence),
        });
        Ok(self.policy.assess(&turns))
    }

    fn view(&self, record: ConversationRecord) -> ConversationView {
        ConversationView {
            mood: escalation::mood_trend(&record.turns),
            escalation: self.policy.assess(&record.turns),
            record,
        }
    }
}

fn truncate(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn validate_id(name: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_request",
            format!("{name} must be 1 to 128 printable characters"),
        ));
    }
    Ok(())
}
