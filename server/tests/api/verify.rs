//! The decision cases (tests/cases/*.yaml) through HTTP verify, and the verify contract, on both backends.

use std::collections::BTreeMap;

use crate::cases::{Answer, Case, DecisionTarget, UserSpec, run_all};
use crate::helpers::{BACKENDS, Person, TestApp, spawn_app};

/// HTTP verify as a layer of the decision cases (tests/cases/runner.rs).
struct HttpVerify {
    app: TestApp,
    cookies: BTreeMap<String, String>,
}

impl DecisionTarget for HttpVerify {
    async fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) {
        self.cookies.extend(self.app.sign_in_all(users).await);
    }

    async fn ask(&mut self, case: &Case) -> Answer {
        let mut request = self.app.verify(&case.url);
        if let Some(user) = &case.user {
            request = request.header("Cookie", self.app.cookie(&self.cookies[user]));
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        }
    }
}

/// The decision cases that the pure core passes (core/tests/cases.rs), through HTTP verify
/// with real sessions and devices on each backend.
#[tokio::test]
async fn decision_cases_hold_through_http_verify_on_every_backend() {
    for backend in BACKENDS {
        let mut target = HttpVerify {
            app: spawn_app(backend).await,
            cookies: BTreeMap::new(),
        };
        let failures = run_all(&mut target).await;
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
    }
}

/// The same cases when no session keeps its documents built (`session.built_documents: 0`):
/// every decision reads them back from the session's compact copy, and must decide alike.
#[tokio::test]
async fn decision_cases_hold_when_documents_are_rebuilt_from_the_compact_copy() {
    for backend in BACKENDS {
        let mut options = crate::helpers::AppOptions::new(backend);
        options.extra_yaml = "session:\n  built_documents: 0\n".into();
        let mut target = HttpVerify {
            app: crate::helpers::spawn_app_with(options).await,
            cookies: BTreeMap::new(),
        };
        let failures = run_all(&mut target).await;
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
        let metrics = target.app.admin_text("/metrics").await;
        let rebuilt: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_session_documents_rebuilt_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the rebuilt documents counter");
        assert!(rebuilt > 0.0, "{backend:?}: documents were never rebuilt");
    }
}

#[tokio::test]
async fn oauth2_proxy_alias_answers_like_verify() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let response = app
        .client
        .get(format!("{}/oauth2/auth", app.base))
        .header("X-Original-URL", "https://apps.example.com/restaurant")
        .header("Cookie", app.cookie(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["X-Auth-Request-Email"],
        "ann@example.com"
    );
}

#[tokio::test]
async fn bearer_token_is_accepted_for_scripted_clients() {
    let app = spawn_app(crate::helpers::Backend::Postgres).await;
    let cookie = app
        .login(&Person {
            email: "bot@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let response = app
        .verify("https://apps.example.com/restaurant")
        .header("Authorization", format!("Bearer {cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["X-Auth-Request-Email"],
        "bot@example.com"
    );
}

#[tokio::test]
async fn redirect_mode_sends_browsers_to_login_and_scripts_get_401() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let browser = app
        .client
        .get(format!("{}/auth/verify?mode=redirect", app.base))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "apps.example.com")
        .header("X-Forwarded-Uri", "/restaurant")
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 302);
    assert_eq!(
        browser.headers()["Location"],
        "https://auth.example.com/auth/login?rd=https%3A%2F%2Fapps.example.com%2Frestaurant"
    );
    let script = app
        .client
        .get(format!("{}/auth/verify?mode=redirect", app.base))
        .header("X-Forwarded-Host", "apps.example.com")
        .header("X-Forwarded-Uri", "/restaurant")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 401);
}

#[tokio::test]
async fn admin_listener_reports_health_readiness_and_metrics() {
    let app = spawn_app(crate::helpers::Backend::Postgres).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app.admin_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"]["backend"], "postgres");
    assert_eq!(ready["bundle"]["version"].as_str().unwrap().len(), 16);
    app.verify("https://apps.example.com/healthz")
        .send()
        .await
        .unwrap();
    let metrics = app.admin_text("/metrics").await;
    assert!(
        metrics.contains("gatehouse_decisions_total{decision=\"public\",route=\"public-health\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_verify_duration_seconds_bucket"));
    assert!(metrics.contains("gatehouse_sessions_active"));
}

#[tokio::test]
async fn default_allow_authenticated_lets_any_session_through_unmatched_paths() {
    let dir = crate::helpers::bundle_dir(&[(
        "routes.yaml",
        "default: allow-authenticated\nroutes:\n  - name: health\n    path: /healthz\n    public: true\n",
    )]);
    let options =
        crate::helpers::AppOptions::with_policies(crate::helpers::Backend::Sqlite, dir.path());
    let app = crate::helpers::spawn_app_with(options).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let anonymous = app
        .verify("https://apps.example.com/anything")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let allowed = app
        .verify_as("https://apps.example.com/anything", &cookie)
        .await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["X-Auth-Request-Email"], "ann@example.com");
    assert_eq!(allowed.headers()["X-Auth-Request-Groups"], "kitchen");
}

#[tokio::test]
async fn case_insensitive_bundles_fold_path_case_before_matching() {
    let dir = crate::helpers::bundle_dir(&[(
        "routes.yaml",
        "case_insensitive_paths: true\nroutes:\n  - name: admin\n    path: /admin\n    cel: \"'admins' in user.groups\"\n  - name: open\n    path: /\n    cel: \"true\"\n",
    )]);
    let options =
        crate::helpers::AppOptions::with_policies(crate::helpers::Backend::Sqlite, dir.path());
    let app = crate::helpers::spawn_app_with(options).await;
    let cookie = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    // On an IIS-like upstream /ADMIN is /admin: it must meet the admin rule, not the open one.
    for path in ["/admin", "/ADMIN", "/Admin/users", "/%41DMIN"] {
        let r = app
            .verify_as(&format!("https://apps.example.com{path}"), &cookie)
            .await;
        assert_eq!(r.status(), 403, "{path}");
    }
    let open = app
        .verify_as("https://apps.example.com/Home", &cookie)
        .await;
    assert_eq!(open.status(), 200);
}

#[tokio::test]
async fn conflicting_policy_outputs_answer_500_never_an_allow_without_headers() {
    // Two complete `headers` rules with different values, both true for a user in groups
    // a and b: OPA's eval_conflict_error, so an error (500, audited `error`), not a 200 that
    // lost its headers.
    let dir = crate::helpers::bundle_dir(&[
        (
            "routes.yaml",
            "routes:\n  - name: conflict\n    path: /\n    policy: routes.conflict\n",
        ),
        (
            "conflict.rego",
            "package routes.conflict\n\ndefault allow := false\n\nallow if input.user\n\nheaders := {\"X-A\": \"1\"} if \"a\" in input.user.groups\n\nheaders := {\"X-A\": \"2\"} if \"b\" in input.user.groups\n",
        ),
    ]);
    let options =
        crate::helpers::AppOptions::with_policies(crate::helpers::Backend::Sqlite, dir.path());
    let app = crate::helpers::spawn_app_with(options).await;
    let one = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["a"],
            tenant: None,
        })
        .await;
    let both = app
        .login(&Person {
            email: "bob@example.com",
            groups: &["a", "b"],
            tenant: None,
        })
        .await;
    let allowed = app.verify_as("https://apps.example.com/x", &one).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["X-A"], "1");
    let conflict = app.verify_as("https://apps.example.com/x", &both).await;
    assert_eq!(conflict.status(), 500);
    assert!(conflict.headers().get("X-A").is_none());
    assert!(conflict.headers().get("X-Auth-Request-Email").is_none());
    let rows = app
        .wait_for_audit_rows(2, std::time::Duration::from_secs(5))
        .await;
    let decisions: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.1.as_str(), r.3.as_deref()))
        .collect();
    assert!(
        decisions.contains(&("error", Some("bob@example.com"))),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("allow", Some("ann@example.com"))),
        "{decisions:?}"
    );
}
