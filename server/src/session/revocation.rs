//! Revocation across replicas: every replica LISTENs on the store's revocation channel and
//! drops the announced sessions from its cache, so a revoked session stops working on all
//! replicas within a second instead of after `session.cache_ttl`.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::resolver::SessionResolver;
use crate::store::{REVOCATION_CHANNEL, REVOKE_ALL};

/// Listens for revocations until the process ends; reconnects after connection loss.
pub fn spawn_listener(pool: PgPool, sessions: SessionResolver) {
    tokio::spawn(async move {
        loop {
            match listen(&pool, &sessions).await {
                Ok(()) => return,
                Err(e) => {
                    // Announcements made while we were away are lost: forget every cached
                    // session, so each is re-read (with its revocation) from the store.
                    sessions.evict_all();
                    tracing::warn!(error = %e, "revocation listener lost its connection; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen(pool: &PgPool, sessions: &SessionResolver) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(REVOCATION_CHANNEL).await?;
    tracing::info!(
        channel = REVOCATION_CHANNEL,
        "listening for session revocations"
    );
    loop {
        // `try_recv` answers `None` when the connection dropped (it reconnects on the next
        // call): anything announced meanwhile was missed.
        match listener.try_recv().await? {
            Some(notification) => {
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
            None => {
                sessions.evict_all();
                tracing::warn!("revocation listener reconnected; session cache cleared");
            }
        }
    }
}
