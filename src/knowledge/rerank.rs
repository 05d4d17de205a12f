//! The second stage: read a question and a passage together and say how well the passage answers
//! it. Retrieval compares two vectors made apart (and a bag of words); it ranks the right card
//! near the top but cannot tell "this passage answers it" from "this passage is about the same
//! thing" (a fee no card mentions, on the product the cards are about), and across languages its
//! scores are lower for right answers than for wrong same-language ones.
//!
//! No cross-encoder can be had here (every reranker package downloads its model at run time), so
//! the judge is the chat model itself, asked one yes/no question per passage; the score is the
//! probability it puts on "Yes" as its first token against "No" (Zheng et al., 2023, "Judging
//! LLM-as-a-judge"; the pointwise relevance generation of Liang et al., 2022, HELM). One forward
//! pass over the prompt per passage, no generation. Without a chat model the score is the
//! embedder's cosine between question and passage, which ranks but does not judge.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::runtime::ModelError;
use crate::runtime::embed::{EmbedPool, TextKind};
use crate::runtime::generate::{ChatMessage, GenPool, judgement};
use crate::vecmath::dot;

/// What the judge reads of a passage, in characters: a card's answer is in its first lines, and
/// a short prompt keeps one judgement near the cost of one short prompt.
const JUDGE_PASSAGE_CHARS: usize = 1200;

const JUDGE_SYSTEM: &str = "You check a help-centre article against a customer's question. \
The question and the article may be in different languages. Reply with one word: Yes if the \
article states the answer to the question, No if it does not (for example when it is about the \
same product or topic but does not say what the customer asks).";

/// Which model produced the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// The chat model's probability of "Yes, the passage answers the question", in [0, 1].
    Judge,
    /// The embedder's cosine between question and passage (no chat model is loaded).
    Embedder,
}

pub struct Reranker {
    embed: EmbedPool,
    generator: Option<GenPool>,
}

impl Reranker {
    pub fn new(embed: EmbedPool, generator: Option<GenPool>) -> Self {
        Reranker { embed, generator }
    }

    /// The model that scores: the chat model's id, or the embedder's.
    pub fn model(&self) -> String {
        match &self.generator {
            Some(g) => g.id().to_string(),
            None => self.embed.id().to_string(),
        }
    }

    /// How well each passage answers `query`, in the order given.
    pub async fn score(&self, query: &str, passages: &[String]) -> Result<(Vec<f32>, Scorer)> {
        match &self.generator {
            Some(g) => Ok((judge(g, query, passages).await?, Scorer::Judge)),
            None => {
                let q = self
                    .embed
                    .embed(vec![query.to_string()], TextKind::Query)
                    .await?
                    .pop()
                    .unwrap_or_default();
                let vs = self
                    .embed
                    .embed(passages.to_vec(), TextKind::Passage)
                    .await?;
                Ok((vs.iter().map(|v| dot(&q, v)).collect(), Scorer::Embedder))
            }
        }
    }
}

/// The judge's prompt for one passage.
fn judge_prompt(g: &GenPool, query: &str, passage: &str) -> Result<String> {
    let passage = crate::text::shorten(passage.trim(), JUDGE_PASSAGE_CHARS);
    let user = format!(
        "Article:\n{passage}\n\nQuestion: {}\n\nDoes the article state the answer to the question? Reply Yes or No.",
        query.trim()
    );
    Ok(g.render_chat(&[
        ChatMessage::new("system", JUDGE_SYSTEM),
        ChatMessage::new("user", user),
    ])?)
}

/// Every passage judged at once: the generation worker reads the prompts side by side.
async fn judge(g: &GenPool, query: &str, passages: &[String]) -> Result<Vec<f32>> {
    let mut pending = Vec::with_capacity(passages.len());
    for p in passages {
        let prompt = judge_prompt(g, query, p)?;
        pending.push(judgement(
            g.judge(prompt, &[&["Yes", "yes"], &["No", "no"]])?,
        ));
    }
    let shares = futures::future::try_join_all(pending).await?;
    shares
        .into_iter()
        .map(|s| {
            s.first().copied().ok_or_else(|| {
                Error::Model(ModelError::Inference("the judge returned no choice".into()))
            })
        })
        .collect()
}
