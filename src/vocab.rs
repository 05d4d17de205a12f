//! The fixed sets of values that several layers speak: channels, who wrote a turn, sentiment
//! labels, why an answer was handed off, why a conversation was escalated, where the mood is
//! going. One enum each, so a typo is a compile error and not a silently different branch.
//!
//! Each serialises to the same lowercase `snake_case` text it always had on the wire and in
//! SQLite (`store` converts them with `ToSql`/`FromSql`), and parses back with `FromStr`.
//! This module sits below every domain folder and the store, and imports none of them.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// Everything every enum here derives: the wire name is the `snake_case` variant name.
macro_rules! vocabulary {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            Display, EnumString, IntoStaticStr, VariantArray, utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// Every value, comma-separated, for error messages that say what is accepted.
            pub fn list() -> String {
                Self::VARIANTS.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

vocabulary! {
    /// Where a turn came from or an answer goes. `agent` is the agent desk: it has turns, but
    /// no bot answers or card targeting of its own.
    pub enum Channel { Chat, Social, Email, Voice, Agent }
}

impl Channel {
    /// The channels a customer-facing answer (and a card's targeting) can name.
    pub const CUSTOMER_FACING: [Channel; 4] = [
        Channel::Chat,
        Channel::Social,
        Channel::Email,
        Channel::Voice,
    ];

    pub fn is_customer_facing(self) -> bool {
        self != Channel::Agent
    }
}

vocabulary! {
    /// Who wrote a turn.
    pub enum Role { Customer, Bot, Agent }
}

vocabulary! {
    /// A customer turn's sentiment, as the sentiment head labels it.
    pub enum Sentiment { Negative, Neutral, Positive }
}

vocabulary! {
    /// What a customer turn shows besides its sentiment; a turn may show several at once.
    pub enum Emotion { Anger, Frustration, Confusion, Urgency, Gratitude }
}

vocabulary! {
    /// Why an answer went to a person instead of the model's text.
    pub enum HandoffReason {
        /// The conversation is flagged for escalation.
        Escalated,
        /// No published card covers the question.
        NoRelevantCard,
        /// The question is an attempt to reprogram the assistant, or the reply repeated its
        /// instructions.
        UnsupportedRequest,
        /// The model wrote nothing usable.
        NoAnswer,
        /// The reply stated something the cards it was given do not (a number): withheld.
        Ungrounded,
        /// No chat model is configured.
        GeneratorUnavailable,
    }
}

vocabulary! {
    /// Which escalation rule fired.
    pub enum EscalationReason {
        NegativeStreak,
        SharpDrop,
        HumanRequested,
        RepeatedContacts,
        /// A customer turn showed an emotion at or above `[escalation] emotions`.
        StrongEmotion,
    }
}

vocabulary! {
    /// How soon a routed conversation should be taken, lowest first.
    pub enum Priority { Low, Normal, High, Urgent }
}

vocabulary! {
    /// Where the customer's mood is going: the last scored turn against the ones before it.
    pub enum MoodDirection { Improving, Steady, Worsening, Unknown }
}

/// Values joined by `sep`, for sentences that list them.
pub fn join<T: Copy + Into<&'static str>>(items: &[T], sep: &str) -> String {
    items
        .iter()
        .map(|&v| v.into())
        .collect::<Vec<&str>>()
        .join(sep)
}

vocabulary! {
    /// Why agent assist offers no suggested replies.
    pub enum NoSuggestions { NotCovered, UnsupportedRequest, GeneratorUnavailable }
}

vocabulary! {
    /// What a coaching note for an agent is about.
    pub enum CoachingKind {
        AcknowledgeFrustration,
        HumanRequested,
        RepeatedContacts,
        Escalated,
        /// A card's limit the agent must not promise past.
        DoNotPromise,
        /// What the card's steps need that the customer has not given.
        AskFor,
        ConfirmSteps,
        NotCovered,
    }
}

vocabulary! {
    /// A rating of an answer.
    pub enum Rating { Up, Down }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_the_snake_case_texts() {
        assert_eq!(HandoffReason::NoRelevantCard.as_str(), "no_relevant_card");
        assert_eq!(
            serde_json::to_string(&EscalationReason::HumanRequested).unwrap(),
            "\"human_requested\""
        );
        assert_eq!("voice".parse::<Channel>().unwrap(), Channel::Voice);
        assert!("fax".parse::<Channel>().is_err());
        assert_eq!(Role::list(), "customer, bot, agent");
        assert_eq!(MoodDirection::Worsening.to_string(), "worsening");
    }
}

vocabulary! {
    /// The width of an analytics report's time buckets.
    pub enum Granularity { Hour, Day, Week }
}

vocabulary! {
    /// An analytics report (`GET /v1/analytics/{report}`).
    pub enum Report {
        /// Customer turns and conversations by channel and language.
        Volume,
        /// Answers given without a person, by channel.
        Deflection,
        /// Hand-offs by reason.
        Handoffs,
        /// Up- and down-ratings.
        Satisfaction,
        /// Customer turns by sentiment, and the mean valence.
        Sentiment,
        /// Customer turns showing each emotion.
        Emotions,
        /// Intents against the previous window, with spikes.
        Topics,
        /// The most cited cards.
        TopCards,
        /// The cards most rated down or followed by hand-offs.
        WeakCards,
        /// Questions no card answered, grouped.
        Gaps,
    }
}

vocabulary! {
    /// What a background job does.
    pub enum JobKind {
        /// Draft a card from a conversation a person resolved (its subject: the conversation).
        DraftFromConversation,
    }
}

vocabulary! {
    /// Where a background job is. `running` jobs of a node that stopped are queued again when
    /// the store is next opened by a miner.
    pub enum JobState { Queued, Running, Done, Failed }
}
