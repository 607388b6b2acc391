//! What the benchmarks share: a `Authorizer` over the example bundle with one cached-to-be
//! session, NGINX-style verify headers, and reading criterion's estimates for the ratio
//! summaries.
#![allow(dead_code)] // each benchmark uses part of this

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use arc_swap::ArcSwap;
use criterion::Criterion;
use gatehouse::authorizer::{
    Ask, Authorizer, Credentials, Decision, Transport, UnauthenticatedMode,
};
use gatehouse::config::Config;
use gatehouse::headers::ActixHeaders;
use gatehouse::policy::Bundle;
use gatehouse::request::trust::VerifyCall;
use gatehouse::session::resolver::{SessionResolver, SessionTimeouts};
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;

pub const SECRET: &str = "bench-cookie-secret-0123456789abcdef0123";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn example_policies() -> PathBuf {
    repo_root().join("policies")
}

pub struct Fixture {
    pub authorizer: Authorizer,
    pub cookie: String,
    pub bundle: Arc<ArcSwap<Bundle>>,
    pub store: Store,
    /// The audit sink's spool, removed with the fixture.
    _spool_dir: tempfile::TempDir,
}

/// A migrated store at `database_url`, the example bundle, and a session for
/// ann@example.com in `groups` (and `tenant` as admin).
/// The benchmarks' tokio runtime: `workers` threads, I/O and timers enabled.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub async fn fixture(database_url: &str, groups: &[&str], tenant: Option<&str>) -> Fixture {
    fixture_with_policies(database_url, &example_policies(), groups, tenant).await
}

/// As `fixture`, with the bundle in `policies_dir`.
pub async fn fixture_with_policies(
    database_url: &str,
    policies_dir: &Path,
    groups: &[&str],
    tenant: Option<&str>,
) -> Fixture {
    let yaml = format!(
        "public_url: https://auth.example.com\ndatabase_url: '{database_url}'\npolicies_dir: {}\ncookie:\n  secret: {SECRET}\n",
        policies_dir.display()
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("bench.yaml"), &[]).expect("config");
    let store = Store::connect(database_url).await.expect("store");
    store.migrate().await.expect("migrate");
    let bundle = Arc::new(ArcSwap::from_pointee(
        Bundle::load(&config.policies_dir).expect("bundle"),
    ));
    let sessions = SessionResolver::new(
        store.clone(),
        SessionTimeouts {
            idle_timeout: Duration::from_secs(3600),
            cache_ttl: Duration::from_secs(3600),
        },
        config.session.built_documents,
    );
    let grant = SessionGrant {
        email: "ann@example.com".into(),
        name: None,
        username: Some("ann".into()),
        store_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        tenant: tenant.map(|t| (t.to_string(), "admin".to_string())),
        ttl: Duration::from_secs(3600),
        amr: vec!["pwd".into()],
        ip: None,
        user_agent: None,
    };
    let signer = CookieSigner::new(SECRET.as_bytes());
    let cookie = issue_session(&store, &signer, &grant, chrono::Utc::now())
        .await
        .expect("session")
        .cookie_value;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    Fixture {
        authorizer: Authorizer::new(
            &config,
            bundle.clone(),
            sessions,
            gatehouse::session::device::DeviceResolver::new(
                store.clone(),
                Duration::from_secs(3600),
            ),
            // Benchmarks call `decide`, which records nothing: a sink whose writer never runs.
            audit_sink(&store, spool_dir.path()),
        ),
        cookie,
        bundle,
        store,
        _spool_dir: spool_dir,
    }
}

impl Fixture {
    /// One verify decision for NGINX-style `headers`, with this fixture's session cookie or
    /// none.
    pub async fn decide(&self, headers: &HeaderMap, with_cookie: bool) -> Decision {
        self.decide_with(headers, with_cookie.then_some(self.cookie.as_str()))
            .await
    }

    /// One verify decision for NGINX-style `headers` with `cookie`, the session cookie's
    /// value, or none.
    pub async fn decide_with(&self, headers: &HeaderMap, cookie: Option<&str>) -> Decision {
        let cookie = cookie.as_slice();
        let credentials = Credentials {
            cookies: cookie,
            bearer: None,
        };
        let call = VerifyCall {
            method: "GET",
            target: "/auth/verify",
            peer: IpAddr::from([127, 0, 0, 1]),
            scheme: "http",
            forwarded: true,
        };
        let ask = Ask {
            call,
            headers: &ActixHeaders(headers),
            credentials,
            mode: UnauthenticatedMode::Status,
            wants_html: false,
            offered_request_id: None,
            transport: Transport::Http,
            client_certificate: None,
        };
        self.authorizer.decide(ask, chrono::Utc::now()).await
    }
}

/// A copy of the example bundle in `into` with `extra` more host-less public routes
/// (`/svc-N` and `/svc-N/admin`, half of them each), for measuring lookups in a large table.
pub fn example_policies_with_routes(into: &Path, extra: usize) {
    copy_dir(&example_policies(), into);
    let routes = into.join("routes.yaml");
    let mut text = std::fs::read_to_string(&routes).expect("routes.yaml");
    for n in 0..extra {
        let path = if n % 2 == 0 {
            format!("/svc-{n}")
        } else {
            format!("/svc-{n}/admin")
        };
        text.push_str(&format!(
            "\n  - name: svc-{n}\n    path: {path}\n    public: true\n"
        ));
    }
    std::fs::write(routes, text).expect("write routes.yaml");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The headers NGINX's auth subrequest carries for `url`.
pub fn nginx_headers(url: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-original-url", url),
        ("x-original-method", "GET"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("header"),
        );
    }
    h
}

/// Criterion writing to the workspace's target/criterion, with short runs.
pub fn criterion(measurement: Duration) -> Criterion {
    Criterion::default()
        .output_directory(&repo_root().join("target/criterion"))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement)
        .configure_from_args()
}

/// Criterion's mean estimate (ns) for `group/name` from this run, if it ran.
pub fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let path = repo_root().join(format!(
        "target/criterion/{group}/{name}/new/estimates.json"
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// An audit sink for a fixture whose benchmarks record nothing (its writer is never run).
fn audit_sink(store: &Store, spool_dir: &Path) -> gatehouse::audit::AuditSink {
    let spool = gatehouse::audit::spool::Spool::open(spool_dir).expect("spool");
    gatehouse::audit::pipeline(store.clone(), spool, pipeline_settings()).0
}

/// The pipeline's default sizes, as `serve` runs it.
pub fn pipeline_settings() -> gatehouse::audit::PipelineSettings {
    gatehouse::audit::PipelineSettings {
        batch_size: 1000,
        flush_interval: Duration::from_millis(200),
        queue_capacity: gatehouse::audit::DEFAULT_QUEUE_CAPACITY,
    }
}
