//! Operators: liveness, readiness, Prometheus metrics and the OpenAPI document.

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

/// Ready to serve: the store answers and every loaded model's workers run.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, description = "Not ready; the fields say why", body = Readiness)))]
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let k = &s.knowledge;
    let store = match k.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let embedder = if k.embedder().is_alive() {
        format!("ok ({})", k.embedder().id())
    } else {
        "the embedding worker stopped".into()
    };
    let (generator, gen_ok) = match s.desk.answerer.generator() {
        None => ("not configured".to_string(), true),
        Some(g) if g.is_alive() => (format!("ok ({})", g.id()), true),
        Some(_) => ("the generation worker stopped".to_string(), false),
    };
    let (index_state, index_ok) = match k.index_readiness() {
        Ok(()) => (format!("ok ({})", k.index_backend()), true),
        Err(why) => (why, false),
    };
    // Each model's own workers, not the configuration: a worker that stopped shows here.
    let (asr, asr_ok) = match &s.desk.asr {
        None => ("not configured".to_string(), true),
        Some(a) if a.workers_alive() == a.workers() => (format!("ok ({})", a.id()), true),
        Some(a) if a.workers_alive() > 0 => (
            format!(
                "degraded ({}: {} of {} workers running)",
                a.id(),
                a.workers_alive(),
                a.workers()
            ),
            true,
        ),
        Some(a) => (format!("the speech workers stopped ({})", a.id()), false),
    };
    let ready = store == "ok" && k.embedder().is_alive() && gen_ok && index_ok && asr_ok;
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
            asr,
            index: index_state,
        }),
    )
}

/// Prometheus text format: per-route request counts and latencies, each model's queue, work
/// and time, generation slots, voice streams, and the cards by status (`api::metrics`).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Collecting reads the store (cards by status): off the reactor.
    let metrics = s.metrics.clone();
    let families = tokio::task::spawn_blocking(move || metrics.registry.gather())
        .await
        .unwrap_or_default();
    let mut buf = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "encoding metrics");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        String::from_utf8(buf).unwrap_or_default(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
