//! Questions across languages. e5-small ranks a card well among the cards of its own language
//! even for a question in the other one (right card first for 0.78 of the eval's cross-language
//! questions when search is limited to the card's language), but it scores that card below
//! same-language cards on other topics, and the card shares no keyword with the question: over
//! the whole knowledge base the right card came first for 0.21 of them, and its score fell under
//! the answer threshold. So the chat model translates the question into each other language the
//! published cards are written in, and that language's cards are searched with the translation:
//! scored as a same-language question, so that keywords, the language offset and the answer
//! threshold mean for it what they mean for any other.
//!
//! The other way, translating every card once at publish, costs a generation per card and per
//! edit, and the 0.5B model garbled the numbers of card bodies; a question is short, and its
//! translation only steers retrieval: it is never shown to a customer.

use super::answer::{Answerer, language_name};
use super::retrieval::{Filters, Hit};
use crate::config::AcrossLanguages;
use crate::error::Result;
use crate::runtime::generate::{ChatMessage, SamplingParams, collect};
use crate::text::detect_language;

const SYSTEM: &str = "You are a translator. You translate text; you never answer it.";

/// Longest question translated, in characters: a question, not a document (a longer one is
/// searched in its own language only).
const MAX_CHARS: usize = 600;

impl Answerer {
    /// `text` in `language` (a code such as `zh`), by the chat model: None without one, for a
    /// text too long to be a question, or when the model gives back nothing.
    pub async fn translate(&self, text: &str, language: &str) -> Result<Option<String>> {
        let text = text.trim();
        let Some(g) = self.generator() else {
            return Ok(None);
        };
        if text.is_empty() || text.chars().count() > MAX_CHARS {
            return Ok(None);
        }
        let user = format!(
            "Translate into {}. Reply with the translation only.\n\n{text}",
            language_name(language)
        );
        let prompt = g.render_chat(&[
            ChatMessage::new("system", SYSTEM),
            ChatMessage::new("user", user),
        ])?;
        // A translation is about as long as the text; the first line break ends it (a small
        // model that starts answering instead tends to go on with a list).
        let params = SamplingParams {
            max_tokens: g.count_tokens(text)? * 2 + 16,
            stop: vec!["\n".into()],
            ..SamplingParams::default()
        };
        let (out, ..) = collect(g.generate(prompt, params)?).await?;
        let out = out.trim();
        Ok((!out.is_empty()).then(|| out.to_string()))
    }

    /// Whether a question whose best card falls short is searched again, translated
    /// (`answer.across_languages`). Only when the customer's own words fall short: a question
    /// the first stage answers keeps its card and costs no generation.
    pub(super) async fn translates(&self, question: &str) -> Result<bool> {
        Ok(match self.cfg.across_languages {
            AcrossLanguages::Off => false,
            AcrossLanguages::BelowThreshold => true,
            AcrossLanguages::NoCardsInLanguage => {
                let own = detect_language(question);
                !self
                    .knowledge
                    .languages()
                    .await?
                    .iter()
                    .any(|l| primary(l) == own)
            }
        })
    }

    /// The hits of `query` translated into each language of the published cards other than its
    /// own (only into `filters.language` when that is given), each searched among that
    /// language's cards, its score less `answer.translation_penalty`. Every hit carries the
    /// translation that found it. Empty without a chat model.
    pub async fn search_across(
        &self,
        query: &str,
        top_k: usize,
        filters: &Filters,
    ) -> Result<Vec<Hit>> {
        let own = detect_language(query);
        let targets = match &filters.language {
            Some(l) => vec![l.trim().to_lowercase()],
            None => self.knowledge.languages().await?,
        };
        let mut hits = Vec::new();
        for language in targets.into_iter().filter(|l| primary(l) != own) {
            let Some(translated) = self.translate(query, &language).await? else {
                continue;
            };
            let f = Filters {
                language: Some(language),
                ..filters.clone()
            };
            for mut h in self.knowledge.search(&translated, top_k, f).await? {
                h.score = (h.score - self.cfg.translation_penalty).max(0.0);
                h.translated_query = Some(translated.clone());
                hits.push(h);
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }
}

/// The primary subtag of a language tag: `zh` for `zh-TW`, as `detect_language` names them.
pub(super) fn primary(tag: &str) -> String {
    tag.split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// `extra` merged into `hits`: the better score of each card, best first, at most `top_k`.
pub fn merge(mut hits: Vec<Hit>, extra: Vec<Hit>, top_k: usize) -> Vec<Hit> {
    for h in extra {
        match hits.iter_mut().find(|x| x.card_id == h.card_id) {
            Some(x) if x.score >= h.score => {}
            Some(x) => *x = h,
            None => hits.push(h),
        }
    }
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.card_id.cmp(&b.card_id))
    });
    hits.truncate(top_k);
    hits
}
