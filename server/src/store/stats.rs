//! Decision statistics from `audit_events` for the admin UI's overview (docs/admin.md):
//! decisions per minute by outcome, and the most denied routes and users. The minute
//! bucket is the one statement that differs by backend: Postgres truncates a timestamptz,
//! SQLite cuts the fixed-width UTC text the audit writer stores.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

/// Decisions of one outcome in one minute.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct MinuteCount {
    /// The minute's start, UTC, `YYYY-MM-DDTHH:MM:00Z`.
    pub minute: String,
    pub decision: String,
    pub count: i64,
}

/// A route or user and how many of its requests were denied.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DenialCount {
    pub name: String,
    pub count: i64,
}

/// What the overview charts and lists.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionStats {
    pub per_minute: Vec<MinuteCount>,
    pub top_denied_routes: Vec<DenialCount>,
    pub top_denied_users: Vec<DenialCount>,
}

/// How many routes and users the top lists show.
const TOP: i64 = 10;

impl Store {
    /// Statistics of the decisions audited since `since` (requests decided by verify, the
    /// proxy or gRPC; logins and admin changes are not decisions).
    pub async fn decision_stats(&self, since: DateTime<Utc>) -> Result<DecisionStats, StoreError> {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        let (minute, cast) = if postgres {
            (
                "to_char(date_trunc('minute', time) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"')",
                "::timestamptz",
            )
        } else {
            ("substr(time, 1, 16) || ':00Z'", "")
        };
        // The bound is text on both: Postgres casts it (so the time index is used), SQLite
        // compares it with the fixed-width text it stores.
        let since = since.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let per_minute_sql = format!(
            "SELECT {minute} AS minute, decision, count(*) AS count FROM audit_events
             WHERE kind = 'verify' AND time >= $1{cast}
             GROUP BY 1, 2 ORDER BY 1, 2"
        );
        let top_sql = |column: &str| {
            format!(
                "SELECT {column} AS name, count(*) AS count FROM audit_events
                 WHERE kind = 'verify' AND decision = 'deny' AND {column} IS NOT NULL
                   AND time >= $1{cast}
                 GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT {TOP}"
            )
        };
        let (routes_sql, users_sql) = (top_sql("route"), top_sql("email"));
        let stats = on_pool!(self, pool => {
            let per_minute: Vec<MinuteCount> =
                sqlx::query_as(sqlx::AssertSqlSafe(per_minute_sql.clone()))
                    .bind(&since).fetch_all(pool).await?;
            let top_denied_routes: Vec<DenialCount> =
                sqlx::query_as(sqlx::AssertSqlSafe(routes_sql.clone()))
                    .bind(&since).fetch_all(pool).await?;
            let top_denied_users: Vec<DenialCount> =
                sqlx::query_as(sqlx::AssertSqlSafe(users_sql.clone()))
                    .bind(&since).fetch_all(pool).await?;
            DecisionStats { per_minute, top_denied_routes, top_denied_users }
        });
        Ok(stats)
    }
}
