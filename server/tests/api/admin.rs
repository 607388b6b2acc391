//! The admin API and UI (docs/admin.md): every page and endpoint behind the
//! `gatehouse-admin` route's policy, CSRF on cookie changes, the strict CSP, and what each
//! endpoint answers — routes with sources and tests, stats, sessions, devices — on both
//! backends where the store is involved.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{BACKENDS, Backend, Person, TestApp, spawn_app};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'";

/// An administrator's browser: the session cookie and its CSRF token.
struct AdminBrowser<'a> {
    app: &'a TestApp,
    cookie: String,
    csrf: String,
}

impl<'a> AdminBrowser<'a> {
    async fn sign_in(app: &'a TestApp, email: &str) -> AdminBrowser<'a> {
        let value = app
            .login(&Person {
                email,
                groups: &["gatehouse-admins", "staff"],
                tenant: None,
            })
            .await;
        let cookie = app.cookie(&value);
        let me: Value = app
            .client
            .get(format!("{}/admin/api/csrf", app.admin))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["email"], email);
        assert!(me["logout_url"].as_str().unwrap().ends_with("/auth/logout"));
        AdminBrowser {
            app,
            cookie,
            csrf: me["token"].as_str().unwrap().to_string(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .app
            .client
            .get(format!("{}{path}", self.app.admin))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// A change, with the CSRF token as the UI sends it.
    async fn change(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.admin))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf);
        if let Some(body) = body {
            r = r.json(&body);
        }
        r.send().await.unwrap()
    }
}

async fn admin_actions(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    let sql = "SELECT actor, action, target FROM admin_actions ORDER BY id";
    if app.db.url.starts_with("postgres") {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    }
}

#[tokio::test]
async fn the_console_is_served_only_to_admins_with_a_strict_csp() {
    let app = spawn_app(Backend::Sqlite).await;
    // No session: a browser is sent to the login, which brings it back to the console.
    let r = app
        .client
        .get(format!("{}/admin/", app.admin))
        .header("Host", "admin.example.com:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "https://auth.example.com/auth/login?rd=https%3A%2F%2Fadmin.example.com%3A9090%2Fadmin%2F"
    );
    // Not only the page: every file of the console is guarded.
    for path in ["/admin/app.js", "/admin/style.css", "/admin/nope"] {
        let r = app
            .client
            .get(format!("{}{path}", app.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path}");
    }
    // Signed in without the admin group: a page naming the reason, escaped.
    let staff = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let r = app
        .client
        .get(format!("{}/admin/", app.admin))
        .header("Cookie", app.cookie(&staff))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not_an_admin"));
    let r = app
        .client
        .get(format!("{}/admin/api/sessions", app.admin))
        .header("Cookie", app.cookie(&staff))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_an_admin");

    // An admin gets the page and its files, each with the policy and its content type.
    let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
    for (path, content_type) in [
        ("/admin/", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/pages/audit.js", "text/javascript"),
        ("/admin/style.css", "text/css"),
        ("/admin/favicon.svg", "image/svg+xml"),
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.admin))
            .header("Cookie", &admin.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {:?}",
            h["content-type"]
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with(CSP), "{csp}");
        for part in [
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let r = app
        .client
        .get(format!("{}/admin", app.admin))
        .header("Cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/admin/");
    let r = app
        .client
        .get(format!("{}/admin/../admin/nope.js", app.admin))
        .header("Cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .get(format!("{}/admin/api/nope", app.admin))
        .header("Cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "no_such_endpoint"
    );
}

#[tokio::test]
async fn routes_show_engine_source_and_test_results() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
    let r = admin.get("/admin/api/routes").await;
    let route = |name: &str| {
        r["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {r}"))
            .clone()
    };
    let restaurant = route("restaurant");
    assert_eq!(restaurant["engine"], "rego");
    assert_eq!(restaurant["path"], "/restaurant");
    assert_eq!(restaurant["host"], Value::Null);
    assert_eq!(restaurant["package"], "routes.restaurant");
    assert_eq!(restaurant["sources"][0]["path"], "restaurant.rego");
    assert!(
        restaurant["sources"][0]["text"]
            .as_str()
            .unwrap()
            .contains("package routes.restaurant")
    );
    let tests = restaurant["tests"].as_array().unwrap();
    assert!(!tests.is_empty(), "{restaurant}");
    assert!(tests.iter().all(|t| t["outcome"] == "pass"), "{restaurant}");
    assert!(
        tests.iter().all(|t| t["name"]
            .as_str()
            .unwrap()
            .starts_with("data.routes.restaurant_test.")),
        "{restaurant}"
    );
    let reports = route("reports");
    assert_eq!(reports["engine"], "cel");
    assert_eq!(
        reports["expression"],
        "'finance' in user.groups && device.managed"
    );
    assert_eq!(route("public-health")["engine"], "public");
    let tenant = route("tenant-apps");
    assert_eq!(tenant["host"], "{tenant}.apps.example.com");
    assert_eq!(tenant["path"], "/");
    let admin_route = route("gatehouse-admin");
    assert_eq!(admin_route["path"], Value::Null);
    assert_eq!(admin_route["sources"][0]["path"], "gatehouse/admin.rego");
    assert_eq!(r["tests"]["failed"], 0);
    assert!(
        r["tests"]["passed"].as_u64().unwrap() >= 6,
        "{}",
        r["tests"]
    );
    assert!(
        r["routes_yaml"]["text"]
            .as_str()
            .unwrap()
            .contains("name: gatehouse-admin")
    );
    let bundle = admin.get("/admin/api/bundle").await;
    assert_eq!(bundle["version"], r["version"]);
    assert_eq!(bundle["routes"], r["routes"].as_array().unwrap().len());
    assert_eq!(bundle["previous_version"], Value::Null);
}

/// Decisions counted in a stats answer (of one outcome, or all).
fn decisions(stats: &Value, decision: Option<&str>) -> i64 {
    stats["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| decision.is_none_or(|d| m["decision"] == d))
        .map(|m| m["count"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn stats_count_decisions_per_minute_and_the_most_denied() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
        let ann = app
            .login(&Person {
                email: "ann@example.com",
                groups: &["staff"],
                tenant: None,
            })
            .await;
        for _ in 0..3 {
            let r = app
                .verify_as("http://apps.example.com/marketing", &ann)
                .await;
            assert_eq!(r.status(), 403);
        }
        let r = app
            .verify_as("http://apps.example.com/restaurant/menu", &ann)
            .await;
        assert_eq!(r.status(), 200);
        let r = app
            .verify("http://apps.example.com/healthz")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The audit writer flushes in batches: wait until all five are counted.
        let started = std::time::Instant::now();
        let stats = loop {
            let stats = admin.get("/admin/api/stats?window=1h").await;
            if decisions(&stats, None) == 5 || started.elapsed() > Duration::from_secs(30) {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let count = |decision: &str| decisions(&stats, Some(decision));
        assert_eq!(count("deny"), 3, "{backend:?}: {stats}");
        assert_eq!(count("allow"), 1, "{backend:?}: {stats}");
        assert_eq!(count("public"), 1, "{backend:?}: {stats}");
        let minute = stats["per_minute"][0]["minute"].as_str().unwrap();
        assert!(
            minute.len() == 20 && minute.ends_with(":00Z"),
            "{backend:?}: {minute}"
        );
        assert_eq!(
            stats["top_denied_routes"],
            json!([{"name": "marketing", "count": 3}]),
            "{backend:?}"
        );
        assert_eq!(
            stats["top_denied_users"],
            json!([{"name": "ann@example.com", "count": 3}]),
            "{backend:?}"
        );
        assert_eq!(stats["audit"]["dropped"], 0);
        assert_eq!(stats["window_seconds"], 3600);
        let r = app
            .client
            .get(format!("{}/admin/api/stats?window=3d", app.admin))
            .header("Cookie", &admin.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{backend:?}");
    }
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_or_all_and_verify_refuses_them() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
        let ann = Person {
            email: "ann@example.com",
            groups: &["staff"],
            tenant: None,
        };
        let first = app.login(&ann).await;
        let second = app.login(&ann).await;
        let bob = app
            .login(&Person {
                email: "bob@example.com",
                groups: &["staff"],
                tenant: None,
            })
            .await;
        const ORDERS: &str = "http://apps.example.com/restaurant/orders";
        // Each session is in use (and cached) before it is revoked.
        for cookie in [&first, &second, &bob] {
            assert_eq!(app.verify_as(ORDERS, cookie).await.status(), 200);
        }
        let all = admin.get("/admin/api/sessions").await;
        assert_eq!(
            all["items"].as_array().unwrap().len(),
            4,
            "{backend:?}: {all}"
        );
        let anns = admin.get("/admin/api/sessions?email=ANN@example.com").await;
        let items = anns["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{backend:?}: {anns}");
        assert!(items.iter().all(|s| s["email"] == "ann@example.com"));
        assert!(items[0]["last_seen_at"].is_string() && items[0]["expires_at"].is_string());

        // Without the CSRF token a cookie session changes nothing.
        let id = items[0]["id"].as_str().unwrap().to_string();
        let r = app
            .client
            .delete(format!("{}/admin/api/sessions/{id}", app.admin))
            .header("Cookie", &admin.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{backend:?}");
        let r = admin
            .change(
                reqwest::Method::DELETE,
                &format!("/admin/api/sessions/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200, "{backend:?}");
        // Revoked at once, though verify had it cached.
        let statuses = [
            app.verify_as(ORDERS, &first).await.status().as_u16(),
            app.verify_as(ORDERS, &second).await.status().as_u16(),
        ];
        assert!(
            statuses.contains(&401) && statuses.contains(&200),
            "{backend:?}: {statuses:?}"
        );
        let r = admin
            .change(
                reqwest::Method::DELETE,
                &format!("/admin/api/sessions/{id}"),
                None,
            )
            .await;
        assert_eq!(
            r.status(),
            404,
            "{backend:?}: a revoked session is not live"
        );

        // All of a user's sessions.
        let r = admin
            .change(
                reqwest::Method::POST,
                "/admin/api/sessions/revoke",
                Some(json!({"email": "ann@example.com"})),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["revoked"], 1);
        assert_eq!(app.verify_as(ORDERS, &first).await.status(), 401);
        assert_eq!(app.verify_as(ORDERS, &second).await.status(), 401);
        assert_eq!(app.verify_as(ORDERS, &bob).await.status(), 200);
        let anns = admin.get("/admin/api/sessions?email=ann@example.com").await;
        assert!(anns["items"].as_array().unwrap().is_empty());

        let actions = admin_actions(&app).await;
        assert_eq!(
            actions,
            vec![
                (
                    "root@example.com".to_string(),
                    "session.revoke".to_string(),
                    Some(id.clone())
                ),
                (
                    "root@example.com".to_string(),
                    "session.revoke_user".to_string(),
                    Some("ann@example.com".to_string())
                ),
            ],
            "{backend:?}"
        );
        // The audit trail has them too, as admin events with the admin's address.
        let rows = app.wait_for_audit_rows(10, Duration::from_secs(30)).await;
        let revoked: Vec<_> = rows.iter().filter(|r| r.1 == "revoked").collect();
        assert_eq!(revoked.len(), 2, "{backend:?}: {rows:?}");
        assert!(
            revoked
                .iter()
                .all(|r| r.3.as_deref() == Some("root@example.com"))
        );
        let overview = admin.get("/admin/api/actions").await;
        assert_eq!(overview["items"][0]["action"], "session.revoke_user");
    }
}

#[tokio::test]
async fn a_device_change_reaches_its_sessions_at_once() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
        let fay = app
            .login(&Person {
                email: "fay@example.com",
                groups: &["finance"],
                tenant: None,
            })
            .await;
        app.attach_device("fay@example.com", false, "high").await;
        const REPORTS: &str = "http://apps.example.com/reports";
        assert_eq!(app.verify_as(REPORTS, &fay).await.status(), 403);
        let devices = admin.get("/admin/api/devices?email=fay@example.com").await;
        let items = devices["items"].as_array().unwrap();
        assert_eq!(
            items.len(),
            0,
            "{backend:?}: an ownerless device has no owner email"
        );
        let devices = admin.get("/admin/api/devices").await;
        let device = devices["items"][0].clone();
        assert_eq!(device["managed"], false, "{backend:?}: {devices}");
        assert_eq!(device["posture"], json!({}));
        let id = device["id"].as_str().unwrap();
        let path = format!("/admin/api/devices/{id}");

        for bad in [
            json!({}),
            json!({"trust": "total"}),
            json!({"posture": [1, 2]}),
            json!({"managed": "yes"}),
            json!({"owner": "me"}),
        ] {
            let r = admin
                .change(reqwest::Method::PATCH, &path, Some(bad.clone()))
                .await;
            assert_eq!(r.status(), 400, "{backend:?}: {bad}");
        }
        let r = admin
            .change(
                reqwest::Method::PATCH,
                "/admin/api/devices/no-such-device",
                Some(json!({"managed": true})),
            )
            .await;
        assert_eq!(r.status(), 404);

        let posture = json!({"disk_encrypted": true, "os": "debian 13"});
        let r = admin
            .change(
                reqwest::Method::PATCH,
                &path,
                Some(json!({"managed": true, "trust": "medium", "posture": posture})),
            )
            .await;
        assert_eq!(r.status(), 200, "{backend:?}");
        // The session's cached input document is dropped: the next verify sees the device.
        assert_eq!(
            app.verify_as(REPORTS, &fay).await.status(),
            200,
            "{backend:?}"
        );
        let devices = admin.get("/admin/api/devices").await;
        let device = &devices["items"][0];
        assert_eq!(device["managed"], true);
        assert_eq!(device["trust"], "medium");
        assert_eq!(device["posture"], posture);
        assert_eq!(
            admin_actions(&app).await,
            vec![(
                "root@example.com".to_string(),
                "device.update".to_string(),
                Some(id.to_string())
            )]
        );
    }
}

#[tokio::test]
async fn changes_need_an_admin_and_a_csrf_token_with_a_cookie() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
    let staff = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let revoke = format!("{}/admin/api/sessions/revoke", app.admin);
    let body = json!({"email": "sam@example.com"});
    // Anonymous, a non-admin (bearer), an admin cookie without or with a wrong token.
    let anonymous = app.client.post(&revoke).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let r = app
        .client
        .post(&revoke)
        .bearer_auth(&staff)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .post(&revoke)
        .header("Cookie", &admin.cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "csrf_token_missing_or_wrong"
    );
    let r = app
        .client
        .post(&revoke)
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", "forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Malformed bodies answer in the API's JSON shape.
    let r = app
        .client
        .post(&revoke)
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    assert!(admin_actions(&app).await.is_empty());
    // Sam's session survived all of it.
    assert_eq!(
        app.verify_as("http://apps.example.com/restaurant/orders", &staff)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn audit_search_pages_filters_and_exports() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
        let ann = app
            .login(&Person {
                email: "ann@example.com",
                groups: &["staff"],
                tenant: None,
            })
            .await;
        // 60 denials of ann, one of them with a path that needs CSV quoting.
        for i in 0..59 {
            let url = format!("http://apps.example.com/marketing/{i}");
            assert_eq!(app.verify_as(&url, &ann).await.status(), 403);
        }
        let hostile = "http://apps.example.com/marketing/=cmd|calc,x";
        assert_eq!(app.verify_as(hostile, &ann).await.status(), 403);
        assert_eq!(
            app.verify_as("http://apps.example.com/restaurant/a", &ann)
                .await
                .status(),
            200
        );
        app.wait_for_audit_rows(61, Duration::from_secs(30)).await;

        let search = "/admin/api/audit?user=ann@example.com&decision=deny&since=1h";
        let first = admin.get(search).await;
        let items = first["items"].as_array().unwrap();
        assert_eq!(items.len(), 50, "{backend:?}: one page");
        assert!(items.iter().all(|r| r["decision"] == "deny"));
        assert!(items[0]["id"].is_i64());
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = admin.get(&format!("{search}&cursor={cursor}")).await;
        assert_eq!(second["items"].as_array().unwrap().len(), 10, "{backend:?}");
        assert_eq!(second["next_cursor"], Value::Null);
        let allowed = admin.get("/admin/api/audit?route=restaurant").await;
        assert_eq!(allowed["items"].as_array().unwrap().len(), 1);
        let none = admin
            .get("/admin/api/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z")
            .await;
        assert!(none["items"].as_array().unwrap().is_empty());

        // Exports hold every matching record, not a page.
        let csv = app
            .client
            .get(format!("{}{search}&format=csv", app.admin))
            .header("Cookie", &admin.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), 200);
        assert!(
            csv.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("gatehouse-audit.csv")
        );
        let csv = csv.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 61, "{backend:?}: header + 60");
        assert!(lines[0].starts_with("id,time,request_id,kind,email"));
        let quoted = lines.iter().find(|l| l.contains("cmd|calc")).unwrap();
        assert!(quoted.contains(",\"/marketing/=cmd|calc,x\","), "{quoted}");
        let jsonl = app
            .client
            .get(format!("{}{search}&format=jsonl", app.admin))
            .header("Cookie", &admin.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let records: Vec<Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 60);
        assert!(records.iter().all(|r| r["email"] == "ann@example.com"));

        for bad in ["cursor=nonsense", "format=xml", "since=yesterday-ish"] {
            let r = app
                .client
                .get(format!("{}/admin/api/audit?{bad}", app.admin))
                .header("Cookie", &admin.cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
    }
}

async fn decide(admin: &AdminBrowser<'_>, body: Value) -> (u16, Value) {
    let r = admin
        .change(reqwest::Method::POST, "/admin/api/decide", Some(body))
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn the_playground_decides_as_verify_and_replays_audit_records() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
        let marketing = "https://apps.example.com/marketing/plan";
        let (status, d) = decide(
            &admin,
            json!({"url": marketing, "user": {"email": "erin@example.com", "groups": ["marketing"]}}),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {d}");
        assert_eq!(d["answer"]["outcome"], "allow");
        assert_eq!(d["answer"]["route"], "marketing");
        assert_eq!(
            d["answer"]["headers"]["X-Auth-Request-Email"],
            "erin@example.com"
        );
        let (_, d) = decide(
            &admin,
            json!({"url": marketing, "user": {"email": "erin@example.com", "groups": ["staff"]}}),
        )
        .await;
        assert_eq!(d["answer"]["outcome"], "deny");
        assert_eq!(d["answer"]["status"], 403);
        assert_eq!(d["answer"]["reason"], "not_in_marketing");
        let (_, d) = decide(&admin, json!({"url": marketing})).await;
        assert_eq!(d["answer"]["outcome"], "unauthenticated");
        let (status, _) = decide(&admin, json!({"url": marketing, "owner": "x"})).await;
        assert_eq!(status, 400);

        // Replay: ann was refused marketing; in the group now, the live bundle lets her in.
        let ann = Person {
            email: "ann@example.com",
            groups: &["staff"],
            tenant: None,
        };
        let cookie = app.login(&ann).await;
        assert_eq!(
            app.verify_as("http://apps.example.com/marketing/plan", &cookie)
                .await
                .status(),
            403
        );
        let rows = app.wait_for_audit_rows(1, Duration::from_secs(30)).await;
        assert_eq!(
            rows.len(),
            1,
            "{backend:?}: the playground's decisions are not audited"
        );
        let page = admin.get("/admin/api/audit?user=ann@example.com").await;
        let id = page["items"][0]["id"].as_i64().unwrap();
        app.login(&Person {
            groups: &["staff", "marketing"],
            ..ann
        })
        .await;
        let (status, d) = decide(&admin, json!({"audit_id": id})).await;
        assert_eq!(status, 200, "{backend:?}: {d}");
        assert_eq!(d["replayed"]["decision"], "deny");
        assert_eq!(d["answer"]["outcome"], "allow", "{backend:?}: {d}");
        assert_eq!(
            d["described"]["url"],
            "https://apps.example.com/marketing/plan"
        );
        assert_eq!(
            d["described"]["user"]["groups"],
            json!(["marketing", "staff"])
        );
        let (status, _) = decide(&admin, json!({"audit_id": id + 1000})).await;
        assert_eq!(status, 404);
        // A decision, not a change: nothing in admin_actions.
        assert!(admin_actions(&app).await.is_empty());
    }
}

/// `POST /admin/api/impact{query}` with `body` (a `.tar.gz`, or nothing for the disk).
async fn post_impact(admin: &AdminBrowser<'_>, query: &str, body: Vec<u8>) -> (u16, Value) {
    let r = admin
        .app
        .client
        .post(format!("{}/admin/api/impact{query}", admin.app.admin))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", &admin.csrf)
        .header("Content-Type", "application/gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json::<Value>().await.unwrap())
}

/// A `.tar.gz` of `dir` made with the system's `tar`, as an operator would.
fn tar_gz(dir: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .arg("-czf")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .arg(".")
        .output()
        .expect("tar (apt-get install -y tar)");
    assert!(out.status.success());
    out.stdout
}

#[tokio::test]
async fn the_impact_preview_lists_the_audited_decisions_a_bundle_would_change() {
    let live = tempfile::tempdir().unwrap();
    crate::reload::copy_dir(&crate::helpers::example_policies(), live.path());
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions::with_policies(
        Backend::Sqlite,
        live.path(),
    ))
    .await;
    let admin = AdminBrowser::sign_in(&app, "root@example.com").await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let bob = app
        .login(&Person {
            email: "bob@example.com",
            groups: &["marketing"],
            tenant: None,
        })
        .await;
    for (cookie, url, want) in [
        (&ann, "http://apps.example.com/marketing/a", 403),
        (&ann, "http://apps.example.com/marketing/b", 403),
        (&ann, "http://apps.example.com/restaurant/menu", 200),
        (&bob, "http://apps.example.com/marketing/a", 200),
    ] {
        assert_eq!(app.verify_as(url, cookie).await.status(), want, "{url}");
    }
    app.wait_for_audit_rows(4, Duration::from_secs(30)).await;

    // The files on disk are the live bundle: nothing changes.
    let (status, r) = post_impact(&admin, "?since=1h", Vec::new()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["evaluated"], 4, "{r}");
    assert_eq!(r["changed"], 0);
    assert_eq!(r["candidate_version"], r["baseline_version"]);

    // A candidate letting staff into marketing changes ann's two denials, nothing else.
    let candidate = tempfile::tempdir().unwrap();
    crate::reload::copy_dir(live.path(), candidate.path());
    std::fs::write(
        candidate.path().join("marketing.rego"),
        "package routes.marketing\n\nimport rego.v1\n\ndefault allow := false\n\nallow if \"marketing\" in input.user.groups\n\nallow if \"staff\" in input.user.groups\n",
    )
    .unwrap();
    std::fs::remove_file(candidate.path().join("marketing_test.rego")).unwrap();
    let (status, r) = post_impact(&admin, "?since=1h&limit=100", tar_gz(candidate.path())).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["changed"], 2, "{r}");
    assert_eq!(r["truncated"], false);
    assert_eq!(r["routes"].as_array().unwrap().len(), 1);
    assert_eq!(r["routes"][0]["route"], "marketing");
    for c in r["routes"][0]["changes"].as_array().unwrap() {
        assert_eq!(c["email"], "ann@example.com");
        assert_eq!(c["audited"]["outcome"], "deny");
        assert_eq!(c["before"]["outcome"], "deny");
        assert_eq!(c["after"]["outcome"], "allow");
        assert_eq!(c["after"]["status"], 200);
    }
    let (_, r) = post_impact(&admin, "?since=1h&limit=1", tar_gz(candidate.path())).await;
    assert_eq!(r["evaluated"], 1);
    assert_eq!(r["truncated"], true);

    // A candidate that does not build is refused with its position, like a reload.
    let broken = tempfile::tempdir().unwrap();
    crate::reload::copy_dir(live.path(), broken.path());
    std::fs::write(
        broken.path().join("marketing.rego"),
        "package routes.marketing\nallow if {\n",
    )
    .unwrap();
    let (status, r) = post_impact(&admin, "", tar_gz(broken.path())).await;
    assert_eq!(status, 422, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("upload/marketing.rego:"),
        "{r}"
    );
    let (status, r) = post_impact(&admin, "", b"not a tarball".to_vec()).await;
    assert_eq!(status, 422, "{r}");
    let (status, _) = post_impact(&admin, "?since=90d", Vec::new()).await;
    assert_eq!(status, 400);

    // Activated on disk, the last activation's impact is the same change.
    let (status, _) = post_impact(&admin, "?against=previous", Vec::new()).await;
    assert_eq!(status, 404, "no bundle was replaced yet");
    std::fs::remove_file(live.path().join("marketing_test.rego")).unwrap();
    std::fs::copy(
        candidate.path().join("marketing.rego"),
        live.path().join("marketing.rego"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    while admin.get("/admin/api/bundle").await["previous_version"].is_null() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the edit was not activated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, r) = post_impact(&admin, "?against=previous&since=1h", Vec::new()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["changed"], 2, "{r}");
    assert_ne!(r["candidate_version"], r["baseline_version"]);
}
