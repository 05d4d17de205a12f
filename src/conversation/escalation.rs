//! When a human must step in: a policy over the customer's turns, read in order, that flags a
//! conversation when its mood is turning, and says at which turn and why.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use std::collections::BTreeMap;

use crate::store::conversations::{Turn, TurnEmotions};
use crate::vocab::{Emotion, EscalationReason, MoodDirection, Role, Sentiment};

/// `[escalation]` in kefu.toml (defined with the rest of the configuration).
pub use crate::config::EscalationConfig as EscalationPolicy;

/// Why a conversation was flagged, and at which turn (`Turn::seq`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Flag {
    pub reason: EscalationReason,
    pub turn: i64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Escalation {
    pub flagged: bool,
    /// The customer came back about one unresolved issue on more than one channel: serve first.
    pub priority: bool,
    /// Every rule that fired, in turn order; the first is what flagged the conversation.
    pub reasons: Vec<Flag>,
}

/// The customer's mood across the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MoodTrend {
    /// Valence of each scored customer turn, oldest first.
    pub valences: Vec<f32>,
    /// The last scored turn against the mean of the ones before it; `unknown` with fewer
    /// than two.
    pub direction: MoodDirection,
}

static HUMAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(real|live|actual)\s+(person|human|agent)\b|\b(speak|talk|chat)\s+(to|with)\s+(a|an|your)?\s*(human|person|agent|manager|supervisor|someone)\b|\bhuman\s+agent\b|\boperator\b|人工|真人|转人工|找你们(经理|主管)",
    )
    .expect("static regex")
});

/// Whether a text asks for a person.
pub fn asks_for_human(text: &str) -> bool {
    HUMAN.is_match(text)
}

impl EscalationPolicy {
    /// Reads the customer turns in order. Turns without a sentiment (not scored: sentiment
    /// disabled) count only for the explicit request for a person.
    pub fn assess(&self, turns: &[Turn]) -> Escalation {
        let mut reasons = Vec::new();
        let mut streak = 0usize;
        let mut last_valence: Option<f32> = None;
        let mut felt: Vec<Emotion> = Vec::new();
        for t in turns.iter().filter(|t| t.role == Role::Customer) {
            for (e, min) in &self.emotions {
                let score = t.emotions.as_ref().and_then(|x| x.scores.get(e)).copied();
                if let Some(s) = score.filter(|s| s >= min)
                    && !felt.contains(e)
                {
                    felt.push(*e);
                    reasons.push(Flag {
                        reason: EscalationReason::StrongEmotion,
                        turn: t.seq,
                        detail: format!("{e} {s:.2}"),
                    });
                }
            }
            if self.human_request && asks_for_human(&t.text) {
                reasons.push(Flag {
                    reason: EscalationReason::HumanRequested,
                    turn: t.seq,
                    detail: "the customer asked for a person".into(),
                });
            }
            match t.sentiment {
                Some(Sentiment::Negative) => streak += 1,
                Some(_) => streak = 0,
                None => {}
            }
            if self.negative_streak > 0 && streak == self.negative_streak {
                reasons.push(Flag {
                    reason: EscalationReason::NegativeStreak,
                    turn: t.seq,
                    detail: format!("{streak} negative customer turns in a row"),
                });
            }
            if let Some(v) = t.valence {
                if let Some(prev) = last_valence
                    && self.sharp_drop > 0.0
                    && prev - v >= self.sharp_drop
                {
                    reasons.push(Flag {
                        reason: EscalationReason::SharpDrop,
                        turn: t.seq,
                        detail: format!("mood fell from {prev:.2} to {v:.2}"),
                    });
                }
                last_valence = Some(v);
            }
        }
        Escalation {
            flagged: !reasons.is_empty(),
            priority: false,
            reasons,
        }
    }
}

/// The customer's emotions across the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EmotionTrend {
    /// Each emotion's score on each read customer turn, oldest first.
    #[schema(value_type = Object)]
    pub scores: BTreeMap<Emotion, Vec<f32>>,
    /// The emotions the latest read customer turn shows.
    pub current: Vec<Emotion>,
    /// Emotions whose latest score is at least 0.2 above their mean over the turns before.
    pub rising: Vec<Emotion>,
}

pub fn emotion_trend(turns: &[Turn]) -> EmotionTrend {
    let read: Vec<&TurnEmotions> = turns
        .iter()
        .filter(|t| t.role == Role::Customer)
        .filter_map(|t| t.emotions.as_ref())
        .collect();
    let mut scores: BTreeMap<Emotion, Vec<f32>> = BTreeMap::new();
    for e in &read {
        for (emotion, s) in &e.scores {
            scores.entry(*emotion).or_default().push(*s);
        }
    }
    let rising = scores
        .iter()
        .filter_map(|(e, s)| {
            let (last, before) = s.split_last()?;
            let mean = before.iter().sum::<f32>() / before.len().max(1) as f32;
            (!before.is_empty() && last - mean >= 0.2).then_some(*e)
        })
        .collect();
    EmotionTrend {
        current: read.last().map(|e| e.present.clone()).unwrap_or_default(),
        scores,
        rising,
    }
}

pub fn mood_trend(turns: &[Turn]) -> MoodTrend {
    let valences: Vec<f32> = turns
        .iter()
        .filter(|t| t.role == Role::Customer)
        .filter_map(|t| t.valence)
        .collect();
    let direction = match valences.split_last() {
        Some((last, before)) if !before.is_empty() => {
            let mean = before.iter().sum::<f32>() / before.len() as f32;
            if last - mean > 0.3 {
                MoodDirection::Improving
            } else if mean - last > 0.3 {
                MoodDirection::Worsening
            } else {
                MoodDirection::Steady
            }
        }
        _ => MoodDirection::Unknown,
    };
    MoodTrend {
        valences,
        direction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(seq: i64, role: &str, text: &str, mood: Option<(&str, f32)>) -> Turn {
        Turn {
            seq,
            role: role.parse().unwrap(),
            channel: crate::vocab::Channel::Chat,
            text: text.into(),
            at: String::new(),
            sentiment: mood.map(|m| m.0.parse().unwrap()),
            valence: mood.map(|m| m.1),
            language: None,
            emotions: None,
            intent: None,
        }
    }

    #[test]
    fn two_negative_turns_in_a_row_flag_at_the_second() {
        let turns = vec![
            turn(1, "customer", "hi", Some(("neutral", 0.0))),
            turn(2, "bot", "hello", None),
            turn(3, "customer", "still broken", Some(("negative", -0.6))),
            turn(4, "bot", "sorry", None),
            turn(5, "customer", "useless", Some(("negative", -0.8))),
        ];
        let e = EscalationPolicy::default().assess(&turns);
        assert!(e.flagged);
        assert_eq!(e.reasons[0].reason.as_str(), "negative_streak");
        assert_eq!(e.reasons[0].turn, 5);
        assert_eq!(mood_trend(&turns).direction.as_str(), "worsening");
    }

    #[test]
    fn a_calm_conversation_and_a_single_complaint_are_not_flagged() {
        let turns = vec![
            turn(1, "customer", "my router is slow", Some(("negative", -0.4))),
            turn(2, "customer", "ok I restarted it", Some(("neutral", 0.1))),
            turn(3, "customer", "works now, thanks", Some(("positive", 0.7))),
        ];
        let e = EscalationPolicy::default().assess(&turns);
        assert!(!e.flagged, "{e:?}");
        assert_eq!(mood_trend(&turns).direction.as_str(), "improving");
    }

    #[test]
    fn asking_for_a_person_flags_in_both_languages() {
        for text in [
            "I want to talk to a real person",
            "let me speak to a human agent",
            "转人工",
            "我要找真人客服",
        ] {
            let e = EscalationPolicy::default().assess(&[turn(1, "customer", text, None)]);
            assert_eq!(
                e.reasons.first().map(|f| f.reason.as_str()),
                Some("human_requested"),
                "{text}"
            );
        }
        assert!(!asks_for_human("is the personal plan cheaper?"));
    }

    #[test]
    fn a_strong_emotion_flags_once_at_the_first_turn_that_shows_it() {
        let angry = |seq, score| {
            let mut t = turn(seq, "customer", "…", None);
            t.emotions = Some(TurnEmotions {
                present: vec![Emotion::Anger],
                scores: [(Emotion::Anger, score)].into_iter().collect(),
            });
            t
        };
        let e = EscalationPolicy::default().assess(&[angry(1, 0.5), angry(2, 0.9), angry(3, 0.95)]);
        assert_eq!(e.reasons.len(), 1, "{e:?}");
        assert_eq!(
            (e.reasons[0].reason, e.reasons[0].turn),
            (EscalationReason::StrongEmotion, 2)
        );
        assert_eq!(
            emotion_trend(&[angry(1, 0.5), angry(2, 0.9)]).rising,
            vec![Emotion::Anger]
        );
        let calm = EscalationPolicy {
            emotions: Default::default(),
            ..EscalationPolicy::default()
        };
        assert!(!calm.assess(&[angry(1, 0.99)]).flagged);
    }

    #[test]
    fn a_sharp_drop_flags() {
        let turns = vec![
            turn(1, "customer", "great", Some(("positive", 0.8))),
            turn(2, "customer", "wait, what?", Some(("neutral", -0.5))),
        ];
        let e = EscalationPolicy::default().assess(&turns);
        assert_eq!(e.reasons[0].reason.as_str(), "sharp_drop");
    }
}
