//! Revocation across replicas: every replica LISTENs on the store's revocation channel and
//! drops the announced sessions from its cache, so a revoked session stops working on all
//! replicas within a second instead of after `session.cache_ttl`.
//!
//! The listener is a supervised task (`crate::tasks`) that gates readiness: while it is not
//! listening this replica would miss revocations, so `/readyz` fails (with the reason) until
//! the supervisor has restarted it, with backoff, and it listens again.

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::resolver::SessionResolver;
use crate::store::{REVOCATION_CHANNEL, REVOKE_ALL};
use crate::tasks::{TaskContext, TaskError};

/// The supervised task's name.
pub const TASK: &str = "revocation_listener";

/// A connection that LISTENs on the revocation channel.
pub async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(REVOCATION_CHANNEL).await?;
    Ok(listener)
}

/// One run of the listener: LISTEN (on `subscribed`, when start-up already did, else on a
/// new connection) and evict announced sessions until shutdown; an error when the
/// connection is lost, so that the supervisor restarts it.
///
/// Announcements sent while the listener was away are lost, so a restarted run clears the
/// whole cache once it listens again, and sessions are re-read (with any revocation) from
/// the store. Not before: while the database is down, the cache is what keeps verify
/// answering, and no revocation can be written then anyway.
pub async fn listen(
    pool: PgPool,
    sessions: SessionResolver,
    subscribed: Option<PgListener>,
    mut ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut listener = match subscribed {
        Some(listener) => listener,
        None => subscribe(&pool)
            .await
            .map_err(|e| TaskError::new(format_args!("cannot listen for revocations: {e}")))?,
    };
    if ctx.is_restart() {
        sessions.evict_all();
        tracing::info!("revocation listener reconnected; session cache cleared");
    } else {
        tracing::info!(
            channel = REVOCATION_CHANNEL,
            "listening for session revocations"
        );
    }
    ctx.up();
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            _ = ctx.shutdown() => return Ok(()),
        };
        // `try_recv` answers `None` when the connection dropped.
        match received {
            Ok(Some(notification)) => {
                let payload = notification.payload();
                if payload == REVOKE_ALL {
                    sessions.evict_all();
                } else {
                    let hashes: Vec<String> = payload.split(',').map(str::to_string).collect();
                    sessions.evict_hashes(&hashes).await;
                }
                tracing::info!(
                    sessions = payload.split(',').count(),
                    "revoked sessions evicted from the cache"
                );
            }
            Ok(None) => {
                return Err(TaskError::new(
                    "revocation listener lost its connection: notification connection closed",
                ));
            }
            Err(e) => {
                return Err(TaskError::new(format_args!(
                    "revocation listener lost its connection: {e}"
                )));
            }
        }
    }
}
