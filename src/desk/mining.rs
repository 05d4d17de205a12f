//! Mining: a conversation a person resolved becomes a card in review, or more evidence for the
//! card it repeats. Reads top to bottom: take the job, read the conversation, draft (the model
//! writes from the agent's replies, scrubbed), compare with the cards there are, then store a
//! new card in review or add the evidence, and finish the job.
//!
//! Jobs live in the store (`store::jobs`), so a restart loses none: the worker queues again what
//! was running when the process stopped. One worker per process runs them one at a time: mining
//! is background work and must not take the chat model from customers for long.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::config::MiningConfig;
use crate::conversation::validate_id;
use crate::error::{Error, Result, blocking};
use crate::knowledge::Knowledge;
use crate::knowledge::answer::Answerer;
use crate::knowledge::mining::{Draft, Drafter, MinedTurn, same_answer};
use crate::runtime::embed::TextKind;
use crate::store::jobs::{Job, JobCounts};
use crate::store::mined::NewEvidence;
use crate::store::{CardContent, Store, conversations::Party};
use crate::vecmath;
use crate::vocab::{JobKind, JobState, Role};

/// Who mined cards are created by, in the audit log.
const ACTOR: &str = "kefu:mining";
/// How often an idle worker looks for work a notification did not announce (another process,
/// `kefu mine`, wrote it).
const IDLE_POLL: Duration = Duration::from_secs(30);
/// The pause after a failed attempt, times the attempts so far.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

pub struct Miner {
    store: Arc<Store>,
    knowledge: Arc<Knowledge>,
    drafter: Drafter,
    cfg: MiningConfig,
    wake: Notify,
}

/// What one job did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new card in review, and the nearest card there was (below the merge threshold).
    Created {
        card: String,
        nearest: Option<(String, f32)>,
    },
    /// More evidence for an existing card.
    Merged { card: String, similarity: f32 },
    /// Nothing to learn (no agent reply), or mined already.
    Skipped { why: String },
}

impl Miner {
    pub fn new(
        knowledge: Arc<Knowledge>,
        answerer: Arc<Answerer>,
        cfg: MiningConfig,
        allow: &[String],
    ) -> Self {
        Miner {
            store: knowledge.store().clone(),
            knowledge,
            drafter: Drafter::new(answerer, allow),
            cfg,
            wake: Notify::new(),
        }
    }

    /// Whether resolved conversations are mined (`mining.enabled`).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Queues a draft from the conversation (when mining is on and a person answered in it) and
    /// wakes the worker: it was resolved, or an admin asked for a card for its gap.
    pub async fn learn_from(&self, conversation_id: &str) -> Result<bool> {
        if !self.cfg.enabled {
            return Ok(false);
        }
        let (store, id) = (self.store.clone(), conversation_id.to_string());
        let queued = blocking(move || {
            if store.has_turn_by(&id, Role::Agent)? {
                store.enqueue_job(JobKind::DraftFromConversation, &id)
            } else {
                Ok(false)
            }
        })
        .await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Queues every resolved conversation a person answered in that no job has taken up
    /// (`kefu mine`: conversations from before mining was on). Returns how many.
    pub async fn queue_unmined(&self) -> Result<usize> {
        let store = self.store.clone();
        blocking(move || {
            let ids = store.unmined_resolved_conversations()?;
            let mut n = 0;
            for id in ids {
                n += usize::from(store.enqueue_job(JobKind::DraftFromConversation, &id)?);
            }
            Ok(n)
        })
        .await
    }

    pub async fn jobs(&self, state: Option<JobState>, limit: usize) -> Result<Vec<Job>> {
        let store = self.store.clone();
        blocking(move || store.jobs(state, limit)).await
    }

    /// How many jobs are in each state, read on this thread: call it off the reactor (the
    /// metrics scrape does).
    pub fn counts_blocking(&self) -> Result<JobCounts> {
        Ok(self.store.job_counts()?)
    }

    pub async fn counts(&self) -> Result<JobCounts> {
        let store = self.store.clone();
        blocking(move || store.job_counts()).await
    }

    /// A card's evidence: the conversations it was mined from.
    pub async fn evidence(&self, card_id: &str) -> Result<Vec<crate::store::mined::Evidence>> {
        validate_id("card id", card_id)?;
        self.knowledge.get(card_id).await?;
        let (store, id) = (self.store.clone(), card_id.to_string());
        blocking(move || store.evidence(&id)).await
    }

    /// Runs jobs until none is queued; `each` hears of every finished one. What `kefu mine`
    /// and the worker both do.
    pub async fn drain(&self, mut each: impl FnMut(&Job, &Result<Outcome>)) -> Result<usize> {
        let mut ran = 0;
        loop {
            let store = self.store.clone();
            let Some(job) = blocking(move || store.claim_job()).await? else {
                return Ok(ran);
            };
            let outcome = self.run(&job).await;
            let stored = match &outcome {
                Ok(o) => Ok(outcome_json(o)),
                Err(e) => Err(e.to_string()),
            };
            let (store, id, kind, subject) =
                (self.store.clone(), job.id, job.kind, job.subject.clone());
            // A failure may be passing (a full model queue): it is queued again, up to the
            // configured attempts, and then stays failed with its reason for an admin to see.
            let retry = outcome.is_err() && job.attempts < i64::from(self.cfg.max_attempts);
            blocking(move || {
                store.finish_job(id, stored)?;
                if retry {
                    store.enqueue_job(kind, &subject)?;
                }
                Ok(())
            })
            .await?;
            if let Err(e) = &outcome {
                tracing::warn!(job = job.id, subject = %job.subject, error = %e, "mining job failed");
                // A busy chat model is the likely cause: give it room before the next attempt.
                tokio::time::sleep(RETRY_PAUSE * job.attempts.clamp(1, 10) as u32).await;
            }
            each(&job, &outcome);
            ran += 1;
        }
    }

    /// The background worker: queues again what a stopped process left running, then runs
    /// jobs as they come.
    pub fn spawn(self: &Arc<Self>) {
        if !self.cfg.enabled {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let store = me.store.clone();
            match blocking(move || store.requeue_running_jobs()).await {
                Ok(n) if n > 0 => tracing::info!(jobs = n, "mining jobs resumed after a stop"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "mining jobs could not be resumed"),
            }
            loop {
                if let Err(e) = me.drain(|_, _| {}).await {
                    tracing::error!(error = %e, "mining worker: the job table is unavailable");
                }
                let _ = tokio::time::timeout(IDLE_POLL, me.wake.notified()).await;
            }
        });
    }

    /// One job, top to bottom.
    async fn run(&self, job: &Job) -> Result<Outcome> {
        match job.kind {
            JobKind::DraftFromConversation => self.draft_from(&job.subject).await,
        }
    }

    async fn draft_from(&self, conversation_id: &str) -> Result<Outcome> {
        // 1. Mined already (a job run again after a stop): nothing twice.
        let (store, id) = (self.store.clone(), conversation_id.to_string());
        let (mined, record) = blocking(move || {
            Ok((
                store.mined_from(&id)?,
                store.conversation(&id, &Party::Staff(None))?,
            ))
        })
        .await?;
        if let Some(card) = mined {
            return Ok(Outcome::Skipped {
                why: format!("mined already into card {card}"),
            });
        }
        let Some(record) = record else {
            return Ok(Outcome::Skipped {
                why: "the conversation is gone (erased)".into(),
            });
        };
        // 2. The draft, from the agent's replies, scrubbed.
        let turns: Vec<MinedTurn> = record
            .turns
            .iter()
            .map(|t| MinedTurn {
                seq: t.seq,
                role: t.role,
                text: t.text.clone(),
            })
            .collect();
        let Some(draft) = self.drafter.draft(&turns).await? else {
            return Ok(Outcome::Skipped {
                why: "no agent reply to learn from".into(),
            });
        };
        // 3. The card it repeats, if any: drafts mined before, and published cards.
        let vector = self
            .knowledge
            .embedder()
            .embed(vec![card_text(&draft)], TextKind::Passage)
            .await?
            .pop()
            .ok_or_else(|| Error::Unavailable("the embedder returned no vector".into()))?;
        let store = self.store.clone();
        let mined = blocking(move || store.evidence_vectors()).await?;
        let mut near: Vec<(String, f32)> = mined
            .into_iter()
            .map(|(card, v)| (card, vecmath::dot(&vector, &v)))
            .collect();
        near.extend(self.knowledge.nearest_published(vector.clone()).await?);
        near.sort_by(|a, b| b.1.total_cmp(&a.1));
        let best = near.first().cloned();
        // The nearest card close enough whose answer also states every number this one does:
        // "3 months" and "14 days" answers read alike to the embedder and are not one card.
        let mut repeats = None;
        for (card, similarity) in near.iter().filter(|n| n.1 >= self.cfg.merge_similarity) {
            if repeats.as_ref().is_some_and(|(c, _)| c == card) {
                continue;
            }
            let existing = self.knowledge.get(card).await?;
            if same_answer(&draft.body, &existing.content) {
                repeats = Some((card.clone(), *similarity));
                break;
            }
        }
        let evidence = NewEvidence {
            conversation_id: conversation_id.to_string(),
            turns: draft.turns.clone(),
            question: draft.asked.clone(),
            wording: format!("{}\n\n{}", draft.title, draft.body),
            similarity: None,
            vector,
        };
        // 4. More evidence for that card, or a new card in review.
        if let Some((card, similarity)) = repeats {
            let (store, card_id) = (self.store.clone(), card.clone());
            let evidence = NewEvidence {
                similarity: Some(similarity),
                ..evidence
            };
            blocking(move || store.add_evidence(&card_id, &evidence)).await?;
            return Ok(Outcome::Merged { card, similarity });
        }
        let content = CardContent {
            title: draft.title.clone(),
            body: draft.body.clone(),
            tags: vec!["mined".into()],
            language: draft.language.clone(),
            channels: vec![],
        };
        let findings = self.knowledge.findings(&content);
        let detail = json!({
            "conversation": conversation_id,
            "turns": draft.turns,
            "written_by": draft.written_by,
            "refused_model_draft": draft.refused,
            "compliance": findings,
        });
        let id = uuid::Uuid::now_v7().to_string();
        let store = self.store.clone();
        let card =
            blocking(move || store.create_mined_card(&id, &content, &evidence, ACTOR, &detail))
                .await?;
        Ok(Outcome::Created {
            card: card.id,
            nearest: best,
        })
    }
}

/// What a draft is compared by: its question and answer, as a passage.
fn card_text(d: &Draft) -> String {
    format!("{}\n{}", d.title, d.body)
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Created { card, nearest } => json!({
            "created": card,
            "nearest": nearest.as_ref().map(|(c, s)| json!({ "card": c, "similarity": s })),
        }),
        Outcome::Merged { card, similarity } => {
            json!({ "merged_into": card, "similarity": similarity })
        }
        Outcome::Skipped { why } => json!({ "skipped": why }),
    }
}
