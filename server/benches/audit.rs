//! Audit cost: sustained rows/s into Postgres through the batched insert, and what queueing
//! a record adds to a verify decision (with the writer running) against the decision alone.
//! Needs Postgres at TEST_POSTGRES_URL (default: local trust auth); makes and drops its own
//! database.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use arc_swap::ArcSwap;
use criterion::Criterion;
use gatehouse::audit::spool::Spool;
use gatehouse::audit::{AuditRecord, AuditSink, AuditWriter};
use gatehouse::config::Config;
use gatehouse::decision::{Credentials, Decider, UnauthenticatedMode};
use gatehouse::policy::Bundle;
use gatehouse::request::original::VerifyCall;
use gatehouse::session::resolver::{SessionResolver, SessionTimeouts};
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;
use sqlx::Connection;

const SECRET: &str = "bench-cookie-secret-0123456789abcdef0123";

fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let name = format!("gatehouse_bench_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", admin_url().rsplit_once('/').expect("url").0);
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("Postgres for the audit bench");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .expect("create db");
    });
    run(&rt, &url);
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("Postgres");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await;
    });
}

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::event(
        "verify",
        if i.is_multiple_of(7) { "deny" } else { "allow" },
        Some("ann@example.com"),
        None,
    );
    r.route = Some("restaurant".into());
    r.method = Some("GET".into());
    r.path = Some(format!("/restaurant/orders/{i}"));
    r.status = 200;
    r.policy_version = Some("7b54c769bff5de27".into());
    r.client_ip = Some("203.0.113.7".into());
    r
}

fn run(rt: &tokio::runtime::Runtime, url: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let store = rt.block_on(async {
        let s = Store::connect(url).await.expect("store");
        s.migrate().await.expect("migrate");
        s
    });

    // Throughput: 200,000 rows in batches of 1,000 (the default batch size).
    let total = 200_000;
    let started = Instant::now();
    rt.block_on(async {
        let records: Vec<AuditRecord> = (0..total).map(record).collect();
        for chunk in records.chunks(1000) {
            store.insert_audit(chunk).await.expect("insert");
        }
    });
    let elapsed = started.elapsed();
    println!(
        "audit insert: {total} rows in {:.2} s = {:.0} rows/s (batches of 1000)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    // Added verify latency: the decision alone vs the decision plus queueing its record.
    let yaml = format!(
        "public_url: https://auth.example.com\ndatabase_url: {url}\npolicies_dir: {}\ncookie:\n  secret: {SECRET}\n",
        root.join("policies").display()
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("bench.yaml"), &[]).expect("config");
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let (decider, cookie, sink, writer) = rt.block_on(async {
        let live = Arc::new(ArcSwap::from_pointee(
            Bundle::load(&config.policies_dir).expect("bundle"),
        ));
        let sessions = SessionResolver::new(
            store.clone(),
            SessionTimeouts {
                idle_timeout: Duration::from_secs(3600),
                cache_ttl: Duration::from_secs(3600),
            },
        );
        let grant = SessionGrant {
            email: "ann@example.com".into(),
            name: None,
            username: None,
            store_groups: Some(vec!["kitchen".into()]),
            tenant: None,
            ttl: Duration::from_secs(3600),
            amr: vec![],
            ip: None,
            user_agent: None,
        };
        let cookie = issue_session(
            &store,
            &CookieSigner::new(SECRET.as_bytes()),
            &grant,
            chrono::Utc::now(),
        )
        .await
        .expect("session")
        .cookie_value;
        let (sink, rx) = AuditSink::channel();
        let writer = AuditWriter::new(
            store.clone(),
            rx,
            Spool::open(spool_dir.path()).expect("spool"),
            1000,
            Duration::from_millis(200),
        )
        .spawn();
        (Decider::new(&config, live, sessions), cookie, sink, writer)
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-original-url"),
        HeaderValue::from_static("https://apps.example.com/restaurant"),
    );
    let cookies = [cookie.as_str()];
    let credentials = Credentials {
        cookies: &cookies,
        bearer: None,
    };
    let call = VerifyCall {
        method: "GET",
        target: "/auth/verify",
        peer: "127.0.0.1".parse().expect("ip"),
        scheme: "http",
    };
    let decide = || {
        decider.decide(
            call,
            &headers,
            credentials,
            UnauthenticatedMode::Status,
            false,
            chrono::Utc::now(),
        )
    };
    assert_eq!(rt.block_on(decide()).status, 200);

    let mut c = Criterion::default()
        .output_directory(&root.join("target/criterion"))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("audit");
    group.bench_function("verify_without_audit", |b| b.to_async(rt).iter(decide));
    group.bench_function("verify_with_audit", |b| {
        b.to_async(rt).iter(|| async {
            let d = decide().await;
            sink.record(AuditRecord::from_decision(&d, "bench", chrono::Utc::now()))
                .await;
        })
    });
    group.finish();
    c.final_summary();
    drop(sink);
    rt.block_on(writer.finish(Duration::from_secs(60)));

    let mean = |name: &str| -> Option<f64> {
        let path = root.join(format!("target/criterion/audit/{name}/new/estimates.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    if let (Some(without), Some(with)) = (mean("verify_without_audit"), mean("verify_with_audit")) {
        println!(
            "verify: without audit {:.1} µs, with audit {:.1} µs ({:.2}x)",
            without / 1e3,
            with / 1e3,
            with / without
        );
    }
    println!(
        "audit records dropped: {}",
        gatehouse::metrics::METRICS.audit_dropped.get()
    );
}
