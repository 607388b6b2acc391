//! The whole browser journey through a real NGINX (`deploy/nginx/nginx.conf`): an anonymous
//! request to an app is sent to the login, through the independent IdP, back through the
//! callback (served by NGINX's `/auth/` location), and reaches the app with identity headers;
//! after logout the app is closed again.

use serde_json::Value;

use crate::harness::{start_echo_app, start_nginx, wait_http};
use crate::login::{start_stack_with, verify};
use crate::oidc_provider::Browser;

#[tokio::test]
async fn nginx_login_round_trip_reaches_the_app_with_identity_headers() {
    let mut stack = start_stack_with("15m", 1, true, serde_json::json!({})).await;
    let ingress = stack.ingress_port.unwrap();
    let app_port = start_echo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nginx = start_nginx(stack.port, app_port, dir.path(), ingress);
    wait_http(&format!("http://127.0.0.1:{ingress}/"), &mut nginx).await;
    drop(stack.starting.take());

    let browser = Browser::new();
    let app_url = format!("http://127.0.0.1:{ingress}/restaurant/menu?day=mon");
    // Anonymous: NGINX turns the 401 into a redirect to the login with `rd` = this URL.
    let first = browser.get(&app_url).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let login = first.location().unwrap();
    assert!(
        login.starts_with(&format!("http://127.0.0.1:{ingress}/auth/login?rd=")),
        "{login}"
    );
    let page = browser.follow(&login).await;
    let end = browser.sign_in_at_idp(page, "alice", "pw").await;
    assert_eq!(end.status, 200, "chain {:?}: {}", end.chain, end.body);
    assert_eq!(end.url, app_url, "back where the browser started");
    let echo: Value = serde_json::from_str(&end.body).expect("the app's echo");
    assert_eq!(echo["headers"]["x-auth-request-email"], "alice@example.com");
    assert_eq!(echo["headers"]["x-auth-request-groups"], "finance,staff");
    assert_eq!(echo["path"], "/restaurant/menu?day=mon");

    // Logout through NGINX, then the app is closed to this browser again.
    let out = browser
        .get(&format!("http://127.0.0.1:{ingress}/auth/logout"))
        .await;
    assert_eq!(out.status, 302);
    let again = browser.get(&app_url).await;
    assert_eq!(
        again.status, 302,
        "after logout the app needs a login again"
    );
    let cookie = browser.cookie_header(&app_url);
    assert!(
        cookie.as_deref().is_none_or(|c| !c.contains("_gatehouse=")),
        "the session cookie is cleared: {cookie:?}"
    );
    let r = verify(
        stack.port,
        "a.example.com",
        "/restaurant",
        cookie.as_deref(),
    )
    .await;
    assert_eq!(r.status(), 401);
}
