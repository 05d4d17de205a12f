//! The conversation, not only the last question: what the customer says, feels and wants turn
//! by turn, when a human must step in, and who that should be.
//!
//! - [`signals`]: every customer turn read from its one embedding: sentiment, five emotions,
//!   intent (and its language).
//! - [`training`]: the reproducible training of the sentiment and emotion heads (`kefu train
//!   signals`).
//! - [`intents`]: the built-in intent taxonomy and an admin's own, trained again on change.
//! - [`escalation`]: the policy that flags a conversation whose mood is turning, and the mood
//!   and emotion trends.
//! - [`routing`]: the queue and priority a conversation belongs in, by configured rules.
//! - [`handoff`]: what a person taking over needs to know, without reading every turn.
//!
//! [`Conversations`] ties them to the store: every customer turn is read as it arrives, and a
//! conversation's escalation state and route are recomputed from its turns when read, so a
//! changed policy applies to old conversations too.

pub mod escalation;
pub mod handoff;
pub mod intents;
pub mod routing;
pub mod signals;
pub mod training;

use std::sync::Arc;

use serde::Serialize;

use crate::config::PrivacyConfig;
use crate::error::blocking;
use crate::error::{Error, Result};
use crate::pii::Detector;
use crate::store::Store;
use crate::store::answers::AnswerRecord;
pub use crate::store::conversations::ConversationFilter;
pub use crate::store::conversations::Party;
use crate::store::conversations::{
    Contact, ConversationRecord, ConversationSummary, Turn, TurnMood, TurnSignals,
};
use crate::store::customers::{CustomerExport, Removed, Retention};
use crate::text::{guess_language, shorten as truncate};
use crate::vecmath::dot;
use crate::vocab::{Channel, EscalationReason, HandoffReason, Role};
use escalation::{EmotionTrend, Escalation, EscalationPolicy, Flag, MoodTrend};
use handoff::HandoffSummary;
use routing::{Route, RoutingPolicy};
use signals::Understanding;

/// Longest turn accepted, in characters.
pub const MAX_TURN_CHARS: usize = 8000;
/// How recent a customer's other conversation must be for its context to carry into a new one
/// (they moved from chat to voice, or to an agent).
pub const CARRY_HOURS: i64 = 24;

pub struct Conversations {
    store: Arc<Store>,
    understanding: Option<Understanding>,
    policy: EscalationPolicy,
    routing: RoutingPolicy,
    /// Answers recorded by hand-off reason (None: answered), for `/metrics`.
    outcomes: parking_lot::Mutex<std::collections::BTreeMap<Option<HandoffReason>, u64>>,
    /// Ratings recorded since the process started (the `/metrics` counter).
    ratings: parking_lot::Mutex<std::collections::BTreeMap<crate::vocab::Rating, u64>>,
    /// Masks personal data in what is stored (`privacy.redact`); `None` stores text as given.
    redactor: Option<Detector>,
    retention: Retention,
    /// Rows removed by erasures and retention sweeps since start, and erasures, for `/metrics`.
    removed: parking_lot::Mutex<(Removed, Removed, u64)>,
}

/// A turn to append.
#[derive(Debug, Clone)]
pub struct NewTurn {
    /// Who writes it: the conversation must be theirs.
    pub party: Party,
    pub channel: Channel,
    pub role: Role,
    pub text: String,
}

/// A conversation as agents and dashboards read it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    #[serde(flatten)]
    pub record: ConversationRecord,
    pub mood: MoodTrend,
    pub emotions: EmotionTrend,
    pub escalation: Escalation,
    /// The queue and priority by `[routing]`, without customer tags (`POST /v1/route` takes
    /// them). For staff: a channel is not shown how its customer is queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// The list's filters read from each conversation's state.
#[derive(Debug, Clone)]
pub struct ListWants {
    pub escalated: Option<bool>,
    pub priority: Option<crate::vocab::Priority>,
    pub queue: Option<String>,
    /// How many of the most recent store matches are read.
    pub scan: usize,
}

/// A conversation in the staff's list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationListItem {
    pub id: String,
    pub customer_id: Option<String>,
    pub channel: Channel,
    pub updated_at: String,
    pub resolved_at: Option<String>,
    pub turns: usize,
    /// The customer's latest turn.
    pub last_customer_text: Option<String>,
    /// The latest customer turn's intent.
    pub intent: Option<String>,
    pub escalated: bool,
    /// What flagged it (the first reason), when escalated.
    pub escalation_reason: Option<EscalationReason>,
    pub mood: crate::vocab::MoodDirection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

impl From<ConversationView> for ConversationListItem {
    fn from(v: ConversationView) -> Self {
        let last_customer = v
            .record
            .turns
            .iter()
            .rev()
            .find(|t| t.role == Role::Customer);
        ConversationListItem {
            last_customer_text: last_customer.map(|t| t.text.clone()),
            intent: last_customer.and_then(|t| t.intent.as_ref().map(|i| i.name.clone())),
            turns: v.record.turns.len(),
            escalated: v.escalation.flagged,
            escalation_reason: v.escalation.reasons.first().map(|f| f.reason),
            mood: v.mood.direction,
            route: v.route,
            id: v.record.id,
            customer_id: v.record.customer_id,
            channel: v.record.channel,
            updated_at: v.record.updated_at,
            resolved_at: v.record.resolved_at,
        }
    }
}

/// One customer across channels.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    /// Most recent first (at most 50).
    pub conversations: Vec<ConversationSummary>,
    /// Every channel the customer used.
    pub channels: Vec<Channel>,
    /// The latest conversation's mood and escalation.
    pub latest: Option<ConversationView>,
    /// One line for a person taking over: contacts, channels, the last thing asked, the mood.
    pub summary: String,
}

impl Conversations {
    /// Answers recorded since the process started, by hand-off reason (None: answered): the
    /// `/metrics` counter.
    pub fn answer_outcomes(&self) -> Vec<(Option<HandoffReason>, u64)> {
        self.outcomes.lock().iter().map(|(r, n)| (*r, *n)).collect()
    }

    /// Ratings recorded since the process started, by rating.
    pub fn ratings(&self) -> Vec<(crate::vocab::Rating, u64)> {
        self.ratings.lock().iter().map(|(r, n)| (*r, *n)).collect()
    }

    /// The customer's conversations across channels; `None` when none is known, or when a
    /// channel acting for another customer asks.
    pub async fn customer(&self, customer_id: &str, party: &Party) -> Result<Option<CustomerView>> {
        validate_id("customer id", customer_id)?;
        if matches!(party, Party::Customer(me) if me != customer_id) {
            return Ok(None);
        }
        let (store, id) = (self.store.clone(), customer_id.to_string());
        let conversations = blocking(move || store.customer_conversations(&id, 50)).await?;
        let Some(first) = conversations.first() else {
            return Ok(None);
        };
        let latest = self
            .get(&first.id, &Party::Staff(Some(customer_id.into())))
            .await?;
        let mut channels: Vec<Channel> = conversations
            .iter()
            .flat_map(|c| c.channels.iter().copied())
            .collect();
        channels.sort();
        channels.dedup();
        let mut summary = format!(
            "{} conversation(s) over {}; last contact {}",
            conversations.len(),
            crate::vocab::join(&channels, ", "),
            first.updated_at
        );
        if let Some(text) = conversations
            .iter()
            .find_map(|c| c.last_customer_text.as_ref())
        {
            summary.push_str(&format!("; last asked: \"{}\"", truncate(text, 160)));
        }
        if let Some(v) = &latest {
            if v.escalation.priority {
                summary.push_str("; PRIORITY (repeat contact about an unresolved issue)");
            }
            summary.push_str(&format!("; mood {}", v.mood.direction));
            if let Some(f) = v.escalation.reasons.first() {
                summary.push_str(&format!("; flagged ({}: {})", f.reason, f.detail));
            }
        }
        Ok(Some(CustomerView {
            customer_id: customer_id.to_string(),
            channels,
            conversations,
            latest,
            summary,
        }))
    }

    pub fn new(
        store: Arc<Store>,
        understanding: Option<Understanding>,
        policy: EscalationPolicy,
        routing: RoutingPolicy,
        privacy: &PrivacyConfig,
        allow: &[String],
    ) -> Self {
        let days = privacy.retain_days;
        Conversations {
            store,
            understanding,
            policy,
            routing,
            outcomes: Default::default(),
            ratings: Default::default(),
            redactor: privacy.redact.then(|| Detector::new(allow)),
            retention: Retention {
                turns: days.turns,
                transcripts: days.transcripts,
                answers: days.answers,
                audit: days.audit,
            },
            removed: Default::default(),
        }
    }

    /// The text as it is stored: personal data masked unless `privacy.redact` is off.
    fn at_rest(&self, text: &str) -> String {
        match &self.redactor {
            Some(d) => d.mask(text),
            None => text.to_string(),
        }
    }

    /// Erases the customer: every conversation, turn, voice transcript, answer and feedback row
    /// (no vector holds customer text: only cards are indexed). The audit log records that an
    /// erasure by `actor` removed so many rows, and not whose.
    pub async fn erase(&self, customer_id: &str, actor: &str) -> Result<Removed> {
        validate_id("customer id", customer_id)?;
        let (store, id, actor) = (
            self.store.clone(),
            customer_id.to_string(),
            actor.to_string(),
        );
        let removed = blocking(move || store.erase_customer(&id, &actor)).await?;
        if removed != Removed::default() {
            let mut totals = self.removed.lock();
            totals.0 += removed;
            totals.2 += 1;
        }
        Ok(removed)
    }

    /// Everything held about the customer, or `None`.
    pub async fn export(&self, customer_id: &str) -> Result<Option<CustomerExport>> {
        validate_id("customer id", customer_id)?;
        let (store, id) = (self.store.clone(), customer_id.to_string());
        blocking(move || store.export_customer(&id)).await
    }

    /// Deletes what is older than `privacy.retain_days` says (nothing when no period is set).
    pub async fn sweep(&self) -> Result<Removed> {
        if self.retention == Retention::default() {
            return Ok(Removed::default());
        }
        let (store, keep) = (self.store.clone(), self.retention);
        let removed = blocking(move || store.sweep(&keep)).await?;
        let mut totals = self.removed.lock();
        totals.1 += removed;
        Ok(removed)
    }

    /// Runs the retention sweep now and then every `every`, in the background. A failed sweep
    /// (a full disk) is logged and tried again at the next tick.
    pub fn spawn_retention(self: &Arc<Self>, every: std::time::Duration) {
        if self.retention == Retention::default() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                match me.sweep().await {
                    Ok(r) if r != Removed::default() => {
                        tracing::info!(removed = ?r, "retention sweep removed expired data")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "retention sweep failed; retrying at the next tick")
                    }
                }
            }
        });
    }

    /// Rows removed since start: by erasures, by retention sweeps; and the erasures.
    pub fn removed(&self) -> (Removed, Removed, u64) {
        *self.removed.lock()
    }

    /// The models that read customer turns; `None` when they are disabled.
    pub fn understanding(&self) -> Option<&Understanding> {
        self.understanding.as_ref()
    }

    /// Reads texts that are not turns (`/v1/sentiment`, `/v1/signals`).
    pub async fn read_texts(&self, texts: Vec<String>) -> Result<Vec<signals::Reading>> {
        Ok(self.model()?.read(texts).await?)
    }

    /// Vectors for comparing what texts are about (language center removed, unit length).
    pub async fn topic_vectors(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.model()?.topic_vectors(texts).await?)
    }

    fn model(&self) -> Result<&Understanding> {
        self.understanding.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "sentiment, emotions and intents are not available on this server: models.sentiment is \"none\", or the heads could not be trained at start (see the log; run `kefu train signals`)".into(),
            )
        })
    }

    /// The intent taxonomy: built in, then an admin's.
    pub async fn intents(&self) -> Result<Vec<intents::IntentInfo>> {
        self.model()?.intents().list().await
    }

    pub async fn define_intent(
        &self,
        new: intents::NewIntent,
        actor: &str,
    ) -> Result<intents::IntentInfo> {
        self.model()?.intents().define(new, actor).await
    }

    pub async fn remove_intent(&self, name: &str, actor: &str) -> Result<()> {
        self.model()?.intents().remove(name, actor).await
    }

    /// What a customer's turn says: its language, and its sentiment, emotions and intent from
    /// one embedding (those three only when the signals are enabled).
    pub async fn read(&self, text: &str) -> Result<TurnSignals> {
        let Some(model) = &self.understanding else {
            return Ok(TurnSignals {
                language: guess_language(text),
                ..TurnSignals::default()
            });
        };
        let reading = model
            .read(vec![text.to_string()])
            .await?
            .pop()
            .ok_or_else(|| Error::Unavailable("the embedder returned no vector".into()))?;
        Ok(TurnSignals {
            mood: Some(TurnMood {
                label: reading.sentiment.label,
                valence: reading.sentiment.valence(),
            }),
            language: reading.language,
            emotions: Some(reading.emotions),
            intent: Some(reading.intent),
        })
    }

    /// Appends a turn (scored when it is the customer's) and returns the conversation after it.
    pub async fn add_turn(&self, conversation_id: &str, t: NewTurn) -> Result<ConversationView> {
        validate_id("conversation id", conversation_id)?;
        if let Some(c) = t.party.customer() {
            validate_id("customer_id", c)?;
        }
        let text = t.text.trim().to_string();
        if text.is_empty() || text.chars().count() > MAX_TURN_CHARS {
            return Err(Error::invalid(format!(
                "text must be 1 to {MAX_TURN_CHARS} characters"
            )));
        }
        // Read from the turn as it was said; stored masked.
        let signals = if t.role == Role::Customer {
            self.read(&text).await?
        } else {
            TurnSignals {
                language: guess_language(&text),
                ..TurnSignals::default()
            }
        };
        let (store, id, party) = (
            self.store.clone(),
            conversation_id.to_string(),
            t.party.clone(),
        );
        let text = self.at_rest(&text);
        blocking(move || store.append_turn(&id, &party, t.channel, t.role, &text, &signals))
            .await?;
        self.get(conversation_id, &t.party)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {conversation_id} vanished")))
    }

    /// Where the conversation belongs and how soon, for a customer with `tags`; `None` when
    /// there is no such conversation.
    pub async fn route(
        &self,
        conversation_id: &str,
        party: &Party,
        tags: &[String],
    ) -> Result<Option<Route>> {
        validate_id("conversation id", conversation_id)?;
        if tags.len() > 50 || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(Error::invalid(
                "`customer_tags`: at most 50 tags of 1 to 64 characters".to_string(),
            ));
        }
        let Some(view) = self.get(conversation_id, party).await? else {
            return Ok(None);
        };
        Ok(Some(self.routing.route(
            &view.record.turns,
            &view.escalation,
            tags,
        )))
    }

    /// Marks the conversation's issue resolved, or open again; resolved contacts do not count
    /// as repeated contacts. A later turn reopens it.
    pub async fn resolve(
        &self,
        conversation_id: &str,
        party: &Party,
        resolved: bool,
    ) -> Result<ConversationView> {
        validate_id("conversation id", conversation_id)?;
        let (store, id, who) = (
            self.store.clone(),
            conversation_id.to_string(),
            party.clone(),
        );
        if !blocking(move || store.set_resolved(&id, &who, resolved)).await? {
            return Err(Error::NotFound(format!(
                "no conversation {conversation_id}"
            )));
        }
        self.get(conversation_id, party)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {conversation_id} vanished")))
    }

    /// The turns a model reads for a conversation (the one carry-over rule): its last `n`;
    /// while it has no customer turn yet (a customer who moved from chat to voice, or to an
    /// agent), the last `n` of the customer's latest other conversation of the last
    /// [`CARRY_HOURS`] come first. Fails when the conversation is not `party`'s.
    pub async fn history(
        &self,
        conversation_id: &str,
        party: &Party,
        n: usize,
    ) -> Result<Vec<Turn>> {
        let (store, conv, party) = (
            self.store.clone(),
            conversation_id.to_string(),
            party.clone(),
        );
        blocking(move || {
            let own = store.recent_turns(&conv, &party, n)?;
            let Some(customer) = party.customer() else {
                return Ok(own);
            };
            // Fewer than `n` turns are all the turns: no need to ask whether earlier ones exist.
            let spoke = own.iter().any(|t| t.role == Role::Customer)
                || (own.len() == n && store.has_turn_by(&conv, Role::Customer)?);
            if spoke {
                return Ok(own);
            }
            let mut turns =
                store.carried_turns(customer, &conv, &store.hours_ago(CARRY_HOURS), n)?;
            turns.extend(own);
            Ok(turns)
        })
        .await
    }

    /// Records an answer with the customer's question and the bot's reply as turns, in one
    /// transaction: every turn is written here.
    /// The caller gets the record as given; the store keeps it with personal data masked.
    pub async fn record_answer(&self, record: AnswerRecord, party: &Party) -> Result<AnswerRecord> {
        let (store, party) = (self.store.clone(), party.clone());
        let mut stored = AnswerRecord {
            question: self.at_rest(&record.question),
            answer: self.at_rest(&record.answer),
            answer_language: guess_language(&record.answer),
            ..record.clone()
        };
        stored.question_signals.language = guess_language(&record.question);
        blocking(move || store.record_answer(&stored, &party)).await?;
        *self
            .outcomes
            .lock()
            .entry(record.handoff_reason)
            .or_default() += 1;
        Ok(record)
    }

    /// Feedback on an answer; how many ratings it has now.
    pub async fn feedback(
        &self,
        answer_id: &str,
        party: &Party,
        rating: crate::vocab::Rating,
        comment: Option<String>,
        actor: &str,
    ) -> Result<usize> {
        let (store, id, party, actor) = (
            self.store.clone(),
            answer_id.to_string(),
            party.clone(),
            actor.to_string(),
        );
        let comment = comment.map(|c| self.at_rest(&c));
        let n = blocking(move || {
            store.add_feedback(&id, &party, rating.as_str(), comment.as_deref(), &actor)
        })
        .await?;
        *self.ratings.lock().entry(rating).or_default() += 1;
        Ok(n)
    }

    /// What a person taking the conversation over needs: what was asked and answered, what is
    /// still open, how the customer feels, and their other recent contacts.
    pub async fn handoff(
        &self,
        conversation_id: &str,
        party: &Party,
    ) -> Result<Option<HandoffSummary>> {
        let Some(view) = self.get(conversation_id, party).await? else {
            return Ok(None);
        };
        let (store, id) = (self.store.clone(), conversation_id.to_string());
        let answers = blocking(move || store.conversation_answers(&id)).await?;
        let others = match &view.record.customer_id {
            Some(c) => {
                let (store, c, id) = (self.store.clone(), c.clone(), conversation_id.to_string());
                let since = self.store.hours_ago(self.policy.repeat_window_hours.into());
                blocking(move || store.contacts_since(&c, &id, &since, 20)).await?
            }
            None => Vec::new(),
        };
        Ok(Some(handoff::summarise(view, answers, others)))
    }

    pub async fn get(
        &self,
        conversation_id: &str,
        party: &Party,
    ) -> Result<Option<ConversationView>> {
        match self.record(conversation_id, party).await? {
            Some(r) => Ok(Some(self.view(r).await?)),
            None => Ok(None),
        }
    }

    /// The staff's list: the most recent conversations that match, newest first, at most
    /// `limit`. The store filters by channel, resolution and intent; escalation, priority and
    /// queue are read as [`Conversations::get`] reads them, over the `scan` most recent matches
    /// (each costs a read of its turns), so an older match beyond those is not listed.
    pub async fn list(
        &self,
        filter: ConversationFilter,
        want: ListWants,
        limit: usize,
    ) -> Result<Vec<ConversationListItem>> {
        let store = self.store.clone();
        let ids = blocking(move || store.recent_conversations(&filter, want.scan)).await?;
        let mut out = Vec::new();
        for id in ids {
            let Some(view) = self.get(&id, &Party::Staff(None)).await? else {
                continue; // erased between the two reads
            };
            let route = view.route.as_ref();
            if want.escalated.is_some_and(|e| e != view.escalation.flagged)
                || want
                    .priority
                    .is_some_and(|p| route.is_none_or(|r| r.priority != p))
                || want
                    .queue
                    .as_ref()
                    .is_some_and(|q| route.is_none_or(|r| &r.queue != q))
            {
                continue;
            }
            out.push(ConversationListItem::from(view));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// The escalation state the conversation would have with one more customer turn (the
    /// question the answer endpoint is about to record).
    pub async fn assess_with(
        &self,
        conversation_id: &str,
        party: &Party,
        channel: Channel,
        question: &str,
        signals: &TurnSignals,
    ) -> Result<Escalation> {
        let stated = party.customer().map(str::to_string);
        let (mut turns, customer) = match self.record(conversation_id, party).await? {
            Some(r) => (r.turns, r.customer_id.or(stated)),
            None => (Vec::new(), stated),
        };
        turns.push(Turn {
            seq: turns.last().map_or(1, |t| t.seq + 1),
            role: Role::Customer,
            channel,
            text: question.to_string(),
            at: String::new(),
            sentiment: signals.mood.as_ref().map(|m| m.label),
            valence: signals.mood.as_ref().map(|m| m.valence),
            language: signals.language.clone(),
            emotions: signals.emotions.clone(),
            intent: signals.intent.clone(),
        });
        // The new turn reopens a resolved conversation, so it counts as unresolved.
        self.escalation(conversation_id, customer.as_deref(), &turns, false)
            .await
    }

    async fn record(
        &self,
        conversation_id: &str,
        party: &Party,
    ) -> Result<Option<ConversationRecord>> {
        let (store, id, party) = (
            self.store.clone(),
            conversation_id.to_string(),
            party.clone(),
        );
        blocking(move || store.conversation(&id, &party)).await
    }

    async fn view(&self, record: ConversationRecord) -> Result<ConversationView> {
        let escalation = self
            .escalation(
                &record.id,
                record.customer_id.as_deref(),
                &record.turns,
                record.resolved_at.is_some(),
            )
            .await?;
        Ok(ConversationView {
            mood: escalation::mood_trend(&record.turns),
            emotions: escalation::emotion_trend(&record.turns),
            route: Some(self.routing.route(&record.turns, &escalation, &[])),
            escalation,
            record,
        })
    }

    /// The policy over the turns, plus the one rule that needs the customer's other contacts.
    async fn escalation(
        &self,
        conversation_id: &str,
        customer_id: Option<&str>,
        turns: &[Turn],
        resolved: bool,
    ) -> Result<Escalation> {
        let mut e = self.policy.assess(turns);
        if !resolved
            && let Some(customer) = customer_id
            && let Some((flag, priority)) = self
                .repeated_contacts(conversation_id, customer, turns)
                .await?
        {
            e.reasons.push(flag);
            e.flagged = true;
            e.priority = priority;
        }
        Ok(e)
    }

    /// `repeated_contacts`: enough unresolved contacts of this customer, in the window, open
    /// with what this conversation opens with. The embeddings are only computed when there are
    /// enough recent unresolved contacts to matter, so a first-time customer costs one query.
    async fn repeated_contacts(
        &self,
        conversation_id: &str,
        customer_id: &str,
        turns: &[Turn],
    ) -> Result<Option<(Flag, bool)>> {
        let p = &self.policy;
        let Some(model) = &self.understanding else {
            return Ok(None);
        };
        let opening = opening(turns);
        if p.repeat_contacts < 2 || opening.is_empty() {
            return Ok(None);
        }
        let since = self.store.hours_ago(p.repeat_window_hours.into());
        let (store, cust, conv) = (
            self.store.clone(),
            customer_id.to_string(),
            conversation_id.to_string(),
        );
        let contacts: Vec<Contact> =
            blocking(move || store.contacts_since(&cust, &conv, &since, 20))
                .await?
                .into_iter()
                .filter(|c| !c.resolved && !c.opening.is_empty())
                .collect();
        if contacts.len() + 1 < p.repeat_contacts {
            return Ok(None);
        }
        let mut texts = vec![opening];
        texts.extend(contacts.iter().map(|c| c.opening.clone()));
        let v = model.topic_vectors(texts).await?;
        let same: Vec<&Contact> = contacts
            .iter()
            .zip(&v[1..])
            .filter(|(_, x)| dot(&v[0], x) >= p.same_issue_similarity)
            .map(|(c, _)| c)
            .collect();
        if same.len() + 1 < p.repeat_contacts {
            return Ok(None);
        }
        let mut channels: Vec<Channel> = turns
            .iter()
            .map(|t| t.channel)
            .chain(same.iter().flat_map(|c| c.channels.iter().copied()))
            .collect();
        channels.sort();
        channels.dedup();
        let turn = turns
            .iter()
            .rev()
            .find(|t| t.role == Role::Customer)
            .map_or(0, |t| t.seq);
        let flag = Flag {
            reason: EscalationReason::RepeatedContacts,
            turn,
            detail: format!(
                "{} contacts about the same issue in {} h over {}, none resolved",
                same.len() + 1,
                p.repeat_window_hours,
                crate::vocab::join(&channels, ", ")
            ),
        };
        Ok(Some((flag, channels.len() >= 2)))
    }
}

/// What a conversation is about: its first customer turns.
fn opening(turns: &[Turn]) -> String {
    turns
        .iter()
        .filter(|t| t.role == Role::Customer)
        .take(3)
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Ids come from channel frontends: 1 to 128 printable characters.
pub fn validate_id(name: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{name} must be 1 to 128 printable characters"
        )));
    }
    Ok(())
}
