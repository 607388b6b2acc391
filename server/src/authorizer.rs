//! The authorizer: everything around `gatehouse_core::decide` that needs I/O. The core reads,
//! normalizes and routes the request and evaluates the policy; the authorizer resolves who
//! is asking (sessions, then a client-certificate device) between the core's two steps, then
//! counts the decision, logs it under its request id and queues its audit record. Every
//! transport (HTTP verify, the built-in proxy, later gRPC) calls [`Authorizer::authorize`]
//! and only maps its request in and the [`Decision`] out.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use gatehouse_core::decide::{self as core, Asking, Caller, Identity, Settings, Step};
pub use gatehouse_core::decide::{
    DEFAULT_ROUTE, Outcome, Transport, UnauthenticatedMode, fold_header_name,
};
use gatehouse_core::dry_run::{DryRun, DryRunAnswer, DryRunError};

use tracing::Instrument;

use crate::audit::{AuditRecord, AuditSink};
use crate::config::Config;
use crate::metrics::METRICS;
use crate::policy::Bundle;
use crate::request::Headers;
use crate::request::headers::header_text;
use crate::request::trust::{OriginalRequest, VerifyCall, is_trusted};
use crate::session::device::{DeviceResolver, FINGERPRINT_HEADERS, normalize_fingerprint};
use crate::session::resolver::{InvalidSession, ResolvedSession, SessionResolver};
use crate::session::token::CookieSigner;
use crate::store::StoreError;

/// How many validly signed cookies carrying our name one request may look up in the store.
/// Forged or unsigned ones are refused by their signature first and do not count, so junk
/// cookies tossed in by a sibling subdomain cannot push the real one out.
const MAX_COOKIES_TRIED: usize = 4;

/// The route whose policy guards Gatehouse's own admin UI and API.
pub const ADMIN_ROUTE: &str = "gatehouse-admin";

/// What the core's decision needs from the configuration: header names, trusted proxies and
/// the login URL (`policy eval --config` reads it too).
pub fn decision_settings(config: &Config) -> Settings {
    Settings::new(
        config.headers.clone(),
        config.trusted_proxies.clone(),
        config.public_url.as_str(),
    )
}

/// The answer to one verify call: the core's verdict and what the audit adds to it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// 200, 302, 400, 401, 403 or 500.
    pub status: u16,
    /// Response headers: identity and policy headers on allow, the login redirect on 401,
    /// the reason on 403 and 400.
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
    /// Which transport asked.
    pub transport: Transport,
    pub started: Instant,
}

impl Decision {
    fn new(
        v: core::Verdict,
        bundle_version: String,
        transport: Transport,
        started: Instant,
    ) -> Decision {
        Decision {
            outcome: v.outcome,
            status: v.status,
            headers: v.headers,
            reason: v.reason,
            route: v.route,
            bundle_version,
            user_email: None,
            user_id: None,
            device_id: None,
            tenant: v.tenant,
            method: v.method,
            host: v.host,
            path: v.path,
            source_ip: v.source_ip,
            transport,
            started,
        }
    }
}

impl Decision {
    /// The audit record of this decision (the audit module knows no decision type).
    pub fn audit_record(&self, request_id: &str, now: DateTime<Utc>) -> AuditRecord {
        AuditRecord {
            time: now,
            request_id: request_id.to_string(),
            kind: "verify".into(),
            user_id: self.user_id.clone(),
            email: self.user_email.clone(),
            tenant: self.tenant.clone(),
            device_id: self.device_id.clone(),
            route: Some(self.route.clone()),
            host: self.host.clone(),
            method: Some(self.method.clone()),
            path: Some(self.path.clone()),
            decision: self.outcome.as_str().to_string(),
            status: i32::from(self.status),
            reason: self.reason.clone(),
            policy_version: Some(self.bundle_version.clone()),
            latency_us: i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX),
            client_ip: self.source_ip.map(|ip| ip.to_string()),
            transport: Some(self.transport.as_str().to_string()),
        }
    }
}

impl Decision {
    /// The body of a refusal the caller shows to the client: why a spelling was refused
    /// (one of the core's fixed reasons, never request text), or a bare internal error.
    pub fn refusal_body(&self) -> Option<String> {
        match self.status {
            400 => Some(format!(
                "bad request: {}\n",
                self.reason.as_deref().unwrap_or("refused")
            )),
            500 => Some("internal error\n".into()),
            _ => None,
        }
    }
}

/// Why a call to the admin API was refused (mapped to statuses by `http::error::ApiError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// The request's spelling is refused (the core's reason).
    BadRequest(String),
    /// No live session among the credentials; why.
    Unauthenticated(String),
    /// The bundle has no `gatehouse-admin` route.
    NoAdminRoute,
    /// The admin route's policy refused; its reason code.
    Denied(String),
    /// The session store failed (logged).
    StoreFailed,
    /// The policy failed to evaluate (logged).
    PolicyFailed,
}

/// How the caller presented a session.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Values of every cookie carrying our cookie name.
    pub cookies: &'a [&'a str],
    pub bearer: Option<&'a str>,
}

/// Whether the request is a browser's (`Accept` names `text/html`), which may be sent to the
/// login page rather than answered 401.
pub fn wants_html<H: Headers + ?Sized>(headers: &H) -> bool {
    headers
        .get_all("accept")
        .filter_map(header_text)
        .any(|v| v.contains("text/html"))
}

/// Everything a decision needs; one per process, shared by all workers.
pub struct Authorizer {
    pub bundle: Arc<ArcSwap<Bundle>>,
    pub sessions: SessionResolver,
    pub devices: DeviceResolver,
    pub signer: CookieSigner,
    pub settings: Settings,
    audit: AuditSink,
}

/// One request as a transport hands it to [`Authorizer::authorize`]: its call, its headers
/// (any transport's map, read through the core's [`Headers`]) and how to answer.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a, H: Headers + ?Sized> {
    pub call: VerifyCall<'a>,
    pub headers: &'a H,
    pub credentials: Credentials<'a>,
    pub mode: UnauthenticatedMode,
    /// `Accept: text/html`: a browser, which may be redirected to the login page.
    pub wants_html: bool,
    /// The request id the caller offered (`X-Request-Id`, Envoy's request id); the transport
    /// passes it only from a trusted caller ([`Authorizer::trusts`]).
    pub offered_request_id: Option<&'a str>,
    /// Which transport asked (`input.request.transport`, metrics, logs).
    pub transport: Transport,
    /// The SHA-256 fingerprint of a client certificate the transport itself vouches for (a
    /// trusted Envoy's verified peer certificate); `None` leaves it to the fingerprint
    /// headers of a trusted ingress.
    pub client_certificate: Option<&'a str>,
}

impl Authorizer {
    pub fn new(
        config: &Config,
        bundle: Arc<ArcSwap<Bundle>>,
        sessions: SessionResolver,
        devices: DeviceResolver,
        audit: AuditSink,
    ) -> Authorizer {
        Authorizer {
            bundle,
            sessions,
            devices,
            audit,
            signer: CookieSigner::new(config.cookie.secret.expose().as_bytes()),
            settings: decision_settings(config),
        }
    }

    /// Decides a described request (the admin playground) against the live bundle exactly as
    /// verify would, without a session lookup, a count or an audit record: it is no request.
    pub fn dry_run(
        &self,
        described: &DryRun,
        now: DateTime<Utc>,
    ) -> Result<DryRunAnswer, DryRunError> {
        described.answer(&self.bundle.load_full(), &self.settings, now)
    }

    /// Decides one request, counts it, logs it under its request id and queues its audit
    /// record: everything but the transport's answer. Returns the decision and the request
    /// id (the transport echoes it as `X-Request-Id`).
    pub async fn authorize<H: Headers + ?Sized + Sync>(
        &self,
        ask: Ask<'_, H>,
    ) -> (Decision, String) {
        let request_id = Self::request_id(ask.offered_request_id);
        let now = Utc::now();
        // Every log line of this decision carries the request id that is also in its audit
        // row and in the `X-Request-Id` answer.
        let span = tracing::info_span!("verify", request_id = %request_id);
        let decision = self.decide(ask, now).instrument(span.clone()).await;
        span.in_scope(|| count_and_log(&decision));
        self.audit
            .record(decision.audit_record(&request_id, now))
            .await;
        (decision, request_id)
    }

    /// Whether `peer` is one of `trusted_proxies`: the callers whose descriptions of a request
    /// (forwarding headers, an Envoy check's source address, a request id) are believed.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        is_trusted(peer, &self.settings.trusted_proxies)
    }

    /// The request id a trusted caller offered, when it is sane (so logs line up across
    /// hops), else a new UUID.
    fn request_id(offered: Option<&str>) -> String {
        match offered {
            Some(id)
                if !id.is_empty()
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

    /// Decides one call, without counting or auditing it ([`Authorizer::authorize`] does
    /// those; benchmarks call this directly): the core routes it; if its route needs to know
    /// who is asking, the session and the client-certificate device are resolved and the core
    /// decides. `ask.call.forwarded` tells a verify call (an ingress describing a request)
    /// from a request that is itself the one decided (the built-in proxy, an Envoy check).
    pub async fn decide<H: Headers + ?Sized + Sync>(
        &self,
        ask: Ask<'_, H>,
        now: DateTime<Utc>,
    ) -> Decision {
        let started = Instant::now();
        let bundle = self.bundle.load_full();
        let headers = ask.headers;
        let routed = match core::route(&bundle, &self.settings, ask.call, headers) {
            Step::Done(verdict) => {
                return Decision::new(verdict, bundle.version.clone(), ask.transport, started);
            }
            Step::NeedsCaller(routed) => routed,
        };
        let asking = Asking {
            mode: ask.mode,
            wants_html: ask.wants_html,
            transport: ask.transport,
        };
        let fail = |e: LookupError| {
            let verdict = routed.verdict_so_far().clone().error(e.to_string());
            Decision::new(verdict, bundle.version.clone(), ask.transport, started)
        };
        let session = match self.resolve(ask.credentials, now).await {
            Ok(Ok(s)) => s,
            Ok(Err(invalid)) => {
                let caller = Caller::Anonymous {
                    reason: invalid.code(),
                };
                let verdict = core::decide(
                    &bundle,
                    &self.settings,
                    *routed,
                    headers,
                    caller,
                    asking,
                    now,
                );
                return Decision::new(verdict, bundle.version.clone(), ask.transport, started);
            }
            Err(e) => return fail(e),
        };
        let documents = match self.sessions.identity(&session) {
            Ok(d) => d,
            Err(e) => return fail(LookupError::Documents(e)),
        };
        // A registered client certificate from a trusted ingress is the device.
        let with_device;
        let (input, device_id) = match self
            .certificate_device(&routed.original, headers, ask.client_certificate)
            .await
        {
            Ok(Some(device)) => {
                with_device = documents.with_device(&device.rego, &device.cel);
                (&with_device, Some(device.id.clone()))
            }
            Ok(None) => (&*documents, session.device_id.clone()),
            Err(e) => return fail(e),
        };
        let identity = Identity {
            email: &session.email,
            username: session.username.as_deref(),
            groups_joined: &session.groups_joined,
            tenants_joined: &session.tenants_joined,
            input,
        };
        let eval_started = Instant::now();
        let verdict = core::decide(
            &bundle,
            &self.settings,
            *routed,
            headers,
            Caller::Session(&identity),
            asking,
            now,
        );
        crate::metrics::METRICS
            .policy_eval_duration
            .observe(eval_started.elapsed().as_secs_f64());
        let mut d = Decision::new(verdict, bundle.version.clone(), ask.transport, started);
        d.user_email = Some(session.email.clone());
        d.user_id = Some(session.user_id.clone());
        d.device_id = device_id;
        d
    }

    /// Authorizes a request to Gatehouse's own admin API with the `gatehouse-admin` route's
    /// policy: the same sessions and engine as verify, fail closed. Returns the session, or
    /// the status and reason to answer with.
    pub async fn authorize_admin<H: Headers + ?Sized + Sync>(
        &self,
        method: &str,
        path: &str,
        headers: &H,
        peer: std::net::IpAddr,
        credentials: Credentials<'_>,
        now: DateTime<Utc>,
    ) -> Result<Arc<ResolvedSession>, AdminRefusal> {
        let bundle = self.bundle.load_full();
        let call = VerifyCall {
            method,
            target: path,
            peer,
            scheme: "http",
            forwarded: false,
        };
        let routed = match core::route_named(&bundle, &self.settings, ADMIN_ROUTE, call, headers) {
            Step::NeedsCaller(routed) => routed,
            Step::Done(v) if v.outcome == Outcome::Deny => return Err(AdminRefusal::NoAdminRoute),
            Step::Done(v) => return Err(AdminRefusal::BadRequest(v.reason.unwrap_or_default())),
        };
        let session = match self.resolve(credentials, now).await {
            Ok(Ok(s)) => s,
            Ok(Err(invalid)) => return Err(AdminRefusal::Unauthenticated(invalid.code().into())),
            Err(e) => {
                tracing::error!(error = %e, "admin authorization failed closed");
                return Err(AdminRefusal::StoreFailed);
            }
        };
        let documents = match self.sessions.identity(&session) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "admin authorization failed closed");
                return Err(AdminRefusal::StoreFailed);
            }
        };
        let identity = Identity {
            email: &session.email,
            username: session.username.as_deref(),
            groups_joined: &session.groups_joined,
            tenants_joined: &session.tenants_joined,
            input: &documents,
        };
        let asking = Asking {
            mode: UnauthenticatedMode::Status,
            wants_html: false,
            transport: Transport::Http,
        };
        let caller = Caller::Session(&identity);
        let v = core::decide(
            &bundle,
            &self.settings,
            *routed,
            headers,
            caller,
            asking,
            now,
        );
        let reason = v.reason.unwrap_or_else(|| "denied".into());
        match v.outcome {
            Outcome::Allow | Outcome::Public => Ok(session),
            // A policy's `status: 401` asks for a new sign-in, with its reason.
            Outcome::Unauthenticated => Err(AdminRefusal::Unauthenticated(reason)),
            Outcome::Deny => Err(AdminRefusal::Denied(reason)),
            Outcome::BadRequest => Err(AdminRefusal::BadRequest(reason)),
            Outcome::Error => {
                tracing::error!(error = %reason, "admin policy failed; denying");
                Err(AdminRefusal::PolicyFailed)
            }
        }
    }

    /// The registered device of the client certificate a trusted ingress verified, if any:
    /// the fingerprint the transport vouches for (an Envoy check's peer certificate), else a
    /// fingerprint header from a trusted ingress. Fingerprint headers from anyone else are
    /// ignored, like every forwarding header.
    async fn certificate_device<H: Headers + ?Sized>(
        &self,
        original: &OriginalRequest,
        headers: &H,
        vouched: Option<&str>,
    ) -> Result<Option<Arc<crate::session::device::DeviceDocs>>, LookupError> {
        let raw = match vouched {
            Some(fingerprint) => fingerprint,
            None if !original.from_trusted_proxy => return Ok(None),
            None => {
                let Some(raw) = FINGERPRINT_HEADERS
                    .iter()
                    .find_map(|name| headers.get_all(name).next().and_then(header_text))
                else {
                    return Ok(None);
                };
                raw
            }
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
            .map_err(LookupError::Device)
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
    ) -> Result<Result<Arc<ResolvedSession>, InvalidSession>, LookupError> {
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
                Err(e) => return Err(LookupError::Session(e)),
            }
        }
        Ok(Err(first_invalid))
    }
}

/// The store failed while the caller was being resolved: the request fails closed (500),
/// and this text is the decision's reason in the log and the audit record.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("session store: {0}")]
    Session(Arc<StoreError>),
    #[error("device store: {0}")]
    Device(Arc<StoreError>),
    #[error("{0}")]
    Documents(crate::session::resolver::DocumentsError),
}

/// The decision's metrics and log line.
fn count_and_log(d: &Decision) {
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
