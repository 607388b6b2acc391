//! The built-in reverse proxy (`proxy.listen`, DESIGN §4): for setups without an ingress
//! (and `gatehouse demo`). Every request is decided exactly as `/auth/verify` decides, from
//! the request itself — forwarding headers are never believed here — and an allowed request
//! goes to its route's `upstream` with the identity headers; anything else gets the verify
//! answer (a login redirect for browsers, 401, 403, 400, 500).

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use openidconnect::reqwest;

use super::verify::{decide_and_record, respond};
use crate::config::Config;
use crate::decision::{Decision, Outcome, UnauthenticatedMode, fold_header_name};
use crate::session::device::FINGERPRINT_HEADERS;
use crate::state::AppState;

/// Largest request body passed to an upstream.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus `host`
/// (set from the upstream URL).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// What the proxy needs besides the app state, built once at start.
pub struct Forwarder {
    /// The HTTP client to upstreams: no redirects followed (they go back to the browser).
    client: reqwest::Client,
    /// The configured identity header names, lower-case.
    identity_headers: Vec<String>,
    /// Gatehouse's own cookies (session, device, login binding), never sent to apps.
    own_cookies: [String; 3],
}

impl Forwarder {
    pub fn new(config: &Config) -> Forwarder {
        Forwarder {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            identity_headers: config
                .headers
                .all()
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            own_cookies: [
                config.cookie.name.clone(),
                super::auth::device_cookie_name(config),
                super::auth::login_cookie_name(config),
            ],
        }
    }

    /// Whether a client's request header must not reach the upstream.
    fn drops(&self, name: &str) -> bool {
        let folded = fold_header_name(name);
        // Identity headers come only from the decision; a client's (any spelling) are dropped.
        HOP_BY_HOP.contains(&name)
            || self.identity_headers.contains(&folded)
            || folded.starts_with("x-auth-request-")
            || folded.starts_with("x-forwarded-")
            || folded.starts_with("x-original-")
            || folded == "forwarded"
            || folded == "x-real-ip"
            || FINGERPRINT_HEADERS.contains(&folded.as_str())
    }
}

pub async fn proxy(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    forwarder: web::Data<Forwarder>,
) -> HttpResponse {
    let call = super::verify_call(&req, false);
    let peer = call.peer;
    let (decision, request_id) =
        decide_and_record(&req, &state, call, UnauthenticatedMode::Redirect).await;
    if decision.status != 200 {
        return refusal(&decision);
    }
    // The path the decision was made on (normalized: dot segments, duplicate slashes,
    // encodings resolved) is the path served, so no spelling reaches the upstream as
    // something else than what was authorized. With case-insensitive routes the path was
    // also lower-cased for matching; the apps then treat case alike, so the original goes.
    let (upstream, path) = {
        let bundle = state.bundle.load();
        let path = if bundle.routes.case_insensitive_paths {
            req.uri().path().to_string()
        } else {
            decision.path.clone()
        };
        let upstream = bundle
            .routes
            .get(&decision.route)
            .and_then(|r| r.upstream.clone());
        (upstream, path)
    };
    let Some(upstream) = upstream else {
        return page(
            StatusCode::BAD_GATEWAY,
            &format!("route `{}` has no upstream", decision.route),
        );
    };
    let url = match req.uri().query() {
        Some(q) => format!("{}{path}?{q}", upstream.trim_end_matches('/')),
        None => format!("{}{path}", upstream.trim_end_matches('/')),
    };
    forward(&req, body, &forwarder, &decision, &url, &request_id, peer).await
}

/// The verify answer, with a short body a person can read.
fn refusal(d: &Decision) -> HttpResponse {
    let response = respond(d);
    if matches!(d.outcome, Outcome::Deny) {
        let reason = d.reason.as_deref().unwrap_or("denied");
        let body = format!("403 Forbidden: {}\n", reason.replace(['\r', '\n'], " "));
        return response.set_body(actix_web::body::BoxBody::new(body));
    }
    response
}

fn page(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{message}\n"))
}

async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    forwarder: &Forwarder,
    decision: &Decision,
    url: &str,
    request_id: &str,
    peer: IpAddr,
) -> HttpResponse {
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return page(StatusCode::BAD_REQUEST, "unsupported method");
    };
    let mut out = forwarder.client.request(method, url);
    for (name, value) in req.headers() {
        if forwarder.drops(name.as_str()) {
            continue;
        }
        if name.as_str() == "cookie" {
            // The session, device and login cookies are Gatehouse's: apps never see them.
            if let Some(kept) =
                without_cookies(value.to_str().unwrap_or(""), &forwarder.own_cookies)
            {
                out = out.header("cookie", kept);
            }
            continue;
        }
        out = out.header(name.as_str(), value.as_bytes());
    }
    if let Some(host) = req.headers().get("host") {
        out = out.header("x-forwarded-host", host.as_bytes());
    }
    out = out
        .header("x-forwarded-for", peer.to_string())
        .header("x-forwarded-proto", "http")
        .header("x-request-id", request_id);
    for (name, value) in &decision.headers {
        out = out.header(name.as_str(), value.as_str());
    }
    let response = match out.body(body.to_vec()).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(route = %decision.route, url, error = %e, "upstream unreachable");
            return page(StatusCode::BAD_GATEWAY, "the upstream cannot be reached");
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        builder.append_header((name.as_str(), value.as_bytes()));
    }
    builder.insert_header(("x-request-id", request_id));
    match response.bytes().await {
        Ok(bytes) => builder.body(bytes.to_vec()),
        Err(e) => {
            tracing::warn!(route = %decision.route, error = %e, "upstream answer cut short");
            page(StatusCode::BAD_GATEWAY, "the upstream answer was cut short")
        }
    }
}

/// A `Cookie` header without the named cookies; `None` when nothing is left.
fn without_cookies(header: &str, names: &[String]) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map(|(n, _)| n.trim()).unwrap_or(pair);
            !pair.is_empty() && !names.iter().any(|own| own == name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatehouse_cookies_are_removed_others_kept() {
        let names = ["_gatehouse".to_string(), "_gatehouse_device".to_string()];
        assert_eq!(
            without_cookies("a=1; _gatehouse=tok; _gatehouse_device=d; b=2", &names).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without_cookies("_gatehouse=tok", &names), None);
        assert_eq!(
            without_cookies("_gatehouse_x=1", &names).as_deref(),
            Some("_gatehouse_x=1")
        );
    }
}
