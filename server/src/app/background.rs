//! Start-up, step three: the background tasks, each started under the [`Supervisor`]
//! (`crate::tasks`), with what a security product needs of it:
//!
//! - `audit_writer`: restarted with backoff, gating readiness. Its queue, spool and
//!   unwritten records outlive a failed run, so no record is lost meanwhile; `/readyz`
//!   fails loudly until it writes again. Started first, so that it is stopped last and
//!   drains after every task that may still queue a record.
//! - `revocation_listener` (Postgres only): restarted with backoff, gating readiness. While
//!   it is not listening this replica would keep serving revoked sessions from its cache.
//!   The first LISTEN is done here, before the listeners serve, so no revocation announced
//!   after start-up is missed.
//! - `session_refresher`, `policy_watcher`, `sighup_reloads`, `audit_partitions`,
//!   `login_state_purge`: restarted with backoff, reported in `/readyz`, not gating it (the
//!   live bundle and sessions stay valid while one of them restarts).
//! - `oidc_discovery`: once, at start.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::audit::AuditWriter;
use crate::oidc::provider::OidcProvider;
use crate::oidc::refresh::Refresher;
use crate::reload::{PolicyReloader, PolicyWatcher, watch};
use crate::session::resolver::SessionResolver;
use crate::session::revocation;
use crate::store::Store;
use crate::tasks::{Supervisor, TaskContext, TaskError, TaskRegistry, TaskSpec};

/// What [`super::state::build`] prepared for the tasks.
pub(super) struct Background {
    /// The registry `AppState` holds (for `/readyz`).
    pub tasks: TaskRegistry,
    pub store: Store,
    pub audit_writer: AuditWriter,
    /// Postgres only: SQLite has one replica and no notifications.
    pub revocations: Option<(PgPool, SessionResolver)>,
    pub refresher: Option<Refresher>,
    /// Read the IdP's discovery document at start.
    pub discovery: Option<Arc<OidcProvider>>,
    pub watcher: PolicyWatcher,
    pub reloader: Arc<PolicyReloader>,
    pub retention_days: u32,
}

/// Starts every background task.
pub(super) async fn start(b: Background) -> Supervisor {
    let mut supervisor = Supervisor::new(b.tasks);

    let writer = b.audit_writer.supervised();
    supervisor.spawn(
        TaskSpec::restarted("audit_writer").gating_readiness(),
        move |ctx| {
            let writer = writer.clone();
            async move { writer.run(ctx).await }
        },
    );

    if let Some((pool, sessions)) = b.revocations {
        let mut subscribed = match revocation::subscribe(&pool).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for revocations at start; retrying");
                None
            }
        };
        supervisor.spawn(
            TaskSpec::restarted(revocation::TASK)
                .gating_readiness()
                .reporting_up(),
            move |ctx| revocation::listen(pool.clone(), sessions.clone(), subscribed.take(), ctx),
        );
    }

    if let Some(refresher) = b.refresher {
        let refresher = Arc::new(refresher);
        supervisor.spawn(TaskSpec::restarted("session_refresher"), move |ctx| {
            let refresher = refresher.clone();
            async move { refresher.run(ctx).await }
        });
    }

    let dir = b.reloader.dir().to_path_buf();
    let reloader = b.reloader.clone();
    let mut watcher = Some(b.watcher);
    supervisor.spawn(TaskSpec::restarted("policy_watcher"), move |ctx| {
        // The first run uses the watcher made at start; a restart watches afresh.
        let made = watcher
            .take()
            .map_or_else(|| watch(&dir, reloader.clone()), Ok);
        async move {
            made.map_err(|e| {
                TaskError::new(format_args!("cannot watch the policy directory: {e}"))
            })?
            .run(ctx)
            .await
        }
    });

    let reloader = b.reloader;
    supervisor.spawn(TaskSpec::restarted("sighup_reloads"), move |ctx| {
        sighup_reloads(reloader.clone(), ctx)
    });

    let (store, retention_days) = (b.store.clone(), b.retention_days);
    supervisor.spawn(TaskSpec::restarted("audit_partitions"), move |ctx| {
        partition_maintenance(store.clone(), retention_days, ctx)
    });

    let store = b.store;
    supervisor.spawn(TaskSpec::restarted("login_state_purge"), move |ctx| {
        login_state_purge(store.clone(), ctx)
    });

    if let Some(provider) = b.discovery {
        supervisor.spawn(TaskSpec::once("oidc_discovery"), move |_| {
            initial_discovery(provider.clone())
        });
    }
    supervisor
}

/// Reads the IdP's discovery document at start so the first login does not wait for it;
/// an IdP that is down now is retried at the next login.
async fn initial_discovery(provider: Arc<OidcProvider>) -> Result<(), TaskError> {
    if let Err(e) = provider.discovered().await {
        tracing::warn!(error = %e, "OIDC discovery failed at start; logins retry it");
    }
    Ok(())
}

/// Drops logins that were started and never finished, every minute.
async fn login_state_purge(store: Store, mut ctx: TaskContext) -> Result<(), TaskError> {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every_minute.tick() => {}
            _ = ctx.shutdown() => return Ok(()),
        }
        if let Err(e) = store.purge_login_states(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "purging expired login states failed");
        }
    }
}

/// Keeps daily audit partitions created ahead, the daily rollups current, and drops expired
/// partitions, hourly. The first run of each UTC day (and the first after a start) recounts
/// yesterday and today in full, taking in rows a replayed spool wrote late
/// (docs/audit.md, "Rollups").
async fn partition_maintenance(
    store: Store,
    retention_days: u32,
    mut ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    let mut recounted_on: Option<chrono::NaiveDate> = None;
    loop {
        tokio::select! {
            _ = every_hour.tick() => {}
            _ = ctx.shutdown() => return Ok(()),
        }
        let today = chrono::Utc::now().date_naive();
        let recount = recounted_on != Some(today);
        let result = store
            .maintain_audit_partitions(retention_days, recount)
            .await;
        if recount && result.is_ok() {
            recounted_on = Some(today);
        }
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                dropped = n,
                retention_days,
                "expired audit partitions dropped"
            ),
            Err(e) => tracing::warn!(error = %e, "audit partition maintenance failed"),
        }
    }
}

/// `SIGHUP` reloads the policy bundle, as operators expect of a daemon.
async fn sighup_reloads(
    reloader: Arc<PolicyReloader>,
    mut ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| {
            TaskError::new(format_args!(
                "cannot listen for SIGHUP (reload with the file watcher or the admin API): {e}"
            ))
        })?;
    loop {
        tokio::select! {
            hangup = hangups.recv() => {
                if hangup.is_none() {
                    return Err(TaskError::new("the SIGHUP stream ended"));
                }
            }
            _ = ctx.shutdown() => return Ok(()),
        }
        reloader.reload("sighup").await;
    }
}
