//! `kefu eval`: answer quality on the labelled datasets in eval/, through the HTTP API exactly
//! as callers use it, against a running server (`--url`) or one started here on a temporary
//! data directory with the configured models.
//!
//! Suites (each a section of the report, each metric with an optional floor in
//! eval/floors.json):
//! - retrieval: `/v1/search` on every answerable single-turn question: recall@1, recall@5, MRR;
//! - handoff: `/v1/answer` on every question, multi-turn follow-ups in their conversation: is
//!   the question handed off (precision and recall on the unanswerable ones)? Read from the
//!   first streamed event, so answers are not generated to the end;
//! - answers: whole generated answers for a fixed sample of answerable questions: citations
//!   (the right card among them, first) and groundedness (answer sentences whose words and
//!   numbers are in the cited cards);
//! - sentiment: `/v1/sentiment` on labelled turns;
//! - signals: `/v1/signals` on the dev and held-out customer-service turns: sentiment, emotion
//!   and intent, by split and language;
//! - routing: scripted conversations, then `/v1/route`: the right queue and priority;
//! - escalation: scripted conversations turn by turn; is the conversation flagged at the end?
//! - asr: `/v1/audio/transcriptions` on recorded clips: WER (English), CER (Chinese);
//! - pii: the personal-data detector that masks stored turns, on labelled strings: recall and
//!   precision of the spans (no server needed: it is the library's own function).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use kefu::config::Config;
use kefu::runtime::registry::Registry;
use kefu::speech::score;

use crate::client::{Api, Card, Events, bar, client, load_cards, read_jsonl, start_server};
use serde::Deserialize;
use serde_json::{Value, json};

pub struct Options {
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub dir: PathBuf,
    pub out: PathBuf,
    /// Whole generated answers to grade (0: none).
    pub answers: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub check: bool,
    /// Which suites run.
    pub suites: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct Question {
    id: String,
    kind: String,
    lang: String,
    split: String,
    question: String,
    card: Option<String>,
    #[serde(default)]
    history: Vec<String>,
}

/// One attempt of `eval/adversarial.jsonl`, or a control: an ordinary question in the same words.
#[derive(Deserialize)]
struct Attempt {
    text: String,
    lang: String,
    form: String,
    split: String,
    attack: bool,
}

/// One string of `eval/pii_strings.jsonl` and the personal data in it.
#[derive(Deserialize)]
struct PiiString {
    text: String,
    lang: String,
    split: String,
    pii: Vec<PiiLabel>,
}

#[derive(Deserialize)]
struct PiiLabel {
    kind: String,
    form: String,
    text: String,
}

#[derive(Deserialize)]
struct SentimentTurn {
    text: String,
    lang: String,
    label: String,
}

#[derive(Deserialize)]
struct Conversation {
    id: String,
    lang: String,
    escalate: bool,
    #[serde(default)]
    split: String,
    turns: Vec<ScriptTurn>,
}

/// One turn of `eval/support_turns.jsonl`.
#[derive(Deserialize)]
struct SupportTurn {
    text: String,
    lang: String,
    sentiment: String,
    emotions: Vec<String>,
    intent: String,
    split: String,
}

/// One conversation of `eval/routing_conversations.jsonl` and where it belongs.
#[derive(Deserialize)]
struct RoutedConversation {
    id: String,
    lang: String,
    split: String,
    queue: String,
    priority: String,
    #[serde(default)]
    tags: Vec<String>,
    turns: Vec<ScriptTurn>,
}

const EMOTIONS: [&str; 5] = ["anger", "frustration", "confusion", "urgency", "gratitude"];

#[derive(Deserialize)]
struct ScriptTurn {
    role: String,
    text: String,
}

/// A conversation an agent resolves, with what a card drafted from it must hold and must not.
/// A question no card covers, with the topic it asks about (eval/gap_questions.jsonl).
#[derive(Deserialize)]
struct GapQuestion {
    split: String,
    topic: String,
    language: String,
    question: String,
}

#[derive(Deserialize)]
struct MinedConversation {
    id: String,
    lang: String,
    split: String,
    /// Conversations of one group ask the same thing: the second and later ones should merge
    /// into the first one's card, and no other conversation should.
    group: String,
    turns: Vec<ScriptTurn>,
    /// Each must appear in the draft (alternatives separated by `|`, case-insensitive).
    facts: Vec<String>,
    /// None may appear in the draft or the stored question.
    personal: Vec<String>,
}

/// Runs every suite, writes `report.json` and `report.md` under `out`, prints the table.
/// Returns false when `check` is set and a floor is broken.
pub async fn run(cfg: Config, o: Options) -> anyhow::Result<bool> {
    let tmp = tempfile::tempdir()?;
    let (api, _server) = match &o.url {
        Some(url) => (
            Api {
                base: url.trim_end_matches('/').to_string(),
                key: o.api_key.clone(),
                http: client()?,
            },
            None,
        ),
        None => {
            let (api, _, server) = start_server(cfg.clone(), tmp.path()).await?;
            (api, Some(server))
        }
    };
    let ready = api
        .req(reqwest::Method::GET, "/readyz")
        .send()
        .await?
        .json::<Value>()
        .await?;
    eprintln!("server: {}", api.base);
    eprintln!(
        "models: embedder {}, generator {}, asr {}",
        ready["embedder"], ready["generator"], ready["asr"]
    );

    let cards: Vec<Card> = read_jsonl(&o.dir.join("kb_cards.jsonl"))?;
    let questions: Vec<Question> = read_jsonl(&o.dir.join("kb_questions.jsonl"))?;
    let ids = load_cards(&api, &o.dir.join("kb_cards.jsonl"), &cards).await?;

    let mut report = BTreeMap::<String, Value>::new();
    let started = Instant::now();
    let mut lap = Instant::now();
    // One line per suite as it ends: the progress bars are hidden when stderr is not a terminal.
    let mut done = |report: &mut BTreeMap<String, Value>, suite: &str, v: Value| {
        eprintln!("{suite}: done in {:.0} s", lap.elapsed().as_secs_f64());
        lap = Instant::now();
        report.insert(suite.into(), v);
    };
    let run = |suite: &str| o.suites.iter().any(|s| s == suite);
    if run("retrieval") {
        let v = retrieval(&api, &questions, &ids, o.concurrency).await?;
        done(&mut report, "retrieval", v);
    }
    if run("handoff") {
        let v = handoff(&api, &questions, o.concurrency).await?;
        done(&mut report, "handoff", v);
    }
    let generating = !ready["generator"].as_str().unwrap_or("").starts_with("not");
    if run("answers") && o.answers > 0 && generating {
        let v = answers(&api, &questions, &cards, &ids, o.answers).await?;
        done(&mut report, "answers", v);
    } else if run("answers") {
        eprintln!(
            "answers: skipped ({})",
            if generating {
                "--answers 0"
            } else {
                "no generator"
            }
        );
    }
    if run("sentiment") {
        let turns = read_jsonl(&o.dir.join("sentiment_turns.jsonl"))?;
        done(&mut report, "sentiment", sentiment(&api, &turns).await?);
    }
    if run("signals") {
        let turns = read_jsonl(&o.dir.join("support_turns.jsonl"))?;
        done(&mut report, "signals", signals(&api, &turns).await?);
    }
    if run("routing") {
        let convs = read_jsonl(&o.dir.join("routing_conversations.jsonl"))?;
        done(&mut report, "routing", routing(&api, &convs).await?);
    }
    if run("adversarial") {
        let attempts = read_jsonl(&o.dir.join("adversarial.jsonl"))?;
        done(
            &mut report,
            "adversarial",
            adversarial(&api, &attempts).await?,
        );
    }
    if run("escalation") {
        let convs = read_jsonl(&o.dir.join("escalation_conversations.jsonl"))?;
        done(&mut report, "escalation", escalation(&api, &convs).await?);
    }
    if run("asr") && ready["asr"].as_str().is_some_and(|a| a.starts_with("ok")) {
        done(&mut report, "asr", asr(&api, &cfg).await?);
    } else if run("asr") {
        eprintln!("asr: skipped (no speech model)");
    }
    if run("mining") && generating {
        let convs = read_jsonl(&o.dir.join("mined_conversations.jsonl"))?;
        done(&mut report, "mining", mining(&cfg, &convs).await?);
    } else if run("mining") {
        eprintln!("mining: skipped (no generator)");
    }
    if run("gaps") {
        let questions = read_jsonl(&o.dir.join("gap_questions.jsonl"))?;
        done(&mut report, "gaps", gaps(&cfg, &questions).await?);
    }
    if run("pii") {
        let strings = read_jsonl(&o.dir.join("pii_strings.jsonl"))?;
        done(&mut report, "pii", pii(&strings, &cfg.compliance.allow)?);
    }
    let seconds = started.elapsed().as_secs_f64();

    let floors: Value = serde_json::from_str(&std::fs::read_to_string(o.dir.join("floors.json"))?)?;
    let floors = &floors["kefu_eval"];
    let rows = rows(&report, floors)?;
    let broken: Vec<&Row> = rows.iter().filter(|r| r.ok == Some(false)).collect();
    let meta = json!({
        "server": api.base, "embedder": ready["embedder"], "generator": ready["generator"],
        "asr": ready["asr"], "seconds": (seconds * 10.0).round() / 10.0,
        "cards": cards.len(), "questions": questions.len(),
    });
    std::fs::create_dir_all(&o.out)?;
    let full = json!({"meta": meta, "suites": report, "broken_floors": broken.iter().map(|r| &r.metric).collect::<Vec<_>>()});
    std::fs::write(
        o.out.join("report.json"),
        serde_json::to_string_pretty(&full)?,
    )?;
    let md = markdown(&rows, &meta);
    std::fs::write(o.out.join("report.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {} and report.md ({seconds:.0} s)",
        o.out.join("report.json").display()
    );
    if !broken.is_empty() {
        for r in &broken {
            eprintln!(
                "FLOOR BROKEN: {} = {} ({})",
                r.metric,
                fmt(r.value),
                r.floor
            );
        }
    }
    Ok(!o.check || broken.is_empty())
}

/// Means of a metric over groups (all, by kind, by language, by split).
#[derive(Default)]
struct Groups(BTreeMap<String, (f64, usize)>);

impl Groups {
    fn add(&mut self, keys: &[String], v: f64) {
        for k in keys {
            let e = self.0.entry(k.clone()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }

    fn mean(&self, k: &str) -> f64 {
        self.0.get(k).map_or(f64::NAN, |(s, n)| s / *n as f64)
    }

    fn n(&self, k: &str) -> usize {
        self.0.get(k).map_or(0, |e| e.1)
    }
}

/// A yes/no decision against the truth (positive: hand off, escalate), per group.
#[derive(Default, Clone, Copy)]
struct Confusion {
    tp: usize,
    fp: usize,
    fn_: usize,
    tn: usize,
}

impl Confusion {
    fn add(&mut self, predicted: bool, truth: bool) {
        match (predicted, truth) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// Precision and recall are null for a group without positives (covered questions only):
    /// there they would say nothing.
    fn metrics(&self) -> serde_json::Map<String, Value> {
        let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
        let positives = self.tp + self.fn_ > 0;
        let n = self.tp + self.fp + self.fn_ + self.tn;
        let mut m = serde_json::Map::new();
        m.insert(
            "precision".into(),
            if positives {
                json!(ratio(self.tp, self.tp + self.fp))
            } else {
                Value::Null
            },
        );
        m.insert(
            "recall".into(),
            if positives {
                json!(ratio(self.tp, self.tp + self.fn_))
            } else {
                Value::Null
            },
        );
        m.insert("accuracy".into(), json!(ratio(self.tp + self.tn, n)));
        m.insert("n".into(), json!(n));
        m
    }
}

fn keys(q: &Question) -> Vec<String> {
    vec![
        "all".into(),
        format!("kind.{}", q.kind),
        format!("lang.{}", q.lang),
        format!("split.{}", q.split),
    ]
}

/// `f` over every item, `concurrency` at a time, results in item order, with a progress bar.
async fn each<'a, T: Sync, R, F>(
    items: &'a [T],
    concurrency: usize,
    label: &str,
    f: impl Fn(&'a T) -> F,
) -> anyhow::Result<Vec<R>>
where
    F: Future<Output = anyhow::Result<R>>,
{
    let pb = bar(items.len(), label);
    let out = futures::stream::iter(items)
        .map(|item| {
            let r = f(item);
            let pb = pb.clone();
            async move {
                let r = r.await;
                pb.inc(1);
                r
            }
        })
        .buffered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();
    pb.finish_and_clear();
    out
}

/// A conversation whose earlier customer turns are `history` (multi-turn questions).
async fn open_conversation(api: &Api, id: &str, history: &[String]) -> anyhow::Result<()> {
    for h in history {
        api.post(
            &format!("/v1/conversations/{id}/turns"),
            json!({"role": "customer", "channel": "chat", "text": h}),
        )
        .await?;
    }
    Ok(())
}

async fn retrieval(
    api: &Api,
    questions: &[Question],
    ids: &HashMap<String, String>,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let asked: Vec<&Question> = questions
        .iter()
        .filter(|q| q.card.is_some() && q.history.is_empty())
        .collect();
    let ranks = each(&asked, concurrency, "retrieval", |q| async move {
        let v = api
            .post("/v1/search", json!({"query": q.question, "top_k": 5}))
            .await?;
        let want = &ids[q.card.as_deref().expect("answerable")];
        Ok(v["hits"]
            .as_array()
            .and_then(|h| h.iter().position(|h| h["card_id"].as_str() == Some(want))))
    })
    .await?;
    let (mut r1, mut r5, mut mrr) = (Groups::default(), Groups::default(), Groups::default());
    let mut misses = Vec::new();
    let firsts: Vec<bool> = ranks.iter().map(|r| *r == Some(0)).collect();
    for (q, rank) in asked.iter().zip(ranks) {
        let k = keys(q);
        r1.add(&k, f64::from(rank == Some(0)));
        r5.add(&k, f64::from(rank.is_some()));
        mrr.add(&k, rank.map_or(0.0, |r| 1.0 / (r as f64 + 1.0)));
        if rank != Some(0) && misses.len() < 20 {
            misses.push(json!({"id": q.id, "question": q.question, "card": q.card, "rank": rank.map(|r| r + 1)}));
        }
    }
    let mut out = serde_json::Map::new();
    for g in r1.0.keys() {
        out.insert(
            g.clone(),
            json!({"recall@1": r1.mean(g), "recall@5": r5.mean(g), "mrr": mrr.mean(g), "n": r1.n(g)}),
        );
    }
    // The cross-language gap: how much less often a question about a card in the other language
    // finds it first than a question in the card's own language (mixed-language ones aside).
    let (mut same, mut cross) = (Groups::default(), Groups::default());
    for (q, hit) in asked.iter().zip(&firsts) {
        match q.kind.as_str() {
            "cross_language" => cross.add(&["all".into()], f64::from(*hit)),
            "mixed" => {}
            _ => same.add(&["all".into()], f64::from(*hit)),
        }
    }
    if cross.n("all") > 0 {
        out.insert(
            "cross_language_gap".into(),
            json!({"recall@1": same.mean("all") - cross.mean("all"), "n": cross.n("all")}),
        );
    }
    out.insert("misses".into(), json!(misses));
    Ok(Value::Object(out))
}

/// What `/v1/answer` decided for a question: handed off (and why), or answered.
async fn decide(api: &Api, q: &Question) -> anyhow::Result<(bool, String)> {
    let conversation = format!("eval-{}", q.id);
    open_conversation(api, &conversation, &q.history).await?;
    let body = json!({"question": q.question, "channel": "chat", "conversation_id": conversation, "stream": true});
    let res = api
        .send("/v1/answer", || {
            api.req(reqwest::Method::POST, "/v1/answer").json(&body)
        })
        .await?;
    // The first event says it: text being generated, or a finished hand-off. Dropping the
    // response then stops the generation.
    let Some((name, data)) = Events::new(res).next().await? else {
        bail!("/v1/answer {}: the stream ended without an event", q.id)
    };
    Ok(match name.as_str() {
        "delta" => (false, String::new()),
        "done" => {
            let a: Value = serde_json::from_str(&data)?;
            let reason = a["handoff_reason"].as_str().unwrap_or("").to_string();
            // Without a generator the decision to answer shows as this hand-off.
            (
                a["handoff"] == true && reason != "generator_unavailable",
                reason,
            )
        }
        other => bail!("/v1/answer {}: event {other}: {data}", q.id),
    })
}

async fn handoff(api: &Api, questions: &[Question], concurrency: usize) -> anyhow::Result<Value> {
    let decided = each(questions, concurrency, "handoff", |q| decide(api, q)).await?;
    let mut by: BTreeMap<String, Confusion> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (q, (handed, reason)) in questions.iter().zip(decided) {
        let unanswerable = q.card.is_none();
        for k in keys(q) {
            by.entry(k).or_default().add(handed, unanswerable);
        }
        if handed {
            *reasons.entry(reason).or_default() += 1;
        }
        if handed != unanswerable && wrong.len() < 30 {
            wrong.push(
                json!({"id": q.id, "question": q.question, "handed_off": handed, "card": q.card}),
            );
        }
    }
    let mut out = serde_json::Map::new();
    for (g, c) in by {
        let mut m = c.metrics();
        if c.tn + c.fp > 0 {
            m.insert(
                "answered_when_covered".into(),
                json!(c.tn as f64 / (c.tn + c.fp) as f64),
            );
        }
        out.insert(g, Value::Object(m));
    }
    out.insert("reasons".into(), json!(reasons));
    out.insert("wrong".into(), json!(wrong));
    Ok(Value::Object(out))
}

/// Content units of a text: lower-cased Latin words of 3+ letters that are not function words,
/// numbers, and Chinese character bigrams.
fn units(text: &str) -> Vec<String> {
    const STOP: &[&str] = &[
        "the", "and", "for", "you", "your", "are", "can", "with", "that", "this", "our", "from",
        "have", "has", "will", "not", "but", "all", "any", "was", "its", "may", "also", "please",
        "here", "there", "they", "them", "which", "what", "when", "then", "than", "into", "out",
        "about", "would", "could", "should", "been", "being", "their", "just", "get", "how",
        "hello", "thanks", "thank", "sorry", "happy", "help",
    ];
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    let flush_word = |w: &mut String, out: &mut Vec<String>| {
        let lw = w.to_lowercase();
        let numeric = lw.chars().any(|c| c.is_ascii_digit());
        if numeric || (lw.chars().count() >= 3 && !STOP.contains(&lw.as_str())) {
            out.push(lw.trim_end_matches(['.', ',']).to_string());
        }
        w.clear();
    };
    let flush_cjk = |c: &mut Vec<char>, out: &mut Vec<String>| {
        if c.len() == 1 {
            out.push(c[0].to_string());
        }
        out.extend(c.windows(2).map(|w| w.iter().collect::<String>()));
        c.clear();
    };
    for ch in text.chars() {
        let is_cjk = ('\u{4e00}'..='\u{9fff}').contains(&ch);
        if ch.is_alphanumeric() && !is_cjk
            || (ch == '.' || ch == ',') && word.chars().last().is_some_and(|c| c.is_ascii_digit())
        {
            flush_cjk(&mut cjk, &mut out);
            word.push(ch);
        } else if is_cjk {
            if !word.is_empty() {
                flush_word(&mut word, &mut out);
            }
            cjk.push(ch);
        } else {
            if !word.is_empty() {
                flush_word(&mut word, &mut out);
            }
            flush_cjk(&mut cjk, &mut out);
        }
    }
    if !word.is_empty() {
        flush_word(&mut word, &mut out);
    }
    flush_cjk(&mut cjk, &mut out);
    out
}

fn sentences(text: &str) -> Vec<&str> {
    text.split(['.', '!', '?', '。', '！', '？', '\n'])
        .map(str::trim)
        .filter(|s| units(s).len() >= 2)
        .collect()
}

/// How much of an answer the cited cards support: (supported sentences / sentences, numbers in
/// the answer that no cited card has).
fn grounding(answer: &str, cited: &[&str]) -> (f64, Vec<String>) {
    // A numbered list's "1." and "2)" count items; they are not claims to find in a card.
    let answer: String = answer
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            match t[digits..].strip_prefix(['.', ')']) {
                Some(rest) if digits > 0 && rest.starts_with(' ') => rest,
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let answer = answer.as_str();
    let source: HashSet<String> = cited.iter().flat_map(|c| units(c)).collect();
    let ss = sentences(answer);
    let supported = ss
        .iter()
        .filter(|s| {
            let u = units(s);
            let found = u.iter().filter(|x| source.contains(*x)).count();
            found as f64 >= 0.6 * u.len() as f64
        })
        .count();
    let invented: Vec<String> = units(answer)
        .into_iter()
        .filter(|u| u.chars().any(|c| c.is_ascii_digit()) && !source.contains(u))
        .collect();
    let share = if ss.is_empty() {
        1.0
    } else {
        supported as f64 / ss.len() as f64
    };
    (share, invented)
}

async fn answers(
    api: &Api,
    questions: &[Question],
    cards: &[Card],
    ids: &HashMap<String, String>,
    n: usize,
) -> anyhow::Result<Value> {
    let body: HashMap<&str, String> = cards
        .iter()
        .map(|c| (ids[&c.title].as_str(), format!("{}\n{}", c.title, c.body)))
        .collect();
    // A fixed, even spread over the answerable questions (every kind and both languages).
    let pool: Vec<&Question> = questions.iter().filter(|q| q.card.is_some()).collect();
    let step = (pool.len() as f64 / n.min(pool.len()).max(1) as f64).max(1.0);
    let sample: Vec<&Question> = (0..n.min(pool.len()))
        .map(|i| pool[(i as f64 * step) as usize])
        .collect();
    let pb = bar(sample.len(), "answers");
    let mut groups = BTreeMap::<String, AnswerTally>::new();
    let mut examples = Vec::new();
    for q in &sample {
        let conversation = format!("eval-answer-{}", q.id);
        open_conversation(api, &conversation, &q.history).await?;
        let asked = Instant::now();
        let a = api
            .post(
                "/v1/answer",
                json!({"question": q.question, "channel": "chat", "conversation_id": conversation}),
            )
            .await?;
        let seconds = asked.elapsed().as_secs_f64();
        pb.inc(1);
        let mut graded = Graded {
            seconds,
            ..Graded::default()
        };
        if a["handoff"] == true {
            graded.withheld = a["handoff_reason"] == "ungrounded";
        } else {
            let want = &ids[q.card.as_deref().expect("answerable")];
            let cites: Vec<&str> = a["citations"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["card_id"].as_str()).collect())
                .unwrap_or_default();
            let texts: Vec<&str> = cites
                .iter()
                .filter_map(|c| body.get(c).map(String::as_str))
                .collect();
            let text = a["answer"].as_str().unwrap_or("");
            let (share, invented) = grounding(text, &texts);
            if (share < 1.0 || !invented.is_empty()) && examples.len() < 10 {
                examples.push(json!({"id": q.id, "question": q.question, "answer": text, "grounded": share, "numbers_not_in_cards": invented}));
            }
            graded.sent = Some(Sent {
                cited_right: cites.contains(&want.as_str()),
                first_right: cites.first() == Some(&want.as_str()),
                grounded: share,
                invented: !invented.is_empty(),
            });
        }
        for k in keys(q) {
            groups.entry(k).or_default().add(&graded);
        }
    }
    pb.finish_and_clear();
    let mut out = serde_json::Map::new();
    for (k, t) in groups {
        out.insert(k, t.metrics());
    }
    out.insert("examples".into(), json!(examples));
    Ok(Value::Object(out))
}

/// One graded `/v1/answer` call.
#[derive(Default)]
struct Graded {
    seconds: f64,
    /// Handed off with reason `ungrounded`: generated, then withheld.
    withheld: bool,
    /// What was sent, when it was an answer.
    sent: Option<Sent>,
}

struct Sent {
    cited_right: bool,
    first_right: bool,
    /// The share of the answer's sentences supported by the cited cards.
    grounded: f64,
    /// A number that none of the cited cards gives.
    invented: bool,
}

/// The answers suite's sums for one group (all, by kind, language, split).
#[derive(Default)]
struct AnswerTally {
    n: usize,
    answered: usize,
    withheld: usize,
    cited_right: usize,
    first_right: usize,
    grounded: f64,
    fully: usize,
    invented: usize,
    seconds: f64,
}

impl AnswerTally {
    fn add(&mut self, g: &Graded) {
        self.n += 1;
        self.seconds += g.seconds;
        self.withheld += usize::from(g.withheld);
        if let Some(s) = &g.sent {
            self.answered += 1;
            self.cited_right += usize::from(s.cited_right);
            self.first_right += usize::from(s.first_right);
            self.grounded += s.grounded;
            self.fully += usize::from(s.grounded >= 1.0);
            self.invented += usize::from(s.invented);
        }
    }

    /// Shares of the answers sent (null when none was), so that a hand-off never counts as a
    /// grounded answer.
    fn metrics(&self) -> Value {
        let per = |x: f64| {
            if self.answered > 0 {
                json!(x / self.answered as f64)
            } else {
                Value::Null
            }
        };
        json!({
            "n": self.n,
            "answered": self.answered,
            // Generated, then withheld: a number no card gave (the customer got a hand-off).
            "withheld_ungrounded": self.withheld,
            "citation_correct": per(self.cited_right as f64),
            "first_citation_correct": per(self.first_right as f64),
            "groundedness": per(self.grounded),
            "fully_grounded": per(self.fully as f64),
            "with_invented_numbers": per(self.invented as f64),
            // Wall time of one whole answer (sequential calls), the hand-offs included.
            "seconds_mean": self.seconds / self.n.max(1) as f64,
        })
    }
}

async fn sentiment(api: &Api, turns: &[SentimentTurn]) -> anyhow::Result<Value> {
    let (mut right, mut negative) = (Groups::default(), Groups::default());
    for chunk in turns.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|t| t.text.as_str()).collect();
        let v = api.post("/v1/sentiment", json!({"texts": texts})).await?;
        let results = v["results"].as_array().context("no results")?;
        for (t, r) in chunk.iter().zip(results) {
            let got = r["label"].as_str().unwrap_or("");
            let k = ["all".to_string(), format!("lang.{}", t.lang)];
            right.add(&k, f64::from(got == t.label));
            negative.add(
                &k,
                f64::from((got == "negative") == (t.label == "negative")),
            );
        }
    }
    let mut out = serde_json::Map::new();
    for k in right.0.keys() {
        out.insert(
            k.clone(),
            json!({"accuracy": right.mean(k), "negative_vs_rest_accuracy": negative.mean(k), "n": right.n(k)}),
        );
    }
    Ok(Value::Object(out))
}

/// `/v1/signals` on the labelled support turns of the held-out split (the heads learn from the
/// train and dev splits): sentiment and intent accuracy, and each emotion's F1 with their macro
/// mean, by language.
async fn signals(api: &Api, turns: &[SupportTurn]) -> anyhow::Result<Value> {
    let turns: Vec<&SupportTurn> = turns.iter().filter(|t| t.split == "heldout").collect();
    let (mut sentiment, mut intent) = (Groups::default(), Groups::default());
    let mut emotions: BTreeMap<String, BTreeMap<&str, Confusion>> = BTreeMap::new();
    for chunk in turns.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|t| t.text.as_str()).collect();
        let v = api.post("/v1/signals", json!({"texts": texts})).await?;
        let results = v["results"].as_array().context("no results")?;
        for (t, r) in chunk.iter().zip(results) {
            let keys = [
                format!("split.{}", t.split),
                format!("split.{}.lang.{}", t.split, t.lang),
            ];
            let got_sentiment = r["sentiment"]["label"].as_str().unwrap_or("");
            let got_intent = r["intent"]["name"].as_str().unwrap_or("");
            sentiment.add(&keys, f64::from(got_sentiment == t.sentiment));
            intent.add(&keys, f64::from(got_intent == t.intent));
            let present: Vec<&str> = r["emotions"]["present"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for k in &keys {
                for e in EMOTIONS {
                    emotions
                        .entry(k.clone())
                        .or_default()
                        .entry(e)
                        .or_default()
                        .add(present.contains(&e), t.emotions.iter().any(|x| x == e));
                }
            }
        }
    }
    let f1 = |c: &Confusion| {
        let d = 2 * c.tp + c.fp + c.fn_;
        if d == 0 {
            1.0
        } else {
            2.0 * c.tp as f64 / d as f64
        }
    };
    let mut out = serde_json::Map::new();
    for k in sentiment.0.keys() {
        let per: serde_json::Map<String, Value> = emotions[k]
            .iter()
            .map(|(e, c)| (e.to_string(), json!(f1(c))))
            .collect();
        let macro_f1 = emotions[k].values().map(f1).sum::<f64>() / EMOTIONS.len() as f64;
        out.insert(
            k.clone(),
            json!({
                "sentiment_accuracy": sentiment.mean(k),
                "intent_accuracy": intent.mean(k),
                "emotion_macro_f1": macro_f1,
                "emotion_f1": per,
                "n": sentiment.n(k),
            }),
        );
    }
    Ok(Value::Object(out))
}

/// Scripted conversations turn by turn, then `POST /v1/route` with the customer's tags: the
/// share routed to the right queue, and at the right priority.
async fn routing(api: &Api, convs: &[RoutedConversation]) -> anyhow::Result<Value> {
    let (mut queue, mut priority) = (Groups::default(), Groups::default());
    let mut wrong = Vec::new();
    for c in convs {
        let id = format!("eval-{}", c.id);
        for t in &c.turns {
            api.post(
                &format!("/v1/conversations/{id}/turns"),
                json!({"role": t.role, "channel": "chat", "text": t.text, "customer_id": format!("eval-customer-{}", c.id)}),
            )
            .await?;
        }
        let r = api
            .post(
                "/v1/route",
                json!({"conversation_id": id, "customer_tags": c.tags}),
            )
            .await?;
        let keys = [
            "all".to_string(),
            format!("split.{}", c.split),
            format!("split.{}.lang.{}", c.split, c.lang),
        ];
        let right_queue = r["queue"] == c.queue.as_str();
        queue.add(&keys, f64::from(right_queue));
        priority.add(&keys, f64::from(r["priority"] == c.priority.as_str()));
        if !right_queue || r["priority"] != c.priority.as_str() {
            wrong.push(json!({"id": c.id, "expected": [c.queue, c.priority], "got": [r["queue"], r["priority"]], "reasons": r["reasons"]}));
        }
    }
    let mut out = serde_json::Map::new();
    for k in queue.0.keys() {
        out.insert(
            k.clone(),
            json!({"right_queue": queue.mean(k), "right_priority": priority.mean(k), "n": queue.n(k)}),
        );
    }
    out.insert("wrong".into(), json!(wrong));
    Ok(Value::Object(out))
}

/// Attempts to take over the answer endpoint: the share refused as such (`unsupported_request`,
/// before any model sees them) and the share that got a reply at all, by language, form and
/// split, and the share of controls (the same words in ordinary questions) wrongly refused.
async fn adversarial(api: &Api, attempts: &[Attempt]) -> anyhow::Result<Value> {
    let (mut refused, mut answered, mut false_refusal) =
        (Groups::default(), Groups::default(), Groups::default());
    let mut missed = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        // One customer each: one customer's many contacts would be escalated as repeats first.
        let v = api
            .post(
                "/v1/answer",
                json!({"question": a.text, "channel": "chat", "customer_id": format!("eval-adversary-{i}")}),
            )
            .await?;
        let hit = v["handoff_reason"] == "unsupported_request";
        if a.attack {
            let k = [
                "all".to_string(),
                format!("lang.{}", a.lang),
                format!("form.{}", a.form),
                format!("split.{}", a.split),
            ];
            refused.add(&k, f64::from(hit));
            // Not refused, not handed off for another reason: a reply came back.
            answered.add(&k, f64::from(v["handoff"] == false));
            if !hit {
                missed.push(json!({"text": a.text, "lang": a.lang, "form": a.form, "split": a.split, "answer": v["answer"], "handoff_reason": v["handoff_reason"]}));
            }
        } else {
            false_refusal.add(&["all".to_string()], f64::from(hit));
        }
    }
    let mut out = serde_json::Map::new();
    for k in refused.0.keys() {
        out.insert(
            k.clone(),
            json!({"refused": refused.mean(k), "answered": answered.mean(k), "n": refused.n(k)}),
        );
    }
    out.insert(
        "controls".into(),
        json!({"false_refusal": false_refusal.mean("all"), "n": false_refusal.n("all")}),
    );
    out.insert("missed".into(), json!(missed));
    Ok(Value::Object(out))
}

/// Span recall (each labelled piece of personal data masked, at least partly overlapped by a
/// found span), precision (found spans that overlap a labelled one: masking an order code is
/// the error that counts), and kind accuracy of the spans found, by language, split and form.
fn pii(strings: &[PiiString], allow: &[String]) -> anyhow::Result<Value> {
    let detector = kefu::pii::Detector::new(allow);
    let (mut recall, mut precision, mut kind) =
        (Groups::default(), Groups::default(), Groups::default());
    let mut missed = Vec::new();
    for s in strings {
        let found = detector.find(&s.text);
        let mut labelled = Vec::new();
        for l in &s.pii {
            let start = s
                .text
                .find(&l.text)
                .with_context(|| format!("{:?} is not in {:?}", l.text, s.text))?;
            labelled.push((start, start + l.text.len(), l));
        }
        let groups = [
            "all".to_string(),
            format!("lang.{}", s.lang),
            format!("split.{}", s.split),
        ];
        for &(a, b, l) in &labelled {
            let hit = found.iter().find(|f| f.start < b && a < f.end);
            let mut k = groups.to_vec();
            k.push(format!("form.{}", l.form));
            recall.add(&k, f64::from(hit.is_some()));
            if let Some(f) = hit {
                kind.add(&groups, f64::from(f.kind.as_str() == l.kind));
            } else {
                missed.push(json!({"text": s.text, "missed": l.text, "form": l.form}));
            }
        }
        for f in &found {
            let right = labelled.iter().any(|&(a, b, _)| f.start < b && a < f.end);
            precision.add(&groups, f64::from(right));
            if !right {
                missed.push(json!({"text": s.text, "masked_wrongly": &s.text[f.start..f.end], "as": f.kind.as_str()}));
            }
        }
    }
    let mut out = serde_json::Map::new();
    for k in recall.0.keys().chain(precision.0.keys()) {
        if out.contains_key(k) {
            continue;
        }
        let mut m = serde_json::Map::new();
        if recall.n(k) > 0 {
            m.insert("recall".into(), json!(recall.mean(k)));
            m.insert("n".into(), json!(recall.n(k)));
        }
        if precision.n(k) > 0 {
            m.insert("precision".into(), json!(precision.mean(k)));
        }
        if kind.n(k) > 0 {
            m.insert("kind_accuracy".into(), json!(kind.mean(k)));
        }
        m.entry("n").or_insert(json!(0));
        out.insert(k.clone(), Value::Object(m));
    }
    out.insert("errors".into(), json!(missed));
    Ok(Value::Object(out))
}

async fn escalation(api: &Api, convs: &[Conversation]) -> anyhow::Result<Value> {
    let mut by: BTreeMap<String, Confusion> = BTreeMap::new();
    let mut wrong = Vec::new();
    for c in convs {
        let id = format!("eval-{}", c.id);
        let mut last = Value::Null;
        for t in &c.turns {
            last = api
                .post(
                    &format!("/v1/conversations/{id}/turns"),
                    json!({"role": t.role, "channel": "chat", "text": t.text, "customer_id": format!("eval-customer-{}", c.id)}),
                )
                .await?;
        }
        let flagged = last["escalation"]["flagged"] == true;
        let mut keys = vec!["all".to_string(), format!("lang.{}", c.lang)];
        if !c.split.is_empty() {
            keys.push(format!("split.{}", c.split));
            keys.push(format!("split.{}.lang.{}", c.split, c.lang));
        }
        for k in keys {
            by.entry(k).or_default().add(flagged, c.escalate);
        }
        if flagged != c.escalate {
            wrong.push(json!({"id": c.id, "expected": c.escalate, "reasons": last["escalation"]["reasons"]}));
        }
    }
    let mut out: serde_json::Map<String, Value> = by
        .into_iter()
        .map(|(k, c)| (k, Value::Object(c.metrics())))
        .collect();
    out.insert("wrong".into(), json!(wrong));
    Ok(Value::Object(out))
}

/// Mining on a server of its own (no published cards to merge into): each conversation is
/// written, resolved, and its job awaited, in file order. Per conversation: whether the draft
/// holds every fact, holds no personal data, and is in the conversation's language; and whether
/// merging was right (positive: merged; true when an earlier conversation of its group exists;
/// a merge into another group's card counts as a false merge and a missed one).
async fn mining(cfg: &Config, convs: &[MinedConversation]) -> anyhow::Result<Value> {
    let tmp = tempfile::tempdir()?;
    let (api, _state, _server) = start_server(cfg.clone(), tmp.path()).await?;
    let mut card_group: HashMap<String, String> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let (mut facts, mut clean, mut language, mut by_model) = (
        Groups::default(),
        Groups::default(),
        Groups::default(),
        Groups::default(),
    );
    let mut merges: BTreeMap<String, Confusion> = BTreeMap::new();
    let (mut wrong, mut scores) = (Vec::new(), Vec::new());
    let pb = bar(convs.len(), "mining");
    for c in convs {
        let customer = format!("mining-{}", c.id);
        for t in &c.turns {
            let channel = if t.role == "agent" { "agent" } else { "chat" };
            api.post(
                &format!("/v1/conversations/{}/turns", c.id),
                json!({"role": t.role, "channel": channel, "text": t.text, "customer_id": customer}),
            )
            .await?;
        }
        api.post(&format!("/v1/conversations/{}/resolve", c.id), json!({}))
            .await?;
        let job = loop {
            let v = api.get("/v1/jobs?limit=500").await?;
            let job = v["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|j| j["subject"] == c.id.as_str())
                .cloned();
            match job {
                Some(j) if j["state"] == "done" || j["state"] == "failed" => break j,
                None => bail!("resolving {} queued no mining job", c.id),
                _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        };
        pb.inc(1);
        let result = &job["result"];
        let (card, merged) = match (result["created"].as_str(), result["merged_into"].as_str()) {
            (Some(card), _) => (card.to_string(), false),
            (None, Some(card)) => (card.to_string(), true),
            _ => bail!("mining {} did not draft: {job}", c.id),
        };
        let similarity = result["similarity"]
            .as_f64()
            .or(result["nearest"]["similarity"].as_f64());
        let ev = api.get(&format!("/v1/cards/{card}/evidence")).await?;
        let mine = ev["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["conversation_id"] == c.id.as_str())
            .cloned()
            .with_context(|| format!("card {card} has no evidence from {}", c.id))?;
        let wording = mine["wording"].as_str().unwrap_or_default();
        let lower = wording.to_lowercase();
        let missing: Vec<&String> = c
            .facts
            .iter()
            .filter(|f| !f.split('|').any(|alt| lower.contains(&alt.to_lowercase())))
            .collect();
        let stored = format!(
            "{wording}\n{}",
            mine["question"].as_str().unwrap_or_default()
        );
        let leaked: Vec<&String> = c
            .personal
            .iter()
            .filter(|p| stored.to_lowercase().contains(&p.to_lowercase()))
            .collect();
        let cjk = wording
            .chars()
            .filter(|ch| ('\u{4e00}'..='\u{9fff}').contains(ch))
            .count();
        let letters = wording.chars().filter(|ch| ch.is_alphabetic()).count();
        let lang = if letters > 0 && cjk * 5 >= letters {
            "zh"
        } else {
            "en"
        };
        let keys = vec![
            "all".to_string(),
            format!("lang.{}", c.lang),
            format!("split.{}", c.split),
            format!("split.{}.lang.{}", c.split, c.lang),
        ];
        facts.add(&keys, f64::from(missing.is_empty()));
        clean.add(&keys, f64::from(leaked.is_empty()));
        language.add(&keys, f64::from(lang == c.lang));
        let written = job_written_by_model(&api, &card, &c.id).await?;
        by_model.add(&keys, f64::from(written));
        let truth = seen.contains(&c.group);
        let right_card = merged && card_group.get(&card) == Some(&c.group);
        for k in &keys {
            let m = merges.entry(k.clone()).or_default();
            if merged && truth && !right_card {
                m.add(true, false);
                m.add(false, true);
            } else {
                m.add(merged, truth);
            }
        }
        if !merged {
            card_group.insert(card.clone(), c.group.clone());
        }
        seen.insert(c.group.clone());
        scores.push(json!({"id": c.id, "split": c.split, "repeat": truth, "similarity": similarity, "merged": merged}));
        if !missing.is_empty()
            || !leaked.is_empty()
            || lang != c.lang
            || merged != truth
            || (merged && !right_card)
        {
            wrong.push(json!({"id": c.id, "missing": missing, "leaked": leaked, "language": lang,
                "merged": merged, "should_merge": truth, "similarity": similarity, "wording": wording}));
        }
    }
    pb.finish_and_clear();
    let mut out = serde_json::Map::new();
    for (k, m) in merges {
        let mut v = m.metrics();
        v.insert("holds_every_fact".into(), json!(facts.mean(&k)));
        v.insert("free_of_personal_data".into(), json!(clean.mean(&k)));
        v.insert(
            "with_personal_data".into(),
            json!(((1.0 - clean.mean(&k)) * clean.n(&k) as f64).round()),
        );
        v.insert("language_right".into(), json!(language.mean(&k)));
        v.insert("written_by_model".into(), json!(by_model.mean(&k)));
        out.insert(k, Value::Object(v));
    }
    out.insert("wrong".into(), json!(wrong));
    out.insert("scores".into(), json!(scores));
    Ok(Value::Object(out))
}

/// Knowledge gaps: each split's questions asked of a server of its own with no cards (every one
/// handed off as `no_relevant_card`), then `GET /v1/analytics/gaps`. Purity: the share of
/// questions whose gap's largest topic is their own; inverse purity: the share whose topic's
/// largest gap holds them (all singletons would score purity 1 and inverse purity low).
async fn gaps(cfg: &Config, questions: &[GapQuestion]) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    let mut splits: Vec<&str> = questions.iter().map(|q| q.split.as_str()).collect();
    splits.sort_unstable();
    splits.dedup();
    // Each split alone (the threshold was chosen on dev), then all of them together.
    splits.push("all");
    for split in splits {
        let tmp = tempfile::tempdir()?;
        let (api, _state, _server) = start_server(cfg.clone(), tmp.path()).await?;
        let mine: Vec<&GapQuestion> = questions
            .iter()
            .filter(|q| split == "all" || q.split == split)
            .collect();
        let mut topic_of: HashMap<String, (&str, &str)> = HashMap::new();
        let pb = bar(mine.len(), &format!("gaps {split}"));
        for (i, q) in mine.iter().enumerate() {
            let a = api
                .post(
                    "/v1/answer",
                    json!({"question": q.question, "channel": "chat",
                           "conversation_id": format!("gap-{split}-{i}"), "customer_id": format!("gap-{split}-{i}")}),
                )
                .await?;
            if a["handoff_reason"] != "no_relevant_card" {
                bail!(
                    "with no cards, {:?} was not handed off as no_relevant_card: {a}",
                    q.question
                );
            }
            let id = a["answer_id"].as_str().context("answer_id")?.to_string();
            topic_of.insert(id, (q.topic.as_str(), q.language.as_str()));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let report = api.get("/v1/analytics/gaps").await?;
        let gaps: Vec<Vec<(&str, &str)>> = report["rows"]
            .as_array()
            .context("gaps rows")?
            .iter()
            .map(|g| {
                g["answer_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| topic_of.get(id.as_str()?).copied())
                    .collect()
            })
            .collect();
        let placed: usize = gaps.iter().map(Vec::len).sum();
        if placed != mine.len() {
            bail!("the gaps hold {placed} of {} questions", mine.len());
        }
        let largest = |xs: Vec<&str>| -> usize {
            let mut n: HashMap<&str, usize> = HashMap::new();
            for x in xs {
                *n.entry(x).or_default() += 1;
            }
            n.into_values().max().unwrap_or(0)
        };
        let purity: usize = gaps
            .iter()
            .map(|g| largest(g.iter().map(|(t, _)| *t).collect()))
            .sum();
        let mut by_topic: HashMap<&str, Vec<String>> = HashMap::new();
        let mut mixed = 0;
        for (k, g) in gaps.iter().enumerate() {
            for (t, _) in g {
                by_topic.entry(t).or_default().push(k.to_string());
            }
            let langs: HashSet<&str> = g.iter().map(|(_, l)| *l).collect();
            mixed += usize::from(langs.len() > 1);
        }
        let inverse: usize = by_topic
            .into_values()
            .map(|gs| largest(gs.iter().map(String::as_str).collect()))
            .sum();
        let topics: HashSet<&str> = mine.iter().map(|q| q.topic.as_str()).collect();
        let n = mine.len() as f64;
        out.insert(
            if split == "all" {
                split.to_string()
            } else {
                format!("split.{split}")
            },
            json!({
                "purity": purity as f64 / n,
                "inverse_purity": inverse as f64 / n,
                "gaps": gaps.len(),
                "topics": topics.len(),
                "n": mine.len(),
                "gaps_with_both_languages": mixed,
            }),
        );
    }
    Ok(Value::Object(out))
}

/// Whether the card's mining audit entry says the chat model wrote it (merged drafts: whether
/// the model wrote the wording kept as evidence is not recorded, so only created cards count).
async fn job_written_by_model(api: &Api, card: &str, conversation: &str) -> anyhow::Result<bool> {
    let audit = api
        .get(&format!("/v1/audit?card_id={card}&limit=50"))
        .await?;
    Ok(audit["entries"].as_array().into_iter().flatten().any(|e| {
        e["action"] == "mined"
            && e["detail"]["conversation"] == conversation
            && e["detail"]["written_by"] == "model"
    }))
}

async fn asr(api: &Api, cfg: &Config) -> anyhow::Result<Value> {
    let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let files = reg.ensure("audioeval-samples")?;
    let mut rates = Groups::default();
    let mut clips = Vec::new();
    for wav in files
        .files()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
    {
        let want = std::fs::read_to_string(wav.with_extension("txt"))?;
        let audio = std::fs::read(wav)?;
        let name = wav
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let lang = if name.starts_with("zh") { "zh" } else { "en" };
        let v: Value = api
            .send("/v1/audio/transcriptions", || {
                let form = reqwest::multipart::Form::new()
                    .text("model", "whisper-1")
                    .text("language", lang)
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(audio.clone()).file_name(name.clone()),
                    );
                api.req(reqwest::Method::POST, "/v1/audio/transcriptions")
                    .multipart(form)
            })
            .await?
            .json()
            .await?;
        let got = v["text"].as_str().context("no transcript")?;
        let (metric, rate) = match lang {
            "zh" => ("cer.zh", score::char_error_rate(want.trim(), got)),
            _ => ("wer.en", score::word_error_rate(want.trim(), got)),
        };
        rates.add(&[metric.to_string()], rate);
        clips.push(json!({"clip": name, "want": want.trim(), "got": got, "error_rate": rate}));
    }
    let mut out = serde_json::Map::new();
    for k in rates.0.keys() {
        out.insert(k.clone(), json!({"mean": rates.mean(k), "n": rates.n(k)}));
    }
    out.insert("clips".into(), json!(clips));
    Ok(Value::Object(out))
}

struct Row {
    metric: String,
    value: f64,
    n: Option<u64>,
    floor: String,
    ok: Option<bool>,
}

/// Every metric of the report, flattened to `suite.group.metric`, against its floor: the
/// numbers of each group that has an `n` (lists of examples and counts of reasons are not
/// metrics). A floor on a suite that did not run (no generator, no speech model) is listed
/// as not measured; a floor on a metric that a suite that ran does not have is an error, so a
/// misspelt floor cannot pass unnoticed.
fn rows(report: &BTreeMap<String, Value>, floors: &Value) -> anyhow::Result<Vec<Row>> {
    let floor_of = |metric: &str, value: f64| {
        let f = &floors[metric];
        if let Some(min) = f["min"].as_f64() {
            (format!("≥ {min}"), Some(value >= min))
        } else if let Some(max) = f["max"].as_f64() {
            (format!("≤ {max}"), Some(value <= max))
        } else {
            (String::new(), None)
        }
    };
    let mut out = Vec::new();
    for (suite, v) in report {
        for (group, m) in v.as_object().into_iter().flatten() {
            let Some(n) = m.get("n").and_then(Value::as_u64) else {
                continue;
            };
            for (name, x) in m.as_object().into_iter().flatten() {
                let Some(value) = x.as_f64().filter(|_| name != "n") else {
                    continue;
                };
                let metric = format!("{suite}.{group}.{name}");
                let (floor, ok) = floor_of(&metric, value);
                out.push(Row {
                    metric,
                    value,
                    n: Some(n),
                    floor,
                    ok,
                });
            }
        }
    }
    for metric in floors.as_object().into_iter().flatten().map(|(k, _)| k) {
        if out.iter().any(|r| &r.metric == metric) {
            continue;
        }
        let suite = metric.split('.').next().unwrap_or_default();
        if report.contains_key(suite) {
            bail!("floors.json sets a floor on {metric}, which the {suite} suite does not report");
        }
        let (floor, _) = floor_of(metric, f64::NAN);
        out.push(Row {
            metric: metric.clone(),
            value: f64::NAN,
            n: None,
            floor: format!("{floor} (not measured: suite skipped)"),
            ok: None,
        });
    }
    Ok(out)
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.3}")
    }
}

fn markdown(rows: &[Row], meta: &Value) -> String {
    let mut s = String::from("# kefu eval\n\n");
    s.push_str(&format!(
        "embedder {}, generator {}, asr {}; {} cards, {} questions; {} s\n\n",
        meta["embedder"],
        meta["generator"],
        meta["asr"],
        meta["cards"],
        meta["questions"],
        meta["seconds"]
    ));
    s.push_str("| metric | value | n | floor | |\n|---|---|---|---|---|\n");
    for r in rows {
        let mark = match r.ok {
            Some(true) => "ok",
            Some(false) => "**BROKEN**",
            None => "",
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {mark} |\n",
            r.metric,
            fmt(r.value),
            r.n.map_or(String::new(), |n| n.to_string()),
            r.floor
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounding_finds_unsupported_sentences_and_numbers() {
        let card = "Standard delivery takes 3 to 5 business days after dispatch. Express delivery costs 9.99.";
        let (share, invented) = grounding("Standard delivery takes 3 to 5 business days.", &[card]);
        assert_eq!((share, invented.len()), (1.0, 0));
        let (share, invented) = grounding(
            "Delivery takes 3 to 5 business days. We also give a free umbrella with every laptop order.",
            &[card],
        );
        assert_eq!(share, 0.5);
        assert!(invented.is_empty());
        let (_, invented) = grounding("Express delivery costs 12.50.", &[card]);
        assert_eq!(invented, vec!["12.50".to_string()]);
        // List numbering is not a number the card must have; a number inside the item is.
        let (_, invented) = grounding(
            "Steps:\n1. Standard delivery takes 3 days.\n2) Express costs 12.50.",
            &[card],
        );
        assert_eq!(invented, vec!["12.50".to_string()]);
        let zh = "退款审核通过后原路退回：支付宝和微信支付 1 到 3 个工作日到账。";
        assert_eq!(grounding("微信支付 1 到 3 个工作日到账。", &[zh]).0, 1.0);
        assert_eq!(grounding("退款需要三十天，请耐心等待。", &[zh]).0, 0.0);
    }

    #[test]
    fn floors_are_checked_and_a_misspelt_one_is_an_error() {
        let report = BTreeMap::from([(
            "retrieval".to_string(),
            json!({"all": {"recall@1": 0.7, "n": 10}, "misses": [{"rank": 3}]}),
        )]);
        let floors =
            json!({"retrieval.all.recall@1": {"min": 0.75}, "asr.wer.en.mean": {"max": 0.2}});
        let got = rows(&report, &floors).unwrap();
        let r = |m: &str| got.iter().find(|r| r.metric == m).unwrap();
        assert_eq!(r("retrieval.all.recall@1").ok, Some(false));
        assert_eq!(r("asr.wer.en.mean").ok, None);
        assert!(r("asr.wer.en.mean").floor.contains("not measured"));
        assert_eq!(got.len(), 2, "lists and n are not metrics");
        let typo = json!({"retrieval.all.recal@1": {"min": 0.5}});
        assert!(rows(&report, &typo).is_err());
    }
}
