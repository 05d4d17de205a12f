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
    let ready = store == "ok" && k.embedder().is_alive();
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
            index: k.index_backend().to_string(),
        }),
    )
}

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
    let st = s.knowledge.embedder().stats();
    let model = s.knowledge.embedder().id().to_string();
    let gauges: [(&str, &str, &str, f64); 6] = [
        (
            "kefu_model_queue_depth",
            "gauge",
            "Requests waiting for the model",
            st.queue_depth.load(Ordering::Relaxed) as f64,
        ),
        (
            "kefu_model_batches_total",
            "counter",
            "Forward passes run",
            st.batches.load(Ordering::Relaxed) as f64,
        ),
        (
            "kefu_model_inputs_total",
            "counter",
            "Texts processed",
            st.texts.load(Ordering::Relaxed) as f64,
        ),
        (
            "kefu_model_tokens_total",
            "counter",
            "Tokens processed",
            st.tokens.load(Ordering::Relaxed) as f64,
        ),
        (
            "kefu_model_inference_seconds_total",
            "counter",
            "Time spent in model inference",
            st.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        ),
        (
            "kefu_model_rejected_total",
            "counter",
            "Requests refused because the queue was full",
            st.rejected.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, v) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{model=\"{model}\",role=\"embedder\"}} {v}"
        );
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
