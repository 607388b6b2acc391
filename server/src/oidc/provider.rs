//! The identity provider as Gatehouse sees it: discovery, the authorization request, code
//! exchange, userinfo, refresh, RP-initiated logout and back-channel logout. Built on the
//! `openidconnect` crate. Tokens are verified by [`super::jwt`] against the discovered key
//! set (signature, issuer, audience, expiry, nonce); this module fetches the keys, and
//! remembers logout tokens already used.
//!
//! Discovery (metadata + JWKS) is cached and re-read every [`REDISCOVER_AFTER`], and at
//! once (throttled) when a token names a key we do not know, to follow key rotation. If the
//! IdP is down when Gatehouse starts, discovery is retried at the next login.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, reqwest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::claims::{ClaimsError, IdpIdentity, map_claims};
use super::error_chain;
use super::jwt::{JwtError, KeySet, LogoutRequest, LogoutToken, NonceRule, SignedJwt};
use crate::config::OidcConfig;

/// How long discovered metadata and keys are used before they are read again.
pub const REDISCOVER_AFTER: Duration = Duration::from_secs(3600);
/// At most one forced re-discovery (unknown signing key) per this interval, so forged
/// tokens with made-up key ids cannot make us hammer the IdP.
const FORCED_REDISCOVERY_THROTTLE: Duration = Duration::from_secs(10);

/// Discovery fields the `openidconnect` core types leave out.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<url::Url>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client as built from discovery: authorization endpoint set, token and userinfo
/// endpoints as the IdP advertises them.
type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// One discovery result.
pub struct Discovered {
    client: OidcClient,
    /// The IdP's signing keys, issuer and our client id: what tokens are verified against.
    keys: KeySet,
    end_session: Option<url::Url>,
    fetched_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the configured issuer `{issuer}` is not a URL: {source}")]
    Issuer {
        issuer: String,
        source: url::ParseError,
    },
    #[error("identity provider unreachable or its discovery document is unusable: {}", error_chain(.0.as_ref()))]
    Discovery(#[source] BoxError),
    #[error("the identity provider refused the code exchange: {}", token_error(.0.as_ref()))]
    Exchange(#[source] BoxError),
    #[error("the token response has no id_token")]
    NoIdToken,
    #[error("ID token rejected: {0}")]
    IdToken(#[source] JwtError),
    #[error("{0}")]
    Claims(#[from] ClaimsError),
    #[error("userinfo request failed: {}", error_chain(.0))]
    UserInfoUnreachable(#[source] reqwest::Error),
    #[error("userinfo request failed: status {0}")]
    UserInfoStatus(u16),
    #[error("the identity provider refused our access token at userinfo (status {0})")]
    UserInfoRefused(u16),
    #[error("userinfo request failed: the answer is not a JSON object{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    UserInfoBody(#[source] Option<BoxError>),
    #[error("logout token rejected: {0}")]
    LogoutToken(#[source] JwtError),
    #[error("logout token rejected: replayed logout token")]
    ReplayedLogoutToken,
}

/// A cause kept as it is, whatever library it comes from (openidconnect's errors are generic
/// over its HTTP client).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl OidcError {
    /// Whether the IdP could not be asked (the network, the IdP's own failures, its
    /// discovery), which may pass by itself, as opposed to tokens or claims that will never
    /// be accepted.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OidcError::Issuer { .. }
                | OidcError::Discovery(_)
                | OidcError::UserInfoUnreachable(_)
                | OidcError::UserInfoStatus(_)
                | OidcError::UserInfoBody(_)
        )
    }
}

/// Why the relying party could not be built from its configuration (a bad `oidc` key:
/// exit 2 at start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the callback URL `{url}` is invalid: {source}")]
    CallbackUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("cannot build the HTTP client for the identity provider: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// What a fresh authorization request needs remembered until the callback.
pub struct AuthorizationRequest {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The outcome of a code exchange.
pub struct LoginTokens {
    pub identity: IdpIdentity,
    pub refresh_token: Option<String>,
    /// The raw ID token, kept (encrypted) as `id_token_hint` for logout.
    pub id_token: String,
}

/// The outcome of a refresh.
pub struct Refreshed {
    /// `None` when the IdP sent neither an ID token nor has a userinfo endpoint.
    pub identity: Option<IdpIdentity>,
    /// The new refresh token when the IdP rotates them.
    pub refresh_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The IdP refused the refresh token (`invalid_grant`), or what it answered can never be
    /// accepted (a token that does not verify, claims for another user): the grant is gone —
    /// user disabled, consent revoked, IdP session ended. The session must end too.
    #[error("identity provider rejected the refresh token: {0}")]
    Rejected(#[source] RefreshCause),
    /// Could not ask (network, 5xx, bad answer): try again later.
    #[error("refresh failed: {0}")]
    Unavailable(#[source] RefreshCause),
}

/// What went wrong in a refresh ([`RefreshError`] says whether it ends the session).
#[derive(Debug, thiserror::Error)]
pub enum RefreshCause {
    /// Discovery, the token endpoint's answer, the ID token, userinfo.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("{}", token_error(.0.as_ref()))]
    TokenEndpoint(#[source] BoxError),
    #[error("refreshed claims are for another subject")]
    OtherSubject,
}

/// Which callback path a login uses: `/auth/callback`, or oauth2-proxy's
/// `/oauth2/callback` when the login started at `/oauth2/start` (so an IdP client
/// registered for oauth2-proxy works unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackPath {
    Auth,
    OAuth2,
}

impl CallbackPath {
    pub fn path(self) -> &'static str {
        match self {
            CallbackPath::Auth => "/auth/callback",
            CallbackPath::OAuth2 => "/oauth2/callback",
        }
    }

    /// The callback path matching the path a request came in on.
    pub fn for_request_path(path: &str) -> CallbackPath {
        if path.starts_with("/oauth2/") {
            CallbackPath::OAuth2
        } else {
            CallbackPath::Auth
        }
    }
}

pub struct OidcProvider {
    config: OidcConfig,
    redirect_url: RedirectUrl,
    oauth2_redirect_url: RedirectUrl,
    http: reqwest::Client,
    current: ArcSwapOption<Discovered>,
    discovering: tokio::sync::Mutex<()>,
    /// `jti`s of accepted logout tokens, so none is accepted twice.
    seen_logout_tokens: moka::future::Cache<String, ()>,
}

impl OidcProvider {
    /// Callbacks are `<public_url>/auth/callback` (or `/oauth2/callback`), registered at
    /// the IdP.
    pub fn new(config: &OidcConfig, public_url: &url::Url) -> Result<OidcProvider, SetupError> {
        let base = public_url.as_str().trim_end_matches('/');
        let callback = |path: CallbackPath| {
            let url = format!("{base}{}", path.path());
            RedirectUrl::new(url.clone()).map_err(|source| SetupError::CallbackUrl { url, source })
        };
        let redirect_url = callback(CallbackPath::Auth)?;
        let oauth2_redirect_url = callback(CallbackPath::OAuth2)?;
        let http = reqwest::Client::builder()
            // An IdP answer is never followed elsewhere (SSRF guard).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(SetupError::HttpClient)?;
        Ok(OidcProvider {
            config: config.clone(),
            redirect_url,
            oauth2_redirect_url,
            http,
            current: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(()),
            seen_logout_tokens: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        })
    }

    /// The HTTP client used for the IdP (no redirects, timeouts).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Current discovery, reading it first if missing or older than [`REDISCOVER_AFTER`].
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.current.load_full()
            && d.fetched_at.elapsed() < REDISCOVER_AFTER
        {
            return Ok(d);
        }
        self.rediscover(REDISCOVER_AFTER).await
    }

    /// Reads discovery again unless another caller did within `fresh_for`.
    async fn rediscover(&self, fresh_for: Duration) -> Result<Arc<Discovered>, OidcError> {
        let _guard = self.discovering.lock().await;
        if let Some(d) = self.current.load_full()
            && d.fetched_at.elapsed() < fresh_for
        {
            return Ok(d);
        }
        let issuer =
            IssuerUrl::new(self.config.issuer.clone()).map_err(|source| OidcError::Issuer {
                issuer: self.config.issuer.clone(),
                source,
            })?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(Box::new(e)))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let keys = KeySet::new(
            metadata.issuer().clone(),
            ClientId::new(self.config.client_id.clone()),
            metadata.jwks().clone(),
        );
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(self.redirect_url.clone());
        let discovered = Arc::new(Discovered {
            client,
            keys,
            end_session,
            fetched_at: Instant::now(),
        });
        tracing::info!(issuer = %discovered.keys.issuer(), keys = discovered.keys.len(), "OIDC provider discovered");
        self.current.store(Some(discovered.clone()));
        Ok(discovered)
    }

    /// A new authorization request: random state and nonce, PKCE S256.
    fn redirect_for(&self, callback: CallbackPath) -> &RedirectUrl {
        match callback {
            CallbackPath::Auth => &self.redirect_url,
            CallbackPath::OAuth2 => &self.oauth2_redirect_url,
        }
    }

    pub async fn authorization_request(
        &self,
        callback: CallbackPath,
    ) -> Result<AuthorizationRequest, OidcError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scopes = self
            .config
            .scopes
            .iter()
            .filter(|s| s.as_str() != "openid")
            .map(|s| Scope::new(s.clone()));
        let (url, state, nonce) = d
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(scopes)
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Borrowed(self.redirect_for(callback)))
            .url();
        Ok(AuthorizationRequest {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier), verifies the ID token against `nonce`,
    /// reads userinfo, and maps the claims.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        callback: CallbackPath,
    ) -> Result<LoginTokens, OidcError> {
        let d = self.discovered().await?;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(Box::new(e)))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .set_redirect_uri(std::borrow::Cow::Borrowed(self.redirect_for(callback)))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(Box::new(e)))?;
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(nonce.to_string());
        let claims = self
            .verify_id_token(&d, id_token, NonceRule::Equals(&nonce))
            .await?;
        let raw = id_token.to_string();
        // Userinfo adds claims; when it fails but the ID token already names the user,
        // the login goes on with the ID token's claims rather than fail.
        let userinfo = match self.userinfo(&d, response.access_token().secret()).await {
            Ok(info) => info,
            Err(e) if claims.contains_key("email") => {
                tracing::warn!(error = %e, "userinfo failed; using the ID token's claims");
                None
            }
            Err(e) => return Err(e),
        };
        let identity = map_claims(&claims, userinfo.as_ref(), &self.config.groups_claim)?;
        Ok(LoginTokens {
            identity,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            id_token: raw,
        })
    }

    /// Verifies an ID token (signature, issuer, audience, expiry and `nonce`), re-reading
    /// the JWKS once if the token's key is unknown, and returns its claims as JSON.
    async fn verify_id_token(
        &self,
        first: &Arc<Discovered>,
        token: &CoreIdToken,
        nonce: NonceRule<'_>,
    ) -> Result<Map<String, Value>, OidcError> {
        let result = match first.keys.verify_id_token(token, nonce) {
            Err(JwtError::UnknownKey(_)) => {
                let d = self.rediscover(FORCED_REDISCOVERY_THROTTLE).await?;
                d.keys.verify_id_token(token, nonce)
            }
            other => other,
        };
        result.map_err(OidcError::IdToken)
    }

    /// Userinfo claims, when the IdP has the endpoint. A signed (JWT) userinfo answer is
    /// not used: the ID token's claims stand alone then.
    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let Some(endpoint) = d.client.user_info_url() else {
            return Ok(None);
        };
        let response = self
            .http
            .get(endpoint.url().clone())
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(OidcError::UserInfoUnreachable)?;
        let status = response.status();
        if status == 401 || status == 403 {
            return Err(OidcError::UserInfoRefused(status.as_u16()));
        }
        if !status.is_success() {
            return Err(OidcError::UserInfoStatus(status.as_u16()));
        }
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            tracing::warn!("userinfo answered with a non-JSON body; using ID token claims only");
            return Ok(None);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(OidcError::UserInfoUnreachable)?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| OidcError::UserInfoBody(Some(Box::new(e))))?;
        match body {
            Value::Object(map) => Ok(Some(map)),
            _ => Err(OidcError::UserInfoBody(None)),
        }
    }

    /// Uses a refresh token to re-read the user's claims. `subject` is the session's user;
    /// claims for anyone else are refused.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        subject: &str,
    ) -> Result<Refreshed, RefreshError> {
        // Only what may pass (network, the IdP's own failures) is worth a retry; a token
        // that does not verify or an access token the IdP refuses ends the session.
        let classify = |e: OidcError| {
            if e.is_transient() {
                RefreshError::Unavailable(e.into())
            } else {
                RefreshError::Rejected(e.into())
            }
        };
        let d = self.discovered().await.map_err(classify)?;
        let token = RefreshToken::new(refresh_token.to_string());
        let response = d
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| RefreshError::Unavailable(RefreshCause::TokenEndpoint(Box::new(e))))?
            .request_async(&self.http)
            .await
            .map_err(|e| {
                let rejected = matches!(&e, RequestTokenError::ServerResponse(r)
                    if *r.error() == CoreErrorResponseType::InvalidGrant);
                let cause = RefreshCause::TokenEndpoint(Box::new(e));
                if rejected {
                    RefreshError::Rejected(cause)
                } else {
                    RefreshError::Unavailable(cause)
                }
            })?;
        let mut id_claims = match response.extra_fields().id_token() {
            // Refreshed ID tokens carry no nonce (OIDC Core 12.2).
            Some(t) => Some(
                self.verify_id_token(&d, t, NonceRule::Any)
                    .await
                    .map_err(classify)?,
            ),
            None => None,
        };
        let userinfo = self
            .userinfo(&d, response.access_token().secret())
            .await
            .map_err(classify)?;
        if id_claims.is_none() && userinfo.is_some() {
            let mut m = Map::new();
            m.insert("sub".into(), Value::String(subject.to_string()));
            id_claims = Some(m);
        }
        let identity = match id_claims {
            Some(claims) => {
                let identity = map_claims(&claims, userinfo.as_ref(), &self.config.groups_claim)
                    .map_err(|e| RefreshError::Rejected(OidcError::Claims(e).into()))?;
                if identity.subject != subject {
                    return Err(RefreshError::Rejected(RefreshCause::OtherSubject));
                }
                Some(identity)
            }
            None => None,
        };
        Ok(Refreshed {
            identity,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// The IdP's `end_session_endpoint` with `id_token_hint`, `client_id`,
    /// `post_logout_redirect_uri`; `None` when the IdP has no such endpoint.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<url::Url> {
        let d = self.discovered().await.ok()?;
        let mut url = d.end_session.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &self.config.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url)
    }

    /// Verifies an OIDC back-channel logout token (Back-Channel Logout 1.0 §2.6, see
    /// [`KeySet::verify_logout_token`]), re-reading the JWKS once if its key is unknown,
    /// and accepts each token (its `jti`) once.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutRequest, OidcError> {
        let jwt = SignedJwt::parse(token).map_err(OidcError::LogoutToken)?;
        let d = self.discovered().await?;
        let verified = match d.keys.verify_logout_token(&jwt, now_secs()) {
            Err(JwtError::UnknownKey(_)) => {
                let d = self.rediscover(FORCED_REDISCOVERY_THROTTLE).await?;
                d.keys.verify_logout_token(&jwt, now_secs())
            }
            other => other,
        };
        let LogoutToken { request, jti } = verified.map_err(OidcError::LogoutToken)?;
        // A logout token is used once (its `jti`, required by the spec, is remembered).
        let fresh = self
            .seen_logout_tokens
            .entry(jti)
            .or_insert(())
            .await
            .is_fresh();
        if !fresh {
            return Err(OidcError::ReplayedLogoutToken);
        }
        Ok(request)
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token endpoint error: the IdP's `error` and `error_description` when it sent them
/// (openidconnect's `ServerResponse`, whose own text is only "Server returned error
/// response"), else the whole chain of causes.
fn token_error(e: &(dyn std::error::Error + 'static)) -> String {
    type ServerError = RequestTokenError<
        openidconnect::HttpClientError<openidconnect::reqwest::Error>,
        openidconnect::StandardErrorResponse<CoreErrorResponseType>,
    >;
    match e.downcast_ref::<ServerError>() {
        Some(RequestTokenError::ServerResponse(r)) => r.to_string(),
        _ => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IdP's own words survive boxing: `token_error` finds openidconnect's server
    /// response behind the `BoxError` the variants keep (its own text says only "Server
    /// returned error response").
    #[test]
    fn a_token_endpoint_refusal_reads_as_the_idps_error_and_description() {
        let refusal: BoxError = Box::new(RequestTokenError::<
            openidconnect::HttpClientError<openidconnect::reqwest::Error>,
            _,
        >::ServerResponse(
            openidconnect::StandardErrorResponse::new(
                CoreErrorResponseType::InvalidGrant,
                Some("refresh token expired".into()),
                None,
            ),
        ));
        let e = RefreshError::Rejected(RefreshCause::TokenEndpoint(refusal));
        assert_eq!(
            e.to_string(),
            "identity provider rejected the refresh token: invalid_grant: refresh token expired"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let other: BoxError = Box::new(std::io::Error::other("connection reset"));
        assert_eq!(
            OidcError::Exchange(other).to_string(),
            "the identity provider refused the code exchange: connection reset"
        );
    }
}
