//! `GET /admin/api/audit?user=&route=&decision=&tenant=&since=&until=&cursor=&limit=&format=`:
//! the audit search of the store (`Store::search_audit`, keyset pages, docs/audit.md) for the
//! console. `format=json` (default) answers one page, `{"items", "next_cursor"}`;
//! `format=csv` and `format=jsonl` export every matching record, page by page, up to
//! [`MAX_EXPORT`].

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{authorize, store_failed};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{AuditCursor, AuditFilter, AuditRow};

/// Rows per page of the console's search.
const PAGE: u32 = 50;
/// The most records one export holds; more is a job for SQL (docs/audit.md).
pub const MAX_EXPORT: usize = 100_000;
/// Rows fetched per page while exporting.
const EXPORT_PAGE: u32 = 2_000;

#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    user: Option<String>,
    route: Option<String>,
    decision: Option<String>,
    tenant: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    JsonLines,
}

pub async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let q = query.into_inner();
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "jsonl" => Format::JsonLines,
        other => {
            return Err(ApiError::BadRequest(format!(
                "format must be json, csv or jsonl, not `{other}`"
            )));
        }
    };
    let now = chrono::Utc::now();
    let bound = |text: &Option<String>| -> Result<_, ApiError> {
        text.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| crate::audit::parse_time_bound(t, now).map_err(ApiError::BadRequest))
            .transpose()
    };
    let text = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let mut filter = AuditFilter {
        email: text(q.user),
        route: text(q.route),
        decision: text(q.decision),
        tenant: text(q.tenant),
        since: bound(&q.since)?,
        until: bound(&q.until)?,
        cursor: text(q.cursor)
            .map(|c| c.parse::<AuditCursor>())
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        limit: q.limit.unwrap_or(PAGE).clamp(1, 500),
    };
    if format == Format::Json {
        let page = state
            .store
            .search_audit(&filter)
            .await
            .map_err(store_failed)?;
        return Ok(HttpResponse::Ok().json(page));
    }
    // An export: every matching record, oldest pages last, as the search orders them.
    filter.limit = EXPORT_PAGE;
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut truncated = false;
    loop {
        let page = state
            .store
            .search_audit(&filter)
            .await
            .map_err(store_failed)?;
        rows.extend(page.items);
        match page.next_cursor {
            Some(next) if rows.len() < MAX_EXPORT => filter.cursor = Some(next),
            Some(_) => {
                truncated = true;
                break;
            }
            None => break,
        }
    }
    rows.truncate(MAX_EXPORT);
    let (body, content_type, extension) = match format {
        Format::Csv => (to_csv(&rows), "text/csv; charset=utf-8", "csv"),
        _ => (to_json_lines(&rows), "application/x-ndjson", "jsonl"),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"gatehouse-audit.{extension}\""),
        ))
        .insert_header(("X-Gatehouse-Export-Truncated", truncated.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

/// The CSV columns, in the order of `audit query`'s JSON.
const COLUMNS: [&str; 16] = [
    "id",
    "time",
    "request_id",
    "kind",
    "email",
    "tenant",
    "route",
    "host",
    "method",
    "path",
    "decision",
    "status",
    "reason",
    "policy_version",
    "latency_us",
    "client_ip",
];

/// RFC 4180 CSV with a header line.
fn to_csv(rows: &[AuditRow]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        let cells: [String; 16] = [
            r.id.to_string(),
            r.time.clone(),
            r.request_id.clone(),
            r.kind.clone(),
            r.email.clone().unwrap_or_default(),
            r.tenant.clone().unwrap_or_default(),
            r.route.clone().unwrap_or_default(),
            r.host.clone().unwrap_or_default(),
            r.method.clone().unwrap_or_default(),
            r.path.clone().unwrap_or_default(),
            r.decision.clone(),
            r.status.to_string(),
            r.reason.clone().unwrap_or_default(),
            r.policy_version.clone().unwrap_or_default(),
            r.latency_us.to_string(),
            r.client_ip.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV cell. Paths and reasons come from requests anyone can send, and spreadsheets run
/// cells starting with `=`, `+`, `-` or `@` as formulas (CSV injection): such a cell gets a
/// leading `'`, which spreadsheets show as text.
fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn to_json_lines(rows: &[AuditRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1+2"), "'-1+2");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
    }
}
