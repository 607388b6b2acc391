//! The audit benchmark's small run (issue 15; the 10 M run is
//! `cargo bench --bench audit_queries -- --rows 10000000`, docs/performance.md): realistic
//! rows loaded with `COPY`, then every question of docs/audit.md, every view and every
//! `audit query` filter combination must be served by indexes, reading no more than 1 % of
//! audit_events by sequential scan — the plan shape that keeps them fast at 10 M rows, and
//! robust on a loaded CI machine — and answer within the 10 M budget, which at this size
//! leaves a wide margin.

use gatehouse::store::Store;

use crate::audit_scale::{self, Shape};
use crate::postgres::PgDatabase;

/// The budget for every question at 10 M rows, printed against each time.
const BUDGET_MS: f64 = 100.0;
/// What fails the test: on a CI machine shared with builds a 200k-row question has been
/// seen at 100 ms when the disk was saturated, so time only catches a catastrophe (a
/// question scanning everything); the plan assertion is the sharp one.
const FAIL_MS: f64 = 1_000.0;

#[tokio::test]
async fn every_audit_question_is_served_by_an_index_at_scale() {
    let rows = std::env::var("GATEHOUSE_AUDIT_SCALE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let db = PgDatabase::create("gatehouse_test").await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let loaded = audit_scale::load(&db.url, Shape::with_rows(rows), 2).await;
    assert_eq!(loaded.rows, rows);
    store.maintain_audit_partitions(90, true).await.unwrap();

    let cookbook = audit_scale::cookbook_timings(&db.url, &loaded, 3).await;
    let values = audit_scale::search_values(&db.url).await;
    let searches = audit_scale::search_timings(&db.url, &store, &values, 3).await;
    audit_scale::print_table(&format!("{rows} rows"), &cookbook, BUDGET_MS);
    audit_scale::print_table("audit query", &searches, BUDGET_MS);

    assert!(cookbook.len() >= 9, "{cookbook:?}");
    assert_eq!(searches.len(), 65);
    for t in &cookbook {
        assert!(t.rows > 0, "{} found nothing", t.question);
    }
    // The widest searches fill their page.
    assert_eq!(searches[0].rows, 100, "{:?}", searches[0]);
    // A sequential scan of a small partition (the oldest, partly filled day) is the
    // planner's right choice; one of a whole day or more is what a missing index looks like.
    let seq_limit = rows / 100;
    for t in cookbook.iter().chain(&searches) {
        assert!(
            t.seq_scanned_rows <= seq_limit,
            "{} scans {} rows of audit_events sequentially: {}",
            t.question,
            t.seq_scanned_rows,
            t.plan
        );
        assert!(
            t.median_ms < FAIL_MS,
            "{} took {:.1} ms (plan: {})",
            t.question,
            t.median_ms,
            t.plan
        );
    }
}
