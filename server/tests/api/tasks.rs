//! Supervised background tasks (docs/operations.md, "Background tasks"): a task that dies
//! is logged, reported by `/readyz`, and restarted; the revocation listener and the audit
//! writer gate readiness while they are down. Real faults: the listener's Postgres backend
//! is terminated with `pg_terminate_backend`, the writer's run is aborted.

use std::path::Path;
use std::time::{Duration, Instant};

use actix_web::web;
use gatehouse::app::Application;
use gatehouse::config::Config;
use gatehouse::state::AppState;
use gatehouse::tasks::TaskState;
use sqlx::Connection;

use crate::helpers::{Backend, COOKIE_SECRET, Person, TestDatabase, example_policies};

const RESTAURANT: &str = "https://apps.example.com/restaurant";

/// The application as `spawn_app` starts it, keeping its state (for the task registry).
struct App {
    base: String,
    admin: String,
    state: web::Data<AppState>,
    client: reqwest::Client,
    db: TestDatabase,
    _spool: tempfile::TempDir,
}

async fn start(backend: Backend) -> App {
    let db = TestDatabase::create(backend).await;
    let spool = tempfile::tempdir().unwrap();
    // A long cache TTL: a revoked session can only stop working in time through the
    // revocation listener.
    let yaml = format!(
        "listen: 127.0.0.1:0\n\
         admin_listen: 127.0.0.1:0\n\
         public_url: https://auth.example.com\n\
         database_url: {}\n\
         policies_dir: {}\n\
         allowed_redirect_domains: [.example.com]\n\
         cookie:\n  secret: {COOKIE_SECRET}\n  domain: .example.com\n\
         session:\n  cache_ttl: 60s\n\
         audit:\n  flush_interval: 50ms\n  spool_dir: {}\n",
        db.url,
        example_policies().display(),
        spool.path().display(),
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("test.yaml"), &[]).unwrap();
    let app = Application::build(config)
        .await
        .expect("application starts");
    let base = format!("http://{}", app.public_addr());
    let admin = format!("http://{}", app.admin_addr());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    App {
        base,
        admin,
        state,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        _spool: spool,
    }
}

impl App {
    async fn login(&self, email: &str) -> String {
        let signer = gatehouse::session::token::CookieSigner::new(COOKIE_SECRET.as_bytes());
        let who = Person {
            email,
            groups: &["kitchen"],
            tenant: None,
        };
        let grant = gatehouse::session::SessionGrant {
            email: who.email.into(),
            name: None,
            username: None,
            store_groups: Some(who.groups.iter().map(|g| g.to_string()).collect()),
            tenant: None,
            ttl: Duration::from_secs(3600),
            amr: vec!["test".into()],
            ip: None,
            user_agent: None,
        };
        gatehouse::session::issue_session(&self.state.store, &signer, &grant, chrono::Utc::now())
            .await
            .unwrap()
            .cookie_value
    }

    async fn verify(&self, cookie: &str) -> u16 {
        self.client
            .get(format!("{}/auth/verify", self.base))
            .header("X-Original-URL", RESTAURANT)
            .header("X-Original-Method", "GET")
            .header(
                "Cookie",
                format!("{}={cookie}", self.state.config.cookie.name),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn readyz(&self) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(format!("{}/readyz", self.admin))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Polls `/readyz` until `done` holds; panics after `limit`.
    async fn readyz_until(
        &self,
        limit: Duration,
        done: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.readyz().await;
            if done(status, &body) {
                return body;
            }
            assert!(started.elapsed() < limit, "readyz stayed {status}: {body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_running(&self, task: &str) {
        let started = Instant::now();
        while self.state.tasks.status(task).map(|s| s.state) != Some(TaskState::Running) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{task}: {:?}",
                self.state.tasks.status(task)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn readyz_lists_every_background_task_and_sqlite_has_no_revocation_listener() {
    let pg = start(Backend::Postgres).await;
    pg.wait_running("revocation_listener").await;
    let (status, ready) = pg.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["reasons"], serde_json::json!([]));
    for task in [
        "audit_writer",
        "revocation_listener",
        "policy_watcher",
        "sighup_reloads",
        "audit_partitions",
        "login_state_purge",
    ] {
        assert_eq!(ready["tasks"][task]["state"], "running", "{task}: {ready}");
        assert_eq!(ready["tasks"][task]["restarts"], 0, "{task}: {ready}");
    }
    assert_eq!(ready["tasks"]["audit_writer"]["gates_readiness"], true);
    assert_eq!(
        ready["tasks"]["revocation_listener"]["gates_readiness"],
        true
    );
    assert_eq!(ready["tasks"]["policy_watcher"]["gates_readiness"], false);

    let sqlite = start(Backend::Sqlite).await;
    let (status, ready) = sqlite.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready["tasks"]["revocation_listener"].is_null(), "{ready}");
    assert_eq!(ready["tasks"]["audit_writer"]["state"], "running");
}

/// The listener's connection is killed from the database side: `/readyz` fails with the
/// reason while it is down, the supervisor restarts it, and a revocation made afterwards
/// still reaches this replica's cache (the session has a 60 s cache TTL here).
#[tokio::test]
async fn a_killed_revocation_listener_fails_readiness_until_restarted_and_revocations_still_arrive()
{
    let app = start(Backend::Postgres).await;
    app.wait_running("revocation_listener").await;
    let ann = app.login("ann@example.com").await;
    assert_eq!(app.verify(&ann).await, 200);

    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let terminated: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(terminated, vec![(true,)], "one listening backend");

    let down = app
        .readyz_until(Duration::from_secs(5), |status, _| status == 503)
        .await;
    assert_eq!(down["status"], "not_ready");
    let reason = down["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with(
            "revocation_listener is down: failed: revocation listener lost its connection"
        ),
        "{down}"
    );
    assert_eq!(down["tasks"]["revocation_listener"]["state"], "down");

    let up = app
        .readyz_until(Duration::from_secs(10), |status, _| status == 200)
        .await;
    assert_eq!(
        up["tasks"]["revocation_listener"]["state"], "running",
        "{up}"
    );
    assert_eq!(up["tasks"]["revocation_listener"]["restarts"], 1, "{up}");
    assert!(
        up["tasks"]["revocation_listener"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("lost its connection"),
        "{up}"
    );

    // Cached again after the restart (which cleared the cache), then revoked elsewhere.
    assert_eq!(app.verify(&ann).await, 200);
    let other_replica = gatehouse::store::Store::connect(&app.db.url).await.unwrap();
    other_replica
        .revoke_sessions_by_email("ann@example.com", "test", chrono::Utc::now())
        .await
        .unwrap();
    let revoked_at = Instant::now();
    while app.verify(&ann).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the restarted listener did not evict the revoked session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit writer's run is aborted: `/readyz` fails loudly, the supervisor restarts it
/// on the same queue and spool, and every decision made meanwhile is written.
#[tokio::test]
async fn an_aborted_audit_writer_fails_readiness_is_restarted_and_loses_no_record() {
    let app = start(Backend::Postgres).await;
    app.wait_running("revocation_listener").await;
    let ann = app.login("ann@example.com").await;
    assert!(app.state.tasks.abort("audit_writer"));
    for _ in 0..20 {
        assert_eq!(app.verify(&ann).await, 200);
    }
    let down = app
        .readyz_until(Duration::from_secs(5), |status, _| status == 503)
        .await;
    assert_eq!(
        down["reasons"],
        serde_json::json!(["audit_writer is down: aborted"]),
        "{down}"
    );
    let up = app
        .readyz_until(Duration::from_secs(10), |status, _| status == 200)
        .await;
    assert_eq!(up["tasks"]["audit_writer"]["restarts"], 1, "{up}");
    assert_eq!(up["tasks"]["audit_writer"]["last_exit"], "aborted");
    for _ in 0..5 {
        assert_eq!(app.verify(&ann).await, 200);
    }
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let started = Instant::now();
    loop {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM audit_events WHERE kind = 'verify'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if n == 25 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{n} of 25 verify records written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gatehouse::metrics::METRICS.audit_dropped.get(), 0);
}
