//! `spawn_app()`: the application as `main` builds it, on ephemeral ports, with its own
//! database. Postgres comes from `TEST_POSTGRES_URL` (default: the local trust-auth server).

use std::path::{Path, PathBuf};

use gatehouse::app::Application;
use gatehouse::config::Config;
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;
use sqlx::Connection;

pub const COOKIE_SECRET: &str = "test-cookie-secret-0123456789abcdef0123";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

/// A database that exists for one test: a Postgres database or a SQLite file in a temporary
/// directory, both removed when dropped.
pub struct TestDatabase {
    pub url: String,
    _pg: Option<crate::postgres::PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A database the test manages itself (dropped by its owner, not by us).
    pub fn external(url: String) -> TestDatabase {
        TestDatabase {
            url,
            _pg: None,
            _dir: None,
        }
    }
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => {
                let pg = crate::postgres::PgDatabase::create("gatehouse_test").await;
                TestDatabase {
                    url: pg.url.clone(),
                    _pg: Some(pg),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
                TestDatabase {
                    url,
                    _pg: None,
                    _dir: Some(dir),
                }
            }
        }
    }
}

/// Drops the Postgres database at `url` under a running service (its connections are
/// terminated): the store failing mid-flight.
pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap().to_string();
    let mut conn = sqlx::PgConnection::connect(&crate::postgres::admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

pub fn example_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub struct TestApp {
    pub base: String,
    pub admin: String,
    /// The built-in proxy, when the options configure `proxy`.
    pub proxy: Option<String>,
    /// The Envoy ext_authz gRPC endpoint, when the options configure `grpc_listen`.
    pub grpc: Option<String>,
    pub config: Config,
    pub store: Store,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    _spool: tempfile::TempDir,
}

/// No test may lose an audit record (`gatehouse_audit_dropped_total` stays 0). The counter
/// is process-wide, so this catches a drop in any test that ran before, too.
impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                gatehouse::metrics::METRICS.audit_dropped.get(),
                0,
                "an audit record was dropped"
            );
        }
    }
}

/// Options for [`spawn_app_with`].
pub struct AppOptions {
    pub backend: Backend,
    pub policies: PathBuf,
    pub extra_yaml: String,
    /// Lines added to the `audit:` section (two-space indented, e.g. `  batch_size: 10\n`).
    pub audit_yaml: String,
}

impl AppOptions {
    pub fn new(backend: Backend) -> AppOptions {
        AppOptions {
            backend,
            policies: example_policies(),
            extra_yaml: String::new(),
            audit_yaml: String::new(),
        }
    }
}

impl AppOptions {
    /// Options serving the bundle in `dir` instead of the example one.
    pub fn with_policies(backend: Backend, dir: &Path) -> AppOptions {
        AppOptions {
            policies: dir.to_path_buf(),
            ..AppOptions::new(backend)
        }
    }
}

/// A policy bundle of `(file, text)` pairs in a temporary directory (removed when dropped).
pub fn bundle_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions::new(backend)).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let db = TestDatabase::create(options.backend).await;
    spawn_app_on(options, db).await
}

/// Spawns the app on an existing database (e.g. a private Postgres a test can stop).
pub async fn spawn_app_on(options: AppOptions, db: TestDatabase) -> TestApp {
    let spool = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\n\
         admin_listen: 127.0.0.1:0\n\
         public_url: https://auth.example.com\n\
         database_url: {}\n\
         policies_dir: {}\n\
         allowed_redirect_domains: [.example.com]\n\
         cookie:\n  secret: {COOKIE_SECRET}\n  domain: .example.com\n\
         audit:\n  flush_interval: 50ms\n  spool_dir: {}\n{}\
         {}",
        db.url,
        options.policies.display(),
        spool.path().display(),
        options.audit_yaml,
        options.extra_yaml
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("test.yaml"), &[])
        .expect("test config is valid");
    let app = Application::build(config.clone())
        .await
        .expect("application starts");
    let base = format!("http://{}", app.public_addr());
    let admin = format!("http://{}", app.admin_addr());
    let proxy = app.proxy_addr().map(|a| format!("http://{a}"));
    let grpc = app.grpc_addr().map(|a| format!("http://{a}"));
    tokio::spawn(app.run_until_stopped());
    let store = Store::connect(&db.url).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        admin,
        proxy,
        grpc,
        config,
        store,
        client,
        db,
        _spool: spool,
    }
}

/// A user to create a session for.
pub struct Person<'a> {
    pub email: &'a str,
    pub groups: &'a [&'a str],
    pub tenant: Option<&'a str>,
}

impl TestApp {
    /// Signs in every user of a case file (tests/cases, hostile_requests.yaml), with the
    /// device each names; returns their cookie values by name.
    pub async fn sign_in_all(
        &self,
        users: &std::collections::BTreeMap<String, crate::cases::UserSpec>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut cookies = std::collections::BTreeMap::new();
        for (name, spec) in users {
            let user = &spec.user;
            let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
            // `session create` grants one tenant, as a member.
            let mut tenants = user.tenants.iter();
            let tenant = tenants.next().map(|(t, role)| {
                assert_eq!(role, "member", "{name}: the store's sessions grant members");
                t.as_str()
            });
            assert!(tenants.next().is_none(), "{name}: one tenant at most");
            let cookie = self
                .login(&Person {
                    email: &user.email,
                    groups: &groups,
                    tenant,
                })
                .await;
            if let Some(device) = &spec.device {
                let trust = device.trust.as_deref().unwrap_or("low");
                self.attach_device(&user.email, device.managed, trust).await;
            }
            cookies.insert(name.clone(), cookie);
        }
        cookies
    }

    /// Signs in fin@example.com (finance) and registers a managed, high-trust client
    /// certificate with `fingerprint` as fin's device; returns the session cookie value.
    pub async fn fin_with_certificate_device(&self, fingerprint: &str) -> String {
        let fin = self
            .login(&Person {
                email: "fin@example.com",
                groups: &["finance"],
                tenant: None,
            })
            .await;
        let normalized = gatehouse::session::device::normalize_fingerprint(fingerprint).unwrap();
        self.store
            .register_cert_device(
                &normalized,
                true,
                "high",
                Some("fin@example.com"),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        fin
    }

    /// Creates a session as `session create` does; returns the cookie value.
    pub async fn login(&self, who: &Person<'_>) -> String {
        self.login_for(who, std::time::Duration::from_secs(3600))
            .await
    }

    pub async fn login_for(&self, who: &Person<'_>, ttl: std::time::Duration) -> String {
        let signer = CookieSigner::new(COOKIE_SECRET.as_bytes());
        let grant = SessionGrant {
            email: who.email.into(),
            name: None,
            username: None,
            store_groups: Some(who.groups.iter().map(|g| g.to_string()).collect()),
            tenant: who.tenant.map(|t| (t.to_string(), "member".to_string())),
            ttl,
            amr: vec!["test".into()],
            ip: None,
            user_agent: None,
        };
        issue_session(&self.store, &signer, &grant, chrono::Utc::now())
            .await
            .unwrap()
            .cookie_value
    }

    /// Gives the user's sessions a registered device, `managed` or not, with `trust`, via
    /// SQL (the device API belongs to the login flow).
    pub async fn attach_device(&self, email: &str, managed: bool, trust: &str) {
        let id = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now();
        let insert = "INSERT INTO devices (id, registered, managed, trust, posture, created_at) VALUES ($1, $2, $3, $4, '{}', $5)";
        let link = "UPDATE sessions SET device_id = $1 WHERE user_id IN (SELECT id FROM users WHERE email = $2)";
        if self.db.url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
            sqlx::query(insert)
                .bind(&id)
                .bind(true)
                .bind(managed)
                .bind(trust)
                .bind(now)
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(link)
                .bind(&id)
                .bind(email)
                .execute(&mut c)
                .await
                .unwrap();
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.db.url).await.unwrap();
            sqlx::query(insert)
                .bind(&id)
                .bind(true)
                .bind(managed)
                .bind(trust)
                .bind(now)
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(link)
                .bind(&id)
                .bind(email)
                .execute(&mut c)
                .await
                .unwrap();
        }
    }

    /// Audit rows as (request_id, decision, route, email, policy_version), in insertion order.
    pub async fn audit_rows(
        &self,
    ) -> Vec<(
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    )> {
        let sql = "SELECT request_id, decision, route, email, policy_version FROM audit_events ORDER BY id";
        if self.db.url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.db.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        }
    }

    /// Waits until the audit table holds `n` rows (the writer flushes every 50 ms here).
    pub async fn wait_for_audit_rows(
        &self,
        n: usize,
        limit: std::time::Duration,
    ) -> Vec<(
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    )> {
        let started = std::time::Instant::now();
        loop {
            let rows = self.audit_rows().await;
            if rows.len() >= n || started.elapsed() > limit {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A verify call as NGINX makes it: `X-Original-URL` from a trusted peer (loopback).
    pub fn verify(&self, original_url: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}/auth/verify", self.base))
            .header("X-Original-URL", original_url)
            .header("X-Original-Method", "GET")
    }

    /// The admin listener's answer to `GET path` as text (`/metrics`).
    pub async fn admin_text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.admin);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The admin listener's answer to `GET path` as JSON (`/readyz`).
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.admin);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A verify call as NGINX makes it, with `cookie` as the session cookie.
    pub async fn verify_as(&self, original_url: &str, cookie: &str) -> reqwest::Response {
        self.verify(original_url)
            .header("Cookie", self.cookie(cookie))
            .send()
            .await
            .unwrap()
    }

    pub fn cookie(&self, value: &str) -> String {
        format!("{}={value}", self.config.cookie.name)
    }
}
