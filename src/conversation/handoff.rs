//! The hand-off summary: what the person receiving a conversation (an agent taking over from
//! the bot, or from another channel) needs to know without reading every turn. Extractive, from
//! the stored turns and answers: nothing here is generated, so nothing in it can be invented.

use serde::Serialize;

use super::ConversationView;
use super::escalation::{Escalation, MoodTrend};
use crate::store::answers::GivenAnswer;
use crate::store::conversations::Contact;
use crate::text::shorten as truncate;
use crate::vocab::{Channel, Role, Sentiment};

/// How many of the customer's turns the summary quotes.
const ASKED: usize = 8;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HandoffSummary {
    pub conversation_id: String,
    pub customer_id: Option<String>,
    /// Channels this conversation used.
    pub channels: Vec<Channel>,
    /// The customer's turns, oldest first (the last eight).
    pub asked: Vec<String>,
    /// What the service answered from the cards (hand-offs are under `unresolved`).
    pub answered: Vec<GivenAnswer>,
    /// What is still open: questions handed off, the customer's last turn when nobody answered
    /// it or it was negative, in the order asked. Empty once the conversation is resolved.
    pub unresolved: Vec<Unresolved>,
    pub feeling: Feeling,
    pub escalation: Escalation,
    /// The queue, priority and agent skills the conversation needs, and why.
    pub route: Option<super::routing::Route>,
    pub resolved: bool,
    /// The customer's other contacts in the repeated-contacts window, most recent first.
    pub other_contacts: Vec<OtherContact>,
    /// The above in a few sentences, for a person to read first.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Unresolved {
    pub text: String,
    /// `handed_off` (with the hand-off reason), `no_reply` or `still_unhappy`.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Feeling {
    /// The sentiment of the customer's last scored turn.
    pub last: Option<Sentiment>,
    #[serde(flatten)]
    pub trend: MoodTrend,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OtherContact {
    pub conversation_id: String,
    pub channels: Vec<Channel>,
    pub resolved: bool,
    pub opening: String,
}

pub fn summarise(
    view: ConversationView,
    answers: Vec<GivenAnswer>,
    others: Vec<Contact>,
) -> HandoffSummary {
    let r = &view.record;
    let resolved = r.resolved_at.is_some();
    let customer: Vec<_> = r
        .turns
        .iter()
        .filter(|t| t.role == Role::Customer)
        .collect();
    let asked: Vec<String> = customer
        .iter()
        .skip(customer.len().saturating_sub(ASKED))
        .map(|t| t.text.clone())
        .collect();
    let mut unresolved = Vec::new();
    if !resolved {
        for a in answers.iter().filter(|a| a.handoff) {
            unresolved.push(Unresolved {
                text: a.question.clone(),
                why: format!(
                    "handed_off: {}",
                    a.handoff_reason.map_or("unknown", |r| r.as_str())
                ),
            });
        }
        if let Some(last) = customer.last()
            && !unresolved.iter().any(|u| u.text == last.text)
        {
            let replied = r
                .turns
                .iter()
                .any(|t| t.seq > last.seq && t.role != Role::Customer);
            let why = if !replied {
                Some("no_reply")
            } else if last.sentiment == Some(Sentiment::Negative) {
                Some("still_unhappy")
            } else {
                None
            };
            if let Some(why) = why {
                unresolved.push(Unresolved {
                    text: last.text.clone(),
                    why: why.into(),
                });
            }
        }
    }
    let mut channels: Vec<Channel> = r.turns.iter().map(|t| t.channel).collect();
    channels.sort();
    channels.dedup();
    let answered: Vec<GivenAnswer> = answers.into_iter().filter(|a| !a.handoff).collect();
    let feeling = Feeling {
        last: customer.iter().rev().find_map(|t| t.sentiment),
        trend: view.mood.clone(),
    };
    let other_contacts: Vec<OtherContact> = others
        .into_iter()
        .map(|c| OtherContact {
            conversation_id: c.id,
            channels: c.channels,
            resolved: c.resolved,
            opening: truncate(&c.opening, 200),
        })
        .collect();
    let summary = sentences(
        &view,
        &channels,
        &answered,
        &unresolved,
        &feeling,
        &other_contacts,
    );
    HandoffSummary {
        conversation_id: r.id.clone(),
        customer_id: r.customer_id.clone(),
        channels,
        asked,
        answered,
        unresolved,
        feeling,
        escalation: view.escalation.clone(),
        route: view.route.clone(),
        resolved,
        other_contacts,
        summary,
    }
}

fn sentences(
    view: &ConversationView,
    channels: &[Channel],
    answered: &[GivenAnswer],
    unresolved: &[Unresolved],
    feeling: &Feeling,
    others: &[OtherContact],
) -> String {
    let r = &view.record;
    let mut out = Vec::new();
    if view.escalation.priority {
        out.push("PRIORITY: repeat contact about an unresolved issue.".to_string());
    }
    let who = r.customer_id.as_deref().unwrap_or("an anonymous customer");
    let asked = r.turns.iter().filter(|t| t.role == Role::Customer).count();
    out.push(format!(
        "Conversation with {who} over {}: {asked} customer turn(s).",
        crate::vocab::join(channels, ", ")
    ));
    if let Some(first) = r.turns.iter().find(|t| t.role == Role::Customer) {
        out.push(format!("First asked: \"{}\".", truncate(&first.text, 160)));
    }
    if !answered.is_empty() {
        // Each card once, in the order first cited.
        let mut titles: Vec<&str> = Vec::new();
        for c in answered.iter().flat_map(|a| &a.citations) {
            if !titles.contains(&c.title.as_str()) {
                titles.push(&c.title);
            }
        }
        out.push(format!(
            "Answered {} time(s) from: {}.",
            answered.len(),
            if titles.is_empty() {
                "no card".to_string()
            } else {
                titles.join("; ")
            }
        ));
    }
    if view.record.resolved_at.is_some() {
        out.push("Marked resolved.".into());
    } else if unresolved.is_empty() {
        out.push("Nothing is known to be open.".into());
    } else {
        let open: Vec<String> = unresolved
            .iter()
            .map(|u| format!("\"{}\" ({})", truncate(&u.text, 120), u.why))
            .collect();
        out.push(format!("Still open: {}.", open.join("; ")));
    }
    if let Some(last) = &feeling.last {
        out.push(format!(
            "The customer's last turn was {last}; mood {}.",
            feeling.trend.direction
        ));
    }
    if let Some(f) = view.escalation.reasons.first() {
        out.push(format!(
            "Flagged at turn {} ({}: {}).",
            f.turn, f.reason, f.detail
        ));
    }
    if let Some(route) = &view.route {
        out.push(format!(
            "Routed to {} ({} priority){}{}.",
            route.queue,
            route.priority,
            route
                .intent
                .as_ref()
                .map(|i| format!(", intent {i}"))
                .unwrap_or_default(),
            if route.skills.is_empty() {
                String::new()
            } else {
                format!(", needs {}", route.skills.join(", "))
            }
        ));
    }
    if !view.emotions.current.is_empty() {
        out.push(format!(
            "The customer shows {}.",
            crate::vocab::join(&view.emotions.current, ", ")
        ));
    }
    let open_others = others.iter().filter(|c| !c.resolved).count();
    if !others.is_empty() {
        out.push(format!(
            "{} other recent contact(s), {open_others} unresolved.",
            others.len()
        ));
    }
    out.join(" ")
}
