//! The security team's audit questions at scale (issue 15; docs/audit.md, docs/performance.md).
//!
//! Makes its own database (dropped at the end) on the Postgres at TEST_POSTGRES_URL (default:
//! local trust auth), migrates it with the project's migrations, loads realistic rows with
//! `COPY`, runs the partition job once (rollups), then times every question of docs/audit.md
//! (views included), every `audit query` filter combination and a deep page, and the audit
//! writer's insert statement into the loaded table. Prints one table: question → median ms
//! (5 warm runs) → the scans that served it.
//!
//! ```sh
//! cargo bench --bench audit_queries                        # 1,000,000 rows
//! cargo bench --bench audit_queries -- --rows 10000000     # the issue's 10 M (~10 min)
//! cargo bench --bench audit_queries -- --before            # schema before 0004 (insert rate)
//! ```
//! `--streams N` parallel COPY streams (2), `--runs N` timed runs per question (5),
//! `--keep` leaves the database for a look with psql (its name is printed), `--database NAME`
//! measures a kept one again without loading.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "../../tests/common/audit_scale.rs"]
mod audit_scale;
#[path = "../../tests/common/postgres.rs"]
mod postgres;

use std::time::Instant;

use audit_scale::Shape;
use gatehouse::store::Store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// What the issue asks of every question at 10 M rows.
const BUDGET_MS: f64 = 100.0;

struct Args {
    rows: u64,
    streams: u32,
    runs: usize,
    before: bool,
    keep: bool,
    database: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        streams: 2,
        runs: 5,
        before: false,
        keep: false,
        database: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--rows" => a.rows = number("--rows"),
            "--streams" => a.streams = number("--streams") as u32,
            "--runs" => a.runs = number("--runs") as usize,
            "--before" => a.before = true,
            "--keep" => a.keep = true,
            "--database" => a.database = it.next(),
            // cargo bench passes --bench; criterion-style filters are not used here.
            _ => {}
        }
    }
    a
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let (db, url) = match &args.database {
        Some(name) => {
            let admin = postgres::admin_url();
            let prefix = admin.rsplit_once('/').expect("TEST_POSTGRES_URL").0;
            (None, format!("{prefix}/{name}"))
        }
        None => {
            let db = postgres::PgDatabase::create("gatehouse_audit_bench").await;
            let url = db.url.clone();
            (Some(db), url)
        }
    };
    let store = Store::connect(&url).await.expect("store");
    let schema = if args.database.is_some() {
        "as migrated when loaded"
    } else if args.before {
        let pool = store.postgres_pool().expect("postgres");
        MIGRATOR
            .run_to(3, pool)
            .await
            .expect("migrations 0001-0003");
        "before 0004 (migrations 0001-0003)"
    } else {
        store.migrate().await.expect("migrate");
        "all migrations"
    };
    let loaded = if args.database.is_some() {
        println!("database {url} ({schema}), as loaded before");
        audit_scale::describe(&url).await
    } else {
        println!(
            "database {url} ({schema}); loading {} rows over {} COPY streams",
            args.rows, args.streams
        );
        audit_scale::load(&url, Shape::with_rows(args.rows), args.streams).await
    };
    println!(
        "loaded {} rows in {:.1} s ({:.0} rows/s), VACUUM ANALYZE {:.1} s; {:.2} GB on disk, \
         {:.0} bytes per row ({:.0} of them indexes)",
        loaded.rows,
        loaded.load_seconds,
        loaded.rows as f64 / loaded.load_seconds,
        loaded.analyze_seconds,
        loaded.total_bytes as f64 / 1e9,
        loaded.bytes_per_row(),
        loaded.index_bytes as f64 / loaded.rows as f64,
    );
    if !args.before {
        // The partition job: a run that recounts yesterday and today (the first of a day;
        // on a fresh load, the rollups from nothing), then an hourly one.
        let started = Instant::now();
        store
            .maintain_audit_partitions(90, true)
            .await
            .expect("partition job");
        let recount = started.elapsed().as_secs_f64();
        let started = Instant::now();
        store
            .maintain_audit_partitions(90, false)
            .await
            .expect("partition job");
        println!(
            "partition job: a run with the daily recount {recount:.1} s, an hourly run {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }

    let cookbook = audit_scale::cookbook_timings(&url, &loaded, args.runs).await;
    // Printed before the searches start, so a long search run still leaves these.
    audit_scale::print_table(
        &format!("docs/audit.md at {} rows ({schema})", loaded.rows),
        &cookbook,
        BUDGET_MS,
    );
    let values = audit_scale::search_values(&url).await;
    let searches = audit_scale::search_timings(&url, &store, &values, args.runs).await;
    audit_scale::print_table(
        &format!(
            "audit query / admin audit search, first page of 100 (user {}, route {}, tenant {})",
            values.email, values.route, values.tenant
        ),
        &searches,
        BUDGET_MS,
    );
    let all = cookbook.iter().chain(&searches);
    let slowest = all
        .clone()
        .max_by(|a, b| a.median_ms.total_cmp(&b.median_ms))
        .expect("timings");
    let over = all.filter(|t| t.median_ms > BUDGET_MS).count();
    println!(
        "\nslowest: {} at {:.1} ms; {over} question(s) over {BUDGET_MS} ms",
        slowest.question, slowest.median_ms
    );

    // The writer's statement into the loaded, indexed table (three rounds, the median).
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(audit_scale::insert_rate(&store, 100_000).await);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "audit writer's insert (UNNEST, batches of 1,000) into the loaded table: {:.0} rows/s \
         (runs: {})",
        rates[1],
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    store.close().await;
    if let Some(db) = db
        && args.keep
    {
        println!("kept database {} (drop it with DROP DATABASE)", db.name);
        std::mem::forget(db);
    }
}
