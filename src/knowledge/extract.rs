//! Replies in the card's own words. Once retrieval has found the card that covers a question,
//! the reply is the card's sentences closest in meaning to the question, in the card's order,
//! as many as the channel has room for. Read one by one, the 0.5B chat model's replies to covered
//! questions contradicted the card they cited (a "No." where the card says yes, a duty charged
//! where the card says the price includes it) or added steps of their own; an extract cannot.
//! The chat model is still used where only it can help: a reply to a customer who writes
//! another language than the card is the extract translated (and the number check of
//! `knowledge::support` still applies to the translation).

use super::answer::Answerer;
use super::translate::primary;
use crate::error::Result;
use crate::runtime::embed::TextKind;
use crate::text::{detect_language, is_cjk, sentences};
use crate::vecmath::dot;
use crate::vocab::Channel;

/// How much of a card one reply carries: sentences, and characters (the best sentence is
/// always kept whole, whatever its length).
fn room(channel: Channel) -> (usize, usize) {
    match channel {
        // Read aloud: one or two sentences a caller can hold in mind.
        Channel::Voice => (2, 260),
        Channel::Chat | Channel::Social | Channel::Agent => (3, 420),
        Channel::Email => (8, 1600),
    }
}

/// An extracted reply.
pub struct Extract {
    pub text: String,
    /// The language the text is in: the customer's, or the card's when it could not be
    /// translated (no chat model, or a passage too long to translate).
    pub language: String,
}

impl Answerer {
    /// The reply to `question` drawn from `body` (the best card's text) for `channel`, in
    /// `language` when it can be.
    pub(super) async fn extract(
        &self,
        question: &str,
        body: &str,
        channel: Channel,
        language: &str,
    ) -> Result<Extract> {
        let text = pick(&self.rank(question, body).await?, room(channel));
        let card_language = detect_language(&text);
        if card_language == primary(language) {
            return Ok(Extract {
                text,
                language: language.to_string(),
            });
        }
        Ok(match self.translate(&text, language).await? {
            Some(t) => Extract {
                text: t,
                language: language.to_string(),
            },
            None => Extract {
                text,
                language: card_language.to_string(),
            },
        })
    }

    /// The body's sentences with their similarity to the question, in the body's order.
    async fn rank(&self, question: &str, body: &str) -> Result<Vec<(String, f32)>> {
        let units: Vec<String> = body
            .split("\n\n")
            .flat_map(sentences)
            .map(|s| s.trim().to_string())
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .collect();
        if units.len() <= 1 {
            return Ok(units.into_iter().map(|s| (s, 1.0)).collect());
        }
        let embedder = self.knowledge.embedder();
        let (q, s) = tokio::join!(
            embedder.embed(vec![question.to_string()], TextKind::Query),
            embedder.embed(units.clone(), TextKind::Passage)
        );
        let q = q?.remove(0);
        Ok(units
            .into_iter()
            .zip(s?)
            .map(|(u, v)| (u, dot(&q, &v)))
            .collect())
    }
}

/// The best sentences that fit in `(sentences, chars)`, best first until full, then put back in
/// the card's order and joined as the card's script writes them.
fn pick(ranked: &[(String, f32)], (max_sentences, max_chars): (usize, usize)) -> String {
    let mut order: Vec<usize> = (0..ranked.len()).collect();
    order.sort_by(|&a, &b| ranked[b].1.total_cmp(&ranked[a].1));
    let mut chosen = Vec::new();
    let mut chars = 0;
    for i in order {
        let len = ranked[i].0.chars().count();
        if !chosen.is_empty() && (chosen.len() == max_sentences || chars + len > max_chars) {
            continue;
        }
        chosen.push(i);
        chars += len;
    }
    chosen.sort_unstable();
    let mut out = String::new();
    for i in chosen {
        let s = &ranked[i].0;
        let joins_words = out
            .chars()
            .next_back()
            .is_some_and(|c| !is_cjk(c) && !"。！？；".contains(c))
            || s.chars().next().is_some_and(|c| !is_cjk(c));
        if !out.is_empty() && joins_words {
            out.push(' ');
        }
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(items: &[(&str, f32)]) -> Vec<(String, f32)> {
        items.iter().map(|(s, v)| (s.to_string(), *v)).collect()
    }

    #[test]
    fn the_best_sentences_are_kept_in_the_cards_order() {
        let r = ranked(&[
            ("Returns are free.", 0.80),
            ("Refunds take 5 days.", 0.90),
            ("Keep the receipt.", 0.70),
            ("Gift cards are final.", 0.85),
        ]);
        assert_eq!(
            pick(&r, (2, 400)),
            "Refunds take 5 days. Gift cards are final."
        );
        // The character budget leaves out a sentence that does not fit, not the best one.
        assert_eq!(pick(&r, (3, 10)), "Refunds take 5 days.");
    }

    #[test]
    fn chinese_sentences_are_joined_without_spaces() {
        let r = ranked(&[("可以当场拒收。", 0.9), ("运费不退。", 0.8)]);
        assert_eq!(pick(&r, (3, 400)), "可以当场拒收。运费不退。");
        let mixed = ranked(&[("支持 3、6、12 期。", 0.9), ("Apple Pay is accepted.", 0.8)]);
        assert_eq!(
            pick(&mixed, (3, 400)),
            "支持 3、6、12 期。 Apple Pay is accepted."
        );
    }
}
