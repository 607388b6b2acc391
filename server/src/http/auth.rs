//! `/auth/login`, `/auth/callback`, `/auth/logout`, `/auth/backchannel-logout` and their
//! oauth2-proxy aliases (README.md): thin adapters over [`crate::oidc::AuthService`].

use std::net::IpAddr;

use actix_web::cookie::{Cookie, SameSite as CookieSameSite, time};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::{Config, SameSite};
use crate::headers::ActixHeaders;
use crate::oidc::login::{DEVICE_COOKIE_MAX_AGE, LOGIN_STATE_TTL, login_binding};
use crate::oidc::provider::CallbackPath;
use crate::oidc::{CallbackParams, ClientFacts, LoginFailure};
use crate::request::credentials::cookie_values;
use crate::request::trust::browser_ip;
use crate::state::AppState;

/// Pages we render may load nothing from anywhere.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, serde::Deserialize)]
pub struct RdQuery {
    rd: Option<String>,
}

/// The name of the login-binding cookie: the session cookie's name with `_login`, and the
/// `__Host-` prefix whenever cookies are `Secure`: browsers then refuse the cookie from any
/// other host, so a sibling subdomain cannot plant a binding value it knows (cookie tossing)
/// and finish its own login in a victim's browser.
pub fn login_cookie_name(config: &Config) -> String {
    if config.cookie.secure {
        format!("__Host-{}_login", config.cookie.name)
    } else {
        format!("{}_login", config.cookie.name)
    }
}

/// The name of the device cookie: the session cookie's name with `_device`.
pub fn device_cookie_name(config: &Config) -> String {
    format!("{}_device", config.cookie.name)
}

fn client_ip(req: &HttpRequest, state: &AppState) -> IpAddr {
    browser_ip(
        &ActixHeaders(req.headers()),
        super::peer_ip(req),
        &state.config.trusted_proxies,
    )
}

/// `GET /auth/login?rd=URL`: 302 to the IdP. Without `rd`, oauth2-proxy's
/// `X-Auth-Request-Redirect` request header names the target (validated the same way).
pub async fn login(
    req: HttpRequest,
    query: web::Query<RdQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let rd = query.rd.as_deref().or_else(|| {
        req.headers()
            .get("x-auth-request-redirect")
            .and_then(|v| v.to_str().ok())
    });
    let callback = CallbackPath::for_request_path(req.path());
    let binding_name = login_cookie_name(&state.config);
    let headers = ActixHeaders(req.headers());
    let existing = cookie_values(&headers, &binding_name);
    let binding = login_binding(existing.first().copied());
    let ip = client_ip(&req, &state);
    match state
        .auth
        .start(rd, &binding, callback, ip, chrono::Utc::now())
        .await
    {
        Ok(url) => {
            let mut response = redirect(url.as_str());
            // Host-only (no Domain): only the callback on this host needs it.
            let mut cookie = build_cookie(
                &state.config,
                binding_name,
                binding,
                LOGIN_STATE_TTL.as_secs() as i64,
            );
            cookie.unset_domain();
            let _ = response.add_cookie(&cookie);
            response
        }
        Err(e) => error_page(&e, &state.config),
    }
}

/// `GET /auth/callback`: finish the login, set the cookies, 302 to `rd`.
pub async fn callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    // A malformed query is a failed login like any other, with the same page.
    let params = web::Query::<CallbackParams>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let device_name = device_cookie_name(&state.config);
    let headers = ActixHeaders(req.headers());
    let device_values = cookie_values(&headers, &device_name);
    let binding_values = cookie_values(&headers, &login_cookie_name(&state.config));
    let client = ClientFacts {
        ip: Some(client_ip(&req, &state).to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        device_cookie: device_values.first().copied(),
        login_binding: binding_values.first().copied(),
    };
    let now = chrono::Utc::now();
    let callback = CallbackPath::for_request_path(req.path());
    match state.auth.finish(&params, callback, &client, now).await {
        Ok(done) => {
            let max_age = (done.session.expires_at - now).num_seconds().max(0);
            let mut response = redirect(&done.redirect_to);
            let session_cookie = build_cookie(
                &state.config,
                state.config.cookie.name.clone(),
                done.session.cookie_value,
                max_age,
            );
            let _ = response.add_cookie(&session_cookie);
            if let Some(value) = done.new_device_cookie {
                let device = build_cookie(
                    &state.config,
                    device_name,
                    value,
                    DEVICE_COOKIE_MAX_AGE.as_secs() as i64,
                );
                let _ = response.add_cookie(&device);
            }
            response
        }
        Err(e) => error_page(&e, &state.config),
    }
}

/// `GET|POST /auth/logout?rd=URL`: revoke, clear the cookie, RP-initiated logout.
pub async fn logout(
    req: HttpRequest,
    query: web::Query<RdQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let headers = ActixHeaders(req.headers());
    let cookies = cookie_values(&headers, &state.config.cookie.name);
    let outcome = state
        .auth
        .logout(
            &cookies,
            query.rd.as_deref(),
            Some(client_ip(&req, &state).to_string()),
            chrono::Utc::now(),
        )
        .await;
    match outcome {
        Ok(outcome) => {
            let mut response = redirect(&outcome.redirect_to);
            let cleared = build_cookie(
                &state.config,
                state.config.cookie.name.clone(),
                String::new(),
                0,
            );
            let _ = response.add_cookie(&cleared);
            response
        }
        Err(e) => {
            // The session may still be live: say so rather than pretend.
            tracing::error!(error = %e, "logout failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-out failed",
                "The session store could not be reached, so you may still be signed in. Please try again.",
                Some(("Try again", "/auth/logout")),
            )
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct BackchannelForm {
    logout_token: Option<String>,
}

/// `POST /auth/backchannel-logout` (OIDC Back-Channel Logout 1.0): 200 when the token
/// verifies (even if no session matched), 400 otherwise.
pub async fn backchannel_logout(
    form: Option<web::Form<BackchannelForm>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(token) = form.and_then(|f| f.into_inner().logout_token) else {
        return backchannel_error("missing logout_token");
    };
    if token.len() > 16 * 1024 {
        return backchannel_error("logout_token too large");
    }
    match state
        .auth
        .backchannel_logout(&token, chrono::Utc::now())
        .await
    {
        Ok(_) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(LoginFailure::Store(e)) => {
            tracing::error!(error = %e, "back-channel logout could not revoke");
            HttpResponse::InternalServerError()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(serde_json::json!({"error": "server_error"}))
        }
        Err(e) => backchannel_error(&e.to_string()),
    }
}

fn backchannel_error(description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"error": "invalid_request", "error_description": description}))
}

/// `GET /`: where a refused or missing `rd` lands; says who is signed in.
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let headers = ActixHeaders(req.headers());
    let cookies = cookie_values(&headers, &state.config.cookie.name);
    let credentials = crate::authorizer::Credentials {
        cookies: &cookies,
        bearer: None,
    };
    let who = state
        .authorizer
        .session_of(credentials, chrono::Utc::now())
        .await;
    match who {
        Some(email) => page(
            StatusCode::OK,
            "Signed in",
            &format!("You are signed in as {email}."),
            Some(("Sign out", "/auth/logout")),
        ),
        None => page(
            StatusCode::OK,
            "Not signed in",
            "You are not signed in.",
            Some(("Sign in", "/auth/login")),
        ),
    }
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The session and device cookies: `Path=/`, the configured `Domain` (SSO across
/// subdomains), `Secure`, `HttpOnly`, `SameSite`. A max age of 0 deletes the cookie.
fn build_cookie(
    config: &Config,
    name: String,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, value)
        .path("/")
        .secure(config.cookie.secure)
        .http_only(true)
        .same_site(match config.cookie.same_site {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::None => CookieSameSite::None,
        })
        .max_age(time::Duration::seconds(max_age_secs))
        .finish();
    if let Some(domain) = &config.cookie.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

fn error_page(e: &LoginFailure, config: &Config) -> HttpResponse {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let retry = format!(
        "{}/auth/login",
        config.public_url.as_str().trim_end_matches('/')
    );
    page(
        status,
        "Sign-in failed",
        &e.user_message(),
        Some(("Try again", &retry)),
    )
}

/// A minimal HTML page; every dynamic part is escaped.
fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    let link = link
        .map(|(text, href)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(text)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Gatehouse</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}</style></head>\
         <body><h1>{title}</h1><p>{message}</p>{link}</body></html>\n",
        title = escape(title),
        message = escape(message),
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Content-Security-Policy", PAGE_CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secure: bool) -> Config {
        let yaml = format!(
            "public_url: https://auth.example.com\ncookie:\n  secure: {secure}\n  secret: 0123456789abcdef0123456789abcdef\n"
        );
        Config::from_yaml_and_env(&yaml, std::path::Path::new("t.yaml"), &[]).unwrap()
    }

    #[test]
    fn the_login_binding_cookie_is_host_bound_when_secure() {
        assert_eq!(login_cookie_name(&config(true)), "__Host-_gatehouse_login");
        assert_eq!(login_cookie_name(&config(false)), "_gatehouse_login");
        assert_eq!(device_cookie_name(&config(true)), "_gatehouse_device");
    }

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
