//! `GET /auth/verify` (alias `/oauth2/auth`): the ingress asks, we answer (DESIGN §5).

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument;

use crate::audit::AuditRecord;
use crate::decision::{Credentials, Decision, UnauthenticatedMode};
use crate::metrics::METRICS;
use crate::request::trust::VerifyCall;
use crate::request::trust::is_trusted;
use crate::state::AppState;

pub async fn verify(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let call = super::verify_call(&req, true);
    let mode = if req.query_string().split('&').any(|p| p == "mode=redirect") {
        UnauthenticatedMode::Redirect
    } else {
        UnauthenticatedMode::Status
    };
    let (decision, request_id) = decide_and_record(&req, &state, call, mode).await;
    let mut response = respond(&decision);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// Decides `call` for `req`, counts it, logs it under its request id and queues its audit
/// record: everything but the HTTP answer, shared by verify and the built-in proxy.
pub async fn decide_and_record(
    req: &HttpRequest,
    state: &AppState,
    call: VerifyCall<'_>,
    mode: UnauthenticatedMode,
) -> (Decision, String) {
    let cookies = super::cookie_values(req.headers(), &state.config.cookie.name);
    let credentials = Credentials {
        cookies: &cookies,
        bearer: super::bearer_token(req.headers()),
    };
    let wants_html = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let request_id = request_id(req, state);
    let now = chrono::Utc::now();
    // Every log line of this decision carries the request id that is also in its audit row
    // and in the `X-Request-Id` answer.
    let span = tracing::info_span!("verify", request_id = %request_id);
    let decision = state
        .decider
        .decide(call, req.headers(), credentials, mode, wants_html, now)
        .instrument(span.clone())
        .await;
    span.in_scope(|| record(&decision));
    state
        .audit
        .record(AuditRecord::from_decision(&decision, &request_id, now))
        .await;
    (decision, request_id)
}

/// The ingress's `X-Request-Id` when a trusted proxy sent a sane one (so logs line up
/// across hops), else a new UUID.
fn request_id(req: &HttpRequest, state: &AppState) -> String {
    let peer = super::peer_ip(req);
    let offered = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    match offered {
        Some(id)
            if is_trusted(peer, &state.config.trusted_proxies)
                && !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            id.to_string()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

fn record(d: &Decision) {
    METRICS
        .decisions
        .with_label_values(&[d.route.as_str(), d.outcome.as_str()])
        .inc();
    METRICS
        .verify_duration
        .with_label_values(&[d.route.as_str()])
        .observe(d.started.elapsed().as_secs_f64());
    if d.status >= 500 {
        tracing::error!(route = %d.route, reason = ?d.reason, "verify failed closed");
    } else {
        tracing::debug!(route = %d.route, outcome = d.outcome.as_str(), status = d.status, "verify");
    }
}

/// Builds the HTTP answer. A header that cannot be sent turns the answer into a 500: an
/// allow without its identity headers would be a different answer than the one decided.
pub fn respond(d: &Decision) -> HttpResponse {
    let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header(("Cache-Control", "no-store"));
    for (name, value) in &d.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                response.append_header((n, v));
            }
            _ => {
                tracing::error!(header = %name, "decision header cannot be sent; failing closed");
                return HttpResponse::InternalServerError().finish();
            }
        }
    }
    match d.status {
        400 => response.body(format!(
            "bad request: {}\n",
            d.reason.as_deref().unwrap_or("refused")
        )),
        500 => response.body("internal error\n"),
        _ => response.finish(),
    }
}
