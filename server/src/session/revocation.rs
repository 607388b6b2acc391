//! Revocation across replicas: every replica LISTENs on the store's revocation channel and
//! drops the announced sessions from its cache, so a revoked session stops working on all
//! replicas within a second instead of after `session.cache_ttl`.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::resolver::SessionResolver;
use crate::store::{REVOCATION_CHANNEL, REVOKE_ALL};

/// Listens for revocations until the process ends, reconnecting after connection loss.
///
/// Announcements sent while the listener was away are lost, so after every reconnection the
/// whole cache is cleared and sessions are re-read (with any revocation) from the store. Not
/// before: while the database is down, the cache is what keeps verify answering, and no
/// revocation can be written then anyway.
pub fn spawn_listener(pool: PgPool, sessions: SessionResolver) {
    tokio::spawn(async move {
        let mut reconnecting = false;
        loop {
            let error = listen(&pool, &sessions, &mut reconnecting).await;
            reconnecting = true;
            tracing::warn!(error = %error, "revocation listener lost its connection; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Listens until the connection is lost; returns why.
async fn listen(pool: &PgPool, sessions: &SessionResolver, reconnecting: &mut bool) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(REVOCATION_CHANNEL).await {
        return e;
    }
    if std::mem::take(reconnecting) {
        sessions.evict_all();
        tracing::info!("revocation listener reconnected; session cache cleared");
    } else {
        tracing::info!(
            channel = REVOCATION_CHANNEL,
            "listening for session revocations"
        );
    }
    loop {
        // `try_recv` answers `None` when the connection dropped.
        match listener.try_recv().await {
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
            Ok(None) => return sqlx::Error::Protocol("notification connection closed".into()),
            Err(e) => return e,
        }
    }
}
