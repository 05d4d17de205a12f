//! One home per request flow. Each caller's flow is one function here that reads top to bottom
//! and calls the domain layers in order; `api` only parses, checks the caller and shapes the
//! reply, and the domain layers (`knowledge`, `conversation`, `speech`) never call each other.
//!
//! - [`answer`]: chatbots. Score the turn, check escalation, read the history, retrieve and
//!   decide, generate, check, record.
//! - [`assist`]: agent assist. The conversation's state, the cards that matter now, coaching,
//!   then the suggested replies.
//! - [`voice`]: a live voice stream. Check the start, run the stream, store each final as the
//!   customer's voice turn with its sentiment and the conversation's escalation.
//! - [`transcribe`]: one uploaded recording, decoded, checked and transcribed.
//! - [`insights`]: analytics reports, card records and the review queue, knowledge gaps (the
//!   handed-off questions clustered).
//! - [`mining`]: a resolved conversation drafted into a card in review, or merged into the
//!   card it repeats as more evidence; background jobs from the store.

pub mod answer;
pub mod assist;
pub mod insights;
pub mod mining;
pub mod transcribe;
pub mod voice;

use std::sync::Arc;

use crate::config::Config;
use crate::conversation::Conversations;
use crate::knowledge::Knowledge;
use crate::knowledge::answer::Answerer;
use crate::runtime::asr::AsrPool;

/// The services every flow draws on, built once at start-up.
pub struct Desk {
    pub knowledge: Arc<Knowledge>,
    pub answerer: Arc<Answerer>,
    pub conversations: Arc<Conversations>,
    /// The speech model, when one is configured.
    pub asr: Option<AsrPool>,
    /// Drafts cards from resolved conversations, in the background.
    pub miner: Arc<mining::Miner>,
    /// Analytics, card records and the review queue, knowledge gaps.
    pub insights: insights::Insights,
    pub config: Arc<Config>,
}

impl Desk {
    /// A conversation's issue marked resolved (or reopened). What a person taught in it is
    /// queued for mining; a queue that cannot be written does not undo the resolution
    /// (`kefu mine` finds resolved conversations no job took up).
    pub async fn resolve(
        &self,
        conversation_id: &str,
        party: &crate::store::conversations::Party,
        resolved: bool,
    ) -> crate::error::Result<crate::conversation::ConversationView> {
        let view = self
            .conversations
            .resolve(conversation_id, party, resolved)
            .await?;
        if resolved && let Err(e) = self.miner.learn_from(conversation_id).await {
            tracing::warn!(conversation = conversation_id, error = %e, "not queued for mining");
        }
        Ok(view)
    }

    /// The speech model, or why there is none: the voice flows' first check.
    pub fn speech(&self) -> crate::error::Result<&AsrPool> {
        self.asr.as_ref().ok_or_else(|| {
            crate::error::Error::Unavailable(
                "no speech model is loaded (models.asr = \"none\")".into(),
            )
        })
    }
}
