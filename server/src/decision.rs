//! The verify decision (DESIGN §5): original request → normalized host and path → route →
//! session → policy → answer. Shared by the HTTP verify endpoint and, later, the built-in
//! proxy and the gRPC ext_authz server. Every failure path denies.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderMap;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::config::{Config, HeaderNames};
use crate::headers::ActixHeaders;
use crate::policy::input::{RequestFacts, RouteFacts};
use crate::policy::{Bundle, DefaultAction, RouteRule};
use crate::request::normalize::{normalize_host, normalize_path, split_target};
use crate::request::trust::{OriginalError, OriginalRequest, VerifyCall};
use crate::session::device::{DeviceResolver, FINGERPRINT_HEADERS, normalize_fingerprint};
use crate::session::resolver::{InvalidSession, ResolvedSession, SessionResolver};
use crate::session::token::CookieSigner;

/// The route name used for requests no route matches.
pub const DEFAULT_ROUTE: &str = "default";
/// How many validly signed cookies carrying our name one request may look up in the store.
/// Forged or unsigned ones are refused by their signature first and do not count, so junk
/// cookies tossed in by a sibling subdomain cannot push the real one out.
const MAX_COOKIES_TRIED: usize = 4;

/// The route whose policy guards Gatehouse's own admin UI and API.
pub const ADMIN_ROUTE: &str = "gatehouse-admin";

/// The outcome category, as audited and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Public,
    Deny,
    Unauthenticated,
    BadRequest,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Public => "public",
            Outcome::Deny => "deny",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
        }
    }
}

/// The answer to one verify call.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// 200, 302, 400, 401, 403 or 500.
    pub status: u16,
    /// Response headers: identity and policy headers on allow, the login redirect on 401,
    /// the reason on 403.
    pub headers: Vec<(String, String)>,
    /// A short reason code for the audit and `X-Auth-Request-Reason`.
    pub reason: Option<String>,
    pub route: String,
    pub bundle_version: String,
    pub user_email: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub tenant: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub source_ip: Option<std::net::IpAddr>,
    pub started: Instant,
}

/// How the caller presented a session.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Values of every cookie carrying our cookie name.
    pub cookies: &'a [&'a str],
    pub bearer: Option<&'a str>,
}

/// How unauthenticated browser requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthenticatedMode {
    /// 401 with `X-Auth-Request-Redirect` (NGINX `auth_request`).
    Status,
    /// 302 to the login page for `Accept: text/html` (Traefik / Caddy, `?mode=redirect`).
    Redirect,
}

/// Everything a decision needs; one per process, shared by all workers.
pub struct Decider {
    pub bundle: Arc<ArcSwap<Bundle>>,
    pub sessions: SessionResolver,
    pub devices: DeviceResolver,
    pub signer: CookieSigner,
    pub headers: HeaderNames,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub login_url: String,
    /// Request headers hidden from policies: identity headers (any spelling) and credentials.
    hidden_headers: Vec<String>,
}

/// Lower-cases a header name and folds `_` to `-`, so `X_Auth_Request_User` and
/// `x-auth-request-user` compare equal (CVE-2025-64484 was the underscore spelling).
pub fn fold_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

impl Decider {
    pub fn new(
        config: &Config,
        bundle: Arc<ArcSwap<Bundle>>,
        sessions: SessionResolver,
        devices: DeviceResolver,
    ) -> Decider {
        let mut hidden: Vec<String> = config
            .headers
            .all()
            .iter()
            .map(|h| fold_header_name(h))
            .collect();
        hidden.extend(
            [
                "cookie",
                "authorization",
                "proxy-authorization",
                "x-auth-request-redirect",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let login_url = format!(
            "{}/auth/login",
            config.public_url.as_str().trim_end_matches('/')
        );
        Decider {
            bundle,
            sessions,
            devices,
            signer: CookieSigner::new(config.cookie.secret.expose().as_bytes()),
            headers: config.headers.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            login_url,
            hidden_headers: hidden,
        }
    }

    /// Decides one verify call.
    pub async fn decide(
        &self,
        call: VerifyCall<'_>,
        headers: &HeaderMap,
        credentials: Credentials<'_>,
        mode: UnauthenticatedMode,
        wants_html: bool,
        now: DateTime<Utc>,
    ) -> Decision {
        let started = Instant::now();
        let bundle = self.bundle.load_full();
        let mut d = Decision {
            outcome: Outcome::BadRequest,
            status: 400,
            headers: Vec::new(),
            reason: None,
            route: DEFAULT_ROUTE.to_string(),
            bundle_version: bundle.version.clone(),
            user_email: None,
            user_id: None,
            device_id: None,
            tenant: None,
            method: call.method.to_string(),
            host: None,
            path: String::new(),
            source_ip: None,
            started,
        };

        let original =
            match OriginalRequest::from_verify(call, &ActixHeaders(headers), &self.trusted_proxies)
            {
                Ok(o) => o,
                Err(e) => {
                    if let OriginalError::Conflicting { part } = e {
                        // Worth a look: an ingress that passes client headers, or an attack.
                        tracing::warn!(part, "forwarding header families disagree; refused");
                    }
                    return d.bad_request(e.to_string());
                }
            };
        d.method = original.method.clone();
        d.source_ip = Some(original.source_ip);
        let (raw_path, query) = split_target(&original.target);
        d.path = raw_path.chars().take(512).collect();
        let host = match original.host.as_deref().map(normalize_host).transpose() {
            Ok(h) => h.flatten(),
            Err(e) => return d.bad_request(e.to_string()),
        };
        d.host = host.clone();
        let path = match normalize_path(raw_path, bundle.routes.case_insensitive_paths) {
            Ok(p) => p,
            Err(e) => return d.bad_request(e.to_string()),
        };
        d.path = path.as_str().to_string();

        let matched = bundle.routes.matches(host.as_deref(), &path);
        if let Some(m) = &matched {
            d.route = m.route.name.clone();
            d.tenant = m.tenant.clone();
            if m.route.rule == RouteRule::Public {
                d.outcome = Outcome::Public;
                d.status = 200;
                return d;
            }
        } else if bundle.routes.default == DefaultAction::Deny {
            return d.deny(403, "no_route".into());
        }

        let login_redirect = matched.as_ref().is_some_and(|m| m.route.login_redirect);
        let original_url = original.url(original.host.as_deref().filter(|_| host.is_some()));
        let session = match self.resolve(credentials, now).await {
            Ok(Ok(s)) => s,
            Ok(Err(reason)) => {
                let redirect = mode == UnauthenticatedMode::Redirect || login_redirect;
                return d.unauthenticated(
                    &self.login_url,
                    &original_url,
                    reason,
                    redirect && wants_html,
                );
            }
            Err(message) => return d.error(message),
        };
        d.user_email = Some(session.email.clone());
        d.user_id = Some(session.user_id.clone());
        d.device_id = session.device_id.clone();

        let Some(m) = matched else {
            // `default: allow-authenticated`: any live session may pass.
            d.outcome = Outcome::Allow;
            d.status = 200;
            d.headers = self.identity_headers(&session, None);
            return d;
        };

        let request_headers = self.policy_headers(headers);
        let request = RequestFacts {
            method: &original.method,
            scheme: &original.scheme,
            host: host.as_deref(),
            path: &path,
            query,
            headers: &request_headers,
            source_ip: original.source_ip,
        };
        let route_facts = RouteFacts {
            name: &m.route.name,
            tenant: m.tenant.as_deref(),
            params: &m.params,
        };
        // A registered client certificate from a trusted ingress is the device.
        let with_device;
        let identity = match self.certificate_device(&original, headers).await {
            Ok(Some(device)) => {
                d.device_id = Some(device.id.clone());
                let mut identity = session.identity.clone();
                identity.rego.device = device.rego.clone();
                identity.cel.device = device.cel.clone();
                with_device = identity;
                &with_device
            }
            Ok(None) => &session.identity,
            Err(message) => return d.error(message),
        };
        let eval_started = Instant::now();
        let outcome = bundle.evaluate(m.route, &request, &route_facts, identity, now);
        crate::metrics::METRICS
            .policy_eval_duration
            .observe(eval_started.elapsed().as_secs_f64());
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(route = %m.route.name, error = %e, "policy evaluation failed; denying");
                return d.error(e.to_string());
            }
        };
        if !outcome.allow {
            let reason = outcome.reason.unwrap_or_else(|| "denied".into());
            if outcome.status == Some(401) {
                let redirect = mode == UnauthenticatedMode::Redirect || login_redirect;
                let mut d = d.unauthenticated(
                    &self.login_url,
                    &original_url,
                    InvalidSession::Unknown,
                    redirect && wants_html,
                );
                d.reason = Some(reason);
                return d;
            }
            return d.deny(403, reason);
        }
        let mut response_headers = self.identity_headers(&session, m.tenant.as_deref());
        for (name, value) in outcome.headers {
            let folded = fold_header_name(&name);
            if self.hidden_headers.contains(&folded) {
                return d.error(format!("policy tried to set the identity header {name}"));
            }
            response_headers.push((name, value));
        }
        d.outcome = Outcome::Allow;
        d.status = 200;
        d.headers = response_headers;
        d
    }

    /// Authorizes a request to Gatehouse's own admin API with the `gatehouse-admin` route's
    /// policy: the same sessions and engine as verify, fail closed. Returns the session, or
    /// the status and reason to answer with.
    pub async fn authorize_admin(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        peer: std::net::IpAddr,
        credentials: Credentials<'_>,
        now: DateTime<Utc>,
    ) -> Result<Arc<ResolvedSession>, (u16, String)> {
        let bundle = self.bundle.load_full();
        let Some(route) = bundle.routes.get(ADMIN_ROUTE) else {
            return Err((403, "no_admin_route".into()));
        };
        let session = match self.resolve(credentials, now).await {
            Ok(Ok(s)) => s,
            Ok(Err(invalid)) => return Err((401, invalid.code().into())),
            Err(e) => {
                tracing::error!(error = %e, "admin authorization failed closed");
                return Err((500, "store_error".into()));
            }
        };
        let path = normalize_path(path, false).map_err(|e| (400, e.to_string()))?;
        let request_headers = self.policy_headers(headers);
        let request = RequestFacts {
            method,
            scheme: "http",
            host: None,
            path: &path,
            query: None,
            headers: &request_headers,
            source_ip: peer,
        };
        let facts = RouteFacts {
            name: ADMIN_ROUTE,
            tenant: None,
            params: &[],
        };
        match bundle.evaluate(route, &request, &facts, &session.identity, now) {
            Ok(o) if o.allow => Ok(session),
            Ok(o) => Err((403, o.reason.unwrap_or_else(|| "denied".into()))),
            Err(e) => {
                tracing::error!(error = %e, "admin policy failed; denying");
                Err((500, "policy_error".into()))
            }
        }
    }

    /// The registered device of the client certificate a trusted ingress verified, if any.
    /// Fingerprint headers from anyone else are ignored, like every forwarding header.
    async fn certificate_device(
        &self,
        original: &OriginalRequest,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<crate::session::device::DeviceDocs>>, String> {
        if !original.from_trusted_proxy {
            return Ok(None);
        }
        let Some(raw) = FINGERPRINT_HEADERS
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        else {
            return Ok(None);
        };
        let Some(fingerprint) = normalize_fingerprint(raw) else {
            tracing::warn!(
                "ignoring a client certificate fingerprint that is not hex SHA-1/SHA-256"
            );
            return Ok(None);
        };
        self.devices
            .resolve(&fingerprint)
            .await
            .map_err(|e| format!("device store: {e}"))
    }

    /// The email of the live session among `credentials`, if any (for pages that greet).
    pub async fn session_of(
        &self,
        credentials: Credentials<'_>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        match self.resolve(credentials, now).await {
            Ok(Ok(session)) => Some(session.email.clone()),
            _ => None,
        }
    }

    /// Finds a live session among the presented credentials. Several cookies with our name
    /// (one tossed in by a sibling subdomain) are each tried; the first live one wins.
    async fn resolve(
        &self,
        credentials: Credentials<'_>,
        now: DateTime<Utc>,
    ) -> Result<Result<Arc<ResolvedSession>, InvalidSession>, String> {
        // Each examined value costs one HMAC (cheap); the bound is generous, above what a
        // browser keeps for one domain (Chrome: 180), so a huge header stays bounded work.
        const MAX_COOKIES_EXAMINED: usize = 256;
        let mut first_invalid = InvalidSession::Unknown;
        // Signatures are checked first, for cookies and the bearer alike: an unsigned or
        // forged value never reaches the store. Of the validly signed cookies a few are
        // looked up at most, so a request stuffed with (stolen, expired) signed cookies
        // cannot turn into many store lookups.
        let signed_cookies = credentials
            .cookies
            .iter()
            .take(MAX_COOKIES_EXAMINED)
            .filter_map(|c| self.signer.verify(c).ok())
            .take(MAX_COOKIES_TRIED);
        let signed_bearer = credentials
            .bearer
            .and_then(|b| self.signer.verify_bearer(b).ok());
        for token in signed_cookies.chain(signed_bearer) {
            match self.sessions.resolve(&token, now).await {
                Ok(Ok(session)) => return Ok(Ok(session)),
                Ok(Err(invalid)) => first_invalid = invalid,
                Err(e) => return Err(format!("session store: {e}")),
            }
        }
        Ok(Err(first_invalid))
    }

    fn identity_headers(
        &self,
        s: &ResolvedSession,
        route_tenant: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(5);
        out.push((self.headers.user.clone(), s.email.clone()));
        out.push((self.headers.email.clone(), s.email.clone()));
        out.push((self.headers.groups.clone(), s.groups_joined.clone()));
        if let Some(u) = &s.username {
            out.push((self.headers.preferred_username.clone(), u.clone()));
        }
        match route_tenant {
            Some(t) => out.push((self.headers.tenant.clone(), t.to_string())),
            None if !s.tenants_joined.is_empty() => {
                out.push((self.headers.tenant.clone(), s.tenants_joined.clone()))
            }
            None => {}
        }
        out
    }

    /// The request headers policies may read: everything but credentials and identity
    /// headers (which a client could forge).
    fn policy_headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
        for (name, value) in headers.iter() {
            let folded = fold_header_name(name.as_str());
            if self.hidden_headers.contains(&folded) || folded.starts_with("x-auth-request-") {
                continue;
            }
            let Ok(value) = value.to_str() else { continue };
            match out.iter_mut().find(|(n, _)| *n == folded) {
                Some((_, existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                None => out.push((folded, value.to_string())),
            }
        }
        out
    }
}

impl Decision {
    /// A refused request spelling or forwarding headers. The reason (always one of our own
    /// fixed messages, never request text) is sent back so an operator can see why.
    fn bad_request(mut self, reason: String) -> Decision {
        self.outcome = Outcome::BadRequest;
        self.status = 400;
        self.headers = vec![("X-Auth-Request-Reason".into(), reason.clone())];
        self.reason = Some(reason);
        self
    }

    fn deny(mut self, status: u16, reason: String) -> Decision {
        self.outcome = Outcome::Deny;
        self.status = status;
        self.headers = vec![("X-Auth-Request-Reason".into(), reason.clone())];
        self.reason = Some(reason);
        self
    }

    fn error(mut self, message: String) -> Decision {
        self.outcome = Outcome::Error;
        self.status = 500;
        self.headers.clear();
        self.reason = Some(message);
        self
    }

    fn unauthenticated(
        mut self,
        login_url: &str,
        original_url: &str,
        why: InvalidSession,
        redirect: bool,
    ) -> Decision {
        let rd: String = url::form_urlencoded::byte_serialize(original_url.as_bytes()).collect();
        let location = format!("{login_url}?rd={rd}");
        self.outcome = Outcome::Unauthenticated;
        self.reason = Some(why.code().to_string());
        if redirect {
            self.status = 302;
            self.headers = vec![("Location".into(), location)];
        } else {
            self.status = 401;
            self.headers = vec![("X-Auth-Request-Redirect".into(), location)];
        }
        self
    }
}
