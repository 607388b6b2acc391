//! Session lifecycle at verify time: expiry, revocation, idle timeout, store failure.

use std::time::Duration;

use crate::helpers::{AppOptions, Backend, Person, spawn_app_with};

fn short_cache(backend: Backend) -> AppOptions {
    let mut options = AppOptions::new(backend);
    options.extra_yaml = "session:\n  cache_ttl: 300ms\n  idle_timeout: 2s\n".into();
    options
}

const ANN: Person<'static> = Person {
    email: "ann@example.com",
    groups: &["kitchen"],
    tenant: None,
};

#[tokio::test]
async fn expired_session_gets_401() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app_with(short_cache(backend)).await;
        // Long enough that a loaded CI machine still answers the first verify in time.
        let cookie = app.login_for(&ANN, Duration::from_secs(3)).await;
        let url = "https://apps.example.com/restaurant";
        assert_eq!(app.verify_as(url, &cookie).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(3100)).await;
        // Cached or not, an expired session is refused.
        assert_eq!(
            app.verify_as(url, &cookie).await.status(),
            401,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn revoked_session_gets_401_once_the_cache_entry_lapses() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app_with(short_cache(backend)).await;
        let cookie = app.login(&ANN).await;
        let other = app
            .login(&Person {
                email: "sam@example.com",
                groups: &["staff"],
                tenant: None,
            })
            .await;
        let url = "https://apps.example.com/restaurant";
        assert_eq!(app.verify_as(url, &cookie).await.status(), 200);
        let revoked = app
            .store
            .revoke_sessions_by_email("ANN@example.com", "test", chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(revoked.len(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            app.verify_as(url, &cookie).await.status(),
            401,
            "{backend:?}"
        );
        // Other users are untouched.
        assert_eq!(app.verify_as(url, &other).await.status(), 200);
    }
}

#[tokio::test]
async fn idle_session_gets_401_and_activity_keeps_it_alive() {
    let app = spawn_app_with(short_cache(Backend::Postgres)).await;
    let active = app.login(&ANN).await;
    let idle = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let url = "https://apps.example.com/restaurant";
    for _ in 0..4 {
        assert_eq!(app.verify_as(url, &active).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    // 4 s without a request is past the 2 s idle timeout.
    assert_eq!(app.verify_as(url, &idle).await.status(), 401);
    assert_eq!(app.verify_as(url, &active).await.status(), 200);
}

#[tokio::test]
async fn store_failure_fails_closed_with_500() {
    let app = spawn_app_with(short_cache(Backend::Postgres)).await;
    let cookie = app.login(&ANN).await;
    app.store.close().await;
    // Make the database disappear under the running service.
    crate::helpers::drop_database(&app.db.url).await;
    let response = app
        .verify_as("https://apps.example.com/restaurant", &cookie)
        .await;
    assert_eq!(response.status(), 500);
    assert!(!response.headers().contains_key("X-Auth-Request-User"));
    // Public routes need no store and keep answering.
    assert_eq!(
        app.verify("https://apps.example.com/healthz")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// docs/security.md: bearer values are signed like cookies; the raw token alone (which names a
/// live session in the store) is refused before any store lookup.
#[tokio::test]
async fn an_unsigned_bearer_token_is_refused_even_when_it_names_a_live_session() {
    let app = spawn_app_with(short_cache(Backend::Sqlite)).await;
    let signed = app.login(&ANN).await;
    let url = "https://apps.example.com/restaurant";
    let bearer = |value: &str| {
        let value = value.to_string();
        let request = app.verify(url).bearer_auth(value);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(bearer(&signed).await, 200);
    // The token part of the signed value, without its signature.
    let (raw, signature) = signed.split_once('.').unwrap();
    assert_eq!(bearer(raw).await, 401);
    // Another token's signature does not do either.
    let other = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let (_, other_signature) = other.split_once('.').unwrap();
    assert_ne!(signature, other_signature);
    assert_eq!(bearer(&format!("{raw}.{other_signature}")).await, 401);
}

/// Junk cookies with our name (tossed in from a sibling subdomain) are refused by their
/// signature and do not use up the lookups: the real cookie after them still works.
#[tokio::test]
async fn junk_cookies_before_the_real_one_do_not_lock_the_user_out() {
    let app = spawn_app_with(short_cache(Backend::Sqlite)).await;
    let real = app.login(&ANN).await;
    let url = "https://apps.example.com/restaurant";
    // Well-formed but unsigned, forged, and plain garbage values.
    let (token, _) = real.split_once('.').unwrap();
    let mut junk: Vec<String> = (0..10)
        .map(|i| format!("{token}.{i}{}", "A".repeat(42)))
        .collect();
    junk.push("garbage".into());
    junk.push(token.to_string());
    let mut cookie_header: Vec<String> = junk.iter().map(|v| app.cookie(v)).collect();
    cookie_header.push(app.cookie(&real));
    let response = app
        .verify(url)
        .header("Cookie", cookie_header.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["X-Auth-Request-Email"],
        "ann@example.com"
    );
    // Junk alone is still a 401.
    let response = app
        .verify(url)
        .header("Cookie", cookie_header[..junk.len()].join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// The admin API skips the CSRF check only for a session that came from the bearer
/// header; a junk `Authorization: Bearer` next to the cookie does not switch it off.
#[tokio::test]
async fn admin_csrf_is_skipped_only_when_the_bearer_authenticated() {
    let app = spawn_app_with(short_cache(Backend::Sqlite)).await;
    let root = app
        .login(&Person {
            email: "root@example.com",
            groups: &["gatehouse-admins"],
            tenant: None,
        })
        .await;
    let url = format!("{}/admin/api/reload", app.admin);
    let post = || app.client.post(&url);
    // Cookie session + junk bearer + no CSRF token: refused.
    let r = post()
        .header("Cookie", app.cookie(&root))
        .header("Authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "csrf_token_missing_or_wrong");
    // A well-formed bearer of no live session next to the cookie: the same.
    let (token, _) = root.split_once('.').unwrap();
    let r = post()
        .header("Cookie", app.cookie(&root))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A valid bearer alone needs no CSRF token.
    let r = post().bearer_auth(&root).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The cookie with its CSRF token is allowed, junk bearer or not.
    let csrf: serde_json::Value = app
        .client
        .get(format!("{}/admin/api/csrf", app.admin))
        .header("Cookie", app.cookie(&root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = csrf["token"].as_str().unwrap().to_string();
    for junk in [None, Some("Bearer x")] {
        let mut request = post()
            .header("Cookie", app.cookie(&root))
            .header("X-CSRF-Token", &csrf);
        if let Some(junk) = junk {
            request = request.header("Authorization", junk);
        }
        assert_eq!(request.send().await.unwrap().status(), 200, "{junk:?}");
    }
    // A junk bearer and no cookie: unauthenticated.
    let r = post()
        .header("Authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Runs one statement with text binds on the test's database, either backend.
async fn exec(url: &str, sql: &str, binds: &[&str]) {
    use sqlx::Connection;
    macro_rules! run {
        ($conn:ty) => {{
            let mut c = <$conn>::connect(url).await.unwrap();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(&mut c).await.unwrap();
        }};
    }
    if url.starts_with("postgres") {
        run!(sqlx::PgConnection)
    } else {
        run!(sqlx::SqliteConnection)
    }
}

/// Rows of one text-only query, either backend.
async fn texts(url: &str, sql: &str, bind: &str) -> Vec<Vec<String>> {
    use sqlx::{Connection, Row};
    macro_rules! run {
        ($conn:ty) => {{
            let mut c = <$conn>::connect(url).await.unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(bind)
                .fetch_all(&mut c)
                .await
                .unwrap();
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<String, _>(i)).collect())
                .collect()
        }};
    }
    if url.starts_with("postgres") {
        run!(sqlx::PgConnection)
    } else {
        run!(sqlx::SqliteConnection)
    }
}

/// `Store::find_session` loads a session, its user, memberships and device in one statement
/// (JSON aggregates, different per backend); it must return exactly what plain per-table
/// queries return: groups of both sources once each and sorted, roles, tenants with roles,
/// the device, and empty lists (not null) for a user without memberships.
#[tokio::test]
async fn find_session_loads_the_same_user_as_the_separate_queries() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app_with(AppOptions::new(backend)).await;
        let url = app.db.url.clone();
        app.login(&Person {
            email: "ann@example.com",
            groups: &["kitchen", "admins", "zeta"],
            tenant: Some("acme"),
        })
        .await;
        app.login(&Person {
            email: "sam@example.com",
            groups: &[],
            tenant: None,
        })
        .await;
        let ann = texts(
            &url,
            "SELECT id FROM users WHERE email = $1",
            "ann@example.com",
        )
        .await[0][0]
            .clone();
        let now = chrono::Utc::now();
        // The same group from the IdP as from the store, a second tenant and two roles.
        app.store
            .set_user_groups(
                &ann,
                gatehouse::store::GroupSource::Idp,
                &["kitchen".into(), "beta".into()],
            )
            .await
            .unwrap();
        app.store
            .add_tenant_member("zeta-corp", &ann, "owner", now)
            .await
            .unwrap();
        for role in ["writer", "auditor"] {
            exec(
                &url,
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)",
                &[&ann, role],
            )
            .await;
        }
        app.attach_device("ann@example.com", true, "high").await;

        for email in ["ann@example.com", "sam@example.com"] {
            let session = texts(
                &url,
                "SELECT s.token_hash, s.user_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1",
                email,
            )
            .await;
            let (hash, user_id) = (&session[0][0], &session[0][1]);
            let record = app.store.find_session(hash).await.unwrap().unwrap();
            let column = |rows: Vec<Vec<String>>| -> Vec<String> {
                rows.into_iter().map(|r| r[0].clone()).collect()
            };
            let groups = column(
                texts(
                    &url,
                    "SELECT DISTINCT group_name FROM user_groups WHERE user_id = $1 ORDER BY group_name",
                    user_id,
                )
                .await,
            );
            let roles = column(
                texts(
                    &url,
                    "SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role",
                    user_id,
                )
                .await,
            );
            let tenants: Vec<(String, String)> = texts(
                &url,
                "SELECT tenant_id, role FROM tenant_members WHERE user_id = $1 ORDER BY tenant_id",
                user_id,
            )
            .await
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
            assert_eq!(record.user.id, *user_id, "{backend:?}");
            assert_eq!(record.user.email, email, "{backend:?}");
            assert_eq!(record.groups, groups, "{backend:?} {email}");
            assert_eq!(record.roles, roles, "{backend:?} {email}");
            assert_eq!(record.tenants, tenants, "{backend:?} {email}");
            if email == "ann@example.com" {
                assert_eq!(groups, ["admins", "beta", "kitchen", "zeta"]);
                assert_eq!(roles, ["auditor", "writer"]);
                assert_eq!(tenants.len(), 2);
                let device = record.device.expect("ann's session has a device");
                assert!(device.registered && device.managed, "{backend:?}");
                assert_eq!(device.trust, "high");
                assert_eq!(Some(device.id), record.session.device_id);
            } else {
                assert!(groups.is_empty() && roles.is_empty() && tenants.is_empty());
                assert!(record.device.is_none(), "{backend:?}");
            }
        }
        assert!(
            app.store
                .find_session("no-such-token-hash")
                .await
                .unwrap()
                .is_none()
        );
    }
}
