//! The session and identity store: Postgres for production and several replicas, SQLite as
//! the embedded default for one node (DESIGN §9).
//!
//! Both backends share one schema shape (text ids, timestamp columns, JSON columns) and one
//! set of SQL statements: `$N` placeholders work in both, and only the migrations differ.
//! Times are bound as `DateTime<Utc>`; sqlx writes them to SQLite as RFC 3339 text in one
//! fixed form (UTC, `+00:00`), whose text order is time order, so SQL comparisons of times
//! mean the same on both backends as long as every time is written through sqlx. [`on_pool!`] runs the same statement on
//! whichever pool is configured.

mod records;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::{PgPool, SqlitePool};

pub use records::{
    AsAuditEvent, AuditFilter, AuditRow, DeviceRecord, IdpUser, NewAuditEvent, NewSession,
    SessionRecord, StoredSession, UserRecord,
};

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A handle to the store; cheap to clone (pools are reference counted).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to the configured pool. The body is compiled once per
/// backend, so a statement that does not suit both fails to compile only if the types do.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Postgres($pool) => $body,
            Backend::Sqlite($pool) => $body,
        }
    };
}

mod login;
pub use login::{DeviceListing, EndedSession, LoginState, RefreshCandidate};

/// The Postgres channel revocations are announced on.
pub const REVOCATION_CHANNEL: &str = "gatehouse_revocations";
/// The payload meaning "every session was revoked".
pub const REVOKE_ALL: &str = "*";

enum Revoked<'a> {
    Sessions(&'a [String]),
    All,
}

/// Where a group assignment comes from: the IdP's claim or the store (admin/CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSource {
    Idp,
    Store,
}

impl GroupSource {
    fn as_str(self) -> &'static str {
        match self {
            GroupSource::Idp => "idp",
            GroupSource::Store => "store",
        }
    }
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite:…`). SQLite files are created if missing.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(e.to_string()))?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .journal_mode(if in_memory {
                    SqliteJournalMode::Memory
                } else {
                    SqliteJournalMode::Wal
                });
            // An in-memory database exists per connection: keep exactly one.
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { 8 })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            Backend::Sqlite(pool)
        } else {
            return Err(StoreError::Url(
                "expected postgres://, postgresql:// or sqlite:".into(),
            ));
        };
        Ok(Store { backend })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The Postgres pool, for features that exist only there (LISTEN/NOTIFY, partitions).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// Applies pending migrations. Safe to run from several replicas at once (sqlx takes an
    /// advisory lock on Postgres).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(p) => PG_MIGRATOR.run(p).await?,
            Backend::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Creates or updates a user keyed by (lower-cased) email; returns the user's id.
    pub async fn upsert_user_by_email(
        &self,
        email: &str,
        name: Option<&str>,
        username: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let id = uuid::Uuid::new_v4().to_string();
        let sql = "INSERT INTO users (id, email, name, username, claims, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, '{}', $5, $5)
                   ON CONFLICT (email) DO UPDATE SET
                       name = COALESCE(EXCLUDED.name, users.name),
                       username = COALESCE(EXCLUDED.username, users.username),
                       updated_at = EXCLUDED.updated_at
                   RETURNING id";
        let row: (String,) = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&id).bind(&email).bind(name).bind(username).bind(now)
            .fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// Replaces the user's groups of one source with `groups`.
    pub async fn set_user_groups(
        &self,
        user_id: &str,
        source: GroupSource,
        groups: &[String],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND source = $2")
                .bind(user_id).bind(source.as_str())
                .execute(&mut *tx).await?;
            for group in groups {
                sqlx::query("INSERT INTO user_groups (user_id, group_name, source) VALUES ($1, $2, $3)
                             ON CONFLICT DO NOTHING")
                    .bind(user_id).bind(group).bind(source.as_str())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// Makes the user a member of `tenant` with `role`, creating the tenant if needed.
    pub async fn add_tenant_member(
        &self,
        tenant: &str,
        user_id: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT DO NOTHING")
                .bind(tenant).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO tenant_members (tenant_id, user_id, role) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role")
                .bind(tenant).bind(user_id).bind(role)
                .execute(&mut *tx).await?;
            tx.commit().await
        })?;
        Ok(())
    }

    pub async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (id, token_hash, user_id, device_id, created_at, expires_at,
                                         last_seen_at, auth_time, amr, ip, user_agent, idp_sid, idp_claims,
                                         refresh_token_enc, id_token_enc, claims_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8, $9, $10, $11, $12, $13, $14, $5)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(&s.id).bind(&s.token_hash).bind(&s.user_id).bind(&s.device_id)
            .bind(s.created_at).bind(s.expires_at).bind(s.auth_time)
            .bind(Json(&s.amr)).bind(&s.ip).bind(&s.user_agent).bind(&s.idp_sid)
            .bind(Json(&s.idp_claims)).bind(&s.refresh_token_enc).bind(&s.id_token_enc)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Loads a session by token hash with its user, groups, roles, tenants and device.
    /// Returns revoked and expired sessions too: the caller decides, and says why.
    pub async fn find_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let session_sql = "SELECT id, user_id, device_id, created_at, expires_at, last_seen_at,
                                  auth_time, amr, revoked_at, idp_claims
                           FROM sessions WHERE token_hash = $1";
        let user_sql = "SELECT id, subject, email, name, username, claims FROM users WHERE id = $1";
        let groups_sql =
            "SELECT DISTINCT group_name FROM user_groups WHERE user_id = $1 ORDER BY group_name";
        let roles_sql = "SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role";
        let tenants_sql =
            "SELECT tenant_id, role FROM tenant_members WHERE user_id = $1 ORDER BY tenant_id";
        let device_sql = "SELECT id, registered, managed, trust, posture, cert_fingerprint FROM devices WHERE id = $1";
        on_pool!(self, pool => {
            let session: Option<StoredSession> = sqlx::query_as(session_sql)
                .bind(token_hash).fetch_optional(pool).await?;
            let Some(session) = session else { return Ok(None) };
            let user: Option<UserRecord> = sqlx::query_as(user_sql)
                .bind(&session.user_id).fetch_optional(pool).await?;
            let Some(user) = user else { return Ok(None) };
            let groups: Vec<(String,)> = sqlx::query_as(groups_sql)
                .bind(&user.id).fetch_all(pool).await?;
            let roles: Vec<(String,)> = sqlx::query_as(roles_sql)
                .bind(&user.id).fetch_all(pool).await?;
            let tenants: Vec<(String, String)> = sqlx::query_as(tenants_sql)
                .bind(&user.id).fetch_all(pool).await?;
            let device: Option<DeviceRecord> = match &session.device_id {
                Some(id) => sqlx::query_as(device_sql).bind(id).fetch_optional(pool).await?,
                None => None,
            };
            Ok(Some(SessionRecord {
                session,
                user,
                groups: groups.into_iter().map(|g| g.0).collect(),
                roles: roles.into_iter().map(|r| r.0).collect(),
                tenants,
                device,
            }))
        })
    }

    /// Records activity for the idle timeout. Called coalesced, not on every request.
    pub async fn touch_session(
        &self,
        session_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(session_id).bind(at).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Revokes every live session of the user with `email`; returns the revoked sessions'
    /// token hashes so caches can drop them.
    pub async fn revoke_sessions_by_email(
        &self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let sql = "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
                   WHERE revoked_at IS NULL AND user_id IN (SELECT id FROM users WHERE email = $1)
                   RETURNING token_hash";
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&email).bind(now).bind(reason).fetch_all(pool).await)?;
        let hashes: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        self.announce_revocation(Revoked::Sessions(&hashes)).await?;
        Ok(hashes)
    }

    /// Revokes every live session; returns their token hashes.
    pub async fn revoke_all_sessions(
        &self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE revoked_at IS NULL
                   RETURNING token_hash";
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(now).bind(reason).fetch_all(pool).await)?;
        self.announce_revocation(Revoked::All).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Tells every replica's session cache (Postgres `NOTIFY` on [`REVOCATION_CHANNEL`]) to
    /// drop revoked sessions now rather than when their cache entry lapses. SQLite serves
    /// one node, whose cache entries lapse after `session.cache_ttl`.
    async fn announce_revocation(&self, revoked: Revoked<'_>) -> Result<(), StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        let payloads: Vec<String> = match revoked {
            Revoked::All => vec![REVOKE_ALL.to_string()],
            // NOTIFY payloads are limited to 8,000 bytes: 100 hashes of 64 hex digits each.
            Revoked::Sessions(hashes) => hashes.chunks(100).map(|c| c.join(",")).collect(),
        };
        for payload in payloads {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(REVOCATION_CHANNEL)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

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
                fn col<'r, T>(rows: &[NewAuditEvent<'r>], f: fn(NewAuditEvent<'r>) -> T) -> Vec<T> {
                    rows.iter().copied().map(f).collect()
                }
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

    /// Registers (or updates) the device identified by an mTLS client certificate
    /// fingerprint (`sha256:<hex>` or `sha1:<hex>`); returns its id.
    pub async fn register_cert_device(
        &self,
        fingerprint: &str,
        managed: bool,
        trust: &str,
        owner_email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        if !matches!(trust, "low" | "medium" | "high") {
            return Err(StoreError::Invalid(format!(
                "trust must be low, medium or high, not `{trust}`"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let owner = owner_email.map(|e| e.trim().to_ascii_lowercase());
        let sql = "INSERT INTO devices (id, user_id, cert_fingerprint, registered, managed, trust, posture, created_at)
                   VALUES ($1, (SELECT id FROM users WHERE email = $2), $3, TRUE, $4, $5, '{}', $6)
                   ON CONFLICT (cert_fingerprint) DO UPDATE SET
                       registered = TRUE, managed = EXCLUDED.managed, trust = EXCLUDED.trust,
                       user_id = COALESCE(EXCLUDED.user_id, devices.user_id)
                   RETURNING id";
        let row: (String,) = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&id).bind(&owner).bind(fingerprint).bind(managed).bind(trust).bind(now)
            .fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// The device registered for a client certificate fingerprint.
    pub async fn find_cert_device(
        &self,
        fingerprint: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = "SELECT id, registered, managed, trust, posture, cert_fingerprint FROM devices WHERE cert_fingerprint = $1";
        let device = on_pool!(self, pool => sqlx::query_as(sql).bind(fingerprint).fetch_optional(pool).await)?;
        Ok(device)
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

    /// Records that a bundle version was loaded (first and last load time, file list).
    pub async fn record_policy_version(
        &self,
        version: &str,
        files: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO policy_versions (version, files, first_loaded_at, last_loaded_at)
                   VALUES ($1, $2, $3, $3)
                   ON CONFLICT (version) DO UPDATE SET last_loaded_at = EXCLUDED.last_loaded_at";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(version).bind(Json(files)).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
