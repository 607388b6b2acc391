//! The few HTML pages: login form, errors, signed out. Every value is escaped.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

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

const BANNER: &str = "DEVELOPMENT IDENTITY PROVIDER — NOT FOR PRODUCTION";

/// A page; `body` must already be escaped HTML.
pub fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · gatehouse dev-idp</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#222}}
.warn{{background:#b00020;color:#fff;padding:.5rem .75rem;font-weight:bold;border-radius:4px}}
label{{display:block;margin:.75rem 0 .25rem}} input{{width:100%;padding:.4rem;box-sizing:border-box}}
button{{margin-top:1rem;padding:.5rem 1rem}} .error{{color:#b00020}} code{{word-break:break-all}}
</style></head>
<body><p class="warn">{banner}</p>
<h1>{title}</h1>
{body}
</body></html>
"#,
        title = escape(title),
        banner = escape(BANNER),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(html)
}

pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    page(
        status,
        "Sign-in error",
        &format!(r#"<p class="error">{}</p>"#, escape(message)),
    )
}

/// The login form. `request` is the signed authorization request the form carries.
pub fn login_form(
    status: StatusCode,
    client_id: &str,
    request: &str,
    username: &str,
    error: Option<&str>,
) -> HttpResponse {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<p>Sign in to continue to <b>{client}</b>.</p>
{error}<form method="post" action="/login">
<input type="hidden" name="request" value="{request}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{username}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"#,
        client = escape(client_id),
        request = escape(request),
        username = escape(username),
    );
    page(status, "Sign in", &body)
}

pub fn signed_out(note: Option<&str>) -> HttpResponse {
    let note = note
        .map(|n| format!("<p>{}</p>", escape(n)))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Signed out",
        &format!("<p>You are signed out of the development identity provider.</p>{note}"),
    )
}

pub fn index(issuer: &str) -> HttpResponse {
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    page(
        StatusCode::OK,
        "gatehouse dev-idp",
        &format!(
            "<p>A development OpenID provider for trying Gatehouse. Issuer: <code>{}</code>.</p>\
             <p>Discovery: <a href=\"{d}\"><code>{d}</code></a></p>",
            escape(issuer),
            d = escape(&discovery),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }
}
