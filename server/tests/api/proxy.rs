//! The built-in proxy in front of an echo upstream: decisions as verify makes them, from the
//! request itself; what reaches the upstream (normalized path, identity headers, no
//! Gatehouse cookies, no client identity or forwarding headers); and the failure answers.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::helpers::{AppOptions, Backend, Person, TestApp, bundle_dir, spawn_app_with};

/// An upstream that answers with what it received, as JSON.
async fn start_echo() -> u16 {
    async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        HttpResponse::Ok()
            .insert_header(("X-Upstream", "echo"))
            .json(serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| App::new().default_service(web::to(echo)))
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    port
}

async fn proxied_app() -> (TestApp, tempfile::TempDir) {
    let echo = start_echo().await;
    let routes = format!(
        "default: deny\nroutes:\n  \
         - name: app\n    path: /app\n    cel: \"'staff' in user.groups\"\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: open\n    path: /open\n    public: true\n    upstream: http://127.0.0.1:{echo}\n  \
         - name: down\n    path: /down\n    public: true\n    upstream: http://127.0.0.1:1\n  \
         - name: nowhere\n    path: /nowhere\n    public: true\n"
    );
    let dir = bundle_dir(&[("routes.yaml", &routes)]);
    let mut options = AppOptions::with_policies(Backend::Sqlite, dir.path());
    options.extra_yaml = "proxy:\n  listen: 127.0.0.1:0\n".into();
    (spawn_app_with(options).await, dir)
}

const SAM: Person<'static> = Person {
    email: "sam@example.com",
    groups: &["staff"],
    tenant: None,
};

#[tokio::test]
async fn allowed_requests_reach_the_upstream_with_identity_and_without_our_cookies() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    let cookie = app.login(&SAM).await;
    let r = app
        .client
        .post(format!("{proxy}/app//orders/./7?x=1"))
        .header("Cookie", format!("theme=dark; _gatehouse={cookie}"))
        .header("X-Auth-Request-Email", "ceo@example.com")
        .header("X_Auth_Request_Groups", "admins")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Original-URL", "http://evil/open")
        .header("X-Client-Cert-Fingerprint", "sha256:00")
        .body("order=soup")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    assert!(r.headers().contains_key("x-request-id"));
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(
        echo["uri"], "/app/orders/7?x=1",
        "the normalized path is what is served"
    );
    assert_eq!(echo["body"], "order=soup");
    let h = &echo["headers"];
    assert_eq!(h["x-auth-request-email"], "sam@example.com");
    assert_eq!(h["x-auth-request-groups"], "staff");
    assert_eq!(
        h["cookie"], "theme=dark",
        "Gatehouse's cookie never reaches apps"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h.get("x-original-url").is_none());
    assert!(h.get("x-client-cert-fingerprint").is_none());
    assert!(h.get("x_auth_request_groups").is_none());
}

#[tokio::test]
async fn refusals_and_failures_are_answered_by_the_proxy() {
    let (app, _dir) = proxied_app().await;
    let proxy = app.proxy.clone().unwrap();
    // No session: a browser is sent to the login, a script gets 401. Forwarding headers
    // from a loopback ("trusted") client do not make it another request.
    let r = app
        .client
        .get(format!("{proxy}/app"))
        .header("Accept", "text/html")
        .header("X-Original-URL", "http://apps/open")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://auth.example.com/auth/login?rd=")
    );
    let r = app.client.get(format!("{proxy}/app")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Denied: 403 with the reason; unmatched: 403 no_route.
    let outsider = app
        .login(&Person {
            email: "olga@example.com",
            groups: &["guests"],
            tenant: None,
        })
        .await;
    let r = app
        .client
        .get(format!("{proxy}/app"))
        .header("Cookie", format!("_gatehouse={outsider}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .get(format!("{proxy}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-auth-request-reason"], "no_route");
    // Public routes pass without a session; a dead upstream is 502, a route without one too.
    let r = app
        .client
        .get(format!("{proxy}/open/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{proxy}/down"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = app
        .client
        .get(format!("{proxy}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // A path that normalizes onto another route is decided (and served) as that route.
    let r = app
        .client
        .get(format!("{proxy}/open/../app"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
