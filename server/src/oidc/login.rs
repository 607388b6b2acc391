//! The browser login flow, independent of HTTP: start (state, nonce, PKCE, validated `rd`),
//! finish (single-use state, code exchange, verified claims, user + groups, device, a new
//! session), logout (revoke, RP-initiated logout), back-channel logout.
//!
//! Every login and logout is counted in `gatehouse_logins_total{result}` and audited
//! (`kind` `login` / `logout`); a failed login creates nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::claims::ClaimsError;
use super::crypto::TokenCipher;
use super::provider::{CallbackPath, OidcError, OidcProvider};
use super::redirect::RedirectPolicy;
use crate::audit::{AuditRecord, AuditSink};
use crate::config::Config;
use crate::metrics::METRICS;
use crate::session::resolver::SessionResolver;
use crate::session::token::{CookieSigner, SessionToken};
use crate::session::{IssueError, IssuedSession, SessionSpec, mint_session};
use crate::store::{LoginState, Store, StoreError};

/// Error codes of RFC 6749 §4.1.2.1 and OIDC Core §3.1.2.6; others are not shown as sent.
const KNOWN_IDP_ERRORS: &[&str] = &[
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
];

/// A started login must come back within this time.
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(600);
/// Browsers cap cookie lifetimes at 400 days.
pub const DEVICE_COOKIE_MAX_AGE: Duration = Duration::from_secs(400 * 24 * 3600);

/// Query parameters of `/auth/callback`. Its `Debug` hides the code.
#[derive(Default, Clone, serde::Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// What the HTTP layer knows about the browser.
#[derive(Default, Clone)]
pub struct ClientFacts<'a> {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The device cookie's value, if the browser sent one.
    pub device_cookie: Option<&'a str>,
    /// The login-binding cookie's value, if the browser sent one.
    pub login_binding: Option<&'a str>,
}

/// A finished login.
#[derive(Debug)]
pub struct LoginSuccess {
    pub session: IssuedSession,
    pub email: String,
    pub redirect_to: String,
    /// A new device cookie value to set (the browser had none, or a bad one).
    pub new_device_cookie: Option<String>,
}

/// Why a login failed. Each has a `gatehouse_logins_total` result label and a message fit
/// for the person at the browser (no secrets, no internals beyond the IdP's own words).
#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    #[error("single sign-on is not configured (no `oidc` section)")]
    NotConfigured,
    #[error("the login request is missing its state")]
    MissingState,
    #[error("this login link was already used, has expired, or was not started here")]
    UnknownState,
    #[error("this login took too long (more than 10 minutes)")]
    ExpiredState,
    #[error("this login was started in another browser (or its login cookie was blocked)")]
    WrongBrowser,
    #[error("the identity provider answered `{error}`{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    IdpError {
        error: String,
        description: Option<String>,
    },
    #[error("the identity provider sent no authorization code")]
    MissingCode,
    #[error("the identity provider cannot be reached: {0}")]
    IdpUnavailable(#[source] OidcError),
    /// The IdP's tokens or claims were refused.
    #[error("{0}")]
    Token(#[source] OidcError),
    /// The store refused the user the IdP named (`StoreError::Invalid`'s message, meant for
    /// the user), with that user's email when known.
    #[error("{0}")]
    Conflict(String, Option<String>),
    #[error("the session store failed: {0}")]
    Store(#[source] StoreError),
    #[error("too many sign-in attempts from this address; wait a minute")]
    RateLimited,
}

impl LoginFailure {
    /// The `result` label of `gatehouse_logins_total`.
    pub fn result(&self) -> &'static str {
        match self {
            LoginFailure::NotConfigured => "not_configured",
            LoginFailure::MissingState
            | LoginFailure::UnknownState
            | LoginFailure::WrongBrowser => "invalid_state",
            LoginFailure::ExpiredState => "expired_state",
            LoginFailure::IdpError { .. } => "idp_error",
            LoginFailure::Token(OidcError::Claims(_)) => "claims_error",
            LoginFailure::MissingCode | LoginFailure::Token(_) => "token_error",
            LoginFailure::IdpUnavailable(_) => "idp_unavailable",
            LoginFailure::Conflict(..) => "user_conflict",
            LoginFailure::Store(_) => "store_error",
            LoginFailure::RateLimited => "rate_limited",
        }
    }

    /// The HTTP status of the error page.
    pub fn status(&self) -> u16 {
        match self {
            LoginFailure::NotConfigured => 404,
            LoginFailure::IdpUnavailable(_) => 502,
            LoginFailure::Store(_) => 500,
            LoginFailure::Conflict(..) => 403,
            LoginFailure::RateLimited => 429,
            _ => 400,
        }
    }

    /// What the person at the browser is told: the reason, without internals (database
    /// errors, IdP URLs) or text an attacker could have put in the callback URL.
    pub fn user_message(&self) -> String {
        match self {
            LoginFailure::IdpUnavailable(_) => {
                "the identity provider cannot be reached; please try again shortly".into()
            }
            LoginFailure::Store(_) => "a server error ended the login; please try again".into(),
            LoginFailure::IdpError { error, .. } => {
                let known = KNOWN_IDP_ERRORS.contains(&error.as_str());
                format!(
                    "the identity provider refused the login ({})",
                    if known {
                        error.as_str()
                    } else {
                        "unknown error"
                    }
                )
            }
            other => other.to_string(),
        }
    }

    /// The email the IdP named, when the login failed after it said who logged in (for the
    /// audit: failed logins per user).
    pub fn email(&self) -> Option<&str> {
        match self {
            LoginFailure::Token(OidcError::Claims(
                ClaimsError::UnverifiedEmail(email) | ClaimsError::GroupWithComma { email },
            )) => Some(email),
            LoginFailure::Conflict(_, email) => email.as_deref(),
            _ => None,
        }
    }

    /// `deny` for what the user or an attacker did wrong, `error` for what broke.
    fn audit_decision(&self) -> &'static str {
        match self {
            LoginFailure::IdpUnavailable(_) | LoginFailure::Store(_) => "error",
            _ => "deny",
        }
    }
}

impl From<OidcError> for LoginFailure {
    fn from(e: OidcError) -> Self {
        if e.is_transient() {
            LoginFailure::IdpUnavailable(e)
        } else {
            LoginFailure::Token(e)
        }
    }
}

impl From<StoreError> for LoginFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => LoginFailure::Conflict(m, None),
            other => LoginFailure::Store(other),
        }
    }
}

/// Where logout sends the browser.
#[derive(Debug)]
pub struct LogoutOutcome {
    pub redirect_to: String,
    pub ended_sessions: usize,
}

/// Login, logout and back-channel logout; one per process.
pub struct AuthService {
    provider: Option<Arc<OidcProvider>>,
    store: Store,
    sessions: SessionResolver,
    signer: CookieSigner,
    device_signer: CookieSigner,
    cipher: TokenCipher,
    pub redirects: RedirectPolicy,
    session_ttl: Duration,
    refresh_interval: Duration,
    audit: AuditSink,
    starts: StartLimiter,
}

/// Logins one client address may start per minute.
pub const LOGINS_PER_MINUTE: u32 = 120;

/// Counts login starts per client address over a minute.
struct StartLimiter {
    counts: moka::future::Cache<std::net::IpAddr, Arc<std::sync::atomic::AtomicU32>>,
}

impl StartLimiter {
    fn new() -> StartLimiter {
        StartLimiter {
            counts: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    async fn allow(&self, ip: std::net::IpAddr) -> bool {
        let count = self.counts.get_with(ip, async { Default::default() }).await;
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < LOGINS_PER_MINUTE
    }
}

/// The login-binding cookie value for a browser: the one it already has (so logins in
/// several tabs do not undo each other), else a new random one.
pub fn login_binding(existing: Option<&str>) -> String {
    match existing {
        Some(v)
            if v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            v.to_string()
        }
        _ => SessionToken::generate().encode(),
    }
}

/// The hex SHA-256 under which a login state is stored (the state itself travels only
/// through the browser).
fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

impl AuthService {
    pub fn new(
        config: &Config,
        provider: Option<Arc<OidcProvider>>,
        store: Store,
        sessions: SessionResolver,
        audit: AuditSink,
    ) -> AuthService {
        let secret = config.cookie.secret.expose().as_bytes();
        AuthService {
            provider,
            store,
            sessions,
            signer: CookieSigner::new(secret),
            device_signer: CookieSigner::derived(secret, "device-cookie"),
            cipher: TokenCipher::from_secret(secret),
            redirects: RedirectPolicy::new(&config.public_url, &config.allowed_redirect_domains),
            session_ttl: config.session.ttl.0,
            refresh_interval: config.session.refresh_interval.0,
            audit,
            starts: StartLimiter::new(),
        }
    }

    pub fn provider(&self) -> Option<&Arc<OidcProvider>> {
        self.provider.as_ref()
    }

    pub fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }

    /// Starts a login: remembers state, nonce, PKCE verifier and the validated `rd`, and
    /// returns the IdP's authorization URL.
    ///
    /// `binding` is the value of the login-binding cookie the HTTP layer gives the browser
    /// ([`login_binding`]); the callback must present it again (RFC 6749 §10.12: without it
    /// an attacker could finish *their* login in a victim's browser).
    ///
    /// Each client address may start [`LOGINS_PER_MINUTE`] logins a minute: every start
    /// stores a pending login, and those must not pile up at an attacker's pace.
    pub async fn start(
        &self,
        rd: Option<&str>,
        binding: &str,
        callback: CallbackPath,
        client_ip: std::net::IpAddr,
        now: DateTime<Utc>,
    ) -> Result<url::Url, LoginFailure> {
        let result = if self.starts.allow(client_ip).await {
            self.start_inner(rd, binding, callback, now).await
        } else {
            Err(LoginFailure::RateLimited)
        };
        if let Err(e) = &result {
            self.count_and_audit_failure(e, None, None).await;
        }
        result
    }

    async fn start_inner(
        &self,
        rd: Option<&str>,
        binding: &str,
        callback: CallbackPath,
        now: DateTime<Utc>,
    ) -> Result<url::Url, LoginFailure> {
        let provider = self.provider.as_ref().ok_or(LoginFailure::NotConfigured)?;
        let request = provider.authorization_request(callback).await?;
        let redirect_to = self.redirects.validate_or_fallback(rd);
        let ttl = chrono::Duration::from_std(LOGIN_STATE_TTL).unwrap_or_default();
        self.store
            .save_login_state(
                &state_hash(&request.state),
                &LoginState {
                    nonce: request.nonce,
                    pkce_verifier: request.pkce_verifier,
                    redirect_to,
                    expires_at: now + ttl,
                    browser_hash: state_hash(binding),
                },
                now,
            )
            .await?;
        Ok(request.url)
    }

    /// Finishes a login at the callback.
    pub async fn finish(
        &self,
        params: &CallbackParams,
        callback: CallbackPath,
        client: &ClientFacts<'_>,
        now: DateTime<Utc>,
    ) -> Result<LoginSuccess, LoginFailure> {
        match self.finish_inner(params, callback, client, now).await {
            Ok(done) => {
                METRICS.logins.with_label_values(&["success"]).inc();
                let mut record = AuditRecord::event("login", "allow", Some(&done.email), None);
                record.user_id = Some(done.session.user_id.clone());
                record.client_ip = client.ip.clone();
                record.status = 302;
                self.audit.record(record).await;
                tracing::info!(email = %done.email, "login");
                Ok(done)
            }
            Err(e) => {
                self.count_and_audit_failure(&e, e.email(), client.ip.clone())
                    .await;
                Err(e)
            }
        }
    }

    async fn finish_inner(
        &self,
        params: &CallbackParams,
        callback: CallbackPath,
        client: &ClientFacts<'_>,
        now: DateTime<Utc>,
    ) -> Result<LoginSuccess, LoginFailure> {
        let provider = self.provider.as_ref().ok_or(LoginFailure::NotConfigured)?;
        let state = params
            .state
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or(LoginFailure::MissingState)?;
        // Consumed before anything else: an IdP error or a failed exchange still burns it.
        let pending = self
            .store
            .take_login_state(&state_hash(state))
            .await?
            .ok_or(LoginFailure::UnknownState)?;
        if pending.expires_at < now {
            return Err(LoginFailure::ExpiredState);
        }
        let presented = client.login_binding.map(state_hash).unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(pending.browser_hash.as_bytes())) {
            return Err(LoginFailure::WrongBrowser);
        }
        if let Some(error) = &params.error {
            return Err(LoginFailure::IdpError {
                error: printable(error, 100),
                description: params
                    .error_description
                    .as_deref()
                    .map(|d| printable(d, 300)),
            });
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or(LoginFailure::MissingCode)?;
        let tokens = provider
            .exchange(code, &pending.pkce_verifier, &pending.nonce, callback)
            .await?;
        let who = tokens.identity;
        let user_id = self
            .store
            .upsert_idp_user(who.store_user(), now)
            .await
            .map_err(|e| match LoginFailure::from(e) {
                LoginFailure::Conflict(m, _) => LoginFailure::Conflict(m, Some(who.email.clone())),
                other => other,
            })?;

        // The browser's device: the one its device cookie names, else a new one.
        let known_device = client
            .device_cookie
            .and_then(|c| self.device_signer.verify(c).ok());
        let (device_token, new_device_cookie) = match known_device {
            Some(token) => (token, None),
            None => {
                let token = SessionToken::generate();
                let cookie = self.device_signer.sign(&token);
                (token, Some(cookie))
            }
        };
        let (mut device_id, owner) = self
            .store
            .browser_device(&device_token.hash().0, &user_id, now)
            .await?;
        let mut new_device_cookie = new_device_cookie;
        if owner.as_deref() != Some(user_id.as_str()) {
            // Another user's device cookie: this user gets a device of their own rather
            // than that device's managed flag and trust.
            let token = SessionToken::generate();
            new_device_cookie = Some(self.device_signer.sign(&token));
            device_id = self
                .store
                .browser_device(&token.hash().0, &user_id, now)
                .await?
                .0;
        }

        // Without a refresh token the claims cannot be re-read, so the session ends when
        // they would be due: the browser then signs in again (silently, while the IdP
        // session lasts) and picks up current groups.
        let lifetime = match &tokens.refresh_token {
            Some(_) => self.session_ttl,
            None => self.session_ttl.min(self.refresh_interval),
        };
        // The tokens are encrypted for the session id before the session exists, so the
        // session is written whole, in one statement.
        let session_id = uuid::Uuid::new_v4().to_string();
        let session = mint_session(
            &self.store,
            &self.signer,
            &SessionSpec {
                refresh_token_enc: tokens
                    .refresh_token
                    .as_deref()
                    .map(|t| self.cipher.encrypt(&session_id, t)),
                id_token_enc: Some(self.cipher.encrypt(&session_id, &tokens.id_token)),
                id: session_id,
                user_id,
                ttl: chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(12)),
                amr: who.amr.clone(),
                auth_time: who.auth_time.filter(|t| *t <= now),
                ip: client.ip.clone(),
                user_agent: client.user_agent.as_deref().map(|u| printable(u, 512)),
                device_id: Some(device_id),
                idp_sid: who.sid.clone(),
                idp_claims: who.claims.clone(),
            },
            now,
        )
        .await
        .map_err(|e| match e {
            IssueError::Store(e) => LoginFailure::Store(e),
            // A session the login itself described wrongly: a server error, not the user's.
            IssueError::Invalid(why) => LoginFailure::Store(StoreError::Invalid(why)),
        })?;
        Ok(LoginSuccess {
            session,
            email: who.email,
            redirect_to: pending.redirect_to,
            new_device_cookie,
        })
    }

    async fn count_and_audit_failure(
        &self,
        e: &LoginFailure,
        email: Option<&str>,
        ip: Option<String>,
    ) {
        METRICS.logins.with_label_values(&[e.result()]).inc();
        tracing::warn!(result = e.result(), error = %e, "login failed");
        let mut record = AuditRecord::event(
            "login",
            e.audit_decision(),
            email,
            Some(format!("{}: {e}", e.result())),
        );
        record.client_ip = ip;
        record.status = i32::from(e.status());
        self.audit.record(record).await;
    }

    /// Ends the sessions of the presented cookies and says where the browser goes next:
    /// the IdP's end-session endpoint (RP-initiated logout) when it has one and a session
    /// was ended, else the validated `rd`.
    pub async fn logout(
        &self,
        cookies: &[&str],
        rd: Option<&str>,
        ip: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<LogoutOutcome, StoreError> {
        let after = self.redirects.validate_or_fallback(rd);
        let mut ended = 0;
        let mut id_token_hint = None;
        for cookie in cookies.iter().take(4) {
            let Ok(token) = self.signer.verify(cookie) else {
                continue;
            };
            let hash = token.hash();
            let Some(session) = self
                .store
                .revoke_session_by_token(&hash.0, "logout", now)
                .await?
            else {
                continue;
            };
            self.sessions
                .evict_hashes(std::slice::from_ref(&hash.0))
                .await;
            ended += 1;
            if let Some(sealed) = &session.id_token_enc {
                id_token_hint = self.cipher.decrypt(&session.id, sealed).ok();
            }
            let email = self.store.user_email(&session.user_id).await.ok().flatten();
            let mut record =
                AuditRecord::event("logout", "allow", email.as_deref(), Some("logout".into()));
            record.user_id = Some(session.user_id.clone());
            record.client_ip = ip.clone();
            self.audit.record(record).await;
        }
        let mut redirect_to = after.clone();
        if ended > 0
            && let Some(provider) = &self.provider
            && let Some(url) = provider
                .end_session_url(id_token_hint.as_deref(), &after)
                .await
        {
            redirect_to = url.to_string();
        }
        Ok(LogoutOutcome {
            redirect_to,
            ended_sessions: ended,
        })
    }

    /// Verifies a back-channel logout token and revokes the sessions it names; returns how
    /// many were revoked.
    pub async fn backchannel_logout(
        &self,
        logout_token: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, LoginFailure> {
        let provider = self.provider.as_ref().ok_or(LoginFailure::NotConfigured)?;
        let request = match provider.verify_logout_token(logout_token).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout refused");
                let record =
                    AuditRecord::event("logout", "deny", None, Some(format!("backchannel: {e}")));
                self.audit.record(record).await;
                return Err(e.into());
            }
        };
        let revoked = self
            .store
            .revoke_sessions_by_idp(
                request.subject.as_deref(),
                request.sid.as_deref(),
                "backchannel_logout",
                now,
            )
            .await?;
        let hashes: Vec<String> = revoked.iter().map(|(_, h)| h.clone()).collect();
        self.sessions.evict_hashes(&hashes).await;
        for (user_id, _) in &revoked {
            let email = self.store.user_email(user_id).await.ok().flatten();
            let mut record = AuditRecord::event(
                "logout",
                "allow",
                email.as_deref(),
                Some("backchannel_logout".into()),
            );
            record.user_id = Some(user_id.clone());
            self.audit.record(record).await;
        }
        tracing::info!(sessions = revoked.len(), sid = ?request.sid, "back-channel logout");
        Ok(revoked.len())
    }
}

/// Text from the outside, safe to log and show: control characters dropped, length capped.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_have_labels_and_statuses() {
        assert_eq!(LoginFailure::UnknownState.result(), "invalid_state");
        assert_eq!(LoginFailure::UnknownState.status(), 400);
        assert_eq!(
            LoginFailure::IdpUnavailable(OidcError::UserInfoStatus(503)).status(),
            502
        );
        let unverified = LoginFailure::from(OidcError::Claims(ClaimsError::UnverifiedEmail(
            "ann@example.com".into(),
        )));
        assert_eq!(unverified.result(), "claims_error");
        assert_eq!(unverified.email(), Some("ann@example.com"));
        assert_eq!(
            LoginFailure::from(OidcError::NoIdToken).result(),
            "token_error"
        );
        let e = LoginFailure::IdpError {
            error: "access_denied".into(),
            description: Some("no".into()),
        };
        assert_eq!(
            e.to_string(),
            "the identity provider answered `access_denied`: no"
        );
        assert_eq!(printable("a\u{0}b\nc", 10), "abc");
        assert_eq!(state_hash("s").len(), 64);
    }
}
