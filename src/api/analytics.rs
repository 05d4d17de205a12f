//! Admins and team leads: what the service's record says. Analytics reports over a time range
//! (JSON, or CSV to open in a spreadsheet), each card's record with the down-ratings that flag
//! it, the review queue ordered by that record, and starting a card for a knowledge gap.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::desk::insights::{Gap, GapDraft, GapDraftRequest};
use crate::error::ErrorCode;
use crate::store::insights::{CardRecord, Flag, Table};
use crate::vocab::{Granularity, Report};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Start of the range (RFC 3339), included; a week before `to` by default.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    from: Option<OffsetDateTime>,
    /// End of the range (RFC 3339), excluded; now by default.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    to: Option<OffsetDateTime>,
    /// hour, day (default) or week: the width of the time buckets.
    granularity: Option<String>,
    /// json (default) or csv.
    format: Option<String>,
}

/// A report: its rows as objects keyed by column (for `gaps`, the gaps in full).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReportBody {
    report: Report,
    from: String,
    to: String,
    granularity: Granularity,
    columns: Vec<&'static str>,
    #[schema(value_type = Vec<Object>)]
    rows: Vec<Value>,
}

fn parse<T: std::str::FromStr>(name: &str, v: &str, accepted: String) -> Result<T, ApiError> {
    v.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{name} must be one of {accepted}"),
        )
    })
}

/// One analytics report over a time range: volume, deflection, handoffs, satisfaction,
/// sentiment, emotions, topics (intents against the previous window), top_cards, weak_cards or
/// gaps (questions no card answered, grouped). `format=csv` gives the same rows as CSV.
#[utoipa::path(get, path = "/v1/analytics/{report}", tag = "analytics",
    params(("report" = Report, Path, description = "Which report"), ReportParams),
    responses((status = 200, body = ReportBody, description = "The report; text/csv with format=csv"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(report): Path<String>,
    ApiQuery(p): ApiQuery<ReportParams>,
) -> ApiResult<Response> {
    let report: Report = report.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no report {report:?}; the reports are {}", Report::list()),
        )
    })?;
    let granularity = match &p.granularity {
        Some(g) => parse("granularity", g, Granularity::list())?,
        None => Granularity::Day,
    };
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "format must be json or csv",
            ));
        }
    };
    let insights = &s.desk.insights;
    let window = insights.window(p.from, p.to)?;
    if csv {
        let t = insights.report(report, window, granularity).await?;
        let name = format!("attachment; filename=\"kefu-{report}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, name),
            ],
            to_csv(&t),
        )
            .into_response());
    }
    // Gaps in JSON in full (with their answer and conversation ids, which CSV leaves out).
    let (columns, rows) = if report == Report::Gaps {
        (
            GAP_FIELDS.to_vec(),
            gap_objects(&insights.gaps(window).await?),
        )
    } else {
        let t = insights.report(report, window, granularity).await?;
        (t.columns.clone(), objects(&t))
    };
    let stamp = crate::store::rfc3339;
    Ok(Json(ReportBody {
        report,
        from: stamp(window.from),
        to: stamp(window.to),
        granularity,
        columns,
        rows,
    })
    .into_response())
}

const GAP_FIELDS: [&str; 11] = [
    "id",
    "label",
    "questions",
    "previous",
    "change",
    "spike",
    "languages",
    "examples",
    "answer_ids",
    "conversation_ids",
    "drafts",
];

fn gap_objects(gaps: &[Gap]) -> Vec<Value> {
    gaps.iter()
        .map(|g| serde_json::to_value(g).expect("a gap serialises"))
        .collect()
}

fn objects(t: &Table) -> Vec<Value> {
    t.rows
        .iter()
        .map(|row| {
            let m: Map<String, Value> = t
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.to_string(), v.clone()))
                .collect();
            Value::Object(m)
        })
        .collect()
}

/// The table as CSV. Text that a spreadsheet would run as a formula (customers typed some of
/// it) is prefixed with `'`, as OWASP advises against CSV injection.
fn to_csv(t: &Table) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Writing to memory cannot fail.
    w.write_record(&t.columns).expect("csv to memory");
    for row in &t.rows {
        w.write_record(row.iter().map(cell)).expect("csv to memory");
    }
    w.into_inner().expect("csv to memory")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CardRecordBody {
    #[serde(flatten)]
    record: CardRecord,
    /// Down-ratings of answers citing it since it last changed, newest first.
    flags: Vec<Flag>,
}

/// A card's record over all time: times cited, ratings of the answers citing it, hand-offs that
/// followed, evidence, and its open flags with their comments.
#[utoipa::path(get, path = "/v1/cards/{id}/record", tag = "analytics",
    params(("id" = String, Path, description = "Card id")),
    responses((status = 200, body = CardRecordBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn card_record(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<CardRecordBody>> {
    let (record, flags) = s.desk.insights.card_record(&id).await?;
    Ok(Json(CardRecordBody { record, flags }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewParams {
    /// At most 500; 50 by default.
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewQueue {
    cards: Vec<CardRecordBody>,
}

/// The review queue: cards in review (drafts mined from conversations among them) and published
/// cards flagged by down-ratings since they last changed, the most pressing first: open flags,
/// down-ratings, hand-offs after, then the conversations that taught it.
#[utoipa::path(get, path = "/v1/review", tag = "analytics", params(ReviewParams),
    responses((status = 200, body = ReviewQueue), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn review(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(p): ApiQuery<ReviewParams>,
) -> ApiResult<Json<ReviewQueue>> {
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let cards = s
        .desk
        .insights
        .review_queue(limit)
        .await?
        .into_iter()
        .map(|(record, flags)| CardRecordBody { record, flags })
        .collect();
    Ok(Json(ReviewQueue { cards }))
}

/// Starts a card for a knowledge gap (its `answer_ids`): the conversations an agent answered in
/// are mined (drafts from the agents' replies land in review); when no agent answered any, a
/// draft card lists the questions for an admin to answer.
#[utoipa::path(post, path = "/v1/gaps/draft", tag = "analytics", request_body = GapDraftRequest,
    responses((status = 201, body = GapDraft), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn draft_for_gap(
    State(s): State<AppState>,
    Admin(admin): Admin,
    ApiJson(b): ApiJson<GapDraftRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<GapDraft>)> {
    let done = s.desk.insights.draft_for_gap(b, &admin.actor()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(done)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let t = Table {
            columns: vec!["label", "n", "share"],
            rows: vec![
                vec![json!("=HYPERLINK(\"x\")"), json!(3), Value::Null],
                vec![json!("a, \"b\"\n退款"), json!(1), json!(0.5)],
            ],
        };
        let text = String::from_utf8(to_csv(&t)).unwrap();
        assert_eq!(
            text,
            "label,n,share\n\"'=HYPERLINK(\"\"x\"\")\",3,\n\"a, \"\"b\"\"\n退款\",1,0.5\n"
        );
    }
}
