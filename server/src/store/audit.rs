//! The audit trail's tables: `audit_events` (written in batches by the audit writer, read
//! by `audit query`, partitioned by day on Postgres) and `admin_actions`. The store defines
//! the rows it writes ([`NewAuditEvent`]); the audit module lends its records as such rows.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::pg_copy::pg_text;
use super::{Backend, Store, StoreError};

/// One row of `audit_events` as [`super::Store::insert_audit`] writes it. It borrows from
/// whatever the caller keeps its records in, so a batch is written without copying them.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEvent<'a> {
    pub time: DateTime<Utc>,
    pub request_id: &'a str,
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub route: Option<&'a str>,
    pub host: Option<&'a str>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub decision: &'a str,
    pub status: i32,
    pub reason: Option<&'a str>,
    pub policy_version: Option<&'a str>,
    pub latency_us: i64,
    pub client_ip: Option<&'a str>,
    /// `http`, `proxy` or `grpc` for decisions; `None` for other kinds.
    pub transport: Option<&'a str>,
}

/// A record the store can write as an `audit_events` row. The audit trail implements it
/// for its own record type, so the store needs to know nothing of audit.
pub trait AsAuditEvent {
    fn as_audit_event(&self) -> NewAuditEvent<'_>;
}

impl AsAuditEvent for NewAuditEvent<'_> {
    fn as_audit_event(&self) -> NewAuditEvent<'_> {
        *self
    }
}

/// Filters of an audit search ([`super::Store::search_audit`]: `gatehouse audit query` and
/// the admin API's `GET /admin/api/audit`); `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The user's email (compared lower-case).
    pub email: Option<String>,
    pub route: Option<String>,
    pub decision: Option<String>,
    pub tenant: Option<String>,
    /// Rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows before this time.
    pub until: Option<DateTime<Utc>>,
    /// Where the previous page ended ([`AuditPage::next_cursor`]); `None` for the first page.
    pub cursor: Option<AuditCursor>,
    /// Rows per page, 1 to 100,000.
    pub limit: u32,
}

/// The position after the last row of a page: its `(time, id)`, the order every search
/// returns (newest first). Pages continue with the rows strictly before it (keyset
/// pagination, docs/audit.md), so a page costs the same however deep it is, and rows written
/// meanwhile never shift a page. Written as `<microseconds since 1970>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub time: DateTime<Utc>,
    pub id: i64,
}

/// A cursor that is not `<microseconds>_<id>` (a client's typo or a tampered value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid audit cursor `{0}`: expected the next_cursor of a previous page")]
pub struct InvalidCursor(String);

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.time.timestamp_micros(), self.id)
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCursor(s.chars().take(64).collect());
        let (micros, id) = s.split_once('_').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let id: i64 = id.parse().map_err(|_| invalid())?;
        let time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        Ok(AuditCursor { time, id })
    }
}

impl serde::Serialize for AuditCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One page of an audit search: `{"items": [...], "next_cursor": "…" | null}` in JSON
/// (DESIGN of the admin API's audit search). `next_cursor` is `None` on the last page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditPage {
    pub items: Vec<AuditRow>,
    pub next_cursor: Option<AuditCursor>,
}

/// One audit row as `audit query` prints it and the admin API returns it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    /// The row's id (with `time`, its key; the admin playground replays a row by id).
    pub id: i64,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub time: String,
    pub request_id: String,
    pub kind: String,
    pub email: Option<String>,
    pub tenant: Option<String>,
    pub route: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub status: i32,
    pub reason: Option<String>,
    pub policy_version: Option<String>,
    pub latency_us: i64,
    pub client_ip: Option<String>,
    pub transport: Option<String>,
}

/// A bind value of the search's dynamic SQL.
enum Arg {
    Text(String),
    Int(i64),
}

impl Store {
    /// Inserts audit records; rows already present (a replayed spool) are skipped.
    pub async fn insert_audit<R: AsAuditEvent>(&self, records: &[R]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Postgres(pool) => {
                // One statement with one array per column: a fixed number of binds for any
                // batch size. The arrays borrow the records' text (copied only to replace a
                // NUL, which Postgres's text cannot hold).
                let rows: Vec<NewAuditEvent<'_>> =
                    records.iter().map(AsAuditEvent::as_audit_event).collect();
                sqlx::query(
                    "INSERT INTO audit_events (time, request_id, kind, user_id, email, tenant, device_id, route, host,
                                               method, path, decision, status, reason, policy_version, latency_us, client_ip, transport)
                     SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                          $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                          $13::int[], $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(col(&rows, |r| r.time))
                .bind(col(&rows, |r| pg_text(r.request_id)))
                .bind(col(&rows, |r| pg_text(r.kind)))
                .bind(col(&rows, |r| r.user_id.map(pg_text)))
                .bind(col(&rows, |r| r.email.map(pg_text)))
                .bind(col(&rows, |r| r.tenant.map(pg_text)))
                .bind(col(&rows, |r| r.device_id.map(pg_text)))
                .bind(col(&rows, |r| r.route.map(pg_text)))
                .bind(col(&rows, |r| r.host.map(pg_text)))
                .bind(col(&rows, |r| r.method.map(pg_text)))
                .bind(col(&rows, |r| r.path.map(pg_text)))
                .bind(col(&rows, |r| pg_text(r.decision)))
                .bind(col(&rows, |r| r.status))
                .bind(col(&rows, |r| r.reason.map(pg_text)))
                .bind(col(&rows, |r| r.policy_version.map(pg_text)))
                .bind(col(&rows, |r| r.latency_us))
                .bind(col(&rows, |r| r.client_ip.map(pg_text)))
                .bind(col(&rows, |r| r.transport.map(pg_text)))
                .execute(pool)
                .await?;
            }
            Backend::Sqlite(pool) => {
                // Many rows a statement: every statement is a round trip to sqlx's SQLite
                // worker thread (a channel send and a thread wake-up each way), and with one
                // row a statement those wake-ups, not SQLite, were most of the writer's CPU
                // under load (a `perf` profile, docs/performance.md). Chunks are powers of
                // two, so a handful of statement texts serve every batch size and stay in
                // the connection's prepared-statement cache.
                let mut tx = pool.begin().await?;
                let mut rest = records;
                while !rest.is_empty() {
                    let log2 = sqlite_chunk_log2(rest.len());
                    let (chunk, tail) = rest.split_at(1 << log2);
                    rest = tail;
                    let mut insert = sqlx::query(sqlite_insert_sql(log2));
                    for record in chunk {
                        let r = record.as_audit_event();
                        insert = insert
                            // Fixed-width UTC text, so the security team's `time > '…'`
                            // compares right.
                            .bind(fixed_width(r.time))
                            .bind(r.request_id)
                            .bind(r.kind)
                            .bind(r.user_id)
                            .bind(r.email)
                            .bind(r.tenant)
                            .bind(r.device_id)
                            .bind(r.route)
                            .bind(r.host)
                            .bind(r.method)
                            .bind(r.path)
                            .bind(r.decision)
                            .bind(r.status)
                            .bind(r.reason)
                            .bind(r.policy_version)
                            .bind(r.latency_us)
                            .bind(r.client_ip)
                            .bind(r.transport);
                    }
                    insert.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Writes a fresh batch from the audit queue, the writer's hot path: binary `COPY` on
    /// Postgres (no per-row parsing or planning), [`Store::insert_audit`]'s one transaction on
    /// SQLite. A `COPY` is all or nothing and, unlike `insert_audit`, refuses rows the table
    /// already has: the writer spools a batch that fails, and the spool's replay goes through
    /// `insert_audit`, which skips them — so a retried batch is neither lost nor doubled.
    pub async fn write_audit_batch<R: AsAuditEvent>(
        &self,
        records: &[R],
    ) -> Result<(), StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return self.insert_audit(records).await;
        };
        if records.is_empty() {
            return Ok(());
        }
        use sqlx::postgres::PgPoolCopyExt;
        const COLUMNS: i16 = 18;
        // ~300 bytes a typical row; one allocation for the batch.
        let mut copy = super::pg_copy::BinaryCopy::with_capacity(records.len() * 320);
        for record in records {
            let r = record.as_audit_event();
            copy.row(COLUMNS);
            copy.timestamptz(r.time);
            copy.text(r.request_id);
            copy.text(r.kind);
            copy.opt_text(r.user_id);
            copy.opt_text(r.email);
            copy.opt_text(r.tenant);
            copy.opt_text(r.device_id);
            copy.opt_text(r.route);
            copy.opt_text(r.host);
            copy.opt_text(r.method);
            copy.opt_text(r.path);
            copy.text(r.decision);
            copy.int4(r.status);
            copy.opt_text(r.reason);
            copy.opt_text(r.policy_version);
            copy.int8(r.latency_us);
            copy.opt_text(r.client_ip);
            copy.opt_text(r.transport);
        }
        let mut stream = pool
            .copy_in_raw(
                "COPY audit_events (time, request_id, kind, user_id, email, tenant, device_id, route, host,
                                    method, path, decision, status, reason, policy_version, latency_us, client_ip, transport)
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        if let Err(e) = stream.send(copy.finish()).await {
            // The connection goes back to the pool only once the COPY is ended.
            let _ = stream.abort("audit batch not sent").await;
            return Err(e.into());
        }
        stream.finish().await?;
        Ok(())
    }

    /// One page of the audit rows matching `filter`, newest first (`time DESC, id DESC`),
    /// continuing after `filter.cursor`. Every filter combination is served by an index
    /// whose order is the page's order (docs/audit.md, "Searching"), so the first page of a
    /// search matching millions of rows reads only that page.
    pub async fn search_audit(&self, filter: &AuditFilter) -> Result<AuditPage, StoreError> {
        let (sql, args, limit) = self.search_sql(filter);
        let mut items = on_pool!(self, pool => {
            let mut q = sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql));
            for a in &args {
                q = match a {
                    Arg::Text(v) => q.bind(v),
                    Arg::Int(v) => q.bind(v),
                };
            }
            q.fetch_all(pool).await
        })?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            match items.last() {
                Some(last) => Some(AuditCursor {
                    time: DateTime::parse_from_rfc3339(&last.time)
                        .map_err(|e| {
                            StoreError::Invalid(format!("audit row time `{}`: {e}", last.time))
                        })?
                        .with_timezone(&Utc),
                    id: last.id,
                }),
                None => None,
            }
        } else {
            None
        };
        Ok(AuditPage { items, next_cursor })
    }

    /// How Postgres runs [`Store::search_audit`] for `filter`: `EXPLAIN (ANALYZE, BUFFERS,
    /// FORMAT JSON)`, for the audit benchmark and for an operator asking why a search is
    /// slow. SQLite: `Invalid`.
    pub async fn explain_audit_search(
        &self,
        filter: &AuditFilter,
    ) -> Result<serde_json::Value, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Err(StoreError::Invalid(
                "explain_audit_search needs Postgres".into(),
            ));
        };
        let (sql, args, _) = self.search_sql(filter);
        let mut q = sqlx::query_scalar::<_, Json<serde_json::Value>>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"
        )));
        for a in &args {
            q = match a {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        Ok(q.fetch_one(pool).await?.0)
    }

    /// The statement of [`Store::search_audit`], its binds, and the page size.
    fn search_sql(&self, filter: &AuditFilter) -> (String, Vec<Arg>, usize) {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        // Both backends return `time` as the same fixed-width UTC text. The output column
        // is named `time` too, so every clause below names the table's column as
        // `audit_events.time`: an `ORDER BY time` would sort by the text and use no index.
        let time = if postgres {
            "to_char(audit_events.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        } else {
            "audit_events.time"
        };
        let mut sql = format!(
            "SELECT id, {time} AS time, request_id, kind, email, tenant, route, host, method, path,
                    decision, status, reason, policy_version, latency_us, client_ip, transport
             FROM audit_events WHERE TRUE"
        );
        let mut args: Vec<Arg> = Vec::new();
        let mut bind = |arg: Arg| {
            args.push(arg);
            args.len()
        };
        for (column, value) in [
            (
                "email",
                filter
                    .email
                    .as_deref()
                    .map(|v| v.trim().to_ascii_lowercase()),
            ),
            ("route", filter.route.clone()),
            ("decision", filter.decision.clone()),
            ("tenant", filter.tenant.clone()),
        ] {
            if let Some(v) = value {
                let n = bind(Arg::Text(v));
                sql.push_str(&format!(" AND {column} = ${n}"));
            }
        }
        // Postgres compares timestamptz (the bound text is cast, so the indexes on time are
        // used); SQLite compares the fixed-width text it stores.
        let cast = if postgres { "::timestamptz" } else { "" };
        for (bound, op) in [(filter.since, ">="), (filter.until, "<")] {
            if let Some(t) = bound {
                let n = bind(Arg::Text(fixed_width(t)));
                sql.push_str(&format!(" AND audit_events.time {op} ${n}{cast}"));
            }
        }
        if let Some(c) = filter.cursor {
            let t = bind(Arg::Text(fixed_width(c.time)));
            let id = bind(Arg::Int(c.id));
            sql.push_str(&format!(
                " AND (audit_events.time, audit_events.id) < (${t}{cast}, ${id})"
            ));
        }
        let limit = filter.limit.clamp(1, 100_000) as usize;
        // One row more than the page tells whether another page follows.
        sql.push_str(&format!(
            " ORDER BY audit_events.time DESC, audit_events.id DESC LIMIT {}",
            limit + 1
        ));
        (sql, args, limit)
    }

    /// The partition job (Postgres only; SQLite keeps one table and no rollups): creates
    /// audit partitions ahead, brings the daily rollups behind `audit_user_activity` and
    /// `audit_policy_changes` up to five minutes ago, and drops partitions (and rollup days)
    /// older than `retention_days`. With `recount`, yesterday and today are recounted in
    /// full, which takes in rows that arrived late (a replayed spool); the job does that on
    /// its first run of each UTC day (docs/audit.md, "Rollups"). Returns the partitions
    /// dropped.
    pub async fn maintain_audit_partitions(
        &self,
        retention_days: u32,
        recount: bool,
    ) -> Result<i32, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(0);
        };
        sqlx::query("SELECT gatehouse_audit_ensure_partitions(current_date - 1, 9)")
            .execute(pool)
            .await?;
        // Without a recount, the first day recounted is tomorrow: none, only the rows since
        // the last run are added.
        let recount_from = if recount { -1 } else { 1 };
        sqlx::query(
            "SELECT gatehouse_audit_rollup((now() AT TIME ZONE 'UTC')::date + $1,
                                           now() - interval '5 minutes')",
        )
        .bind(recount_from)
        .execute(pool)
        .await?;
        let keep = i32::try_from(retention_days).unwrap_or(i32::MAX);
        let (dropped,): (i32,) = sqlx::query_as("SELECT gatehouse_audit_drop_partitions($1)")
            .bind(keep)
            .fetch_one(pool)
            .await?;
        for table in ["audit_daily_versions", "audit_daily_users"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE day < current_date - $1"
            )))
            .bind(keep)
            .execute(pool)
            .await?;
        }
        Ok(dropped)
    }

    /// Records an administrator's change in `admin_actions`.
    pub async fn record_admin_action(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO admin_actions (time, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(actor).bind(action).bind(target).bind(Json(detail))
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}

/// The fixed-width UTC text both backends compare times as (`…T…:…:….ffffffZ`). chrono's
/// RFC 3339 writer, not a `format` string: the writer formats every SQLite audit row's
/// time, and a format string is parsed again on each call.
fn fixed_width(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The columns of a SQLite audit insert, in [`Store::insert_audit`]'s bind order.
const SQLITE_AUDIT_COLUMNS: &str = "time, request_id, kind, user_id, email, tenant, device_id, route, host, \
     method, path, decision, status, reason, policy_version, latency_us, client_ip, transport";

/// The most rows one SQLite insert statement carries (log2): 128 rows are 2,304 binds, well
/// under SQLite's 32,766, and past a few dozen rows a statement more rows save nothing.
const SQLITE_MAX_CHUNK_LOG2: usize = 7;

/// The size of the next SQLite insert for `remaining` rows, as log2: the largest power of
/// two that fits, at most 2^[`SQLITE_MAX_CHUNK_LOG2`].
fn sqlite_chunk_log2(remaining: usize) -> usize {
    (remaining.checked_ilog2().unwrap_or(0) as usize).min(SQLITE_MAX_CHUNK_LOG2)
}

/// The SQLite insert of 2^`log2` audit rows (`log2` from [`sqlite_chunk_log2`]), built once
/// per size. `OR IGNORE`, not `ON CONFLICT DO NOTHING`: both skip a row the dedupe index
/// already has (a replayed spool), but under `DO NOTHING` a `NOT NULL` column keeps its
/// default `ABORT`, so SQLite must be able to undo a half-done multi-row statement and
/// journals every page it touches first (the statement journal, ~10 % of the SQLite
/// writer's CPU in a profile). The `NOT NULL` columns are the non-`Option` fields of
/// [`NewAuditEvent`], which never bind a NULL, so `IGNORE` skips nothing else.
fn sqlite_insert_sql(log2: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; SQLITE_MAX_CHUNK_LOG2 + 1] =
        [const { std::sync::OnceLock::new() }; SQLITE_MAX_CHUNK_LOG2 + 1];
    SQL[log2].get_or_init(|| {
        let columns = SQLITE_AUDIT_COLUMNS.split(',').count();
        let row = format!("({})", vec!["?"; columns].join(", "));
        format!(
            "INSERT OR IGNORE INTO audit_events ({SQLITE_AUDIT_COLUMNS}) VALUES {}",
            vec![row; 1 << log2].join(", ")
        )
    })
}

/// One row of `admin_actions`, newest first in [`Store::recent_admin_actions`].
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AdminActionRow {
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Json<serde_json::Value>,
}

impl Store {
    /// The latest administrators' changes, newest first.
    pub async fn recent_admin_actions(
        &self,
        limit: i64,
    ) -> Result<Vec<AdminActionRow>, StoreError> {
        let sql = "SELECT time, actor, action, target, detail FROM admin_actions
                   ORDER BY id DESC LIMIT $1";
        let rows = on_pool!(self, pool => sqlx::query_as(sql).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }
}

/// One column of a batch, for Postgres `UNNEST`.
fn col<'r, T>(rows: &[NewAuditEvent<'r>], f: fn(NewAuditEvent<'r>) -> T) -> Vec<T> {
    rows.iter().copied().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_chunks_are_powers_of_two_that_add_up_to_the_batch() {
        for n in [1, 2, 3, 7, 64, 127, 128, 129, 300, 1000, 100_001] {
            let (mut left, mut chunks) = (n, Vec::new());
            while left > 0 {
                let rows = 1 << sqlite_chunk_log2(left);
                assert!(rows <= 1 << SQLITE_MAX_CHUNK_LOG2 && rows <= left);
                chunks.push(rows);
                left -= rows;
            }
            assert_eq!(chunks.iter().sum::<usize>(), n);
            // Full chunks first, then at most one of each smaller size.
            assert!(chunks.windows(2).all(|w| w[0] >= w[1]), "{n}: {chunks:?}");
        }
    }

    #[test]
    fn fixed_width_time_is_the_text_sqlite_rows_have_always_had() {
        // The format every earlier row was written in; rows compare as text, so it must not
        // change: microseconds always, zeros included, and `Z`.
        for micros in [
            0_i64,
            1,
            1_765_000_000_000_000,
            1_765_000_000_123_456,
            253_402_300_799_999_999,
        ] {
            let t = DateTime::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                fixed_width(t),
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "{micros}"
            );
            assert_eq!(fixed_width(t).len(), 27);
        }
    }

    #[test]
    fn sqlite_insert_has_one_placeholder_per_column_and_row() {
        for log2 in 0..=SQLITE_MAX_CHUNK_LOG2 {
            let rows = 1 << log2;
            let sql = sqlite_insert_sql(log2);
            assert_eq!(sql.matches('?').count(), rows * 18);
            assert_eq!(sql.matches('(').count(), rows + 1);
            // Built once: the same text every time.
            assert!(std::ptr::eq(sql, sqlite_insert_sql(log2)));
        }
    }
}
