//! Hostile requests: forged identity headers, untrusted forwarding headers, mangled
//! cookies and URIs. Each gets 400/401/403 — never a panic, never an allow.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cases::UserSpec;
use crate::helpers::{AppOptions, Backend, Person, spawn_app, spawn_app_with};

#[tokio::test]
async fn forged_identity_headers_are_neither_trusted_nor_echoed() {
    let app = spawn_app(Backend::Sqlite).await;
    // Anonymous with forged identity: still 401, nothing echoed.
    let response = app
        .verify("https://apps.example.com/restaurant")
        .header("X-Auth-Request-User", "root@example.com")
        .header("X-Auth-Request-Email", "root@example.com")
        .header("X-Auth-Request-Groups", "kitchen,gatehouse-admins")
        .header("X_Auth_Request_User", "root@example.com")
        .header("X_Auth_Request_Groups", "kitchen")
        .header("Remote-User", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!response.headers().contains_key("X-Auth-Request-User"));
    assert!(!response.headers().contains_key("X-Auth-Request-Groups"));

    // Authenticated as marketing with forged kitchen groups: the store's groups decide.
    let cookie = app
        .login(&Person {
            email: "mia@example.com",
            groups: &["marketing"],
            tenant: None,
        })
        .await;
    let response = app
        .verify("https://apps.example.com/restaurant")
        .header("Cookie", app.cookie(&cookie))
        .header("X-Auth-Request-Groups", "kitchen")
        .header("X_Auth_Request_Groups", "kitchen")
        .header("X-Auth-Request-User", "ann@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Allowed answers carry our values only, once.
    let response = app
        .verify("https://apps.example.com/marketing")
        .header("Cookie", app.cookie(&cookie))
        .header("X-Auth-Request-Email", "ceo@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let emails: Vec<_> = response
        .headers()
        .get_all("X-Auth-Request-Email")
        .iter()
        .collect();
    assert_eq!(emails, vec!["mia@example.com"]);
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    // Loopback is not trusted here, so the test client is an untrusted peer.
    let mut options = AppOptions::new(Backend::Sqlite);
    options.extra_yaml = "trusted_proxies: [10.99.0.0/16]\n".into();
    let app = spawn_app_with(options).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    for (name, value) in [
        ("X-Original-URL", "https://apps.example.com/healthz"),
        ("X-Original-URI", "/healthz"),
        ("X-Forwarded-Uri", "/healthz"),
        ("X_Forwarded_Uri", "/healthz"),
    ] {
        // The request line is /auth/verify, which no route matches: default deny, even
        // though the forged header names a public route.
        let response = app
            .client
            .get(format!("{}/auth/verify", app.base))
            .header(name, value)
            .header("Cookie", app.cookie(&cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}");
        assert_eq!(
            response.headers()["X-Auth-Request-Reason"],
            "no_route",
            "{name}"
        );
    }
}

#[tokio::test]
async fn tampered_and_malformed_cookies_get_401() {
    let app = spawn_app(Backend::Postgres).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let (token, signature) = cookie.split_once('.').unwrap();
    let mut flipped = token.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'a' { b'b' } else { b'a' };
    let tampered_token = format!("{}.{signature}", String::from_utf8(flipped).unwrap());
    let long = "x".repeat(3000);
    for value in [
        tampered_token.as_str(),
        &format!("{token}.AAAA"),
        token,
        "",
        "garbage",
        "a.b.c",
        "%00%ff",
        long.as_str(),
    ] {
        let response = app
            .verify("https://apps.example.com/restaurant")
            .header("Cookie", app.cookie(value))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "cookie {value:?}");
    }
    // A tossed-in second cookie does not hide the valid one.
    let response = app
        .verify("https://apps.example.com/restaurant")
        .header(
            "Cookie",
            format!("{}; {}", app.cookie("forged.value"), app.cookie(&cookie)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[derive(Debug, Deserialize)]
struct HostileTable {
    users: BTreeMap<String, UserSpec>,
    cases: Vec<HostileCase>,
}

#[derive(Debug, Deserialize)]
struct HostileCase {
    name: String,
    #[serde(default)]
    user: Option<String>,
    headers: Vec<(String, String)>,
    status: u16,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    absent: Vec<String>,
}

/// The hostile-request table (hostile_requests.yaml): each row is sent to /auth/verify as an
/// ingress would pass it on, and must get exactly its status — never a 5xx, never an allow
/// it should not get.
#[tokio::test]
async fn hostile_request_table() {
    let table: HostileTable = serde_saphyr::from_str(include_str!("hostile_requests.yaml"))
        .expect("hostile_requests.yaml parses");
    assert!(table.cases.len() >= 30);
    let app = spawn_app(Backend::Sqlite).await;
    let cookies = app.sign_in_all(&table.users).await;
    let mut failures = Vec::new();
    for case in &table.cases {
        let mut request = app.client.get(format!("{}/auth/verify", app.base));
        if let Some(user) = &case.user {
            request = request.header("Cookie", app.cookie(&cookies[user]));
        }
        for (name, value) in &case.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status != case.status {
            failures.push(format!(
                "{}: status {status}, expected {}",
                case.name, case.status
            ));
            continue;
        }
        if let Some(reason) = &case.reason {
            let got = response
                .headers()
                .get("X-Auth-Request-Reason")
                .and_then(|v| v.to_str().ok());
            if got != Some(reason.as_str()) {
                failures.push(format!(
                    "{}: reason {got:?}, expected {reason:?}",
                    case.name
                ));
            }
        }
        for name in &case.absent {
            if response.headers().contains_key(name.as_str()) {
                failures.push(format!("{}: header {name} must be absent", case.name));
            }
        }
        if status == 400 && response.headers().contains_key("X-Auth-Request-User") {
            failures.push(format!("{}: a refusal carries an identity", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The service is still answering.
    let ok = app
        .verify_as("https://apps.example.com/restaurant", &cookies["ann"])
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn policy_evaluation_error_fails_closed_with_500() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        "routes:\n  - name: broken\n    path: /broken\n    policy: routes.broken\n  - name: loop\n    path: /loop\n    policy: routes.loop\n",
    )
    .unwrap();
    // A decision the service cannot send (a non-`X-` header) is an error, not an allow.
    std::fs::write(
        dir.path().join("broken.rego"),
        "package routes.broken\nallow := true\nheaders := {\"Location\": \"https://evil.example\"}\n",
    )
    .unwrap();
    // Enough work to exceed the instruction budget.
    std::fs::write(
        dir.path().join("loop.rego"),
        "package routes.loop\nallow if count([x | some a in numbers.range(1, 400); some b in numbers.range(1, 400); x := a * b]) > 0\n",
    )
    .unwrap();
    let mut options = AppOptions::new(Backend::Sqlite);
    options.policies = dir.path().to_path_buf();
    let app = spawn_app_with(options).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &[],
            tenant: None,
        })
        .await;
    for path in ["/broken", "/loop"] {
        let response = app
            .verify_as(&format!("https://apps.example.com{path}"), &cookie)
            .await;
        assert_eq!(response.status(), 500, "{path}");
        assert!(!response.headers().contains_key("X-Auth-Request-User"));
    }
}
