//! `/admin/`: the admin web UI (docs/admin.md). Its files are plain HTML, CSS and JavaScript
//! modules from `admin-ui/`, embedded in the binary at build time (no build toolchain:
//! `cargo build` alone makes it), and served only to callers the `gatehouse-admin` route's
//! policy allows — every file, not just the page, so nothing of the console is shown to
//! anyone else. A browser without a session is sent to the login and comes back here.
//!
//! Every answer carries a strict Content-Security-Policy: scripts and styles only from
//! these files (no inline script or style, no `eval`), no plugins, no framing, no `<base>`.
//! The UI builds its DOM with `textContent`, never HTML from data, so a hostile value in a
//! user name or a policy file shows as text.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::admin_api::authorize;
use super::auth::escape;
use super::error::ApiError;
use crate::state::AppState;

/// The policy every admin answer carries (docs/security.md).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file: its name under `/admin/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../../../admin-ui/", $name)),
        }),*]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The UI's files (`admin-ui/`).
const ASSETS: &[Asset] = assets![
    ("index.html", HTML),
    ("style.css", CSS),
    ("favicon.svg", "image/svg+xml"),
    ("app.js", JS),
    ("api.js", JS),
    ("dom.js", JS),
    ("chart.js", JS),
    ("pages/overview.js", JS),
    ("pages/routes.js", JS),
    ("pages/playground.js", JS),
    ("pages/impact.js", JS),
    ("pages/audit.js", JS),
    ("pages/sessions.js", JS),
    ("pages/devices.js", JS),
];

/// `GET /admin` and `GET /admin/{file}`: a file of the UI, `index.html` for the root.
pub async fn asset(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(refusal) = authorize(&req, &state).await {
        return refused(&req, &state, &refusal);
    }
    let name = req
        .path()
        .strip_prefix("/admin")
        .unwrap_or("")
        .trim_start_matches('/');
    if req.path() == "/admin" {
        // Relative module paths resolve against `/admin/`.
        return HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, "/admin/"))
            .finish();
    }
    let name = if name.is_empty() { "index.html" } else { name };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, a.content_type))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(a.body),
        None => HttpResponse::NotFound()
            .insert_header((header::CONTENT_TYPE, HTML))
            .body(page(
                "Not found",
                "There is no such page in the admin console.",
            )),
    }
}

/// The answer to a browser the admin policy refused: the login for no session, a page
/// naming the reason for a refused one.
fn refused(req: &HttpRequest, state: &AppState, refusal: &ApiError) -> HttpResponse {
    match refusal {
        ApiError::Unauthenticated(_) => {
            let login = format!(
                "{}/auth/login?rd={}",
                state.config.public_url.as_str().trim_end_matches('/'),
                url::form_urlencoded::byte_serialize(return_url(req, state).as_bytes())
                    .collect::<String>()
            );
            HttpResponse::Found()
                .insert_header((header::LOCATION, login))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        ApiError::Forbidden(reason) => HttpResponse::Forbidden()
            .insert_header((header::CONTENT_TYPE, HTML))
            .body(page(
                "Not allowed",
                &format!(
                    "Your account may not use the Gatehouse admin console (reason: {reason}). \
                     Ask an administrator to add you to the group the gatehouse-admin route's \
                     policy requires."
                ),
            )),
        ApiError::BadRequest(_) => HttpResponse::BadRequest()
            .insert_header((header::CONTENT_TYPE, HTML))
            .body(page("Bad request", "The request was refused.")),
        _ => HttpResponse::InternalServerError()
            .insert_header((header::CONTENT_TYPE, HTML))
            .body(page(
                "Unavailable",
                "The admin console cannot decide who you are right now; try again shortly.",
            )),
    }
}

/// Where the login should bring the browser back: this console, on the host the browser
/// used, with the scheme of `public_url` (an admin listener behind a TLS ingress is reached
/// over https). The login validates it like any `rd` (docs/login.md), so a forged `Host`
/// cannot send anyone elsewhere.
fn return_url(req: &HttpRequest, state: &AppState) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    format!("{}://{host}/admin/", state.config.public_url.scheme())
}

/// A minimal page, `title` and `text` escaped. It links none of the console's files: those
/// are for administrators only, and the refused caller is not one.
fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Gatehouse</title>\
         </head><body><main><h1>{t}</h1><p>{x}</p></main></body></html>",
        t = escape(title),
        x = escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_pages_escape_what_they_show() {
        let html = page("Not allowed", "reason: <script>alert(1)</script> & \"x\"");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
    }

    #[test]
    fn every_file_the_page_loads_is_embedded() {
        // The modules import each other by relative path: each import must be served.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let base = a.name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|x| x.name == target),
                    "{} imports {spec} ({target}), which is not embedded",
                    a.name
                );
            }
        }
        let index = ASSETS.iter().find(|a| a.name == "index.html").unwrap();
        assert!(!index.body.contains("<script>"), "no inline script");
        assert!(!index.body.contains("style="), "no inline style");
    }
}
