//! HTTP only: routing, auth, limits and JSON shapes. Handlers destructure and check the request,
//! call one function of the layer below, and wrap its answer; the routes are declared in one
//! place, [`router`], so another axum application can mount the whole API.

pub mod answer;
pub mod assist;
pub mod auth;
pub mod cards;
pub mod conversations;
pub mod error;
pub mod openai;
pub mod ops;
pub mod search;
pub mod sentiment;
pub mod voice;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use crate::config::Config;
use crate::conversation::Conversations;
use crate::knowledge::Knowledge;
use crate::knowledge::answer::Answerer;

#[derive(Clone)]
pub struct AppState {
    pub knowledge: Arc<Knowledge>,
    pub answerer: Arc<Answerer>,
    /// Turns, sentiment (None inside when `models.sentiment = "none"`) and escalation.
    pub conversations: Arc<Conversations>,
    pub config: Arc<Config>,
    pub keys: Arc<auth::Keys>,
    pub metrics: Arc<Metrics>,
    /// The speech model, when one is configured.
    pub asr: Option<crate::runtime::asr::AsrPool>,
    /// Live voice streams open now.
    pub streams: Arc<voice::StreamCount>,
}

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
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
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template (`/v1/cards/{id}`), not the path, so ids do not explode the label set.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, &method, res.status().as_str()])
        .inc();
    res
}

#[derive(OpenApi)]
#[openapi(
    info(title = "kefu", description = "Self-hosted inference and knowledge service for customer service."),
    paths(
        cards::create, cards::list, cards::get_card, cards::update, cards::versions, cards::submit,
        cards::publish, cards::archive, cards::import, cards::audit, cards::index_status,
        search::search, sentiment::sentiment, conversations::get_conversation, conversations::add_turn, conversations::resolve, conversations::handoff, conversations::get_customer,
        answer::answer, answer::feedback, answer::reload_prompts, assist::suggest,
        openai::chat_completions, openai::embeddings, openai::models, openai::transcriptions, voice::voice_stream, ops::healthz, ops::readyz, ops::metrics, ops::openapi
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let v1 = Router::new()
        .route("/v1/cards", post(cards::create).get(cards::list))
        .route(
            "/v1/cards/import",
            post(cards::import).layer(DefaultBodyLimit::max(limits.max_import_bytes)),
        )
        .route("/v1/cards/{id}", get(cards::get_card).patch(cards::update))
        .route("/v1/cards/{id}/versions", get(cards::versions))
        .route("/v1/cards/{id}/submit", post(cards::submit))
        .route("/v1/cards/{id}/publish", post(cards::publish))
        .route("/v1/cards/{id}/archive", post(cards::archive))
        .route("/v1/audit", get(cards::audit))
        .route("/v1/index/status", get(cards::index_status))
        .route("/v1/search", post(search::search))
        .route("/v1/sentiment", post(sentiment::sentiment))
        .route(
            "/v1/conversations/{id}",
            get(conversations::get_conversation),
        )
        .route(
            "/v1/conversations/{id}/turns",
            post(conversations::add_turn),
        )
        .route(
            "/v1/conversations/{id}/resolve",
            post(conversations::resolve),
        )
        .route(
            "/v1/conversations/{id}/handoff",
            get(conversations::handoff),
        )
        .route("/v1/customers/{id}", get(conversations::get_customer))
        .route("/v1/answer", post(answer::answer))
        .route("/v1/assist/suggest", post(assist::suggest))
        .route("/v1/answers/{id}/feedback", post(answer::feedback))
        .route("/v1/prompts/reload", post(answer::reload_prompts))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route(
            "/v1/audio/transcriptions",
            // The handler enforces voice.max_upload_bytes itself (see `read_upload`).
            post(openai::transcriptions).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/voice/stream", get(voice::voice_stream))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(v1)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}
