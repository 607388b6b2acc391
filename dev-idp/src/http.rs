//! The endpoints: discovery, JWKS, authorize + login form, token, userinfo, end_session.
//! Handlers are thin; the checks live in [`super::store`], [`super::tokens`] and here in
//! small functions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use super::config::{ClientConfig, DevIdpConfig};
use super::html;
use super::keys::SigningKey;
use super::signed::Signer;
use super::store::{self, CodeGrant, Session, Store, TokenGrant};
use super::tokens;

pub const SESSION_COOKIE: &str = "gatehouse_dev_idp_session";
pub const LOGIN_COOKIE: &str = "gatehouse_dev_idp_login";
const LOGIN_FORM_TTL: Duration = Duration::from_secs(600);
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request is refused before anything is sent back to a client: shown on an error
/// page (or as `invalid_request`), never redirected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("parameter `{0}` is repeated")]
    RepeatedParameter(String),
    #[error("client_id is missing")]
    MissingClientId,
    #[error("unknown client_id `{0}`")]
    UnknownClient(String),
    #[error("redirect_uri is missing")]
    MissingRedirectUri,
    #[error("redirect_uri `{redirect_uri}` is not registered for client `{client_id}`")]
    UnregisteredRedirectUri {
        redirect_uri: String,
        client_id: String,
    },
}

/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] openidconnect::reqwest::Error),
}

/// The provider's state, shared by all workers.
pub struct Idp {
    pub issuer: String,
    config_path: PathBuf,
    config: Mutex<Arc<DevIdpConfig>>,
    key: SigningKey,
    signer: Signer,
    store: Mutex<Store>,
    http: openidconnect::reqwest::Client,
    secure_cookies: bool,
}

impl Idp {
    pub fn new(
        issuer: String,
        config_path: PathBuf,
        config: DevIdpConfig,
        key: SigningKey,
    ) -> Result<Self, SetupError> {
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(BACKCHANNEL_TIMEOUT)
            .build()
            .map_err(SetupError::HttpClient)?;
        Ok(Idp {
            secure_cookies: issuer.starts_with("https:"),
            issuer,
            config_path,
            config: Mutex::new(Arc::new(config)),
            key,
            signer: Signer::random(),
            store: Mutex::new(Store::default()),
            http,
        })
    }

    /// The file as it is now, so that an edited user is seen at the next request; a file
    /// that no longer parses leaves the last good one in use.
    fn config(&self) -> Arc<DevIdpConfig> {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        match DevIdpConfig::load(&self.config_path) {
            Ok(fresh) => *current = Arc::new(fresh),
            Err(e) => tracing::warn!(error = %e, "dev-idp: keeping the last good file"),
        }
        current.clone()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session_token(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(SESSION_COOKIE)?;
        let token = self.signer.verify("session", cookie.value())?;
        String::from_utf8(token).ok()
    }

    /// The browser's live IdP session, if its user still exists.
    fn session(&self, req: &HttpRequest, config: &DevIdpConfig) -> Option<Session> {
        let token = self.session_token(req)?;
        let session = self.store().session(&token, Instant::now()).cloned()?;
        config.user(&session.username).map(|_| session)
    }

    fn cookie(&self, name: &'static str, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(
                max_age.as_secs() as i64,
            ))
            .finish()
    }

    fn removal_cookie(&self, name: &'static str) -> Cookie<'static> {
        let mut cookie = self.cookie(name, String::new(), Duration::ZERO);
        cookie.make_removal();
        cookie
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(discovery),
        )
        .route("/jwks", web::get().to(jwks))
        .route("/authorize", web::get().to(authorize))
        .route("/login", web::post().to(login))
        .route("/token", web::post().to(token))
        .route("/userinfo", web::get().to(userinfo))
        .route("/userinfo", web::post().to(userinfo))
        .route("/end_session", web::get().to(end_session_get))
        .route("/end_session", web::post().to(end_session_post));
}

/// Form or query parameters. A repeated parameter is an error (RFC 6749 §3.1).
fn parse_params(bytes: &[u8]) -> Result<HashMap<String, String>, RequestError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(RequestError::RepeatedParameter(k.into_owned()));
        }
    }
    Ok(out)
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

async fn index(idp: web::Data<Idp>) -> HttpResponse {
    html::index(&idp.issuer)
}

async fn discovery(idp: web::Data<Idp>) -> HttpResponse {
    match tokens::metadata(&idp.issuer) {
        Ok(metadata) => HttpResponse::Ok().json(metadata),
        Err(e) => {
            tracing::error!(error = %e, "dev-idp: discovery document");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn jwks(idp: web::Data<Idp>) -> HttpResponse {
    HttpResponse::Ok().json(idp.key.jwks())
}

/// The authorization request, as carried (signed) by the login form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    /// Equals the login cookie: a form posted from another site lacks it (login CSRF).
    csrf: String,
    /// Unix seconds after which the form is refused.
    expires: i64,
}

/// An authorization error sent back to the (registered) redirect URI (RFC 6749 §4.1.2.1).
fn redirect_error(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return html::error_page(StatusCode::BAD_REQUEST, description);
    };
    url.query_pairs_mut()
        .append_pair("error", error)
        .append_pair("error_description", description);
    if let Some(state) = state {
        url.query_pairs_mut().append_pair("state", state);
    }
    url.query_pairs_mut().append_pair("iss", issuer);
    found(url.as_str())
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The client and redirect URI of a request, both registered; anything else is shown as an
/// error page and never redirected to.
fn registered_client<'c>(
    config: &'c DevIdpConfig,
    client_id: Option<&str>,
    redirect_uri: Option<&str>,
) -> Result<&'c ClientConfig, RequestError> {
    let client_id = client_id.ok_or(RequestError::MissingClientId)?;
    let client = config
        .client(client_id)
        .ok_or_else(|| RequestError::UnknownClient(client_id.to_string()))?;
    let redirect_uri = redirect_uri.ok_or(RequestError::MissingRedirectUri)?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(RequestError::UnregisteredRedirectUri {
            redirect_uri: redirect_uri.to_string(),
            client_id: client_id.to_string(),
        });
    }
    Ok(client)
}

/// Checks the parts of an authorization request that are reported back to the client.
fn check_request(params: &HashMap<String, String>) -> Result<(), (&'static str, &'static str)> {
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("response_type") != Some("code") {
        return Err((
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if !get("scope").unwrap_or("").split(' ').any(|s| s == "openid") {
        return Err(("invalid_scope", "scope must include openid"));
    }
    let challenge = get("code_challenge").unwrap_or("");
    let challenge_ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if get("code_challenge_method") != Some("S256") || !challenge_ok {
        return Err((
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    }
    if params.contains_key("request") || params.contains_key("request_uri") {
        return Err(("request_not_supported", "request objects are not supported"));
    }
    Ok(())
}

async fn authorize(req: HttpRequest, idp: web::Data<Idp>) -> HttpResponse {
    let params = match parse_params(req.query_string().as_bytes()) {
        Ok(p) => p,
        Err(e) => return html::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let get = |k: &str| params.get(k).map(String::as_str);
    let config = idp.config();
    let client = match registered_client(&config, get("client_id"), get("redirect_uri")) {
        Ok(c) => c,
        Err(e) => return html::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    // From here on, errors go back to the client at its registered redirect URI.
    if let Err((error, description)) = check_request(&params) {
        return redirect_error(&idp.issuer, redirect_uri, get("state"), error, description);
    }
    let prompt: Vec<&str> = get("prompt").unwrap_or("").split(' ').collect();
    let request = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scopes: get("scope")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        state: get("state").map(str::to_string),
        nonce: get("nonce").map(str::to_string),
        code_challenge: get("code_challenge").unwrap_or_default().to_string(),
        csrf: req
            .cookie(LOGIN_COOKIE)
            .map(|c| c.value().to_string())
            .filter(|v| v.len() == 43)
            .unwrap_or_else(store::random_token),
        expires: chrono::Utc::now().timestamp() + LOGIN_FORM_TTL.as_secs() as i64,
    };
    let session = idp
        .session(&req, &config)
        .filter(|_| !prompt.contains(&"login"));
    match session {
        Some(session) => complete(&idp, &request, &session),
        None if prompt.contains(&"none") => redirect_error(
            &idp.issuer,
            redirect_uri,
            get("state"),
            "login_required",
            "no session at the identity provider",
        ),
        None => {
            let signed = match serde_json::to_vec(&request) {
                Ok(json) => idp.signer.sign("authorize", &json),
                Err(_) => return HttpResponse::InternalServerError().finish(),
            };
            let mut response =
                html::login_form(StatusCode::OK, &request.client_id, &signed, "", None);
            let cookie = idp.cookie(LOGIN_COOKIE, request.csrf.clone(), LOGIN_FORM_TTL);
            if response.add_cookie(&cookie).is_err() {
                return HttpResponse::InternalServerError().finish();
            }
            response
        }
    }
}

/// Issues the code for an authenticated request and sends the browser back.
fn complete(idp: &Idp, request: &AuthRequest, session: &Session) -> HttpResponse {
    let Ok(mut url) = Url::parse(&request.redirect_uri) else {
        return html::error_page(StatusCode::BAD_REQUEST, "bad redirect_uri");
    };
    let code = idp.store().issue_code(
        CodeGrant {
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            scopes: request.scopes.clone(),
            username: session.username.clone(),
            sid: session.sid.clone(),
            auth_time: session.auth_time,
        },
        Instant::now(),
    );
    url.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &request.state {
        url.query_pairs_mut().append_pair("state", state);
    }
    url.query_pairs_mut().append_pair("iss", &idp.issuer);
    tracing::info!(user = %session.username, client = %request.client_id, "dev-idp: code issued");
    found(url.as_str())
}

/// Compares in constant time for a known user; an unknown user costs a comparison too.
fn password_ok(expected: Option<&str>, given: &str) -> bool {
    let matches = ct_eq(expected.unwrap_or("\u{0}no such user"), given);
    expected.is_some() && matches
}

async fn login(req: HttpRequest, body: web::Bytes, idp: web::Data<Idp>) -> HttpResponse {
    let Ok(params) = parse_params(&body) else {
        return html::error_page(StatusCode::BAD_REQUEST, "malformed form");
    };
    let signed = params.get("request").map(String::as_str).unwrap_or("");
    let Some(request) = idp
        .signer
        .verify("authorize", signed)
        .and_then(|json| serde_json::from_slice::<AuthRequest>(&json).ok())
    else {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form was altered or is not from this server. Start again from the application.",
        );
    };
    if request.expires < chrono::Utc::now().timestamp() {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form has expired. Start again from the application.",
        );
    }
    let csrf_ok = req
        .cookie(LOGIN_COOKIE)
        .is_some_and(|c| ct_eq(c.value(), &request.csrf));
    if !csrf_ok {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "The sign-in cookie is missing: allow cookies and start again from the application.",
        );
    }
    let config = idp.config();
    if let Err(e) = registered_client(
        &config,
        Some(&request.client_id),
        Some(&request.redirect_uri),
    ) {
        return html::error_page(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let username = params.get("username").map(String::as_str).unwrap_or("");
    let password = params.get("password").map(String::as_str).unwrap_or("");
    let user = config.user(username);
    if !password_ok(user.map(|u| u.password.as_str()), password) {
        tracing::info!(user = %username, "dev-idp: wrong username or password");
        return html::login_form(
            StatusCode::UNAUTHORIZED,
            &request.client_id,
            signed,
            username,
            Some("Wrong username or password."),
        );
    }
    let (token, session) = idp.store().create_session(username, Instant::now());
    let mut response = complete(&idp, &request, &session);
    let session_cookie = idp.cookie(
        SESSION_COOKIE,
        idp.signer.sign("session", token.as_bytes()),
        store::SESSION_TTL,
    );
    let cookies = [session_cookie, idp.removal_cookie(LOGIN_COOKIE)];
    if cookies.iter().any(|c| response.add_cookie(c).is_err()) {
        return HttpResponse::InternalServerError().finish();
    }
    response
}

/// An RFC 6749 §5.2 error.
fn token_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((
            header::WWW_AUTHENTICATE,
            r#"Basic realm="gatehouse dev-idp""#,
        ));
    }
    response.json(serde_json::json!({"error": error, "error_description": description}))
}

fn invalid_grant(description: &str) -> HttpResponse {
    token_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// `client_id:client_secret` from HTTP Basic, each form-urlencoded (RFC 6749 §2.3.1).
fn basic_credentials(req: &HttpRequest) -> Option<Result<(String, String), ()>> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let parsed = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            Some((decode(id)?, decode(secret)?))
        });
    Some(parsed.ok_or(()))
}

/// A token endpoint error before it becomes a response: status, code, description.
type TokenError = (StatusCode, &'static str, &'static str);

/// The authenticated client, or the error.
fn authenticate_client<'c>(
    req: &HttpRequest,
    params: &HashMap<String, String>,
    config: &'c DevIdpConfig,
) -> Result<&'c ClientConfig, TokenError> {
    let invalid_client = |d| (StatusCode::UNAUTHORIZED, "invalid_client", d);
    let (client_id, secret) = match (basic_credentials(req), params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            ));
        }
        (Some(Err(())), None) => return Err(invalid_client("malformed Basic credentials")),
        (Some(Ok((id, secret))), None) => {
            if params.get("client_id").is_some_and(|p| *p != id) {
                return Err(invalid_client("client_id does not match the credentials"));
            }
            (id, secret)
        }
        (None, Some(secret)) => match params.get("client_id") {
            Some(id) => (id.clone(), secret.clone()),
            None => return Err(invalid_client("client_id is missing")),
        },
        (None, None) => return Err(invalid_client("client authentication is required")),
    };
    match config.client(&client_id) {
        Some(client) if ct_eq(&client.client_secret, &secret) => Ok(client),
        _ => Err(invalid_client("unknown client or wrong secret")),
    }
}

async fn token(req: HttpRequest, body: web::Bytes, idp: web::Data<Idp>) -> HttpResponse {
    let params = match parse_params(&body) {
        Ok(p) => p,
        Err(e) => return token_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
    };
    let config = idp.config();
    let client = match authenticate_client(&req, &params, &config) {
        Ok(c) => c,
        Err((status, error, description)) => return token_error(status, error, description),
    };
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(&idp, &config, client, &params),
        Some("refresh_token") => refresh_grant(&idp, &config, client, &params),
        Some(_) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
    }
}

fn code_grant(
    idp: &Idp,
    config: &DevIdpConfig,
    client: &ClientConfig,
    params: &HashMap<String, String>,
) -> HttpResponse {
    let Some(code) = params.get("code") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    let Ok(grant) = idp.store().redeem_code(code, Instant::now()) else {
        return invalid_grant("the code is unknown, expired or already used");
    };
    if grant.client_id != client.client_id {
        return invalid_grant("the code was issued to another client");
    }
    if params.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    let verifier = params.get("code_verifier").map(String::as_str);
    if !verifier.is_some_and(|v| store::pkce_s256_matches(v, &grant.code_challenge)) {
        return invalid_grant("PKCE verification failed (code_verifier)");
    }
    let token_grant = TokenGrant {
        client_id: grant.client_id.clone(),
        scopes: grant.scopes.clone(),
        username: grant.username.clone(),
        sid: grant.sid.clone(),
        auth_time: grant.auth_time,
    };
    issue(idp, config, token_grant, grant.nonce.as_deref(), Some(code))
}

fn refresh_grant(
    idp: &Idp,
    config: &DevIdpConfig,
    client: &ClientConfig,
    params: &HashMap<String, String>,
) -> HttpResponse {
    let Some(refresh_token) = params.get("refresh_token") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        );
    };
    let Some(mut grant) = idp
        .store()
        .take_refresh_token(refresh_token, Instant::now())
    else {
        return invalid_grant("the refresh token is unknown, expired, revoked or already used");
    };
    if grant.client_id != client.client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    if let Some(scope) = params.get("scope") {
        let requested: Vec<String> = scope.split(' ').map(str::to_string).collect();
        if !requested.iter().all(|s| grant.scopes.contains(s)) {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "a refresh may not widen the scope",
            );
        }
        grant.scopes = requested;
    }
    issue(idp, config, grant, None, None)
}

/// Access, refresh and ID token for `grant`, with the user's current claims.
fn issue(
    idp: &Idp,
    config: &DevIdpConfig,
    grant: TokenGrant,
    nonce: Option<&str>,
    code: Option<&str>,
) -> HttpResponse {
    let Some(user) = config.user(&grant.username) else {
        return invalid_grant("the user no longer exists");
    };
    let (access, refresh) = idp
        .store()
        .issue_tokens(grant.clone(), code, Instant::now());
    let id_token = tokens::id_token(
        &idp.key,
        user,
        &tokens::IdTokenRequest {
            issuer: &idp.issuer,
            client_id: &grant.client_id,
            scopes: &grant.scopes,
            sid: &grant.sid,
            auth_time: grant.auth_time,
            nonce,
            access_token: &access,
            code,
        },
    );
    let id_token = match id_token {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "dev-idp: ID token");
            return token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot sign",
            );
        }
    };
    tracing::info!(
        user = %user.username,
        client = %grant.client_id,
        groups = ?user.groups,
        grant = if code.is_some() { "authorization_code" } else { "refresh_token" },
        "dev-idp: tokens issued"
    );
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": store::ACCESS_TOKEN_TTL.as_secs(),
            "id_token": id_token,
            "refresh_token": refresh,
            "scope": grant.scopes.join(" "),
        }))
}

async fn userinfo(req: HttpRequest, idp: web::Data<Idp>) -> HttpResponse {
    let unauthorized = || {
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
            .finish()
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return unauthorized();
    };
    let Some(grant) = idp.store().access_token(&token, Instant::now()).cloned() else {
        return unauthorized();
    };
    let config = idp.config();
    match config.user(&grant.username) {
        Some(user) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(tokens::userinfo(user, &grant.scopes)),
        None => unauthorized(),
    }
}

async fn end_session_get(req: HttpRequest, idp: web::Data<Idp>) -> HttpResponse {
    match parse_params(req.query_string().as_bytes()) {
        Ok(params) => end_session(&req, &idp, &params).await,
        Err(e) => html::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn end_session_post(req: HttpRequest, body: web::Bytes, idp: web::Data<Idp>) -> HttpResponse {
    match parse_params(&body) {
        Ok(params) => end_session(&req, &idp, &params).await,
        Err(e) => html::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// RP-initiated logout: ends the IdP session (the browser's, else the `id_token_hint`'s
/// `sid`), tells the session's clients over the back channel, then redirects only to a
/// post-logout URI registered for the client.
async fn end_session(
    req: &HttpRequest,
    idp: &Idp,
    params: &HashMap<String, String>,
) -> HttpResponse {
    let config = idp.config();
    let hint = params.get("id_token_hint").map(|t| {
        idp.key
            .verify_jwt(t)
            .filter(|claims| claims["iss"].as_str() == Some(idp.issuer.as_str()))
    });
    let hint_valid = !matches!(hint, Some(None));
    let hint = hint.flatten();
    let hint_client = hint.as_ref().and_then(|c| match &c["aud"] {
        serde_json::Value::String(aud) => Some(aud.clone()),
        serde_json::Value::Array(auds) => auds.first().and_then(|a| a.as_str()).map(str::to_string),
        _ => None,
    });
    let client_id = match (hint_client, params.get("client_id")) {
        (Some(a), Some(b)) if a != *b => None,
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    };
    let hint_sid = hint
        .as_ref()
        .and_then(|c| c["sid"].as_str())
        .map(str::to_string);
    let cookie_token = idp.session_token(req);
    let ended = idp
        .store()
        .end_session(cookie_token.as_deref(), hint_sid.as_deref());
    if let Some(session) = &ended {
        tracing::info!(user = %session.username, "dev-idp: session ended");
        backchannel_logout(idp, &config, session).await;
    }

    let mut response = match params.get("post_logout_redirect_uri") {
        None => html::signed_out(None),
        Some(_) if !hint_valid => html::signed_out(Some(
            "The id_token_hint was not issued by this provider, so you are not sent back.",
        )),
        Some(uri) => {
            let registered = client_id
                .as_deref()
                .and_then(|id| config.client(id))
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
            match Url::parse(uri) {
                Ok(mut url) if registered => {
                    if let Some(state) = params.get("state") {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    found(url.as_str())
                }
                _ => html::signed_out(Some(
                    "The post_logout_redirect_uri is not registered for this client, so you are not sent back.",
                )),
            }
        }
    };
    if response
        .add_cookie(&idp.removal_cookie(SESSION_COOKIE))
        .is_err()
    {
        return HttpResponse::InternalServerError().finish();
    }
    response
}

/// POSTs a logout token to every client of the session that registered a back-channel
/// URI. Best effort: failures are logged, and a slow client costs at most the timeout.
async fn backchannel_logout(idp: &Idp, config: &DevIdpConfig, session: &Session) {
    let sub = config
        .user(&session.username)
        .map(|u| u.subject().to_string());
    for client_id in &session.clients {
        let Some(uri) = config
            .client(client_id)
            .and_then(|c| c.backchannel_logout_uri.as_deref())
        else {
            continue;
        };
        let token = match tokens::logout_token(
            &idp.key,
            &idp.issuer,
            client_id,
            &session.sid,
            sub.as_deref(),
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "dev-idp: logout token");
                continue;
            }
        };
        let result = idp
            .http
            .post(uri)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client = %client_id, uri, "dev-idp: back-channel logout sent")
            }
            Ok(r) => {
                tracing::warn!(client = %client_id, uri, status = %r.status(), "dev-idp: back-channel logout refused")
            }
            Err(e) => {
                tracing::warn!(client = %client_id, uri, error = %e, "dev-idp: back-channel logout failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn authorization_requests_need_code_openid_and_pkce_s256() {
        let good = [
            ("response_type", "code"),
            ("scope", "openid email"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        assert!(check_request(&params(&good)).is_ok());
        let with = |k: &str, v: &str| {
            let mut p = params(&good);
            p.insert(k.into(), v.into());
            check_request(&p).unwrap_err().0
        };
        assert_eq!(with("response_type", "token"), "unsupported_response_type");
        assert_eq!(with("scope", "email"), "invalid_scope");
        assert_eq!(with("code_challenge_method", "plain"), "invalid_request");
        assert_eq!(with("code_challenge", "short"), "invalid_request");
        let mut no_pkce = params(&good);
        no_pkce.remove("code_challenge");
        assert_eq!(check_request(&no_pkce).unwrap_err().0, "invalid_request");
    }

    #[test]
    fn only_registered_redirect_uris_are_accepted() {
        let config = DevIdpConfig::from_yaml(
            "clients:\n  - client_id: gh\n    client_secret: s\n    redirect_uris: [http://127.0.0.1:4180/auth/callback]\nusers: []\n",
            std::path::Path::new("x.yaml"),
        )
        .unwrap();
        let cb = "http://127.0.0.1:4180/auth/callback";
        assert!(registered_client(&config, Some("gh"), Some(cb)).is_ok());
        for bad in [
            "http://127.0.0.1:4180/auth/callback/",
            "http://127.0.0.1:4180/auth/callback?x=1",
            "http://evil.example/auth/callback",
        ] {
            assert!(registered_client(&config, Some("gh"), Some(bad)).is_err());
        }
        assert!(registered_client(&config, Some("other"), Some(cb)).is_err());
        assert!(registered_client(&config, Some("gh"), None).is_err());
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parse_params(b"a=1&b=2").is_ok());
        assert!(parse_params(b"a=1&a=2").is_err());
    }

    #[test]
    fn passwords_compare_and_unknown_users_fail() {
        assert!(password_ok(Some("alice"), "alice"));
        assert!(!password_ok(Some("alice"), "alicf"));
        assert!(!password_ok(None, "\u{0}no such user"));
    }
}
