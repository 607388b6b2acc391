//! `GET /auth/verify` (alias `/oauth2/auth`): the ingress asks, we answer (docs/architecture.md).

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::authorizer::{Ask, Credentials, Decision, Transport, UnauthenticatedMode, wants_html};
use crate::headers::ActixHeaders;
use crate::request::Headers;
use crate::request::credentials::{bearer_token, cookie_values};
use crate::request::trust::VerifyCall;
use crate::state::AppState;

pub async fn verify(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let call = super::verify_call(&req, true);
    let mode = if req.query_string().split('&').any(|p| p == "mode=redirect") {
        UnauthenticatedMode::Redirect
    } else {
        UnauthenticatedMode::Status
    };
    let (decision, request_id) = decide_and_record(&req, &state, call, mode, Transport::Http).await;
    let mut response = respond(&decision);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// Hands `req` to the authorizer (decide, count, log, audit): the actix side of every
/// transport that answers over HTTP (verify and the built-in proxy).
pub async fn decide_and_record(
    req: &HttpRequest,
    state: &AppState,
    call: VerifyCall<'_>,
    mode: UnauthenticatedMode,
    transport: Transport,
) -> (Decision, String) {
    let headers = ActixHeaders(req.headers());
    let cookies = cookie_values(&headers, &state.config.cookie.name);
    let ask = Ask {
        call,
        headers: &headers,
        credentials: Credentials {
            cookies: &cookies,
            bearer: bearer_token(&headers),
        },
        mode,
        wants_html: wants_html(&headers),
        offered_request_id: headers
            .single_text("x-request-id")
            .filter(|_| state.authorizer.trusts(call.peer)),
        transport,
        client_certificate: None,
    };
    state.authorizer.authorize(ask).await
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
    match d.refusal_body() {
        Some(body) => response.body(body),
        None => response.finish(),
    }
}
