//! Every SQL query in docs/audit.md runs against a Postgres audit table filled by real
//! verify calls, and finds what it is meant to find.

use std::time::Duration;

use sqlx::{Connection, Row};

use crate::helpers::{Backend, Person, spawn_app};

#[tokio::test]
async fn every_cookbook_query_runs_and_finds_its_rows() {
    let app = spawn_app(Backend::Postgres).await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let allowed = app
        .verify_as("https://apps.example.com/restaurant/orders", &ann)
        .await;
    let request_id = allowed.headers()["X-Request-Id"]
        .to_str()
        .unwrap()
        .to_string();
    for url in [
        "https://apps.example.com/admin/users",
        "https://apps.example.com/marketing",
    ] {
        let r = app.verify_as(url, &ann).await;
        assert_eq!(r.status(), 403);
    }
    let anonymous = app
        .verify("https://apps.example.com/restaurant")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Login records come with the OIDC login; until then, rows of the shape it will write.
    let failed_login = gatehouse::audit::AuditRecord::event(
        "login",
        "error",
        Some("mallory@example.com"),
        Some("bad_state".into()),
    );
    app.store.insert_audit(&[failed_login]).await.unwrap();
    app.wait_for_audit_rows(5, Duration::from_secs(5)).await;

    let queries = crate::audit_scale::cookbook();
    assert!(queries.len() >= 8, "{queries:?}");
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    for (name, sql) in &queries {
        let sql = sql.replace(":'request_id'", "$1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&request_id)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{sql}"));
        assert!(!rows.is_empty(), "{name} found nothing:\n{sql}");
        if name == "denied-on-admin" {
            let path: String = rows[0].try_get("path").unwrap();
            assert_eq!(path, "/admin/users");
        }
        if name == "request-policy" {
            let decision: String = rows[0].try_get("decision").unwrap();
            assert_eq!(decision, "allow");
        }
    }
}

#[tokio::test]
async fn audit_query_cli_filters_on_both_backends() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app(backend).await;
        let ann = app
            .login(&Person {
                email: "ann@example.com",
                groups: &["kitchen"],
                tenant: None,
            })
            .await;
        for url in [
            "https://apps.example.com/restaurant",
            "https://apps.example.com/marketing",
        ] {
            app.verify_as(url, &ann).await;
        }
        app.verify("https://apps.example.com/healthz")
            .send()
            .await
            .unwrap();
        app.wait_for_audit_rows(3, Duration::from_secs(5)).await;
        let filter = |decision: Option<&str>, since_secs: i64| gatehouse::store::AuditFilter {
            email: Some("ANN@example.com".into()),
            decision: decision.map(str::to_string),
            since: Some(chrono::Utc::now() - chrono::Duration::seconds(since_secs)),
            limit: 100,
            ..Default::default()
        };
        let all = app
            .store
            .search_audit(&filter(None, 3600))
            .await
            .unwrap()
            .items;
        assert_eq!(all.len(), 2, "{backend:?}: {all:?}");
        let denied = app
            .store
            .search_audit(&filter(Some("deny"), 3600))
            .await
            .unwrap()
            .items;
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].route.as_deref(), Some("marketing"));
        assert_eq!(denied[0].reason.as_deref(), Some("not_in_marketing"));
        let future = gatehouse::store::AuditFilter {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            limit: 10,
            ..Default::default()
        };
        let nothing = app.store.search_audit(&future).await.unwrap();
        assert!(nothing.items.is_empty() && nothing.next_cursor.is_none());
    }
}

/// Keyset pagination: pages of 7 walk 40 rows (ties on `time` included) newest first, each
/// row exactly once, on both backends, with rows written between pages never shifting one.
#[tokio::test]
async fn audit_search_pages_by_keyset_without_gaps_or_repeats() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app(backend).await;
        let base = chrono::Utc::now() - chrono::Duration::minutes(10);
        // Four rows share each timestamp, so only the id tells them apart.
        let records: Vec<gatehouse::audit::AuditRecord> = (0..40)
            .map(|i| {
                let mut r = gatehouse::audit::AuditRecord::event(
                    "verify",
                    if i % 3 == 0 { "deny" } else { "allow" },
                    Some("pager@example.com"),
                    None,
                );
                r.time = base + chrono::Duration::milliseconds(i / 4);
                r.route = Some("restaurant".into());
                r
            })
            .collect();
        app.store.insert_audit(&records).await.unwrap();
        let mut filter = gatehouse::store::AuditFilter {
            email: Some("pager@example.com".into()),
            limit: 7,
            ..Default::default()
        };
        let mut seen: Vec<(String, i64)> = Vec::new();
        let mut pages = 0;
        loop {
            let page = app.store.search_audit(&filter).await.unwrap();
            pages += 1;
            seen.extend(page.items.iter().map(|r| (r.time.clone(), r.id)));
            if pages == 1 {
                // A newer row written after the first page does not shift the next ones.
                let mut late = records[0].clone();
                late.request_id = "written-between-pages".into();
                late.decision = "allow".into();
                late.time = chrono::Utc::now();
                app.store.insert_audit(&[late]).await.unwrap();
            }
            let Some(next) = page.next_cursor else {
                break;
            };
            let text = next.to_string();
            assert_eq!(text.parse::<gatehouse::store::AuditCursor>().unwrap(), next);
            filter.cursor = Some(next);
        }
        assert_eq!(pages, 6, "{backend:?}: 40 rows in pages of 7");
        assert_eq!(seen.len(), 40, "{backend:?}: {seen:?}");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(sorted, seen, "{backend:?}: newest first, each row once");
        // Filters and the cursor combine: the denials alone, two pages of 7.
        filter.decision = Some("deny".into());
        filter.cursor = None;
        let first = app.store.search_audit(&filter).await.unwrap();
        filter.cursor = first.next_cursor;
        let second = app.store.search_audit(&filter).await.unwrap();
        assert_eq!(first.items.len() + second.items.len(), 14, "{backend:?}");
        assert!(second.next_cursor.is_none());
        assert!(
            first
                .items
                .iter()
                .chain(&second.items)
                .all(|r| r.decision == "deny")
        );
    }
}

#[test]
fn a_malformed_audit_cursor_is_refused() {
    for bad in ["", "12", "x_1", "1_y", "1_2_3", "99999999999999999999_1"] {
        assert!(
            bad.parse::<gatehouse::store::AuditCursor>().is_err(),
            "{bad:?}"
        );
    }
    let ok: gatehouse::store::AuditCursor = "1764633600000000_42".parse().unwrap();
    assert_eq!(ok.id, 42);
    assert_eq!(ok.to_string(), "1764633600000000_42");
}
