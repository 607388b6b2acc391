//! Audited decisions as the admin console re-decides them (docs/admin.md): one by id for the
//! playground's replay, or the newest of a window for the impact preview. Unlike the audit
//! search's rows these carry the device id, so a replay sees the device as it is now.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

/// An audited decision with what re-deciding it needs.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditedDecision {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub request_id: String,
    pub email: Option<String>,
    pub device_id: Option<String>,
    pub route: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub status: i32,
    pub reason: Option<String>,
    pub client_ip: Option<String>,
}

const COLUMNS: &str = "id, time, request_id, email, device_id, route, host, method, path, decision, status, reason, client_ip";

impl Store {
    /// The decision audited as row `id` (`kind = 'verify'`: logins and admin changes are
    /// not requests to re-decide).
    pub async fn audited_decision(&self, id: i64) -> Result<Option<AuditedDecision>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE id = $1 AND kind = 'verify'");
        let row = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// The newest `limit` decisions audited since `since`, newest first.
    pub async fn audited_decisions_since(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AuditedDecision>, StoreError> {
        // Postgres compares timestamptz; SQLite the fixed-width UTC text it stores.
        let cast = match self.backend {
            Backend::Postgres(_) => "::timestamptz",
            Backend::Sqlite(_) => "",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events
             WHERE kind = 'verify' AND time >= $1{cast}
             ORDER BY time DESC, id DESC LIMIT $2"
        );
        let since = since.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let rows = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&since).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }
}
