//! Where a conversation belongs and how soon: rules from `[routing]` in kefu.toml over what the
//! turns say (intent, language, emotions), the escalation state, repeated contacts and the
//! customer's tags. The first matching rule that names a queue decides the queue; every
//! matching rule may raise the priority. The route lists each rule that matched and why, so a
//! person can see why a conversation reached them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::escalation::Escalation;
use super::intents::OTHER;
use crate::config::RouteRule;
use crate::store::conversations::Turn;
use crate::vocab::{Emotion, EscalationReason, Priority, Role};

/// `[routing]` in kefu.toml (defined with the rest of the configuration).
pub use crate::config::RoutingConfig as RoutingPolicy;

/// How many of the customer's latest turns the emotion conditions read.
const RECENT_TURNS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Route {
    pub queue: String,
    pub priority: Priority,
    /// What the person taking it over must have: the conversation's language.
    pub skills: Vec<String>,
    /// The intent routing read: the latest customer turn's, passing over greetings, requests
    /// for a person and `other` when an earlier turn says what the customer wants.
    pub intent: Option<String>,
    /// The language most of the customer's turns are in.
    pub language: Option<String>,
    /// Every rule that matched, in order.
    pub reasons: Vec<RouteReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RouteReason {
    pub rule: String,
    /// What matched: `intent cancellation`, `anger 0.86`, `tag vip`, ...
    pub detail: String,
}

/// What the rules read from a conversation.
struct Facts<'a> {
    intent: Option<String>,
    language: Option<String>,
    emotions: BTreeMap<Emotion, f32>,
    escalated: bool,
    repeat_contact: bool,
    tags: &'a [String],
}

impl RoutingPolicy {
    pub fn route(&self, turns: &[Turn], escalation: &Escalation, tags: &[String]) -> Route {
        let facts = Facts::read(turns, escalation, tags);
        let mut queue = None;
        let mut priority = Priority::Normal;
        let mut reasons = Vec::new();
        for rule in &self.rules {
            let Some(detail) = facts.matches(rule) else {
                continue;
            };
            let decides_queue = queue.is_none() && rule.queue.is_some();
            let raises = rule.priority.is_some_and(|p| p > priority);
            if !decides_queue && !raises {
                continue;
            }
            if decides_queue {
                queue = rule.queue.clone();
            }
            if let Some(p) = rule.priority.filter(|_| raises) {
                priority = p;
            }
            reasons.push(RouteReason {
                rule: rule.name.clone(),
                detail,
            });
        }
        Route {
            queue: queue.unwrap_or_else(|| self.default_queue.clone()),
            priority,
            skills: facts.language.iter().cloned().collect(),
            intent: facts.intent,
            language: facts.language,
            reasons,
        }
    }
}

impl<'a> Facts<'a> {
    fn read(turns: &[Turn], escalation: &Escalation, tags: &'a [String]) -> Self {
        let customer: Vec<&Turn> = turns.iter().filter(|t| t.role == Role::Customer).collect();
        let intents: Vec<&str> = customer
            .iter()
            .filter_map(|t| t.intent.as_ref().map(|i| i.name.as_str()))
            .collect();
        let says_little = |i: &&str| [OTHER, "greeting", "human_request"].contains(i);
        let intent = intents
            .iter()
            .rev()
            .find(|i| !says_little(i))
            .or(intents.last())
            .map(|i| i.to_string());
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (at, t) in customer.iter().enumerate() {
            if let Some(l) = &t.language {
                let e = counts.entry(l.language.as_str()).or_default();
                e.0 += 1;
                e.1 = at;
            }
        }
        // Most turns; a tie goes to the language spoken last.
        let language = counts
            .iter()
            .max_by_key(|(_, (n, last))| (*n, *last))
            .map(|(l, _)| l.to_string());
        let mut emotions: BTreeMap<Emotion, f32> = BTreeMap::new();
        for t in customer.iter().rev().take(RECENT_TURNS) {
            for (e, s) in t.emotions.iter().flat_map(|e| &e.scores) {
                let best = emotions.entry(*e).or_default();
                *best = best.max(*s);
            }
        }
        Facts {
            intent,
            language,
            emotions,
            escalated: escalation.flagged,
            repeat_contact: escalation
                .reasons
                .iter()
                .any(|f| f.reason == EscalationReason::RepeatedContacts),
            tags,
        }
    }

    /// What matched, when every condition the rule sets holds.
    fn matches(&self, rule: &RouteRule) -> Option<String> {
        let mut why = Vec::new();
        if !rule.intents.is_empty() {
            let i = self.intent.as_ref().filter(|i| rule.intents.contains(i))?;
            why.push(format!("intent {i}"));
        }
        if !rule.languages.is_empty() {
            let l = self
                .language
                .as_ref()
                .filter(|l| rule.languages.contains(l))?;
            why.push(format!("language {l}"));
        }
        if let Some(want) = rule.escalated {
            if self.escalated != want {
                return None;
            }
            why.push(if want { "escalated" } else { "not escalated" }.to_string());
        }
        if !rule.emotions.is_empty() {
            let (e, s) = rule.emotions.iter().find_map(|(e, min)| {
                self.emotions.get(e).filter(|s| **s >= *min).map(|s| (e, s))
            })?;
            why.push(format!("{e} {s:.2}"));
        }
        if let Some(want) = rule.repeat_contact {
            if self.repeat_contact != want {
                return None;
            }
            why.push(
                if want {
                    "repeat contact"
                } else {
                    "first contact"
                }
                .to_string(),
            );
        }
        if !rule.tags.is_empty() {
            let t = self.tags.iter().find(|t| rule.tags.contains(t))?;
            why.push(format!("tag {t}"));
        }
        Some(why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::escalation::Flag;
    use crate::store::conversations::{TurnEmotions, TurnIntent};
    use crate::text::LanguageGuess;

    fn turn(text: &str, intent: &str, lang: &str, emotions: &[(Emotion, f32)]) -> Turn {
        Turn {
            seq: 1,
            role: Role::Customer,
            channel: crate::vocab::Channel::Chat,
            text: text.into(),
            at: String::new(),
            sentiment: None,
            valence: None,
            language: Some(LanguageGuess {
                language: lang.into(),
                confidence: 1.0,
                mixed_with: None,
            }),
            emotions: Some(TurnEmotions {
                present: Vec::new(),
                scores: emotions.iter().copied().collect(),
            }),
            intent: Some(TurnIntent {
                name: intent.into(),
                confidence: 0.9,
            }),
        }
    }

    fn calm() -> Escalation {
        Escalation {
            flagged: false,
            priority: false,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn the_intent_decides_the_queue_and_a_greeting_does_not_hide_it() {
        let turns = [
            turn("I want to cancel", "cancellation", "en", &[]),
            turn("thanks", "greeting", "en", &[]),
        ];
        let r = RoutingPolicy::default().route(&turns, &calm(), &[]);
        assert_eq!(r.queue, "retention");
        assert_eq!(r.priority, Priority::Normal);
        assert_eq!(r.intent.as_deref(), Some("cancellation"));
        assert_eq!(r.skills, vec!["en"]);
        assert_eq!(r.reasons[0].detail, "intent cancellation");
    }

    #[test]
    fn escalation_anger_and_tags_raise_the_priority_and_a_vip_goes_first() {
        let angry = [turn(
            "refund me now",
            "refund",
            "zh",
            &[(Emotion::Anger, 0.9)],
        )];
        let escalated = Escalation {
            flagged: true,
            priority: false,
            reasons: vec![Flag {
                reason: EscalationReason::StrongEmotion,
                turn: 1,
                detail: String::new(),
            }],
        };
        let r = RoutingPolicy::default().route(&angry, &escalated, &[]);
        assert_eq!(
            (r.queue.as_str(), r.priority),
            ("billing", Priority::Urgent)
        );
        let rules: Vec<&str> = r.reasons.iter().map(|x| x.rule.as_str()).collect();
        assert_eq!(rules, ["escalated", "angry_and_escalated", "billing"]);
        let vip = RoutingPolicy::default().route(&angry, &calm(), &["vip".to_string()]);
        assert_eq!((vip.queue.as_str(), vip.priority), ("vip", Priority::High));
    }

    #[test]
    fn a_language_rule_and_the_default_queue() {
        let mut policy = RoutingPolicy::default();
        policy.rules.insert(
            0,
            RouteRule {
                name: "chinese".into(),
                queue: Some("zh_desk".into()),
                languages: vec!["zh".into()],
                ..RouteRule::default()
            },
        );
        let zh = [turn("你好", "greeting", "zh", &[])];
        assert_eq!(policy.route(&zh, &calm(), &[]).queue, "zh_desk");
        let en = [turn("hello", "greeting", "en", &[])];
        assert_eq!(policy.route(&en, &calm(), &[]).queue, "general");
        assert_eq!(policy.route(&[], &calm(), &[]).queue, "general");
    }
}
