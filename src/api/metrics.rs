//! `/metrics`: everything is a registered Prometheus collector. HTTP requests are counted by the
//! [`track`] middleware; the models, voice streams and cards are read when scraped by
//! [`ServiceCollector`], since the runtime keeps plain atomic counters and knows nothing of
//! Prometheus. Labels are bounded: route templates, model ids, roles, card statuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
};

use super::AppState;
use super::voice::StreamCount;
use crate::desk::Desk;

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// The registry with the HTTP metrics and the service's collector.
    pub fn new(desk: Arc<Desk>, streams: Arc<StreamCount>, uploads: Arc<StreamCount>) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "kefu_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kefu_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(latency.clone()),
            Box::new(ServiceCollector::new(desk, streams, uploads)),
        ] {
            registry.register(c).expect("registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

/// Counts and times every request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template (`/v1/cards/{id}`), not the path, so ids do not explode the label set.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // HTTP allows any token as a method: a label per made-up one would grow the series without
    // bound, for anyone who can reach the port.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let res = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[&route, method])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, method, res.status().as_str()])
        .inc();
    res
}

/// The families the service collector reports, made afresh at each scrape from the runtime's
/// counters (so they are never out of step with them).
struct Families {
    queue_depth: GaugeVec,
    batches: CounterVec,
    inputs: CounterVec,
    tokens: CounterVec,
    inference_seconds: CounterVec,
    rejected: CounterVec,
    generation_active: GaugeVec,
    generation_slots: GaugeVec,
    generation_cancelled: CounterVec,
    prefix_bytes: GaugeVec,
    prefix_capacity: GaugeVec,
    prefix_lookups: CounterVec,
    prefix_hits: CounterVec,
    prefix_reused: CounterVec,
    voice_streams: GaugeVec,
    uploads: GaugeVec,
    panics: CounterVec,
    cards: GaugeVec,
    jobs: GaugeVec,
    answers: CounterVec,
    ratings: CounterVec,
    removed: CounterVec,
    erasures: CounterVec,
}

impl Families {
    fn new() -> Self {
        let model = &["model", "role"];
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            CounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Families {
            queue_depth: gauge(
                "kefu_model_queue_depth",
                "Requests waiting for the model",
                model,
            ),
            batches: counter("kefu_model_batches_total", "Forward passes run", model),
            inputs: counter(
                "kefu_model_inputs_total",
                "Texts (embedder) or requests (generator) processed",
                model,
            ),
            tokens: counter(
                "kefu_model_tokens_total",
                "Tokens processed (kind: input, prompt or completion)",
                &["model", "role", "kind"],
            ),
            inference_seconds: counter(
                "kefu_model_inference_seconds_total",
                "Time spent in model inference",
                model,
            ),
            rejected: counter(
                "kefu_model_rejected_total",
                "Requests refused because the queue was full",
                model,
            ),
            generation_active: gauge(
                "kefu_generation_active",
                "Generations in progress (slots in use)",
                model,
            ),
            generation_slots: gauge(
                "kefu_generation_slots",
                "Generations that can progress at once",
                model,
            ),
            generation_cancelled: counter(
                "kefu_generation_cancelled_total",
                "Generations stopped because the client went away",
                model,
            ),
            prefix_bytes: gauge(
                "kefu_prefix_cache_bytes",
                "Memory held by the keys and values of prompts kept for reuse",
                model,
            ),
            prefix_capacity: gauge(
                "kefu_prefix_cache_capacity_bytes",
                "The bound on kefu_prefix_cache_bytes (limits.prefix_cache_mb)",
                model,
            ),
            prefix_lookups: counter(
                "kefu_prefix_cache_lookups_total",
                "Prompts looked up in the prefix cache",
                model,
            ),
            prefix_hits: counter(
                "kefu_prefix_cache_hits_total",
                "Prompts that started from a kept prefix (hit rate: hits / lookups)",
                model,
            ),
            prefix_reused: counter(
                "kefu_prefix_cache_reused_tokens_total",
                "Prompt tokens not read again thanks to a kept prefix (against kefu_model_tokens_total{kind=\"prompt\"}, which counts the tokens read)",
                model,
            ),
            voice_streams: gauge("kefu_voice_streams_open", "Live voice streams open", model),
            panics: counter(
                "kefu_model_panics_total",
                "Panics caught inside a model: the request failed, the worker went on",
                model,
            ),
            uploads: gauge(
                "kefu_transcriptions_in_flight",
                "Uploads to /v1/audio/transcriptions being read, decoded or transcribed",
                model,
            ),
            cards: gauge("kefu_cards", "Knowledge cards by status", &["status"]),
            jobs: gauge(
                "kefu_jobs",
                "Background jobs (mining resolved conversations) by state",
                &["state"],
            ),
            answers: counter(
                "kefu_answers_total",
                "Answers since start: answered, or handed off by reason (ungrounded: a generated reply withheld for stating a number no card gave)",
                &["outcome"],
            ),
            ratings: counter(
                "kefu_feedback_total",
                "Ratings of answers since start (a down-rating flags the cards the answer cited)",
                &["rating"],
            ),
            removed: counter(
                "kefu_privacy_removed_rows_total",
                "Rows removed since start (by: erasure or retention; kind: conversations, turns, transcripts, answers, feedback, audit)",
                &["by", "kind"],
            ),
            erasures: counter(
                "kefu_privacy_erasures_total",
                "Customers erased since start (DELETE /v1/customers/{id})",
                &[],
            ),
        }
    }

    fn all(&self) -> [&dyn Collector; 23] {
        [
            &self.queue_depth,
            &self.batches,
            &self.inputs,
            &self.tokens,
            &self.inference_seconds,
            &self.rejected,
            &self.generation_active,
            &self.generation_slots,
            &self.generation_cancelled,
            &self.prefix_bytes,
            &self.prefix_capacity,
            &self.prefix_lookups,
            &self.prefix_hits,
            &self.prefix_reused,
            &self.voice_streams,
            &self.uploads,
            &self.panics,
            &self.cards,
            &self.jobs,
            &self.answers,
            &self.ratings,
            &self.removed,
            &self.erasures,
        ]
    }
}

/// Models, voice streams and cards, read at each scrape. `collect` reads the store: scrape on
/// the blocking pool (`ops::metrics` does).
pub struct ServiceCollector {
    desk: Arc<Desk>,
    streams: Arc<StreamCount>,
    uploads: Arc<StreamCount>,
    descs: Vec<Desc>,
}

impl ServiceCollector {
    fn new(desk: Arc<Desk>, streams: Arc<StreamCount>, uploads: Arc<StreamCount>) -> Self {
        let descs = Families::new()
            .all()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        ServiceCollector {
            desk,
            streams,
            uploads,
            descs,
        }
    }
}

fn counted(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = Families::new();
        let embedder = self.desk.knowledge.embedder();
        let (st, e) = (embedder.stats(), [embedder.id(), "embedder"]);
        f.queue_depth
            .with_label_values(&e)
            .set(st.queue.depth() as f64);
        f.batches.with_label_values(&e).inc_by(counted(&st.batches));
        f.inputs.with_label_values(&e).inc_by(counted(&st.texts));
        f.tokens
            .with_label_values(&[e[0], e[1], "input"])
            .inc_by(counted(&st.tokens));
        f.inference_seconds
            .with_label_values(&e)
            .inc_by(counted(&st.busy_micros) / 1e6);
        f.rejected
            .with_label_values(&e)
            .inc_by(counted(&st.rejected));
        f.panics.with_label_values(&e).inc_by(counted(&st.panics));
        if let Some(g) = self.desk.answerer.generator() {
            let (gs, l) = (g.stats(), [g.id(), "generator"]);
            f.queue_depth
                .with_label_values(&l)
                .set(gs.queue.depth() as f64);
            f.inputs.with_label_values(&l).inc_by(counted(&gs.requests));
            f.tokens
                .with_label_values(&[l[0], l[1], "prompt"])
                .inc_by(counted(&gs.prompt_tokens));
            f.tokens
                .with_label_values(&[l[0], l[1], "completion"])
                .inc_by(counted(&gs.completion_tokens));
            f.inference_seconds
                .with_label_values(&l)
                .inc_by(counted(&gs.busy_micros) / 1e6);
            f.rejected
                .with_label_values(&l)
                .inc_by(counted(&gs.rejected));
            f.generation_active
                .with_label_values(&l)
                .set(gs.active.load(Ordering::Relaxed) as f64);
            f.generation_slots
                .with_label_values(&l)
                .set(g.slots() as f64);
            f.generation_cancelled
                .with_label_values(&l)
                .inc_by(counted(&gs.cancelled));
            f.panics.with_label_values(&l).inc_by(counted(&gs.panics));
            let p = &gs.prefix;
            f.prefix_bytes.with_label_values(&l).set(counted(&p.bytes));
            f.prefix_capacity
                .with_label_values(&l)
                .set(counted(&p.capacity));
            f.prefix_lookups
                .with_label_values(&l)
                .inc_by(counted(&p.lookups));
            f.prefix_hits.with_label_values(&l).inc_by(counted(&p.hits));
            f.prefix_reused
                .with_label_values(&l)
                .inc_by(counted(&p.reused_tokens));
        }
        if let Some(a) = &self.desk.asr {
            let l = [a.id(), "asr"];
            f.queue_depth.with_label_values(&l).set(a.queued() as f64);
            f.voice_streams
                .with_label_values(&l)
                .set(self.streams.open() as f64);
            f.uploads
                .with_label_values(&l)
                .set(self.uploads.open() as f64);
            f.panics.with_label_values(&l).inc_by(a.panics() as f64);
        }
        match self.desk.knowledge.count_by_status_blocking() {
            Ok(counts) => {
                for (status, n) in counts {
                    f.cards.with_label_values(&[status.as_str()]).set(n as f64);
                }
            }
            Err(e) => tracing::error!(error = %e, "counting cards for /metrics"),
        }
        match self.desk.miner.counts_blocking() {
            Ok(c) => {
                for (state, n) in [
                    ("queued", c.queued),
                    ("running", c.running),
                    ("done", c.done),
                    ("failed", c.failed),
                ] {
                    f.jobs.with_label_values(&[state]).set(n as f64);
                }
            }
            Err(e) => tracing::error!(error = %e, "counting jobs for /metrics"),
        }
        for (reason, n) in self.desk.conversations.answer_outcomes() {
            let outcome = reason.map_or("answered", |r| r.as_str());
            f.answers.with_label_values(&[outcome]).inc_by(n as f64);
        }
        for (rating, n) in self.desk.conversations.ratings() {
            f.ratings
                .with_label_values(&[rating.as_str()])
                .inc_by(n as f64);
        }
        let (erased, expired, erasures) = self.desk.conversations.removed();
        for (by, r) in [("erasure", erased), ("retention", expired)] {
            for (kind, n) in [
                ("conversations", r.conversations),
                ("turns", r.turns),
                ("transcripts", r.transcripts),
                ("answers", r.answers),
                ("feedback", r.feedback),
                ("audit", r.audit),
            ] {
                f.removed.with_label_values(&[by, kind]).inc_by(n as f64);
            }
        }
        f.erasures
            .with_label_values::<&str>(&[])
            .inc_by(erasures as f64);
        f.all().iter().flat_map(|c| c.collect()).collect()
    }
}
