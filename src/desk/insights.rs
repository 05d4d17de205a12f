//! What the service's record says: analytics reports over a time range, each card's record and
//! the review queue it orders, and knowledge gaps. A gap reads top to bottom: the questions handed
//! off for want of a card (or rated down) in the range, their topic vectors, clustered; the
//! previous window's questions counted against each gap; then what is known about each (its
//! languages, examples, drafts mined from its conversations).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::mining::Miner;
use crate::config::InsightsConfig;
use crate::conversation::Conversations;
use crate::error::{Error, Result, blocking};
use crate::knowledge::card::CardInput;
use crate::knowledge::gaps;
use crate::knowledge::mining::Scrubber;
use crate::knowledge::{Actor, Knowledge};
use crate::store::insights::{CardRecord, Flag, HandedOff, Range, Table};
use crate::store::{Card, Store, rfc3339};
use crate::text::detect_language;
use crate::vocab::{Granularity, Report, Role};

/// A time range as asked for: `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

impl Window {
    fn range(&self) -> Range {
        Range {
            from: rfc3339(self.from),
            to: rfc3339(self.to),
        }
    }

    /// The window of the same length just before this one.
    fn previous(&self) -> Range {
        Window {
            from: self.from - (self.to - self.from),
            to: self.from,
        }
        .range()
    }
}

/// A group of questions no card answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Gap {
    /// The answer id of its label question: stable while the gap's members do not change.
    pub id: String,
    /// The question most like the others.
    pub label: String,
    pub questions: u64,
    /// Questions of the previous window of the same length that belong to it.
    pub previous: u64,
    /// `questions / previous - 1`; null when the previous window had none.
    pub change: Option<f64>,
    /// At least doubled, with at least `insights.spike_min` questions.
    pub spike: bool,
    /// Questions per language.
    pub languages: BTreeMap<String, u64>,
    /// Up to three other questions, as asked (personal data masked).
    pub examples: Vec<String>,
    /// Every question's answer id: what `POST /v1/gaps/draft` takes.
    pub answer_ids: Vec<String>,
    pub conversation_ids: Vec<String>,
    /// Cards mined from its conversations: a draft exists.
    pub drafts: Vec<String>,
}

/// What "draft a card for this gap" did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GapDraft {
    /// Conversations an agent answered in, queued for mining (their replies draft the card).
    pub queued: Vec<String>,
    /// When no agent answered any of them (or mining is off): a draft card holding the
    /// questions, for an admin to write the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GapDraftRequest {
    /// The gap's `answer_ids`.
    pub answer_ids: Vec<String>,
}

pub struct Insights {
    store: Arc<Store>,
    conversations: Arc<Conversations>,
    knowledge: Arc<Knowledge>,
    miner: Arc<Miner>,
    /// What mining removes from a conversation (names, codes, addresses) is removed from the
    /// questions a gap shows and a gap's draft card holds, beyond the masking at rest.
    scrubber: Scrubber,
    cfg: InsightsConfig,
}

impl Insights {
    pub fn new(
        knowledge: Arc<Knowledge>,
        conversations: Arc<Conversations>,
        miner: Arc<Miner>,
        cfg: InsightsConfig,
        allow: &[String],
    ) -> Self {
        Insights {
            store: knowledge.store().clone(),
            conversations,
            knowledge,
            miner,
            scrubber: Scrubber::new(allow),
            cfg,
        }
    }

    /// The window asked for: up to `to` (now when absent), from `from` (a week before `to`
    /// when absent). Refused when it is empty or longer than two years.
    pub fn window(
        &self,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
    ) -> Result<Window> {
        let to = to.unwrap_or_else(|| self.store.clock_now());
        let from = from.unwrap_or(to - time::Duration::days(7));
        if from >= to {
            return Err(Error::invalid("from must be before to"));
        }
        if to - from > time::Duration::days(731) {
            return Err(Error::invalid("the range may span at most two years"));
        }
        Ok(Window { from, to })
    }

    /// One report over the window, as a table.
    pub async fn report(&self, report: Report, w: Window, g: Granularity) -> Result<Table> {
        if report == Report::Gaps {
            return Ok(gap_table(&self.gaps(w).await?));
        }
        let (store, range, previous) = (self.store.clone(), w.range(), w.previous());
        let spike_min = self.cfg.spike_min;
        blocking(move || match report {
            Report::Volume => store.volume(&range, g),
            Report::Deflection => store.deflection(&range, g),
            Report::Handoffs => store.handoffs(&range, g),
            Report::Satisfaction => store.satisfaction(&range, g),
            Report::Sentiment => store.sentiment(&range, g),
            Report::Emotions => store.emotions(&range, g),
            Report::Topics => store.topics(&range, &previous, spike_min),
            Report::TopCards => Ok(record_table(&store.card_records(&range, false)?)),
            Report::WeakCards => Ok(record_table(&store.card_records(&range, true)?)),
            Report::Gaps => unreachable!("answered above"),
        })
        .await
    }

    /// Cards in review and flagged cards, the most pressing first.
    pub async fn review_queue(&self, limit: usize) -> Result<Vec<(CardRecord, Vec<Flag>)>> {
        let store = self.store.clone();
        blocking(move || store.review_queue(limit)).await
    }

    /// A card's record over all time, with its open flags.
    pub async fn card_record(&self, id: &str) -> Result<(CardRecord, Vec<Flag>)> {
        crate::conversation::validate_id("card id", id)?;
        let (store, id) = (self.store.clone(), id.to_string());
        blocking(move || store.card_record(&id))
            .await?
            .ok_or_else(|| Error::NotFound("no card with that id".into()))
    }

    /// The knowledge gaps of the window, largest first.
    pub async fn gaps(&self, w: Window) -> Result<Vec<Gap>> {
        // 1. The questions, this window's and the previous one's.
        let (store, range, previous, cap) = (
            self.store.clone(),
            w.range(),
            w.previous(),
            self.cfg.gap_questions,
        );
        let (now, before) = blocking(move || {
            Ok((
                store.gap_questions(&range, cap)?,
                store.gap_questions(&previous, cap)?,
            ))
        })
        .await?;
        if now.is_empty() {
            return Ok(Vec::new());
        }
        // 2. Their topic vectors, and the groups they form.
        let texts = |qs: &[HandedOff]| qs.iter().map(|q| q.question.clone()).collect();
        let vectors = self.conversations.topic_vectors(texts(&now)).await?;
        let earlier = self.conversations.topic_vectors(texts(&before)).await?;
        // 3. The previous window counted against each group. Clustering is quadratic in the
        // questions (2,000 by default: about a second): off the reactor.
        let similarity = self.cfg.gap_similarity;
        let (clusters, previous) = tokio::task::spawn_blocking(move || {
            let clusters = gaps::cluster(&vectors, similarity);
            let mut previous = vec![0u64; clusters.len()];
            for v in &earlier {
                if let Some(k) = gaps::assign(&vectors, &clusters, v, similarity) {
                    previous[k] += 1;
                }
            }
            (clusters, previous)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("clustering failed: {e}")))?;
        // 4. Each group as a gap, with the drafts mined from its conversations.
        let groups: Vec<Vec<String>> = clusters
            .iter()
            .map(|c| {
                let mut ids: Vec<String> = c
                    .members
                    .iter()
                    .map(|&i| now[i].conversation_id.clone())
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            })
            .collect();
        let (store, asked) = (self.store.clone(), groups.clone());
        let drafts = blocking(move || {
            asked
                .iter()
                .map(|convs| store.cards_mined_from(convs))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let mut out = Vec::with_capacity(clusters.len());
        for (((c, before), conversation_ids), drafts) in
            clusters.iter().zip(previous).zip(groups).zip(drafts)
        {
            let label = &now[c.representative];
            let shown = |q: &HandedOff| self.scrubber.scrub(&q.question);
            let members: Vec<&HandedOff> = c.members.iter().map(|&i| &now[i]).collect();
            let mut languages = BTreeMap::new();
            for q in &members {
                *languages
                    .entry(detect_language(&q.question).to_string())
                    .or_insert(0) += 1;
            }
            let questions = members.len() as u64;
            out.push(Gap {
                id: label.answer_id.clone(),
                label: shown(label),
                questions,
                previous: before,
                change: (before > 0).then(|| round(questions as f64 / before as f64 - 1.0)),
                spike: questions >= self.cfg.spike_min && questions >= 2 * before,
                languages,
                examples: members
                    .iter()
                    .filter(|q| q.answer_id != label.answer_id)
                    .take(3)
                    .map(|q| shown(q))
                    .collect(),
                answer_ids: members.iter().map(|q| q.answer_id.clone()).collect(),
                conversation_ids,
                drafts,
            });
        }
        Ok(out)
    }

    /// Starts a card for a gap: from the agents' replies in its conversations when an agent
    /// answered any of them and mining is on (mining jobs, drafts land in review; a conversation
    /// mined already is not queued again), else a draft card listing the questions for an admin
    /// to answer.
    pub async fn draft_for_gap(&self, req: GapDraftRequest, actor: &Actor) -> Result<GapDraft> {
        if req.answer_ids.is_empty() || req.answer_ids.len() > self.cfg.gap_questions {
            return Err(Error::invalid(format!(
                "answer_ids must list 1 to {} answers",
                self.cfg.gap_questions
            )));
        }
        for id in &req.answer_ids {
            crate::conversation::validate_id("answer id", id)?;
        }
        let (store, ids) = (self.store.clone(), req.answer_ids.clone());
        let (questions, answered) = blocking(move || {
            let mut questions = Vec::new();
            for id in &ids {
                let a = store.get_answer(id)?.ok_or_else(|| {
                    crate::store::StoreError::NotFound(format!("no answer with id {id}"))
                })?;
                questions.push((a.conversation_id, a.question));
            }
            let mut convs: Vec<String> = questions.iter().map(|(c, _)| c.clone()).collect();
            convs.sort();
            convs.dedup();
            let mut answered = Vec::new();
            for c in convs {
                if store.has_turn_by(&c, Role::Agent)? {
                    answered.push(c);
                }
            }
            Ok((questions, answered))
        })
        .await?;
        if self.miner.enabled() && !answered.is_empty() {
            let mut queued = Vec::new();
            for c in &answered {
                if self.miner.learn_from(c).await? {
                    queued.push(c.clone());
                }
            }
            return Ok(GapDraft { queued, card: None });
        }
        let mut asked: Vec<String> = questions
            .iter()
            .map(|(_, q)| self.scrubber.scrub(q))
            .collect();
        asked.dedup();
        let title = asked[0].chars().take(120).collect::<String>();
        let body = format!(
            "Customers asked this and no card answered it. Write the answer here.\n\n{}",
            asked
                .iter()
                .take(20)
                .map(|q| format!("- {q}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let card = self
            .knowledge
            .create(
                CardInput {
                    title,
                    body,
                    tags: vec!["gap".into()],
                    language: Some(detect_language(&asked[0]).into()),
                    channels: Vec::new(),
                },
                actor,
            )
            .await?;
        Ok(GapDraft {
            queued: Vec::new(),
            card: Some(card),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn record_table(records: &[CardRecord]) -> Table {
    Table {
        columns: vec![
            "card_id",
            "title",
            "status",
            "language",
            "cited",
            "rated_up",
            "rated_down",
            "handoffs_after",
            "open_flags",
            "evidence",
        ],
        rows: records
            .iter()
            .map(|r| {
                vec![
                    json!(r.card_id),
                    json!(r.title),
                    json!(r.status),
                    json!(r.language),
                    json!(r.cited),
                    json!(r.rated_up),
                    json!(r.rated_down),
                    json!(r.handoffs_after),
                    json!(r.open_flags),
                    json!(r.evidence),
                ]
            })
            .collect(),
    }
}

/// Gaps as a flat table (lists joined), for CSV.
fn gap_table(gaps: &[Gap]) -> Table {
    Table {
        columns: vec![
            "gap_id",
            "label",
            "questions",
            "previous",
            "change",
            "spike",
            "languages",
            "examples",
            "drafts",
        ],
        rows: gaps
            .iter()
            .map(|g| {
                vec![
                    json!(g.id),
                    json!(g.label),
                    json!(g.questions),
                    json!(g.previous),
                    json!(g.change),
                    json!(g.spike),
                    json!(
                        g.languages
                            .iter()
                            .map(|(l, n)| format!("{l}:{n}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    json!(g.examples.join(" | ")),
                    json!(g.drafts.join(" ")),
                ]
            })
            .collect(),
    }
}
