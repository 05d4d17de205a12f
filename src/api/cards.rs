//! Admins: knowledge cards, their lifecycle, bulk import, the audit log and index health.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody, read_body};
use crate::error::ErrorCode;
use crate::knowledge::card::{CardInput, CardPatch};
use crate::knowledge::import::{self, ImportReport, Item};
use crate::knowledge::{CardDiff, IndexStatus};
use crate::store::{AuditEntry, Card, CardContent, CardStatus, CardVersion, ListFilter};
use crate::vocab::Channel;

#[utoipa::path(post, path = "/v1/cards", tag = "cards", request_body = CardInput,
    responses((status = 201, description = "Created as a draft", body = Card),
              (status = 422, description = "Invalid card", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Admin(c): Admin,
    ApiJson(input): ApiJson<CardInput>,
) -> ApiResult<impl IntoResponse> {
    let card = s.knowledge.create(input, &c.actor()).await?;
    let location = format!("/v1/cards/{}", card.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(card),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// draft, in_review, published or archived.
    status: Option<String>,
    tag: Option<String>,
    /// Text the title or body contains (case-insensitive).
    q: Option<String>,
    /// The card's language (`en`, `zh`, ...).
    language: Option<String>,
    /// Cards usable on this channel, those for every channel among them.
    channel: Option<Channel>,
    /// At most 200; 50 by default.
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CardList {
    cards: Vec<Card>,
    total: usize,
    limit: usize,
    offset: usize,
}

#[utoipa::path(get, path = "/v1/cards", tag = "cards", params(ListParams),
    responses((status = 200, body = CardList)), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<CardList>> {
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(v) => Some(CardStatus::parse(v).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("status {v:?} is not one of draft, in_review, published, archived"),
            )
        })?),
    };
    let limit = p.limit.unwrap_or(50);
    if limit == 0 || limit > 200 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 200",
        ));
    }
    let offset = p.offset.unwrap_or(0);
    let filter = ListFilter {
        status,
        tag: p.tag.map(|t| t.trim().to_lowercase()),
        text: p.q.filter(|q| !q.trim().is_empty()),
        language: p
            .language
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty()),
        channel: p.channel.map(|c| c.as_str().to_string()),
        limit,
        offset,
    };
    let (cards, total) = s.knowledge.list(filter).await?;
    Ok(Json(CardList {
        cards,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(get, path = "/v1/cards/{id}", tag = "cards",
    responses((status = 200, body = Card), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_card(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Card>> {
    Ok(Json(s.knowledge.get(&id).await?))
}

#[utoipa::path(patch, path = "/v1/cards/{id}", tag = "cards", request_body = CardPatch,
    responses((status = 200, description = "A new version", body = Card), (status = 404, body = ErrorBody),
              (status = 409, description = "expected_version is stale", body = ErrorBody),
              (status = 422, description = "Invalid, or a published card's edit fails compliance", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<CardPatch>,
) -> ApiResult<Json<Card>> {
    Ok(Json(s.knowledge.update(&id, patch, &c.actor()).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionList {
    versions: Vec<CardVersion>,
}

#[utoipa::path(get, path = "/v1/cards/{id}/versions", tag = "cards",
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn versions(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<VersionList>> {
    Ok(Json(VersionList {
        versions: s.knowledge.versions(&id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// The older version.
    from: i64,
    /// The newer version.
    to: i64,
}

/// What changed between two versions of a card: both versions, and line diffs of the title and
/// body.
#[utoipa::path(get, path = "/v1/cards/{id}/diff", tag = "cards", params(DiffParams),
    responses((status = 200, body = CardDiff), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn diff_versions(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<DiffParams>,
) -> ApiResult<Json<CardDiff>> {
    Ok(Json(s.knowledge.diff(&id, p.from, p.to).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[serde(default)]
    title: String,
    body: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// What would stop the text being published, with character offsets into `title` or `body`.
    findings: Vec<crate::error::Finding>,
    /// The body's Markdown as HTML (raw HTML shown as text).
    html: String,
}

/// Checks a card's text as it is being written, before it is saved: the compliance findings
/// publishing would refuse, and the body rendered for preview.
#[utoipa::path(post, path = "/v1/cards/check", tag = "cards", request_body = CheckBody,
    responses((status = 200, body = CheckResult), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn check_card(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(b): ApiJson<CheckBody>,
) -> ApiResult<Json<CheckResult>> {
    let content = CardContent {
        title: b.title,
        body: b.body,
        ..Default::default()
    };
    let (findings, html) = s.knowledge.check_text(&content)?;
    Ok(Json(CheckResult { findings, html }))
}

#[utoipa::path(post, path = "/v1/cards/{id}/submit", tag = "cards",
    responses((status = 200, description = "Now in review", body = Card), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn submit(
    State(s): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Card>> {
    Ok(Json(s.knowledge.submit(&id, &c.actor()).await?))
}

#[utoipa::path(post, path = "/v1/cards/{id}/publish", tag = "cards",
    responses((status = 200, description = "Published and searchable", body = Card),
              (status = 422, description = "Fails compliance; `details` lists each finding", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(s): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Card>> {
    Ok(Json(s.knowledge.publish(&id, &c.actor()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ArchiveParams {
    /// Why (a rejected draft's reason), kept in the audit log. At most 1,000 characters.
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/cards/{id}/archive", tag = "cards", params(ArchiveParams),
    responses((status = 200, description = "Archived and removed from search", body = Card),
              (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn archive(
    State(s): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<ArchiveParams>,
) -> ApiResult<Json<Card>> {
    let reason = p
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "reason is longer than 1,000 characters",
        ));
    }
    Ok(Json(s.knowledge.archive(&id, &c.actor(), reason).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Publish each imported card (after its compliance checks).
    #[serde(default)]
    publish: bool,
}

fn utf8(name: &str, bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        format!(
            "{name} is not UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn items_of(name: &str, bytes: &[u8], markdown: bool) -> Vec<Item> {
    match utf8(name, bytes) {
        Ok(text) if markdown => vec![import::parse_markdown(name, &text)],
        Ok(text) => import::parse_jsonl(name, &text),
        Err(m) => vec![Item {
            source: name.to_string(),
            card: Err(m),
        }],
    }
}

/// Bulk import. The body is JSON Lines (`application/x-ndjson`), one Markdown card with YAML front
/// matter (`text/markdown`), or `multipart/form-data` with any number of `.jsonl` and `.md` files.
#[utoipa::path(post, path = "/v1/cards/import", tag = "cards", params(ImportParams),
    request_body(content = String, description = "JSON Lines, Markdown, or multipart files", content_type = "application/x-ndjson"),
    responses((status = 200, description = "Per-item results; good items are kept even when others fail", body = ImportReport),
              (status = 415, body = ErrorBody),
              (status = 507, description = "The disk filled: `details` is the per-item report", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(s): State<AppState>,
    Admin(c): Admin,
    ApiQuery(p): ApiQuery<ImportParams>,
    req: Request,
) -> ApiResult<Json<ImportReport>> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ctype.split(';').next().unwrap_or("").trim().to_string();
    let items = match mime.as_str() {
        "application/x-ndjson"
        | "application/jsonl"
        | "application/json-lines"
        | "application/jsonlines" => items_of("body", &read_body(req, &s).await?, false),
        "text/markdown" | "text/x-markdown" => items_of("body", &read_body(req, &s).await?, true),
        "multipart/form-data" => {
            let mut form = Multipart::from_request(req, &s)
                .await
                .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
            let mut items = Vec::new();
            while let Some(field) = form
                .next_field()
                .await
                .map_err(|e| super::error::rejection(e.status(), e.body_text()))?
            {
                let name = field
                    .file_name()
                    .or(field.name())
                    .unwrap_or("file")
                    .to_string();
                let lower = name.to_ascii_lowercase();
                let markdown = lower.ends_with(".md") || lower.ends_with(".markdown");
                let jsonl = lower.ends_with(".jsonl") || lower.ends_with(".ndjson");
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| super::error::rejection(e.status(), e.body_text()))?;
                if markdown || jsonl {
                    items.extend(items_of(&name, &bytes, markdown));
                } else {
                    items.push(Item {
                        source: name,
                        card: Err(
                            "unknown file type: name files *.md, *.markdown, *.jsonl or *.ndjson"
                                .into(),
                        ),
                    });
                }
            }
            items
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "content type {other:?} is not importable: use application/x-ndjson, text/markdown or multipart/form-data"
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyImport,
            "the import holds no cards",
        ));
    }
    let report = s.knowledge.import(items, p.publish, &c.actor()).await;
    if report.storage_full() {
        // Not a 200 with a report: the caller must learn that the server, not their file, failed.
        return Err(ApiError {
            details: serde_json::to_value(&report).ok(),
            ..ApiError::new(
                ErrorCode::StorageFull,
                format!(
                    "the server's disk filled during the import: {} item(s) were kept, {} were not written (details: per item). Retry those once space is freed",
                    report.imported, report.failed
                ),
            )
        });
    }
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    card_id: Option<String>,
    /// At most 1000; 100 by default.
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    entries: Vec<AuditEntry>,
}

/// The audit log, newest first: who changed what, when.
#[utoipa::path(get, path = "/v1/audit", tag = "cards", params(AuditParams),
    responses((status = 200, body = AuditList)), security(("bearer" = [])))]
pub async fn audit(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditList>> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(AuditList {
        entries: s.knowledge.audit(p.card_id, limit).await?,
    }))
}

/// Whether the vector index holds exactly the published cards.
#[utoipa::path(get, path = "/v1/index/status", tag = "cards",
    responses((status = 200, body = IndexStatus)), security(("bearer" = [])))]
pub async fn index_status(
    State(s): State<AppState>,
    Admin(_admin): Admin,
) -> ApiResult<Json<IndexStatus>> {
    Ok(Json(s.knowledge.index_status().await?))
}
