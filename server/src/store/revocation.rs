//! Ending sessions (logout, back-channel logout, a refused refresh, the CLI and admin API)
//! and telling every replica's session cache at once: Postgres `NOTIFY` on
//! [`REVOCATION_CHANNEL`], heard by `session::revocation`. Same SQL on both backends (see
//! the parent module).

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

/// The Postgres channel revocations are announced on.
pub const REVOCATION_CHANNEL: &str = "gatehouse_revocations";
/// The payload meaning "every session was revoked".
pub const REVOKE_ALL: &str = "*";

/// What [`Store::announce_revocation`] announces.
pub(super) enum Revoked<'a> {
    Sessions(&'a [String]),
    All,
}

/// What logout needs of the session it ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndedSession {
    pub id: String,
    pub user_id: String,
    pub id_token_enc: Option<Vec<u8>>,
}

impl Store {
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

    /// Revokes the session of a token hash (logout); returns it if it was live.
    pub async fn revoke_session_by_token(
        &self,
        token_hash: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EndedSession>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
                   WHERE token_hash = $1 AND revoked_at IS NULL
                   RETURNING id, user_id, id_token_enc";
        let ended: Option<EndedSession> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(token_hash).bind(now).bind(reason).fetch_optional(pool).await)?;
        if ended.is_some() {
            self.announce_revocation(Revoked::Sessions(&[token_hash.to_string()]))
                .await?;
        }
        Ok(ended)
    }

    /// Revokes sessions named by a back-channel logout: by IdP session id (`sid`, of that
    /// subject when both are given) or, with only `sub`, every session of that subject.
    /// Sessions of the subject whose ID token carried no `sid` cannot be told apart, so a
    /// `sub` + `sid` logout ends them too. Returns the revoked sessions' (user id, token
    /// hash).
    pub async fn revoke_sessions_by_idp(
        &self,
        subject: Option<&str>,
        sid: Option<&str>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $3, revoke_reason = $4
                   WHERE revoked_at IS NULL
                     AND ($2 IS NULL OR idp_sid = $2 OR ($1 IS NOT NULL AND idp_sid IS NULL))
                     AND ($1 IS NULL OR user_id IN (SELECT id FROM users WHERE subject = $1))
                     AND ($1 IS NOT NULL OR $2 IS NOT NULL)
                   RETURNING user_id, token_hash";
        let rows: Vec<(String, String)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(subject).bind(sid).bind(now).bind(reason).fetch_all(pool).await)?;
        let hashes: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        self.announce_revocation(Revoked::Sessions(&hashes)).await?;
        Ok(rows)
    }

    /// Revokes one session by id (a refresh the IdP refused); returns its token hash.
    pub async fn revoke_session_by_id(
        &self,
        session_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $2, revoke_reason = $3
                   WHERE id = $1 AND revoked_at IS NULL RETURNING token_hash";
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(session_id).bind(now).bind(reason).fetch_optional(pool).await)?;
        if let Some((hash,)) = &row {
            self.announce_revocation(Revoked::Sessions(std::slice::from_ref(hash)))
                .await?;
        }
        Ok(row.map(|r| r.0))
    }

    /// Tells every replica to drop the cached sessions of a user whose claims changed, so
    /// the next request re-reads groups from the store.
    pub async fn announce_user_changed(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let hashes = self
            .live_session_hashes_where(SessionColumn::User, user_id)
            .await?;
        self.announce_revocation(Revoked::Sessions(&hashes)).await?;
        Ok(hashes)
    }

    /// Tells every replica's session cache (Postgres `NOTIFY` on [`REVOCATION_CHANNEL`]) to
    /// drop revoked sessions now rather than when their cache entry lapses. SQLite serves
    /// one node, whose cache entries lapse after `session.cache_ttl`.
    pub(super) async fn announce_revocation(&self, revoked: Revoked<'_>) -> Result<(), StoreError> {
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

    pub(super) async fn live_session_hashes_where(
        &self,
        column: SessionColumn,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = match column {
            SessionColumn::User => {
                "SELECT token_hash FROM sessions WHERE revoked_at IS NULL AND user_id = $1"
            }
            SessionColumn::Device => {
                "SELECT token_hash FROM sessions WHERE revoked_at IS NULL AND device_id = $1"
            }
        };
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(value).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

/// Which session column [`Store::live_session_hashes_where`] selects on.
#[derive(Debug, Clone, Copy)]
pub(super) enum SessionColumn {
    User,
    Device,
}
