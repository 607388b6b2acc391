//! The audit trail: every decision is a row, with the request id the caller saw, and none is
//! lost while the database is down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    AppOptions, BACKENDS, Backend, Person, TestDatabase, spawn_app, spawn_app_on, spawn_app_with,
};

#[tokio::test]
async fn every_decision_becomes_an_audit_row_with_its_request_id() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let ann = app
            .login(&Person {
                email: "ann@example.com",
                groups: &["kitchen"],
                tenant: None,
            })
            .await;
        let cases = [
            ("https://apps.example.com/restaurant", true, "allow"),
            ("https://apps.example.com/marketing", true, "deny"),
            (
                "https://apps.example.com/restaurant",
                false,
                "unauthenticated",
            ),
            ("https://apps.example.com/healthz", false, "public"),
            ("https://apps.example.com/a%2fb", true, "bad_request"),
        ];
        let mut seen = Vec::new();
        for (url, with_cookie, decision) in cases {
            let mut r = app.verify(url);
            if with_cookie {
                r = r.header("Cookie", app.cookie(&ann));
            }
            let response = r.send().await.unwrap();
            let id = response.headers()["X-Request-Id"]
                .to_str()
                .unwrap()
                .to_string();
            seen.push((id, decision));
        }
        let version: serde_json::Value = app.admin_json("/readyz").await;
        let version = version["bundle"]["version"].as_str().unwrap().to_string();
        let rows = app
            .wait_for_audit_rows(seen.len(), Duration::from_secs(5))
            .await;
        assert_eq!(rows.len(), seen.len(), "{backend:?}: {rows:?}");
        for ((id, decision), row) in seen.iter().zip(&rows) {
            assert_eq!(&row.0, id, "{backend:?}");
            assert_eq!(row.1, *decision, "{backend:?}");
            assert_eq!(row.4.as_deref(), Some(version.as_str()));
        }
        assert_eq!(rows[0].2.as_deref(), Some("restaurant"));
        assert_eq!(rows[0].3.as_deref(), Some("ann@example.com"));
        assert_eq!(rows[2].3, None);
    }
}

#[tokio::test]
async fn a_trusted_proxys_request_id_is_kept() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app
        .verify("https://apps.example.com/healthz")
        .header("X-Request-Id", "nginx-7f3a9c")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["X-Request-Id"], "nginx-7f3a9c");
    let rows = app.wait_for_audit_rows(1, Duration::from_secs(5)).await;
    assert_eq!(rows[0].0, "nginx-7f3a9c");
}

/// A Postgres server of this test's own (initdb in a temp dir, random port), so the test
/// can stop and start it.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    _tmp: tempfile::TempDir,
}

fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|_| {
            panic!("PostgreSQL server binaries are needed: apt-get install -y postgresql")
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb not found under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path, tool: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let _ = Command::new("chown")
            .args(["postgres:postgres", tmp.path().to_str().unwrap()])
            .status();
        let _ = Command::new("chmod")
            .args(["755", tmp.path().to_str().unwrap()])
            .status();
        let bin = postgres_bin();
        let out = pg_command(&bin, "initdb")
            .args([
                "-D",
                dir.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres {
            dir,
            port,
            bin,
            _tmp: tmp,
        };
        pg.ctl_start();
        pg
    }

    fn ctl_start(&self) {
        let options = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .args(["-D", self.dir.to_str().unwrap(), "-o", &options, "-w", "-l"])
            .arg(self.dir.join("../pg.log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl_stop(&self) {
        let out = pg_command(&self.bin, "pg_ctl")
            .args(["-D", self.dir.to_str().unwrap(), "-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .args(["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn no_audit_record_is_lost_while_postgres_is_down() {
    let pg = PrivatePostgres::start();
    let mut options = AppOptions::new(Backend::Postgres);
    options.extra_yaml = "session:\n  cache_ttl: 60s\n".into();
    let app = spawn_app_on(options, TestDatabase::external(pg.url())).await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let url = "https://apps.example.com/restaurant";
    let mut ids = Vec::new();
    let mut verify = async |expect: u16| {
        let r = app.verify_as(url, &ann).await;
        assert_eq!(r.status().as_u16(), expect);
        ids.push(r.headers()["X-Request-Id"].to_str().unwrap().to_string());
    };
    for _ in 0..20 {
        verify(200).await;
    }
    // The counter is per process and other tests share it: compare before and after.
    let dropped_before = gatehouse::metrics::METRICS.audit_dropped.get();
    pg.ctl_stop();
    // Ten seconds without a database: the cached session keeps answering.
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        verify(200).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A session that is not cached cannot be checked: fail closed. (The bearer is validly
    // signed, so it gets as far as the store; an unsigned one would be a 401 without it.)
    let unknown_token =
        gatehouse::session::token::CookieSigner::new(crate::helpers::COOKIE_SECRET.as_bytes())
            .sign(&gatehouse::session::token::SessionToken::generate());
    let unknown = app
        .client
        .get(format!("{}/auth/verify", app.base))
        .header("X-Original-URL", url)
        .bearer_auth(unknown_token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 500);
    let metrics = app.admin_text("/metrics").await;
    assert!(
        metrics.contains("gatehouse_audit_spooled_total"),
        "{metrics}"
    );
    pg.ctl_start();
    for _ in 0..20 {
        verify(200).await;
    }
    let expected = ids.len() + 1;
    let rows = app
        .wait_for_audit_rows(expected, Duration::from_secs(15))
        .await;
    assert_eq!(rows.len(), expected, "every decision is in the table, once");
    // In order: the ids of our sequential requests appear in the order they were made.
    let verify_rows: Vec<&String> = rows
        .iter()
        .filter(|r| r.1 == "allow")
        .map(|r| &r.0)
        .collect();
    assert_eq!(verify_rows, ids.iter().collect::<Vec<_>>());
    assert!(metrics.contains("gatehouse_audit_dropped_total"));
    assert_eq!(
        gatehouse::metrics::METRICS.audit_dropped.get(),
        dropped_before,
        "audit records were dropped"
    );
}

#[tokio::test]
async fn expired_audit_partitions_are_dropped_and_recent_ones_kept() {
    let app = spawn_app(Backend::Postgres).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    sqlx::query("SELECT gatehouse_audit_ensure_partitions(current_date - 100, 1)")
        .execute(&mut conn)
        .await
        .unwrap();
    async fn partitions(conn: &mut sqlx::PgConnection) -> Vec<(String,)> {
        let sql = "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit_events' ORDER BY 1";
        sqlx::query_as::<_, (String,)>(sql)
            .fetch_all(conn)
            .await
            .unwrap()
    }
    let before = partitions(&mut conn).await;
    assert!(before.len() >= 11, "{before:?}");
    let dropped = app.store.maintain_audit_partitions(90, true).await.unwrap();
    assert_eq!(dropped, 1);
    let after = partitions(&mut conn).await;
    let today = format!("audit_events_{}", chrono::Utc::now().format("%Y%m%d"));
    assert!(after.iter().any(|(p,)| *p == today), "{after:?}");
    assert!(after.iter().any(|(p,)| p == "audit_events_default"));
    assert_eq!(after.len(), before.len() - 1);
}

/// A spool left by a long outage (50k records) is replayed in bounded chunks: every record
/// reaches the table once, in order, and records that arrive meanwhile queue behind it.
#[tokio::test]
async fn a_large_spool_is_replayed_in_chunks_without_loss_or_duplicates() {
    use gatehouse::audit::spool::Spool;
    use gatehouse::audit::{AuditRecord, PipelineSettings};
    const SPOOLED: usize = 50_000;
    const LIVE: usize = 100;
    let db = TestDatabase::create(Backend::Postgres).await;
    let store = gatehouse::store::Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let record = |id: String| {
        let mut r = AuditRecord::event("verify", "allow", Some("ann@example.com"), None);
        r.request_id = id;
        r.status = 200;
        r
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path()).unwrap();
        let spooled: Vec<AuditRecord> = (0..SPOOLED)
            .map(|i| record(format!("spooled-{i}")))
            .collect();
        for batch in spooled.chunks(1000) {
            spool.append(batch).unwrap();
        }
    }
    // As at a start after the outage: the spool is found on disk.
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.pending(), SPOOLED);
    let settings = PipelineSettings {
        batch_size: 1000,
        flush_interval: Duration::from_millis(50),
        queue_capacity: gatehouse::audit::DEFAULT_QUEUE_CAPACITY,
    };
    let (sink, writer) = gatehouse::audit::pipeline(store.clone(), spool, settings);
    let writer = writer.spawn();
    for i in 0..LIVE {
        sink.record(record(format!("live-{i}"))).await;
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let count = async |conn: &mut sqlx::PgConnection| -> (i64, i64) {
        sqlx::query_as("SELECT count(*), count(DISTINCT request_id) FROM audit_events")
            .fetch_one(conn)
            .await
            .unwrap()
    };
    let started = std::time::Instant::now();
    while count(&mut conn).await.0 < (SPOOLED + LIVE) as i64
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sink);
    writer.finish(Duration::from_secs(30)).await;
    let total = (SPOOLED + LIVE) as i64;
    assert_eq!(count(&mut conn).await, (total, total), "each record once");
    // In order: every spooled record was written before any live one.
    let (last_spooled, first_live): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT max(id) FROM audit_events WHERE request_id LIKE 'spooled-%'),
                (SELECT min(id) FROM audit_events WHERE request_id LIKE 'live-%')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(last_spooled < first_live, "{last_spooled} < {first_live}");
    // The spool is emptied once replayed.
    let reopened = Spool::open(dir.path()).unwrap();
    assert_eq!(reopened.pending(), 0);
    assert!(reopened.is_empty());
}

/// Holds a lock on `audit_events` from another connection, so the writer's writes wait
/// (as behind a slow or stuck database) until [`TableLock::release`].
enum TableLock {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl TableLock {
    async fn take(url: &str) -> TableLock {
        use sqlx::Connection;
        if url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            TableLock::Postgres(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            // In WAL mode readers go on (sessions, devices); every other writer waits.
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut c)
                .await
                .unwrap();
            TableLock::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            TableLock::Postgres(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            }
            TableLock::Sqlite(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}

/// A burst far larger than the queue while the database takes no writes: the writer gives
/// up its stuck write and spools it, requests that find the queue full spool their own
/// records, and once the database is back every decision is in the table, once — none is
/// dropped, and the queue never holds more than its capacity.
#[tokio::test]
async fn a_burst_past_a_full_queue_and_a_stuck_database_loses_no_record() {
    const REQUESTS: usize = 400;
    const CONCURRENCY: usize = 16;
    for backend in BACKENDS {
        let mut options = AppOptions::new(backend);
        options.audit_yaml = "  batch_size: 10\n  queue_capacity: 20\n".into();
        options.extra_yaml = "session:\n  cache_ttl: 60s\n".into();
        let app = spawn_app_with(options).await;
        let ann = app
            .login(&Person {
                email: "ann@example.com",
                groups: &["kitchen"],
                tenant: None,
            })
            .await;
        let url = "https://apps.example.com/restaurant";
        // The session is cached before the table is locked.
        assert_eq!(app.verify_as(url, &ann).await.status(), 200);
        app.wait_for_audit_rows(1, Duration::from_secs(15)).await;
        // Whatever else signing in wrote is flushed too (every 50 ms here).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = app.audit_rows().await.len();
        let dropped_before = gatehouse::metrics::METRICS.audit_dropped.get();
        let overflow_before = gatehouse::metrics::METRICS.audit_overflow.get();

        let lock = TableLock::take(&app.db.url).await;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..CONCURRENCY {
            let request = app.verify(url).header("Cookie", app.cookie(&ann));
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for _ in (worker..REQUESTS).step_by(CONCURRENCY) {
                    let r = request.try_clone().unwrap().send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    ids.push(r.headers()["X-Request-Id"].to_str().unwrap().to_string());
                }
                ids
            });
        }
        let mut ids: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
        assert_eq!(ids.len(), REQUESTS);
        assert!(
            gatehouse::metrics::METRICS.audit_overflow.get() > overflow_before,
            "{backend:?}: the queue of 20 overflowed to the spool"
        );
        // Long enough for the writer to give up its stuck write and spool that batch too.
        tokio::time::sleep(gatehouse::audit::WRITE_TIMEOUT + Duration::from_secs(1)).await;
        lock.release().await;

        let rows = app
            .wait_for_audit_rows(before + REQUESTS, Duration::from_secs(60))
            .await;
        let mut written: Vec<String> = rows[before..].iter().map(|r| r.0.clone()).collect();
        written.sort();
        ids.sort();
        assert_eq!(
            written, ids,
            "{backend:?}: every decision in the table, once"
        );
        assert_eq!(
            gatehouse::metrics::METRICS.audit_dropped.get(),
            dropped_before,
            "{backend:?}: audit records were dropped"
        );
    }
}

/// The writer's binary `COPY` writes every field as `insert_audit` does (times to the
/// microsecond, NULLs, integers; a NUL byte, which Postgres's text cannot hold, made U+FFFD
/// by both rather than refusing the batch and its replay for ever), and a
/// batch written twice is refused by `COPY` and then skipped by the replay's insert.
#[tokio::test]
async fn binary_copy_writes_the_same_rows_as_insert_and_refuses_a_batch_twice() {
    use gatehouse::audit::AuditRecord;
    let db = TestDatabase::create(Backend::Postgres).await;
    let store = gatehouse::store::Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let time = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:11:12.345678Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let full = |id: &str| AuditRecord {
        time,
        request_id: id.into(),
        kind: "verify".into(),
        user_id: Some("u1".into()),
        email: Some("ann@example.com".into()),
        tenant: Some("acme".into()),
        device_id: Some("d1".into()),
        route: Some("restaurant".into()),
        host: Some("apps.example.com".into()),
        method: Some("GET".into()),
        path: Some("/restaurant/a\0b".into()),
        decision: "allow".into(),
        status: 200,
        reason: Some("ok".into()),
        policy_version: Some("v1".into()),
        latency_us: 1_234_567_890_123,
        client_ip: Some("192.0.2.1".into()),
        transport: Some("http".into()),
    };
    let mut sparse = AuditRecord::event("revoke", "deny", None, None);
    sparse.time = time;
    sparse.request_id = "sparse".into();
    sparse.status = -1;
    let copied = [full("copied"), sparse];
    store.write_audit_batch(&copied).await.unwrap();
    store.insert_audit(&[full("inserted")]).await.unwrap();

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    // Every column but the two that differ by design, as JSON (times in UTC).
    let row = async |conn: &mut sqlx::PgConnection, id: &str| -> serde_json::Value {
        let (row,): (serde_json::Value,) = sqlx::query_as(
            "SELECT to_jsonb(a) - 'id' - 'request_id' FROM
               (SELECT *, to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS utc
                FROM audit_events WHERE request_id = $1) a",
        )
        .bind(id.to_string())
        .fetch_one(conn)
        .await
        .unwrap();
        row
    };
    let copied_row = row(&mut conn, "copied").await;
    assert_eq!(copied_row["utc"], "2026-12-05 10:11:12.345678");
    assert_eq!(copied_row["path"], "/restaurant/a\u{fffd}b");
    assert_eq!(copied_row["latency_us"], 1_234_567_890_123i64);
    assert_eq!(copied_row["tenant"], "acme");
    assert_eq!(copied_row, row(&mut conn, "inserted").await);
    let sparse_row = row(&mut conn, "sparse").await;
    assert_eq!(sparse_row["kind"], "revoke");
    assert_eq!(sparse_row["user_id"], serde_json::Value::Null);
    assert_eq!(sparse_row["status"], -1);
    assert_eq!(sparse_row["transport"], serde_json::Value::Null);

    // Again: COPY refuses the batch whole; the replay path skips the rows it has.
    assert!(store.write_audit_batch(&copied).await.is_err());
    store.insert_audit(&copied).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 3);
}

/// SQLite's insert carries many rows a statement (chunks of powers of two): a batch of a
/// size that is no power of two lands whole, every field as given, in its chunks' order
/// of binds; a batch overlapping rows already there (a replayed spool) adds only the new.
#[tokio::test]
async fn sqlite_multi_row_insert_writes_every_row_once_with_its_fields() {
    use gatehouse::audit::AuditRecord;
    let db = TestDatabase::create(Backend::Sqlite).await;
    let store = gatehouse::store::Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:11:12.345678Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let record = |i: i64| {
        let mut r = AuditRecord::event("verify", "allow", None, None);
        r.time = base + chrono::Duration::microseconds(i);
        r.request_id = format!("req-{i}");
        r.email = (i % 3 == 0).then(|| format!("user{i}@example.com"));
        r.path = Some(format!("/p/{i}"));
        r.status = i32::try_from(i).unwrap();
        r.latency_us = i * 1_000_000_007;
        r
    };
    // 300 = 128 + 128 + 32 + 8 + 4 rows a statement.
    let first: Vec<AuditRecord> = (0..300).map(record).collect();
    store.insert_audit(&first).await.unwrap();
    // 250..450: 50 already there, 150 new.
    let overlapping: Vec<AuditRecord> = (250..450).map(record).collect();
    store.insert_audit(&overlapping).await.unwrap();

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>, String, i32, i64)> = sqlx::query_as(
        "SELECT time, request_id, email, path, status, latency_us FROM audit_events ORDER BY status",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 450, "every row once");
    for (i, (time, request_id, email, path, status, latency)) in rows.into_iter().enumerate() {
        let i = i64::try_from(i).unwrap();
        let want = record(i);
        assert_eq!(
            time,
            want.time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "row {i}"
        );
        assert_eq!(request_id, want.request_id, "row {i}");
        assert_eq!(email, want.email, "row {i}");
        assert_eq!(Some(path), want.path, "row {i}");
        assert_eq!(i64::from(status), i, "row {i}");
        assert_eq!(latency, want.latency_us, "row {i}");
    }
}

#[tokio::test]
async fn records_that_trickle_in_reach_the_database_by_the_flushes_alone() {
    // The writer pauses between takes smaller than a batch (so a decision does not wake it
    // each); records sent during a pause are taken at the next flush. Here no batch ever
    // fills and the writer is not stopped: every row must arrive through the flushes.
    use gatehouse::audit::{AuditRecord, PipelineSettings};
    const RECORDS: usize = 200;
    let db = TestDatabase::create(Backend::Sqlite).await;
    let store = gatehouse::store::Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = gatehouse::audit::spool::Spool::open(dir.path()).unwrap();
    let settings = PipelineSettings {
        batch_size: 1000,
        flush_interval: Duration::from_millis(50),
        queue_capacity: gatehouse::audit::DEFAULT_QUEUE_CAPACITY,
    };
    let (sink, writer) = gatehouse::audit::pipeline(store.clone(), spool, settings);
    let writer = writer.spawn();
    for i in 0..RECORDS {
        let mut r = AuditRecord::event("verify", "allow", None, None);
        r.request_id = format!("trickle-{i}");
        sink.record(r).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let count = async |conn: &mut sqlx::SqliteConnection| -> i64 {
        sqlx::query_scalar(
            "SELECT count(DISTINCT request_id) FROM audit_events WHERE request_id LIKE 'trickle-%'",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    };
    let started = std::time::Instant::now();
    while count(&mut conn).await < RECORDS as i64 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(&mut conn).await,
        RECORDS as i64,
        "every record, by the flushes alone"
    );
    drop(sink);
    writer.finish(Duration::from_secs(10)).await;
    assert_eq!(count(&mut conn).await, RECORDS as i64, "and none twice");
}
