//! The session and identity store: Postgres for production and several replicas, SQLite as
//! the embedded default for one node (docs/audit.md).
//!
//! Both backends share one schema shape (text ids, timestamp columns, JSON columns) and one
//! set of SQL statements: `$N` placeholders work in both, and only the migrations differ.
//! Times are bound as `DateTime<Utc>`; sqlx writes them to SQLite as RFC 3339 text in one
//! fixed form (UTC, `+00:00`), whose text order is time order, so SQL comparisons of times
//! mean the same on both backends as long as every time is written through sqlx.
//! [`on_pool!`] runs the same statement on whichever pool is configured.
//!
//! One file per table or concern: [`sessions`], [`revocation`] (ending sessions, telling
//! replicas), [`users`] (users, groups, tenants), [`devices`], [`login`] (pending logins),
//! [`audit`], [`stats`] (decision counts for the admin UI), [`replay`] (audited decisions to re-decide), [`policy_versions`]; [`records`] holds the session rows the decision reads.
//! This file has the handle, the backends, migrations and errors.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// What a store operation can fail with; `Invalid` carries a message meant for the user.
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

mod audit;
mod devices;
mod login;
mod pg_copy;
mod policy_versions;
mod records;
mod replay;
mod revocation;
mod sessions;
mod stats;
mod users;

pub use audit::{
    AdminActionRow, AsAuditEvent, AuditCursor, AuditFilter, AuditPage, AuditRow, InvalidCursor,
    NewAuditEvent,
};
pub use devices::{DeviceChange, DeviceListing};
pub use login::LoginState;
pub use records::{DeviceRecord, NewSession, SessionRecord, StoredSession, UserRecord};
pub use replay::AuditedDecision;
pub use revocation::{EndedSession, REVOCATION_CHANNEL, REVOKE_ALL};
pub use sessions::{RefreshCandidate, SessionListing};
pub use stats::{DecisionStats, DenialCount, MinuteCount};
pub use users::{GroupSource, IdpUser, StoredUser};

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

    /// `postgres` or `sqlite`.
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

    /// Closes the pool, waiting for connections in use (at shutdown).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
