//! Every SQL query in docs/audit.md runs against a Postgres audit table filled by real
//! verify calls, and finds what it is meant to find.

use std::time::Duration;

use sqlx::{Connection, Row};

use crate::helpers::{Backend, Person, spawn_app};

/// (name, sql) of each `<!-- sql: name -->` block.
fn cookbook() -> Vec<(String, String)> {
    let text = include_str!("../../../docs/audit.md");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .strip_prefix("<!-- sql: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let start = i + 2;
        assert!(
            lines[i + 1].starts_with("```sql"),
            "{name}: a ```sql block must follow the marker"
        );
        let end = start
            + lines[start..]
                .iter()
                .position(|l| l.starts_with("```"))
                .expect("closing fence");
        out.push((name.to_string(), lines[start..end].join("\n")));
    }
    out
}

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

    let queries = cookbook();
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
        let all = app.store.query_audit(&filter(None, 3600)).await.unwrap();
        assert_eq!(all.len(), 2, "{backend:?}: {all:?}");
        let denied = app
            .store
            .query_audit(&filter(Some("deny"), 3600))
            .await
            .unwrap();
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].route.as_deref(), Some("marketing"));
        assert_eq!(denied[0].reason.as_deref(), Some("not_in_marketing"));
        let future = gatehouse::store::AuditFilter {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            limit: 10,
            ..Default::default()
        };
        assert!(app.store.query_audit(&future).await.unwrap().is_empty());
    }
}
