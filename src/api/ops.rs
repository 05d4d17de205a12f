//! Operators: liveness, readiness, Prometheus metrics and the OpenAPI document.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::Encoder;
use serde::Serialize;
use utoipa::OpenApi;

use super::{ApiDoc, AppState};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    ready: bool,
    store: String,
    embedder: String,
    generator: String,
    asr: String,
    index: String,
}

/// Ready to serve: the store answers and the embedding worker runs.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, description = "Not ready; the fields say why", body = Readiness)))]
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let k = &s.knowledge;
    let store = k.store().clone();
    let store = match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let embedder = if k.embedder().is_alive() {
        format!("ok ({})", k.embedder().id())
    } else {
        "the embedding worker stopped".into()
    };
    let (generator, gen_ok) = match s.answerer.generator() {
        None => ("not configured".to_string(), true),
        Some(g) if g.is_alive() => (format!("ok ({})", g.id()), true),
        Some(_) => ("the generation worker stopped".to_string(), false),
    };
    let (index_state, index_ok) = match k.index_readiness() {
        Ok(()) => (format!("ok ({})", k.index_backend()), true),
        Err(why) => (why, false),
    };
    let ready = store == "ok" && k.embedder().is_alive() && gen_ok && index_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            store,
            embedder,
            generator,
            asr: s
                .asr
                .as_ref()
                .map_or("not configured".to_string(), |a| format!("ok ({})", a.id())),
            index: index_state,
        }),
    )
}

/// One metric family: name, type, help, and its labelled values.
type Family = (&'static str, &'static str, &'static str, Vec<(String, f64)>);

/// Prometheus text format: per-route request counts and latencies, the embedding queue and
/// model time, and the cards by status.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&s.metrics.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics");
    }
    let mut out = String::from_utf8(buf).unwrap_or_default();
    // Model counters live in the runtime, which knows nothing of Prometheus; they are read here.
    let e = s.knowledge.embedder();
    let (st, emb) = (e.stats(), format!("model=\"{}\",role=\"embedder\"", e.id()));
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut rows: Vec<Family> = vec![
        (
            "kefu_model_queue_depth",
            "gauge",
            "Requests waiting for the model",
            vec![(emb.clone(), st.queue.depth() as f64)],
        ),
        (
            "kefu_model_batches_total",
            "counter",
            "Forward passes run",
            vec![(emb.clone(), load(&st.batches))],
        ),
        (
            "kefu_model_inputs_total",
            "counter",
            "Texts (embedder) or requests (generator) processed",
            vec![(emb.clone(), load(&st.texts))],
        ),
        (
            "kefu_model_tokens_total",
            "counter",
            "Tokens processed",
            vec![(emb.clone(), load(&st.tokens))],
        ),
        (
            "kefu_model_inference_seconds_total",
            "counter",
            "Time spent in model inference",
            vec![(emb.clone(), load(&st.busy_micros) / 1e6)],
        ),
        (
            "kefu_model_rejected_total",
            "counter",
            "Requests refused because the queue was full",
            vec![(emb.clone(), load(&st.rejected))],
        ),
    ];
    let add = |rows: &mut Vec<Family>, name: &str, labels: String, v: f64| {
        if let Some(r) = rows.iter_mut().find(|r| r.0 == name) {
            r.3.push((labels, v));
        }
    };
    if let Some(g) = s.answerer.generator() {
        let (gs, gen_l) = (
            g.stats(),
            format!("model=\"{}\",role=\"generator\"", g.id()),
        );
        add(
            &mut rows,
            "kefu_model_queue_depth",
            gen_l.clone(),
            gs.queue.depth() as f64,
        );
        add(
            &mut rows,
            "kefu_model_inputs_total",
            gen_l.clone(),
            load(&gs.requests),
        );
        add(
            &mut rows,
            "kefu_model_tokens_total",
            format!("{gen_l},kind=\"prompt\""),
            load(&gs.prompt_tokens),
        );
        add(
            &mut rows,
            "kefu_model_tokens_total",
            format!("{gen_l},kind=\"completion\""),
            load(&gs.completion_tokens),
        );
        add(
            &mut rows,
            "kefu_model_inference_seconds_total",
            gen_l.clone(),
            load(&gs.busy_micros) / 1e6,
        );
        add(
            &mut rows,
            "kefu_model_rejected_total",
            gen_l.clone(),
            load(&gs.rejected),
        );
        rows.push((
            "kefu_generation_active",
            "gauge",
            "Generations in progress (slots in use)",
            vec![(gen_l.clone(), gs.active.load(Ordering::Relaxed) as f64)],
        ));
        rows.push((
            "kefu_generation_slots",
            "gauge",
            "Generations that can progress at once",
            vec![(gen_l.clone(), g.slots() as f64)],
        ));
        rows.push((
            "kefu_generation_cancelled_total",
            "counter",
            "Generations stopped because the client went away",
            vec![(gen_l, load(&gs.cancelled))],
        ));
    }
    if let Some(a) = &s.asr {
        let l = format!("model=\"{}\",role=\"asr\"", a.id());
        add(
            &mut rows,
            "kefu_model_queue_depth",
            l.clone(),
            a.queued() as f64,
        );
        rows.push((
            "kefu_voice_streams_open",
            "gauge",
            "Live voice streams open",
            vec![(l, s.streams.open() as f64)],
        ));
    }
    for (name, kind, help, values) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in values {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    let store = s.knowledge.store().clone();
    if let Ok(Ok(counts)) = tokio::task::spawn_blocking(move || store.count_by_status()).await {
        let _ = writeln!(
            out,
            "# HELP kefu_cards Knowledge cards by status\n# TYPE kefu_cards gauge"
        );
        for (status, n) in counts {
            let _ = writeln!(out, "kefu_cards{{status=\"{}\"}} {n}", status.as_str());
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
