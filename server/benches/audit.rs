//! Audit cost: sustained rows/s into Postgres through the batched insert, and what queueing
//! a record adds to a verify decision (with the writer running) against the decision alone.
//! Needs Postgres at TEST_POSTGRES_URL (default: local trust auth); makes and drops its own
//! database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use gatehouse::audit::AuditRecord;
use gatehouse::audit::spool::Spool;
use sqlx::Connection;

fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn main() {
    let rt = common::runtime(2);
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
    let fixture = rt.block_on(common::fixture(url, &["kitchen"], None));
    let store = fixture.store.clone();

    // Throughput: 200,000 rows in batches of 1,000 (the default batch size), through the
    // replay path (`INSERT … SELECT FROM UNNEST … ON CONFLICT DO NOTHING`) and the writer's
    // fresh-batch path (binary COPY), alternately in rounds so both see the same table
    // sizes and the same machine.
    let total = 200_000;
    let rounds = 4;
    let mut insert_time = Duration::ZERO;
    let mut copy_time = Duration::ZERO;
    rt.block_on(async {
        for round in 0..rounds {
            let base = round * 2 * total / rounds;
            let inserted: Vec<AuditRecord> = (base..base + total / rounds).map(record).collect();
            let copied: Vec<AuditRecord> = (base + total / rounds..base + 2 * total / rounds)
                .map(record)
                .collect();
            let started = Instant::now();
            for chunk in inserted.chunks(1000) {
                store.insert_audit(chunk).await.expect("insert");
            }
            insert_time += started.elapsed();
            let started = Instant::now();
            for chunk in copied.chunks(1000) {
                store.write_audit_batch(chunk).await.expect("copy");
            }
            copy_time += started.elapsed();
        }
    });
    let rate =
        |t: Duration| f64::from(u32::try_from(total / 2).unwrap_or(u32::MAX)) / t.as_secs_f64();
    println!(
        "audit rows/s in batches of 1000 ({} rows each): INSERT … UNNEST {:.0}, binary COPY {:.0} ({:.2}x)",
        total / 2,
        rate(insert_time),
        rate(copy_time),
        insert_time.as_secs_f64() / copy_time.as_secs_f64()
    );

    // Added verify latency: the decision alone vs the decision plus queueing its record.
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let (sink, writer) = gatehouse::audit::pipeline(
        store.clone(),
        Spool::open(spool_dir.path()).expect("spool"),
        common::pipeline_settings(),
    );
    let writer = rt.block_on(async { writer.spawn() });
    let headers = common::nginx_headers("https://apps.example.com/restaurant");
    let decide = || fixture.decide(&headers, true);
    assert_eq!(rt.block_on(decide()).status, 200);

    let mut c = common::criterion(Duration::from_secs(3));
    let mut group = c.benchmark_group("audit");
    group.bench_function("verify_without_audit", |b| b.to_async(rt).iter(decide));
    group.bench_function("verify_with_audit", |b| {
        b.to_async(rt).iter(|| async {
            let d = decide().await;
            sink.record(d.audit_record("bench", chrono::Utc::now()))
                .await;
        })
    });
    group.finish();
    c.final_summary();
    drop(sink);
    rt.block_on(writer.finish(Duration::from_secs(60)));

    if let (Some(without), Some(with)) = (
        common::mean_ns("audit", "verify_without_audit"),
        common::mean_ns("audit", "verify_with_audit"),
    ) {
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
