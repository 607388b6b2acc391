//! The decision (docs/architecture.md, docs/policies.md): one request, one verdict, for every transport.
//!
//! Deciding takes two steps because finding out who is asking is I/O (a session store, a
//! device registry) that the core does not do, and that some requests must not cause:
//!
//! 1. [`route`] reads the request under the trust rules, normalizes it and matches its
//!    route. Refused spellings, public routes and unmatched routes are decided here, without
//!    anyone's identity ([`Step::Done`]); everything else needs to know who is asking
//!    ([`Step::NeedsCaller`]).
//! 2. The service resolves the caller (session, device) and [`decide`] evaluates the route's
//!    policy and builds the answer.
//!
//! Every failure path denies: an evaluation error is [`Outcome::Error`], never an allow.
//! Verdicts carry statuses as numbers and headers as strings; each transport maps them to
//! its own types (HTTP answer, Envoy `CheckResponse`).

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::policy::input::{RequestFacts, RouteFacts};
use crate::policy::{Bundle, DefaultAction, IdentityInput, RouteMatch, RouteRule};
use crate::request::Headers;
use crate::request::headers::header_text;
use crate::request::normalize::{NormalizedPath, normalize_host, normalize_path, split_target};
use crate::request::trust::{OriginalError, OriginalRequest, VerifyCall};

/// The route name used for requests no route matches.
pub const DEFAULT_ROUTE: &str = "default";

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

/// Which transport asked (`input.request.transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/auth/verify` asked by an ingress.
    Http,
    /// The built-in reverse proxy.
    Proxy,
    /// Envoy `ext_authz` over gRPC.
    Grpc,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Proxy => "proxy",
            Transport::Grpc => "grpc",
        }
    }
}

/// How unauthenticated browser requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthenticatedMode {
    /// 401 with `X-Auth-Request-Redirect` (NGINX `auth_request`).
    Status,
    /// 302 to the login page for `Accept: text/html` (Traefik, Caddy, `?mode=redirect`).
    Redirect,
}

/// The names of the identity headers in allow answers (README.md `headers:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub user: String,
    pub email: String,
    pub groups: String,
    pub preferred_username: String,
    pub tenant: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: "X-Auth-Request-User".into(),
            email: "X-Auth-Request-Email".into(),
            groups: "X-Auth-Request-Groups".into(),
            preferred_username: "X-Auth-Request-Preferred-Username".into(),
            tenant: "X-Auth-Request-Tenant".into(),
        }
    }
}

impl HeaderNames {
    pub fn all(&self) -> [&str; 5] {
        [
            &self.user,
            &self.email,
            &self.groups,
            &self.preferred_username,
            &self.tenant,
        ]
    }
}

/// Lower-cases a header name and folds `_` to `-`, so `X_Auth_Request_User` and
/// `x-auth-request-user` compare equal (CVE-2025-64484 was the underscore spelling).
/// Borrowed when the name is folded already (every name HTTP/1 servers hand over is lower
/// case): it runs for every header of every request.
pub fn fold_header_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
        Cow::Owned(name.to_ascii_lowercase().replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// What the decision needs from the service's configuration, built once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub headers: HeaderNames,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `<public_url>/auth/login`.
    pub login_url: String,
    /// Request headers hidden from policies: identity headers (folded) and credentials.
    hidden_headers: Vec<String>,
}

impl Settings {
    pub fn new(
        headers: HeaderNames,
        trusted_proxies: Vec<ipnet::IpNet>,
        public_url: &str,
    ) -> Settings {
        let mut hidden: Vec<String> = headers
            .all()
            .iter()
            .map(|h| fold_header_name(h).into_owned())
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
        Settings {
            headers,
            trusted_proxies,
            login_url: format!("{}/auth/login", public_url.trim_end_matches('/')),
            hidden_headers: hidden,
        }
    }

    /// Whether a header (its folded name) is one a policy must not see or set: credentials
    /// and identity headers, which a client could forge.
    pub fn is_hidden(&self, folded: &str) -> bool {
        self.hidden_headers.iter().any(|h| h == folded) || folded.starts_with("x-auth-request-")
    }
}

/// The answer to one request, before any transport's types.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    /// 200, 302, 400, 401, 403 or 500.
    pub status: u16,
    /// Identity and policy headers on allow, the login redirect on 401/302, the reason on
    /// 403 and 400.
    pub headers: Vec<(String, String)>,
    /// A short reason code for the audit and `X-Auth-Request-Reason`.
    pub reason: Option<String>,
    pub route: String,
    pub tenant: Option<String>,
    /// What was decided: the believed method, the normalized host and path.
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub source_ip: Option<IpAddr>,
}

/// A request read, normalized and routed, waiting for its caller to be known.
#[derive(Debug)]
pub struct Routed<'b> {
    pub original: OriginalRequest,
    pub host: Option<String>,
    pub path: NormalizedPath,
    /// `None` only under `default: allow-authenticated`.
    pub matched: Option<RouteMatch<'b>>,
    verdict: Verdict,
}

impl Routed<'_> {
    /// Whether the route asks for a browser redirect to the login page (`login_redirect`).
    pub fn login_redirect(&self) -> bool {
        self.matched
            .as_ref()
            .is_some_and(|m| m.route.login_redirect)
    }

    /// The facts decided so far (route, method, host, path, source), for the audit of a
    /// request that ends before [`decide`] (a store error while resolving the caller).
    pub fn verdict_so_far(&self) -> &Verdict {
        &self.verdict
    }
}

/// The first step's result.
#[derive(Debug)]
pub enum Step<'b> {
    /// Decided without knowing the caller: a refused spelling, a public or unmatched route.
    Done(Verdict),
    /// The caller must be resolved, then [`decide`] called.
    NeedsCaller(Box<Routed<'b>>),
}

/// Who is asking, as the service resolved it.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// No live session; `reason` says why (`no_session`, `expired`, `revoked`, …).
    Anonymous {
        reason: &'a str,
    },
    Session(&'a Identity<'a>),
}

/// A live session's identity: what the answer's headers carry and what policies see.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub email: &'a str,
    pub username: Option<&'a str>,
    /// Groups comma-joined (names with commas are refused at login).
    pub groups_joined: &'a str,
    /// The user's tenants comma-joined.
    pub tenants_joined: &'a str,
    /// `input.user`, `input.session` and `input.device` in both engines' value types.
    pub input: &'a IdentityInput,
}

/// How the request asked to be answered when no one is signed in.
#[derive(Debug, Clone, Copy)]
pub struct Asking {
    pub mode: UnauthenticatedMode,
    /// `Accept: text/html`: a browser, which can follow a redirect to the login page.
    pub wants_html: bool,
    pub transport: Transport,
}

/// Reads `call` under the trust rules and normalizes its host and path; no route yet.
fn read<'b>(
    bundle: &Bundle,
    settings: &Settings,
    call: VerifyCall<'_>,
    headers: &(impl Headers + ?Sized),
) -> Result<Routed<'b>, Box<Verdict>> {
    let mut v = Verdict {
        outcome: Outcome::BadRequest,
        status: 400,
        headers: Vec::new(),
        reason: None,
        route: DEFAULT_ROUTE.to_string(),
        tenant: None,
        method: call.method.to_string(),
        host: None,
        path: String::new(),
        source_ip: None,
    };
    let original = match OriginalRequest::from_verify(call, headers, &settings.trusted_proxies) {
        Ok(o) => o,
        Err(e) => {
            if let OriginalError::Conflicting { part } = e {
                // Worth a look: an ingress that passes client headers on, or an attack.
                tracing::warn!(part, "forwarding header families disagree; refused");
            }
            return Err(Box::new(v.bad_request(e.to_string())));
        }
    };
    v.method = original.method.clone();
    v.source_ip = Some(original.source_ip);
    let (raw_path, _) = split_target(&original.target);
    v.path = raw_path.chars().take(512).collect();
    let host = match original.host.as_deref().map(normalize_host).transpose() {
        Ok(h) => h.flatten(),
        Err(e) => return Err(Box::new(v.bad_request(e.to_string()))),
    };
    v.host = host.clone();
    let path = match normalize_path(raw_path, bundle.routes.case_insensitive_paths) {
        Ok(p) => p,
        Err(e) => return Err(Box::new(v.bad_request(e.to_string()))),
    };
    v.path = path.as_str().to_string();
    Ok(Routed {
        original,
        host,
        path,
        matched: None,
        verdict: v,
    })
}

/// Step 1: reads `call` under the trust rules, normalizes it and matches its route.
pub fn route<'b>(
    bundle: &'b Bundle,
    settings: &Settings,
    call: VerifyCall<'_>,
    headers: &(impl Headers + ?Sized),
) -> Step<'b> {
    let mut routed = match read(bundle, settings, call, headers) {
        Ok(r) => r,
        Err(v) => return Step::Done(*v),
    };
    let matched = bundle.routes.matches(routed.host.as_deref(), &routed.path);
    let v = &mut routed.verdict;
    match &matched {
        Some(m) => {
            v.route = m.route.name.clone();
            v.tenant = m.tenant.clone();
            if m.route.rule == RouteRule::Public {
                v.outcome = Outcome::Public;
                v.status = 200;
                return Step::Done(routed.verdict);
            }
        }
        // Unmatched: denied before anyone's session is looked up.
        None if bundle.routes.default == DefaultAction::Deny => {
            return Step::Done(routed.verdict.deny("no_route".into()));
        }
        None => {}
    }
    routed.matched = matched;
    Step::NeedsCaller(Box::new(routed))
}

/// Step 1 for a route chosen by name rather than by matching (Gatehouse's own admin API: the
/// `gatehouse-admin` route has no path). The call is the request itself: its forwarding
/// headers are not read. An unknown route name is `no_route`.
pub fn route_named<'b>(
    bundle: &'b Bundle,
    settings: &Settings,
    route_name: &str,
    call: VerifyCall<'_>,
    headers: &(impl Headers + ?Sized),
) -> Step<'b> {
    let call = VerifyCall {
        forwarded: false,
        ..call
    };
    let mut routed = match read(bundle, settings, call, headers) {
        Ok(r) => r,
        Err(v) => return Step::Done(*v),
    };
    routed.verdict.route = route_name.to_string();
    let Some(named) = bundle.routes.get(route_name) else {
        return Step::Done(routed.verdict.deny("no_route".into()));
    };
    routed.verdict.tenant = named.tenant.clone();
    routed.matched = Some(RouteMatch {
        route: named,
        params: Vec::new(),
        tenant: named.tenant.clone(),
    });
    Step::NeedsCaller(Box::new(routed))
}

/// Step 2: decides a routed request for its caller.
pub fn decide(
    bundle: &Bundle,
    settings: &Settings,
    routed: Routed<'_>,
    headers: &(impl Headers + ?Sized),
    caller: Caller<'_>,
    asking: Asking,
    now: DateTime<Utc>,
) -> Verdict {
    let redirect = (asking.mode == UnauthenticatedMode::Redirect || routed.login_redirect())
        && asking.wants_html;
    let Routed {
        original,
        host,
        path,
        matched,
        verdict: v,
    } = routed;
    // Only an unauthenticated answer names the original URL (the login's `rd`).
    let original_url = || original.url(original.host.as_deref().filter(|_| host.is_some()));
    let identity = match caller {
        Caller::Session(identity) => identity,
        Caller::Anonymous { reason } => {
            return v.unauthenticated(&settings.login_url, &original_url(), reason, redirect);
        }
    };
    let Some(m) = &matched else {
        // `default: allow-authenticated`: any live session may pass.
        let mut v = v;
        v.outcome = Outcome::Allow;
        v.status = 200;
        v.headers = identity_headers(&settings.headers, identity, None);
        return v;
    };

    let request_headers = policy_headers(settings, headers);
    let (_, query) = split_target(&original.target);
    let request = RequestFacts {
        method: &original.method,
        scheme: &original.scheme,
        host: host.as_deref(),
        path: &path,
        query,
        headers: &request_headers,
        source_ip: original.source_ip,
        transport: asking.transport.as_str(),
    };
    let route_facts = RouteFacts {
        name: &m.route.name,
        tenant: m.tenant.as_deref(),
        params: &m.params,
    };
    let outcome = match bundle.evaluate(m.route, &request, &route_facts, identity.input, now) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(route = %m.route.name, error = %e, "policy evaluation failed; denying");
            return v.error(e.to_string());
        }
    };
    if !outcome.allow {
        let reason = outcome.reason.unwrap_or_else(|| "denied".into());
        if outcome.status == Some(401) {
            let mut v = v.unauthenticated(
                &settings.login_url,
                &original_url(),
                "session_unknown",
                redirect,
            );
            v.reason = Some(reason);
            return v;
        }
        return v.deny(reason);
    }
    let mut response_headers = identity_headers(&settings.headers, identity, m.tenant.as_deref());
    for (name, value) in outcome.headers {
        let folded = fold_header_name(&name);
        if settings.is_hidden(&folded) {
            return v.error(format!("policy tried to set the identity header {name}"));
        }
        // A route that declares its headers (`headers:` in routes.yaml) gets no others:
        // the ingress configs and the built-in proxy clear only declared names.
        if let Some(declared) = &m.route.headers
            && !declared.iter().any(|d| *d == folded)
        {
            return v.error(format!(
                "policy answered the header {name}, which route `{}` does not declare",
                m.route.name
            ));
        }
        response_headers.push((name, value));
    }
    let mut v = v;
    v.outcome = Outcome::Allow;
    v.status = 200;
    v.headers = response_headers;
    v
}

/// The identity headers of an allow answer (docs/architecture.md): `User` is the email, as
/// oauth2-proxy's default; `Tenant` is the route's tenant, else the user's tenants.
fn identity_headers(
    names: &HeaderNames,
    identity: &Identity<'_>,
    route_tenant: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(5);
    out.push((names.user.clone(), identity.email.to_string()));
    out.push((names.email.clone(), identity.email.to_string()));
    out.push((names.groups.clone(), identity.groups_joined.to_string()));
    if let Some(u) = identity.username {
        out.push((names.preferred_username.clone(), u.to_string()));
    }
    match route_tenant {
        Some(t) => out.push((names.tenant.clone(), t.to_string())),
        None if !identity.tenants_joined.is_empty() => {
            out.push((names.tenant.clone(), identity.tenants_joined.to_string()))
        }
        None => {}
    }
    out
}

/// The request headers policies may read (`input.request.headers`): everything but
/// credentials and identity headers, names lower-case, repeated headers comma-joined.
///
/// Borrowed from the request wherever possible (a name needing folding, or a repeated
/// header's joined value, is the only copy): this runs for every request.
pub fn policy_headers<'h>(
    settings: &Settings,
    headers: &'h (impl Headers + ?Sized),
) -> Vec<(Cow<'h, str>, Cow<'h, str>)> {
    let mut out: Vec<(Cow<'h, str>, Cow<'h, str>)> = Vec::with_capacity(16);
    for (name, value) in headers.pairs() {
        let folded = fold_header_name(name);
        if settings.is_hidden(&folded) {
            continue;
        }
        let Some(value) = header_text(value) else {
            continue;
        };
        match out.iter_mut().find(|(n, _)| *n == folded) {
            Some((_, existing)) => {
                let joined = existing.to_mut();
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => out.push((folded, Cow::Borrowed(value))),
        }
    }
    out
}

impl Verdict {
    /// A refused request spelling or forwarding headers. The reason (always one of our own
    /// fixed messages, never request text) is sent back so an operator can see why.
    fn bad_request(mut self, reason: String) -> Verdict {
        self.outcome = Outcome::BadRequest;
        self.status = 400;
        self.headers = vec![("X-Auth-Request-Reason".into(), reason.clone())];
        self.reason = Some(reason);
        self
    }

    fn deny(mut self, reason: String) -> Verdict {
        self.outcome = Outcome::Deny;
        self.status = 403;
        self.headers = vec![("X-Auth-Request-Reason".into(), reason.clone())];
        self.reason = Some(reason);
        self
    }

    /// A policy or store error: never an allow, and no header of the allow it is not.
    pub fn error(mut self, message: String) -> Verdict {
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
        why: &str,
        redirect: bool,
    ) -> Verdict {
        let rd: String = url::form_urlencoded::byte_serialize(original_url.as_bytes()).collect();
        let location = format!("{login_url}?rd={rd}");
        self.outcome = Outcome::Unauthenticated;
        self.reason = Some(why.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bundle() -> Bundle {
        Bundle::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap()
    }

    fn settings() -> Settings {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        Settings::new(HeaderNames::default(), trusted, "https://auth.example.com")
    }

    fn call(target: &str) -> VerifyCall<'_> {
        VerifyCall {
            method: "POST",
            target,
            peer: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            forwarded: true,
        }
    }

    #[test]
    fn a_named_route_is_decided_on_the_request_itself() {
        let (bundle, settings) = (bundle(), settings());
        // Forwarding headers from a trusted peer would describe a public path: not read.
        let headers = [("x-original-url", "https://apps.example.com/healthz")];
        let Step::NeedsCaller(routed) = route_named(
            &bundle,
            &settings,
            "gatehouse-admin",
            call("/admin/api/reload"),
            &headers[..],
        ) else {
            panic!("the admin route needs a caller");
        };
        assert_eq!(routed.path.as_str(), "/admin/api/reload");
        assert_eq!(routed.verdict_so_far().route, "gatehouse-admin");
        assert_eq!(routed.original.method, "POST");
    }

    #[test]
    fn an_unknown_named_route_is_no_route_and_a_bad_path_is_refused() {
        let (bundle, settings) = (bundle(), settings());
        let Step::Done(v) = route_named(
            &bundle,
            &settings,
            "nope",
            call("/x"),
            &[] as &[(&str, &str)],
        ) else {
            panic!("an unknown route is decided at once");
        };
        assert_eq!(
            (v.outcome, v.reason.as_deref()),
            (Outcome::Deny, Some("no_route"))
        );
        let Step::Done(v) = route_named(
            &bundle,
            &settings,
            "gatehouse-admin",
            call("/admin/..;/x"),
            &[] as &[(&str, &str)],
        ) else {
            panic!("a refused spelling is decided at once");
        };
        assert_eq!(v.outcome, Outcome::BadRequest);
    }

    #[test]
    fn public_and_unmatched_routes_are_decided_without_a_caller() {
        let (bundle, settings) = (bundle(), settings());
        let public = [("x-original-url", "https://apps.example.com/healthz")];
        let unmatched = [("x-original-url", "https://apps.example.com/nowhere")];
        for (headers, outcome) in [(&public, Outcome::Public), (&unmatched, Outcome::Deny)] {
            let Step::Done(v) = route(&bundle, &settings, call("/auth/verify"), &headers[..])
            else {
                panic!("{outcome:?} needs no caller");
            };
            assert_eq!(v.outcome, outcome);
        }
    }
}
