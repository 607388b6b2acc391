//! The audit trail's tables: `audit_events` (written in batches by the audit writer, read
//! by `audit query`, partitioned by day on Postgres) and `admin_actions`. The store defines
//! the rows it writes ([`NewAuditEvent`]); the audit module lends its records as such rows.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

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

/// Filters for [`super::Store::query_audit`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub email: Option<String>,
    pub route: Option<String>,
    pub decision: Option<String>,
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// One audit row as `audit query` prints it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
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
                // batch size. The arrays borrow the records' text.
                let rows: Vec<NewAuditEvent<'_>> =
                    records.iter().map(AsAuditEvent::as_audit_event).collect();
                sqlx::query(
                    "INSERT INTO audit_events (time, request_id, kind, user_id, email, tenant, device_id, route, host,
                                               method, path, decision, status, reason, policy_version, latency_us, client_ip)
                     SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                          $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                          $13::int[], $14::text[], $15::text[], $16::bigint[], $17::text[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(col(&rows, |r| r.time))
                .bind(col(&rows, |r| r.request_id))
                .bind(col(&rows, |r| r.kind))
                .bind(col(&rows, |r| r.user_id))
                .bind(col(&rows, |r| r.email))
                .bind(col(&rows, |r| r.tenant))
                .bind(col(&rows, |r| r.device_id))
                .bind(col(&rows, |r| r.route))
                .bind(col(&rows, |r| r.host))
                .bind(col(&rows, |r| r.method))
                .bind(col(&rows, |r| r.path))
                .bind(col(&rows, |r| r.decision))
                .bind(col(&rows, |r| r.status))
                .bind(col(&rows, |r| r.reason))
                .bind(col(&rows, |r| r.policy_version))
                .bind(col(&rows, |r| r.latency_us))
                .bind(col(&rows, |r| r.client_ip))
                .execute(pool)
                .await?;
            }
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for record in records {
                    let r = record.as_audit_event();
                    sqlx::query(
                        "INSERT INTO audit_events (time, request_id, kind, user_id, email, tenant, device_id, route, host,
                                                   method, path, decision, status, reason, policy_version, latency_us, client_ip)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                         ON CONFLICT DO NOTHING",
                    )
                    // Fixed-width UTC text, so the security team's `time > '…'` compares right.
                    .bind(r.time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
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
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Audit rows matching `filter`, newest first.
    pub async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        // Both backends return `time` as the same fixed-width UTC text.
        let time = if postgres {
            "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        } else {
            "time"
        };
        let mut sql = format!(
            "SELECT {time} AS time, request_id, kind, email, tenant, route, host, method, path, decision,
                    status, reason, policy_version, latency_us, client_ip
             FROM audit_events WHERE 1 = 1"
        );
        let mut text_args: Vec<String> = Vec::new();
        let mut push = |sql: &mut String, column: &str, op: &str, value: String| {
            text_args.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", text_args.len()));
        };
        if let Some(v) = &filter.email {
            push(&mut sql, "email", "=", v.trim().to_ascii_lowercase());
        }
        if let Some(v) = &filter.route {
            push(&mut sql, "route", "=", v.clone());
        }
        if let Some(v) = &filter.decision {
            push(&mut sql, "decision", "=", v.clone());
        }
        if let Some(v) = &filter.tenant {
            push(&mut sql, "tenant", "=", v.clone());
        }
        // Postgres compares timestamptz (the bound text is cast, so the time index is used);
        // SQLite compares the fixed-width text.
        let cast = if postgres { "::timestamptz" } else { "" };
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        for (bound, op) in [(filter.since, ">="), (filter.until, "<")] {
            if let Some(t) = bound {
                text_args.push(fmt(t));
                sql.push_str(&format!(" AND time {op} ${}{cast}", text_args.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY time DESC, id DESC LIMIT {}",
            filter.limit.clamp(1, 100_000)
        ));
        let rows = on_pool!(self, pool => {
            let mut q = sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql.clone()));
            for a in &text_args {
                q = q.bind(a);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows)
    }

    /// Creates audit partitions ahead and drops those older than `retention_days`
    /// (Postgres only; SQLite keeps one table). Returns the partitions dropped.
    pub async fn maintain_audit_partitions(&self, retention_days: u32) -> Result<i32, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(0);
        };
        sqlx::query("SELECT gatehouse_audit_ensure_partitions(current_date - 1, 9)")
            .execute(pool)
            .await?;
        let keep = i32::try_from(retention_days).unwrap_or(i32::MAX);
        let (dropped,): (i32,) = sqlx::query_as("SELECT gatehouse_audit_drop_partitions($1)")
            .bind(keep)
            .fetch_one(pool)
            .await?;
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

/// One column of a batch, for Postgres `UNNEST`.
fn col<'r, T>(rows: &[NewAuditEvent<'r>], f: fn(NewAuditEvent<'r>) -> T) -> Vec<T> {
    rows.iter().copied().map(f).collect()
}
