//! HTTP only: routing, auth, limits and JSON shapes. Handlers destructure and check the request,
//! call one function of the layer below, and wrap its answer; the routes are declared in one
//! place, [`router`], so another axum application can mount the whole API.

pub mod analytics;
pub mod answer;
pub mod assist;
pub mod auth;
pub mod cards;
pub mod console;
pub mod conversations;
pub mod error;
pub mod intents;
pub mod metrics;
pub mod mining;
pub mod openai;
pub mod ops;
pub mod privacy;
pub mod rerank;
pub mod search;
pub mod signals;
pub mod transcriptions;
pub mod voice;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use crate::config::Config;
use crate::conversation::Conversations;
use crate::desk::Desk;
use crate::knowledge::Knowledge;

#[derive(Clone)]
pub struct AppState {
    /// The request flows (answer, assist, voice, transcription) and the models they use.
    pub desk: Arc<Desk>,
    /// Cards (admins, search): single calls, no flow of their own.
    pub knowledge: Arc<Knowledge>,
    /// Turns, sentiment (None inside when sentiment is off) and escalation.
    pub conversations: Arc<Conversations>,
    pub config: Arc<Config>,
    pub keys: Arc<auth::Keys>,
    /// Console sign-ins.
    pub sessions: Arc<auth::Sessions>,
    pub metrics: Arc<metrics::Metrics>,
    /// Live voice streams open now.
    pub streams: Arc<voice::StreamCount>,
    /// Transcription uploads in flight (read, decoded or transcribed) now.
    pub uploads: Arc<voice::StreamCount>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "kefu", description = "Self-hosted inference and knowledge service for customer service."),
    paths(
        cards::create, cards::list, cards::get_card, cards::update, cards::versions, cards::diff_versions, cards::check_card, cards::submit,
        cards::publish, cards::archive, cards::import, cards::audit, cards::index_status, mining::jobs, mining::evidence, analytics::report, analytics::card_record, analytics::review, analytics::draft_for_gap,
        search::search, rerank::rerank, signals::sentiment, signals::signals, intents::list_intents, intents::define_intent, intents::remove_intent, conversations::list_conversations, conversations::get_conversation, conversations::add_turn, conversations::resolve, conversations::handoff, conversations::route, conversations::get_customer, privacy::erase_customer, privacy::export_customer,
        answer::answer, answer::feedback, answer::reload_prompts, assist::suggest,
        openai::chat_completions, openai::embeddings, openai::models, transcriptions::transcriptions, voice::voice_stream, ops::healthz, ops::readyz, ops::metrics, ops::openapi
    ),
    components(schemas(error::ErrorBody, crate::error::ErrorCode)),
    modifiers(&BearerAuth, &ResponseDescriptions)
)]
pub struct ApiDoc;

/// OpenAPI requires a description on every response. The error responses of a route say what
/// their status means here, once for all routes, rather than 48 times by hand.
struct ResponseDescriptions;
impl utoipa::Modify for ResponseDescriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        r.description = describe(status).to_string();
                    }
                }
            }
        }
    }
}

/// What a status means on this API.
fn describe(status: &str) -> &'static str {
    match status {
        "200" => "Done",
        "201" => "Created",
        "400" => "The request could not be read (bad JSON, query or form); the error says what",
        "401" => "No API key, or an unknown one: send `Authorization: Bearer KEY`",
        "403" => "The key's role may not do this",
        "404" => "No such resource",
        "409" => {
            "Conflicts with the current state (a stale version, another customer's conversation, a lifecycle step out of order)"
        }
        "413" => "The body is larger than this route takes",
        "415" => "Send the body as `application/json`",
        "422" => {
            "Well-formed, but a field is missing, out of range or of the wrong kind; the error says which"
        }
        "503" => {
            "A model queue is full or a dependency is down: retry after the Retry-After seconds"
        }
        _ => "See the error body",
    }
}

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
        .route("/v1/cards/check", post(cards::check_card))
        .route("/v1/cards/{id}/versions", get(cards::versions))
        .route("/v1/cards/{id}/diff", get(cards::diff_versions))
        .route("/v1/cards/{id}/submit", post(cards::submit))
        .route("/v1/cards/{id}/publish", post(cards::publish))
        .route("/v1/cards/{id}/archive", post(cards::archive))
        .route("/v1/cards/{id}/evidence", get(mining::evidence))
        .route("/v1/cards/{id}/record", get(analytics::card_record))
        .route("/v1/jobs", get(mining::jobs))
        .route("/v1/review", get(analytics::review))
        .route("/v1/analytics/{report}", get(analytics::report))
        .route("/v1/gaps/draft", post(analytics::draft_for_gap))
        .route("/v1/audit", get(cards::audit))
        .route("/v1/index/status", get(cards::index_status))
        .route("/v1/search", post(search::search))
        .route("/v1/rerank", post(rerank::rerank))
        .route("/v1/sentiment", post(signals::sentiment))
        .route("/v1/signals", post(signals::signals))
        .route(
            "/v1/intents",
            get(intents::list_intents).post(intents::define_intent),
        )
        .route(
            "/v1/intents/{name}",
            axum::routing::delete(intents::remove_intent),
        )
        .route("/v1/conversations", get(conversations::list_conversations))
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
        .route("/v1/route", post(conversations::route))
        .route(
            "/v1/customers/{id}",
            get(conversations::get_customer).delete(privacy::erase_customer),
        )
        .route("/v1/customers/{id}/export", get(privacy::export_customer))
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
            post(transcriptions::transcriptions).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/voice/stream", get(voice::voice_stream))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    // Switched off ([console] enabled = false), the console is not there at all: 404.
    let console = if state.config.console.enabled {
        Router::new()
            .route("/console", get(console::root))
            .route("/console/", get(console::page))
            .route("/console/{file}", get(console::asset))
            .route(
                "/console/session",
                get(console::current)
                    .post(console::sign_in)
                    .delete(console::sign_out),
            )
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(v1)
        .merge(console)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn(error::close_after_refused_body))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}
