//! What the customer wants. A customer-service taxonomy ships with kefu (billing, refund,
//! technical, account, complaint, cancellation, order status, human request, greeting, other),
//! learnt from the train and dev splits of `eval/support_turns.jsonl`; a deployment adds its own
//! intents through `/v1/intents`, a few example utterances each.
//!
//! The head is a softmax over every intent, read from the turn's one embedding (centered like
//! every other head). It is trained again at start and after every change, which takes a
//! fraction of a second on a few hundred examples: nobody retrains a model by hand, and the
//! next turn after a change is read with it, without a restart. The built-in examples' vectors
//! come with the trained heads, so a start embeds only an admin's examples.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::Serialize;

use super::signals::Heads;
use super::training::{HEAD_PARAMS, SupportTurn};
use crate::error::{Error, Result, blocking};
use crate::runtime::classify::LinearHead;
use crate::runtime::embed::{EmbedPool, TextKind};
use crate::store::Store;
use crate::store::conversations::TurnIntent;

/// Below the confidence floor a turn's intent is this.
pub const OTHER: &str = "other";

/// The built-in taxonomy, with what each intent covers.
pub const BUILTIN: [(&str, &str); 10] = [
    ("billing", "charges, invoices, prices, payment methods"),
    (
        "refund",
        "money back for a purchase, a return or a wrong charge",
    ),
    (
        "technical",
        "a product or service that does not work, or how to set it up",
    ),
    (
        "account",
        "login, password, profile, verification, account security",
    ),
    (
        "complaint",
        "dissatisfaction with the service or staff, threats to complain elsewhere",
    ),
    (
        "cancellation",
        "ending a subscription, contract, order or account",
    ),
    (
        "order_status",
        "where an order or delivery is, when it arrives",
    ),
    ("human_request", "asks for a person"),
    ("greeting", "hello, thanks, goodbye"),
    (OTHER, "anything else"),
];

/// Most intents an admin may define, examples per intent, and characters per example.
pub const MAX_CUSTOM: usize = 100;
pub const EXAMPLES: std::ops::RangeInclusive<usize> = 3..=100;
pub const MAX_EXAMPLE_CHARS: usize = 500;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z][a-z0-9_]{1,39}$").expect("static regex"));

/// An intent as `GET /v1/intents` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntentInfo {
    pub name: String,
    pub description: String,
    /// Shipped with kefu (cannot be removed or replaced), or an admin's.
    pub builtin: bool,
    /// Example utterances the head learns it from.
    pub examples: usize,
    /// Set for an admin's intents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// An intent an admin defines.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub name: String,
    pub description: String,
    pub examples: Vec<String>,
}

/// The trained intent head.
pub struct IntentHead {
    head: LinearHead,
    min_confidence: f32,
}

impl IntentHead {
    pub fn into_head(self) -> LinearHead {
        self.head
    }

    /// The most probable intent of a centered vector, or `other` below the floor.
    pub fn classify(&self, centered: &[f32]) -> TurnIntent {
        let p = self.head.predict(centered);
        let i = LinearHead::argmax(&p);
        let name = if p[i] >= self.min_confidence {
            self.head.labels[i].clone()
        } else {
            OTHER.to_string()
        };
        TurnIntent {
            name,
            confidence: p[i],
        }
    }
}

/// Trains the head over (intent, centered vector) examples.
pub fn fit(examples: &[(String, Vec<f32>)], embedder: &str, min_confidence: f32) -> IntentHead {
    let mut labels: Vec<String> = examples.iter().map(|(n, _)| n.clone()).collect();
    labels.sort();
    labels.dedup();
    let ys: Vec<usize> = examples
        .iter()
        .map(|(n, _)| labels.binary_search(n).unwrap_or(0))
        .collect();
    let xs: Vec<Vec<f32>> = examples.iter().map(|(_, v)| v.clone()).collect();
    IntentHead {
        head: LinearHead::train(labels, embedder.into(), &xs, &ys, HEAD_PARAMS),
        min_confidence,
    }
}

/// The default floor: below it a turn is `other`. Set, not tuned: with ten intents it is three
/// times chance.
pub const MIN_CONFIDENCE: f32 = 0.3;

/// Intent accuracy on `dev` of a head fitted on `train`, by language (for the heads'
/// provenance).
pub fn dev_accuracy(
    train: &[SupportTurn],
    dev: &[SupportTurn],
    center: impl Fn(&str) -> Vec<f32>,
) -> serde_json::Value {
    let examples: Vec<(String, Vec<f32>)> = train
        .iter()
        .map(|t| (t.intent.clone(), center(&t.text)))
        .collect();
    let head = fit(&examples, "", MIN_CONFIDENCE);
    let mut by: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in dev {
        let e = by.entry(t.lang.as_str()).or_default();
        e.0 += usize::from(head.classify(&center(&t.text)).name == t.intent);
        e.1 += 1;
    }
    by.into_iter()
        .map(|(l, (r, n))| (l.to_string(), serde_json::json!(r as f32 / n.max(1) as f32)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The intents of a running server: the built-in taxonomy plus an admin's, and the head
/// trained over them.
pub struct Intents {
    pool: EmbedPool,
    heads: Arc<Heads>,
    store: Arc<Store>,
    min_confidence: f32,
    current: parking_lot::RwLock<Arc<IntentHead>>,
    /// Centered vectors of an admin's examples, by text: a change re-embeds only new examples.
    vectors: parking_lot::Mutex<HashMap<String, Vec<f32>>>,
    /// One change at a time: two admins' changes must not race to install an older head.
    changing: tokio::sync::Mutex<()>,
}

impl Intents {
    /// Reads an admin's intents from the store and trains the head.
    pub async fn start(
        pool: EmbedPool,
        heads: Arc<Heads>,
        store: Arc<Store>,
        min_confidence: f32,
    ) -> Result<Arc<Self>> {
        let builtin_only = IntentHead {
            head: heads.intent_head.clone(),
            min_confidence,
        };
        let me = Arc::new(Intents {
            pool,
            heads,
            store,
            min_confidence,
            current: parking_lot::RwLock::new(Arc::new(builtin_only)),
            vectors: Default::default(),
            changing: Default::default(),
        });
        let store = me.store.clone();
        if !blocking(move || store.intents()).await?.is_empty() {
            me.retrain().await?;
        }
        Ok(me)
    }

    /// The head every turn is read with now.
    pub fn current(&self) -> Arc<IntentHead> {
        self.current.read().clone()
    }

    pub async fn list(&self) -> Result<Vec<IntentInfo>> {
        let counts = self.heads.intent_counts();
        let mut out: Vec<IntentInfo> = BUILTIN
            .iter()
            .map(|(name, description)| IntentInfo {
                name: name.to_string(),
                description: description.to_string(),
                builtin: true,
                examples: counts.get(*name).copied().unwrap_or(0),
                updated_at: None,
            })
            .collect();
        let store = self.store.clone();
        for i in blocking(move || store.intents()).await? {
            out.push(IntentInfo {
                examples: i.examples.len(),
                name: i.name,
                description: i.description,
                builtin: false,
                updated_at: Some(i.updated_at),
            });
        }
        Ok(out)
    }

    /// Creates or replaces an admin's intent; the next turn is read with it.
    pub async fn define(&self, new: NewIntent, actor: &str) -> Result<IntentInfo> {
        let NewIntent {
            name,
            description,
            examples,
        } = new;
        if !NAME.is_match(&name) {
            return Err(Error::invalid(
                "an intent name is 2 to 40 characters: lowercase letters, digits and _, starting with a letter".to_string(),
            ));
        }
        if BUILTIN.iter().any(|(b, _)| *b == name) {
            return Err(Error::Conflict(format!(
                "`{name}` is a built-in intent; choose another name"
            )));
        }
        if description.chars().count() > MAX_EXAMPLE_CHARS {
            return Err(Error::invalid(format!(
                "the description is longer than {MAX_EXAMPLE_CHARS} characters"
            )));
        }
        let mut examples: Vec<String> = examples.iter().map(|e| e.trim().to_string()).collect();
        if let Some(i) = examples
            .iter()
            .position(|e| e.is_empty() || e.chars().count() > MAX_EXAMPLE_CHARS)
        {
            return Err(Error::invalid(format!(
                "example {i} must be 1 to {MAX_EXAMPLE_CHARS} characters"
            )));
        }
        examples.sort();
        examples.dedup();
        if !EXAMPLES.contains(&examples.len()) {
            return Err(Error::invalid(format!(
                "give {} to {} different examples",
                EXAMPLES.start(),
                EXAMPLES.end()
            )));
        }
        let _one = self.changing.lock().await;
        let store = self.store.clone();
        let existing = blocking(move || store.intents()).await?;
        if existing.len() >= MAX_CUSTOM && !existing.iter().any(|i| i.name == name) {
            return Err(Error::Conflict(format!(
                "{MAX_CUSTOM} intents are defined already: remove one first"
            )));
        }
        // Embed before storing: an intent whose examples cannot be read is not kept.
        self.embed_missing(&examples).await?;
        let (store, actor) = (self.store.clone(), actor.to_string());
        let stored =
            blocking(move || store.put_intent(&name, &description, &examples, &actor)).await?;
        self.retrain_locked().await?;
        Ok(IntentInfo {
            name: stored.name,
            description: stored.description,
            builtin: false,
            examples: stored.examples.len(),
            updated_at: Some(stored.updated_at),
        })
    }

    /// Removes an admin's intent; turns read after it are labelled without it.
    pub async fn remove(&self, name: &str, actor: &str) -> Result<()> {
        if BUILTIN.iter().any(|(b, _)| *b == name) {
            return Err(Error::Conflict(format!(
                "`{name}` is a built-in intent and cannot be removed"
            )));
        }
        let _one = self.changing.lock().await;
        let (store, n, actor) = (self.store.clone(), name.to_string(), actor.to_string());
        if !blocking(move || store.delete_intent(&n, &actor)).await? {
            return Err(Error::NotFound(format!("no intent `{name}`")));
        }
        self.retrain_locked().await
    }

    async fn retrain(&self) -> Result<()> {
        let _one = self.changing.lock().await;
        self.retrain_locked().await
    }

    /// Trains the head over the built-in and the stored intents and installs it.
    async fn retrain_locked(&self) -> Result<()> {
        let store = self.store.clone();
        let custom = blocking(move || store.intents()).await?;
        let texts: Vec<String> = custom.iter().flat_map(|i| i.examples.clone()).collect();
        self.embed_missing(&texts).await?;
        let mut examples = self.heads.intent_examples();
        {
            let mut vectors = self.vectors.lock();
            // Only the current examples' vectors are kept: replaced intents do not pile up.
            let current: std::collections::HashSet<&String> = texts.iter().collect();
            vectors.retain(|t, _| current.contains(t));
            for i in &custom {
                for e in &i.examples {
                    if let Some(v) = vectors.get(e) {
                        examples.push((i.name.clone(), v.clone()));
                    }
                }
            }
        }
        let (embedder, floor) = (self.heads.embedder.clone(), self.min_confidence);
        let head = tokio::task::spawn_blocking(move || fit(&examples, &embedder, floor))
            .await
            .map_err(|e| Error::Unavailable(format!("intent training failed: {e}")))?;
        *self.current.write() = Arc::new(head);
        tracing::info!(custom = custom.len(), "intent head trained");
        Ok(())
    }

    async fn embed_missing(&self, texts: &[String]) -> Result<()> {
        let missing: Vec<String> = {
            let vectors = self.vectors.lock();
            let mut m: Vec<String> = texts
                .iter()
                .filter(|t| !vectors.contains_key(*t))
                .cloned()
                .collect();
            m.sort();
            m.dedup();
            m
        };
        for chunk in missing.chunks(32) {
            let vs = self.pool.embed(chunk.to_vec(), TextKind::Query).await?;
            let mut vectors = self.vectors.lock();
            for (t, v) in chunk.iter().zip(vs) {
                let c = self.heads.center(&v, t);
                vectors.insert(t.clone(), c);
            }
        }
        Ok(())
    }
}
