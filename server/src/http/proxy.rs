//! The built-in reverse proxy (`proxy.listen`, README.md): for setups without an ingress
//! (and `gatehouse demo`). Every request is decided exactly as `/auth/verify` decides, from
//! the request itself — forwarding headers are never believed here — and an allowed request
//! goes to its route's `upstream` with the identity headers; anything else gets the verify
//! answer (a login redirect for browsers, 401, 403, 400, 500).
//!
//! docs/security.md: the raw request target it decided on is forwarded (never a re-encoded decoded
//! form); Gatehouse's cookies and any `Authorization` carrying a Gatehouse token are removed;
//! every header the decision sets replaces the client's of that name, in any spelling, and
//! every policy header the bundle declares (`headers:` in routes.yaml) is removed from every
//! client request, whatever the decision answered. The
//! decision is made before the body is read, and bodies are streamed both ways.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_core::Stream;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};

use super::verify::{decide_and_record, respond};
use crate::authorizer::{Decision, Outcome, Transport, UnauthenticatedMode, fold_header_name};
use crate::config::Config;
use crate::session::device::FINGERPRINT_HEADERS;
use crate::session::token::CookieSigner;
use crate::state::AppState;

/// Largest request body passed to an upstream. Bodies are streamed both ways (never held
/// whole in memory), so this bounds what one request may upload, not the proxy's memory: a
/// larger `Content-Length` is answered 413 before any of the body is read, a chunked body
/// is cut off (413) when it passes the limit. Responses have no limit.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;

/// How long an upstream has to answer with its status and headers, counted from the end of
/// the request body (an upload takes as long as it takes, and so does a streamed download).
const UPSTREAM_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Request body chunks buffered between the client connection and the upstream one.
const UPLOAD_CHUNKS_IN_FLIGHT: usize = 8;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus `host`
/// (set from the upstream URL), `content-length` (the body's framing is the proxy's own on
/// each side) and `expect` (the proxy already answered `100 Continue`).
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
    "expect",
];

/// Headers the proxy itself sets on every forwarded request; a client's are replaced.
const SET_BY_PROXY: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
];

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Upload>;

/// What the proxy needs besides the app state, built once at start.
pub struct Forwarder {
    /// The HTTP client to upstreams (hyper, so that the request target is sent byte for
    /// byte as received; no redirects are followed — they go back to the browser).
    client: UpstreamClient,
    /// The configured identity header names, folded (`fold_header_name`).
    identity_headers: Vec<String>,
    /// Gatehouse's own cookies (session, device, login binding), never sent to apps.
    own_cookies: [String; 3],
}

impl Forwarder {
    pub fn new(config: &Config) -> Forwarder {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Forwarder {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(https),
            identity_headers: config
                .headers
                .all()
                .iter()
                .map(|h| fold_header_name(h).into_owned())
                .collect(),
            own_cookies: [
                config.cookie.name.clone(),
                super::auth::device_cookie_name(config),
                super::auth::login_cookie_name(config),
            ],
        }
    }

    /// Whether a client's request header must not reach the upstream, whatever its value.
    /// `folded` is the name after `fold_header_name`.
    fn drops(&self, name: &str, folded: &str) -> bool {
        // Identity headers come only from the decision; a client's (any spelling) are dropped.
        HOP_BY_HOP.contains(&name)
            || SET_BY_PROXY.contains(&folded)
            || self.identity_headers.iter().any(|h| h == folded)
            || folded.starts_with("x-auth-request-")
            || folded.starts_with("x-forwarded-")
            || folded.starts_with("x-original-")
            || folded == "forwarded"
            || folded == "x-real-ip"
            || FINGERPRINT_HEADERS.contains(&folded)
    }
}

pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    forwarder: web::Data<Forwarder>,
) -> HttpResponse {
    // Decided on the request line and headers alone: the body is not read (nor waited for)
    // until the request is allowed, so a refused request never costs its upload.
    let call = super::verify_call(&req, false);
    let peer = call.peer;
    // The raw request target, exactly the one the decision is made on.
    let target = call.target;
    let (decision, request_id) = decide_and_record(
        &req,
        &state,
        call,
        UnauthenticatedMode::Redirect,
        Transport::Proxy,
    )
    .await;
    if decision.status != 200 {
        return refusal(&decision);
    }
    // The bundle's declared policy headers (`headers:` in routes.yaml, computed once per
    // bundle) are removed from the client's request on every route.
    let bundle = state.bundle.load_full();
    let upstream = bundle
        .routes
        .get(&decision.route)
        .and_then(|r| r.upstream.clone());
    let Some(upstream) = upstream else {
        return page(
            StatusCode::BAD_GATEWAY,
            &format!("route `{}` has no upstream", decision.route),
        );
    };
    // The raw request target goes on byte for byte as received and decided on (the
    // decision normalizes it and refuses every spelling an upstream could resolve
    // differently, docs/security.md), after the upstream's own base path if it has one. Never a
    // re-encoded decoded form: `/app/./x` or `/app/x%20y?q=%3F` reach the app as sent.
    let url = format!("{}{target}", upstream.trim_end_matches('/'));
    let Ok(uri) = url.parse::<Uri>() else {
        tracing::warn!(route = %decision.route, url, "upstream URL is not valid");
        return page(StatusCode::BAD_GATEWAY, "the upstream URL is not valid");
    };
    forward(
        &req,
        payload,
        &state.authorizer.signer,
        &forwarder,
        &decision,
        bundle.routes.declared_headers(),
        uri,
        &request_id,
        peer,
    )
    .await
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

/// Whether an `Authorization` value carries a Gatehouse session token (a bearer value the
/// signer accepts, expired or not): such a header never reaches an app, which could replay
/// it. Every other value (`Basic` for the app itself, another issuer's bearer) passes.
fn is_gatehouse_bearer(value: &[u8], signer: &CookieSigner) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let Some((scheme, token)) = text.trim().split_once([' ', '\t']) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && signer.verify_bearer(token.trim()).is_ok()
}

/// Names listed in `Connection` headers: hop-by-hop for this one connection.
fn connection_options<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The headers sent to the upstream: the client's, minus everything Gatehouse owns or
/// decides, plus the forwarding headers and the decision's. Every name the decision sets is
/// **replaced**: a client's header of that name, in any spelling (`X_Tenant_Id`,
/// `X-TENANT-ID`), is removed first. So is every policy header the bundle declares
/// (`declared`, folded), whatever this decision answered: a staff member's forged
/// `X-Restaurant-Role: kitchen` never reaches the app, nor a forged `X-Tenant-Id` on a
/// public route. `None` when a decision header cannot be sent (the request then fails
/// closed).
fn upstream_headers(
    req: &HttpRequest,
    signer: &CookieSigner,
    forwarder: &Forwarder,
    decision: &Decision,
    declared: &[String],
    request_id: &str,
    peer: IpAddr,
) -> Option<HeaderMap> {
    let decided: Vec<String> = decision
        .headers
        .iter()
        .map(|(n, _)| fold_header_name(n).into_owned())
        .collect();
    let listed = connection_options(req.headers().get_all("connection").map(|v| v.as_bytes()));
    let mut out = HeaderMap::with_capacity(req.headers().len() + decision.headers.len() + 4);
    for (name, value) in req.headers() {
        let name = name.as_str();
        let folded = fold_header_name(name);
        let named = |names: &[String]| names.iter().any(|n| *n == folded);
        if forwarder.drops(name, &folded) || named(&decided) || named(declared) || named(&listed) {
            continue;
        }
        let value = match name {
            // The session, device and login cookies are Gatehouse's: apps never see them.
            "cookie" => {
                match without_cookies(value.to_str().unwrap_or(""), &forwarder.own_cookies) {
                    Some(kept) => kept.into_bytes(),
                    None => continue,
                }
            }
            "authorization" if is_gatehouse_bearer(value.as_bytes(), signer) => continue,
            _ => value.as_bytes().to_vec(),
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            out.append(n, v);
        }
    }
    if let Some(host) = req.headers().get("host")
        && let Ok(v) = HeaderValue::from_bytes(host.as_bytes())
    {
        out.insert("x-forwarded-host", v);
    }
    if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
        out.insert("x-forwarded-for", v);
    }
    out.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert("x-request-id", v);
    }
    for (name, value) in &decision.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                out.append(n, v);
            }
            _ => {
                tracing::error!(header = %name, "decision header cannot be sent; failing closed");
                return None;
            }
        }
    }
    Some(out)
}

/// The request body's length as the client framed it: `None` for chunked, `Some(0)` when
/// there is no body at all.
fn body_length(req: &HttpRequest) -> Result<Option<u64>, ()> {
    if req.headers().contains_key("transfer-encoding") {
        return Ok(None);
    }
    match req.headers().get("content-length") {
        None => Ok(Some(0)),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    signer: &CookieSigner,
    forwarder: &Forwarder,
    decision: &Decision,
    declared: &[String],
    uri: Uri,
    request_id: &str,
    peer: IpAddr,
) -> HttpResponse {
    let Ok(method) = Method::from_bytes(req.method().as_str().as_bytes()) else {
        return page(StatusCode::BAD_REQUEST, "unsupported method");
    };
    if method == Method::CONNECT {
        return page(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not proxied");
    }
    let Ok(length) = body_length(req) else {
        return page(StatusCode::BAD_REQUEST, "invalid Content-Length");
    };
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        );
    }
    let Some(headers) =
        upstream_headers(req, signer, forwarder, decision, declared, request_id, peer)
    else {
        return HttpResponse::InternalServerError().finish();
    };
    let too_large = Arc::new(AtomicBool::new(false));
    let (sent_tx, sent) = oneshot::channel::<()>();
    let body = if length == Some(0) {
        drop(sent_tx);
        Upload::empty()
    } else {
        let (tx, rx) = mpsc::channel(UPLOAD_CHUNKS_IN_FLIGHT);
        // The client's body is read on this worker (actix's payload is not `Send`) and
        // handed over chunk by chunk; it stops when the upstream no longer wants it.
        actix_web::rt::spawn(pump(payload, tx, too_large.clone(), sent_tx));
        Upload {
            chunks: Some(rx),
            length,
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let head_request = request.method() == Method::HEAD;

    let answer = forwarder.client.request(request);
    let deadline = async {
        // Ends (`Err`) when the body is all sent or the upload stopped.
        let _ = sent.await;
        tokio::time::sleep(UPSTREAM_ANSWER_TIMEOUT).await;
    };
    let answer = tokio::select! {
        a = answer => Some(a),
        () = deadline => None,
    };
    let response = match answer {
        Some(Ok(r)) => r,
        Some(Err(_)) if too_large.load(Ordering::Relaxed) => {
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            );
        }
        Some(Err(e)) => {
            tracing::warn!(route = %decision.route, error = %e, "upstream unreachable");
            return page(StatusCode::BAD_GATEWAY, "the upstream cannot be reached");
        }
        None => {
            tracing::warn!(route = %decision.route, "upstream did not answer in time");
            return page(StatusCode::GATEWAY_TIMEOUT, "the upstream did not answer");
        }
    };
    let (parts, body) = response.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    let listed = connection_options(
        parts
            .headers
            .get_all("connection")
            .iter()
            .map(|v| v.as_bytes()),
    );
    for (name, value) in &parts.headers {
        if HOP_BY_HOP.contains(&name.as_str()) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        builder.append_header((name.as_str(), value.as_bytes()));
    }
    builder.insert_header(("x-request-id", request_id));
    // 204 and 304 have no body: sent as one (actix would end a stream with a chunked
    // terminator even where it writes no `Transfer-Encoding`, corrupting the connection).
    if status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return builder.finish();
    }
    // The answer is streamed. Its length, when the upstream gave one, is kept (also for
    // HEAD, which has no body); without one it is sent chunked.
    let declared = parts
        .headers
        .get("content-length")
        .filter(|_| !parts.headers.contains_key("transfer-encoding"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let download = Download {
        body,
        route: decision.route.clone(),
    };
    match declared {
        Some(n) if head_request || body_size_is(&download, n) => {
            builder.body(SizedStream::new(n, download))
        }
        _ => builder.streaming(download),
    }
}

/// Whether hyper agrees with the declared length (it enforces it while reading).
fn body_size_is(download: &Download, n: u64) -> bool {
    download.body.size_hint().exact() == Some(n)
}

/// Reads the client's body into the upload channel, counting it against `MAX_BODY_BYTES`.
async fn pump(
    mut payload: web::Payload,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    too_large: Arc<AtomicBool>,
    // Dropped when the pump ends: the upstream then has its whole body (or never will).
    _sent: oneshot::Sender<()>,
) {
    let mut read: u64 = 0;
    loop {
        let chunk = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await;
        let item = match chunk {
            None => return,
            Some(Ok(bytes)) => {
                read += bytes.len() as u64;
                if read > MAX_BODY_BYTES {
                    too_large.store(true, Ordering::Relaxed);
                    Err(std::io::Error::other("request body over the limit"))
                } else {
                    Ok(bytes)
                }
            }
            Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            // The upstream connection is done with the body (answered or failed).
            return;
        }
    }
}

/// The request body sent upstream: chunks from the client connection, with the client's
/// length when it gave one (so the upstream gets `Content-Length`, not chunked).
pub struct Upload {
    chunks: Option<mpsc::Receiver<Result<Bytes, std::io::Error>>>,
    length: Option<u64>,
}

impl Upload {
    fn empty() -> Upload {
        Upload {
            chunks: None,
            length: Some(0),
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.chunks.as_mut() {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// The upstream's answer body as the stream actix sends on.
struct Download {
    body: Incoming,
    route: String,
}

impl Stream for Download {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    // Trailers are not forwarded.
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(route = %self.route, error = %e, "upstream answer cut short");
                    Poll::Ready(Some(Err(e)))
                }
            };
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
    use crate::session::token::SessionToken;

    #[test]
    fn only_authorization_values_our_signer_accepts_are_gatehouse_tokens() {
        let signer = CookieSigner::new(b"0123456789abcdef0123456789abcdef");
        let other = CookieSigner::new(b"another-secret-another-secret-xx");
        let token = SessionToken::generate();
        let signed = signer.sign(&token);
        for ours in [
            format!("Bearer {signed}"),
            format!("bearer {signed}"),
            format!("BEARER  {signed} "),
            format!("Bearer\t{signed}"),
        ] {
            assert!(is_gatehouse_bearer(ours.as_bytes(), &signer), "{ours}");
        }
        for theirs in [
            format!("Basic {signed}"),
            format!("Bearer {}", other.sign(&token)),
            "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_string(),
            "Basic dXNlcjpwYXNzd29yZA==".to_string(),
            format!("Bearer{signed}"),
        ] {
            assert!(!is_gatehouse_bearer(theirs.as_bytes(), &signer), "{theirs}");
        }
    }

    #[test]
    fn connection_options_are_listed_lower_case() {
        let values: [&[u8]; 2] = [b"keep-alive, X-Secret", b" close ,,"];
        assert_eq!(
            connection_options(values.into_iter()),
            ["keep-alive", "x-secret", "close"]
        );
    }

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
