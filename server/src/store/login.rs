//! Store operations of the OIDC login: pending logins, IdP users, browser devices, logout
//! and server-side refresh. Same SQL on both backends (see the parent module).

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Backend, GroupSource, IdpUser, Revoked, Store, StoreError};

/// A pending login, between `/auth/login` and `/auth/callback`. Its `Debug` hides the
/// nonce and the PKCE verifier.
#[derive(Clone, sqlx::FromRow)]
pub struct LoginState {
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_to: String,
    pub expires_at: DateTime<Utc>,
    /// SHA-256 of the login-binding cookie given to the browser that started the login.
    pub browser_hash: String,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("redirect_to", &self.redirect_to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A session whose IdP claims are due to be re-read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshCandidate {
    pub id: String,
    pub user_id: String,
    pub subject: Option<String>,
    pub refresh_token_enc: Vec<u8>,
    /// `refreshed_at`, or `created_at` before the first refresh: the claim token.
    pub last_refresh: DateTime<Utc>,
    /// When the session's claims were last read from the IdP successfully.
    pub claims_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What logout needs of the session it ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndedSession {
    pub id: String,
    pub user_id: String,
    pub id_token_enc: Option<Vec<u8>>,
}

impl Store {
    pub async fn save_login_state(
        &self,
        state_hash: &str,
        state: &LoginState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO login_states (state_hash, nonce, pkce_verifier, redirect_to, created_at, expires_at, browser_hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(state_hash).bind(&state.nonce).bind(&state.pkce_verifier)
            .bind(&state.redirect_to).bind(now).bind(state.expires_at).bind(&state.browser_hash)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Removes and returns a pending login: a state works once, even when two callbacks
    /// race (only one `DELETE` returns the row).
    pub async fn take_login_state(
        &self,
        state_hash: &str,
    ) -> Result<Option<LoginState>, StoreError> {
        let sql = "DELETE FROM login_states WHERE state_hash = $1
                   RETURNING nonce, pkce_verifier, redirect_to, expires_at, browser_hash";
        let row = on_pool!(self, pool => sqlx::query_as(sql).bind(state_hash).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Drops logins that were started and never finished.
    pub async fn purge_login_states(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = on_pool!(self, pool => sqlx::query("DELETE FROM login_states WHERE expires_at < $1")
            .bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Creates or updates the user the IdP vouched for, keyed by its `sub`, and replaces
    /// the user's IdP groups. A user made earlier by `session create` (same email, no
    /// subject) is adopted; an email already bound to a *different* subject is refused:
    /// another IdP account claiming someone's address must not take over their user.
    pub async fn upsert_idp_user(
        &self,
        who: IdpUser<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // Two first logins of one new user race on the unique subject/email; SQLite may
        // refuse a read-then-write transaction when another writer committed meanwhile.
        // Both are settled by running the transaction again.
        let mut attempt = 0;
        loop {
            match self.upsert_idp_user_once(who, now).await {
                Err(StoreError::Database(e)) if attempt < 3 && is_write_conflict(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn upsert_idp_user_once(
        &self,
        who: IdpUser<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let new_id = uuid::Uuid::new_v4().to_string();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let by_subject: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE subject = $1")
                .bind(who.subject).fetch_optional(&mut *tx).await?;
            let by_email: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT id, subject FROM users WHERE email = $1")
                    .bind(who.email).fetch_optional(&mut *tx).await?;
            let user_id = match (by_subject, by_email) {
                (Some((id,)), Some((other, _))) if other != id => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} belongs to another user", who.email)));
                }
                (Some((id,)), _) => id,
                (None, Some((_, Some(_)))) => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} is bound to another identity-provider subject", who.email)));
                }
                // A user made by `session create` (no subject) is adopted only on an
                // address the IdP says it verified: an IdP that lets users type any email
                // must not hand them someone's store groups and tenants.
                (None, Some((id, None))) if who.email_verified == Some(true) => id,
                (None, Some((_, None))) => {
                    return Err(StoreError::Invalid(format!(
                        "the email {} belongs to an existing user, and the identity provider did not say it is verified",
                        who.email)));
                }
                (None, None) => {
                    sqlx::query("INSERT INTO users (id, subject, email, claims, created_at, updated_at)
                                 VALUES ($1, $2, $3, '{}', $4, $4)")
                        .bind(&new_id).bind(who.subject).bind(who.email).bind(now)
                        .execute(&mut *tx).await?;
                    new_id.clone()
                }
            };
            sqlx::query("UPDATE users SET subject = $2, email = $3, name = $4, username = $5,
                                          claims = $6, updated_at = $7 WHERE id = $1")
                .bind(&user_id).bind(who.subject).bind(who.email).bind(who.name)
                .bind(who.username).bind(Json(who.claims)).bind(now)
                .execute(&mut *tx).await?;
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND source = $2")
                .bind(&user_id).bind(GroupSource::Idp.as_str())
                .execute(&mut *tx).await?;
            for group in who.groups {
                sqlx::query("INSERT INTO user_groups (user_id, group_name, source) VALUES ($1, $2, $3)
                             ON CONFLICT DO NOTHING")
                    .bind(&user_id).bind(group).bind(GroupSource::Idp.as_str())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(user_id)
        })
    }

    /// The browser device of a device-cookie id hash: found (and claimed by `user_id` if it
    /// had no owner) or created unregistered, unmanaged, low trust. Returns its id and
    /// owner; a device owned by someone else must not be used for this user.
    pub async fn browser_device(
        &self,
        cookie_hash: &str,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, Option<String>), StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let sql =
            "INSERT INTO devices (id, user_id, cookie_hash, posture, created_at, last_seen_at)
                   VALUES ($1, $2, $3, '{}', $4, $4)
                   ON CONFLICT (cookie_hash) DO UPDATE SET
                       last_seen_at = EXCLUDED.last_seen_at,
                       user_id = COALESCE(devices.user_id, EXCLUDED.user_id)
                   RETURNING id, user_id";
        let row: (String, Option<String>) = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&id).bind(user_id).bind(cookie_hash).bind(now)
            .fetch_one(pool).await)?;
        Ok(row)
    }

    /// Sets a device's `managed` flag and/or trust level (admin); false if no such device.
    pub async fn update_device(
        &self,
        device_id: &str,
        managed: Option<bool>,
        trust: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(t) = trust
            && !matches!(t, "low" | "medium" | "high")
        {
            return Err(StoreError::Invalid(format!(
                "trust must be low, medium or high, not `{t}`"
            )));
        }
        let sql = "UPDATE devices SET managed = COALESCE($2, managed), trust = COALESCE($3, trust),
                                      registered = TRUE
                   WHERE id = $1";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(device_id).bind(managed).bind(trust)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        if n > 0 {
            // Sessions on this device carry its facts in their cached input documents.
            let hashes = self
                .live_session_hashes_where(SessionColumn::Device, device_id)
                .await?;
            self.announce_revocation(Revoked::Sessions(&hashes)).await?;
        }
        Ok(n > 0)
    }

    /// Devices, newest first, optionally of one user (by email).
    pub async fn list_devices(
        &self,
        email: Option<&str>,
    ) -> Result<Vec<DeviceListing>, StoreError> {
        let sql = "SELECT d.id, u.email, d.cert_fingerprint, d.cookie_hash IS NOT NULL AS browser,
                          d.registered, d.managed, d.trust, d.created_at, d.last_seen_at
                   FROM devices d LEFT JOIN users u ON u.id = d.user_id
                   WHERE ($1 IS NULL OR u.email = $1)
                   ORDER BY d.created_at DESC";
        let email = email.map(|e| e.trim().to_ascii_lowercase());
        let rows = on_pool!(self, pool => sqlx::query_as(sql).bind(&email).fetch_all(pool).await)?;
        Ok(rows)
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

    /// A user's email, for audit records of events that know only the user id.
    pub async fn user_email(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => sqlx::query_as("SELECT email FROM users WHERE id = $1")
            .bind(user_id).fetch_optional(pool).await)?;
        Ok(row.map(|r| r.0))
    }

    /// Live sessions with a refresh token whose claims were last read before `due`.
    pub async fn sessions_due_for_refresh(
        &self,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RefreshCandidate>, StoreError> {
        let sql = "SELECT s.id, s.user_id, u.subject, s.refresh_token_enc,
                          COALESCE(s.refreshed_at, s.created_at) AS last_refresh,
                          COALESCE(s.claims_at, s.created_at) AS claims_at, s.expires_at
                   FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.revoked_at IS NULL AND s.refresh_token_enc IS NOT NULL
                     AND s.expires_at > $2 AND COALESCE(s.refreshed_at, s.created_at) <= $1
                   ORDER BY COALESCE(s.refreshed_at, s.created_at)
                   LIMIT $3";
        let rows = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(due).bind(now).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Claims a due refresh for this replica: true only for the one caller whose view of
    /// the last refresh is still current, so two replicas never spend the same (rotating)
    /// refresh token.
    pub async fn claim_refresh(
        &self,
        session_id: &str,
        last_refresh: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE sessions SET refreshed_at = $3
                   WHERE id = $1 AND revoked_at IS NULL AND COALESCE(refreshed_at, created_at) = $2";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(session_id).bind(last_refresh).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records freshly read claims on a session (what `input.user.claims` shows).
    pub async fn set_session_claims(
        &self,
        session_id: &str,
        claims: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE sessions SET idp_claims = $2, claims_at = $3 WHERE id = $1")
            .bind(session_id).bind(Json(claims)).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Stores a rotated refresh token.
    pub async fn set_refresh_token(
        &self,
        session_id: &str,
        refresh_token_enc: &[u8],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE sessions SET refresh_token_enc = $2 WHERE id = $1")
            .bind(session_id).bind(refresh_token_enc).execute(pool).await.map(|_| ()))?;
        Ok(())
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

    async fn live_session_hashes_where(
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
enum SessionColumn {
    User,
    Device,
}

/// One row of `device list`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeviceListing {
    pub id: String,
    pub email: Option<String>,
    pub cert_fingerprint: Option<String>,
    pub browser: bool,
    pub registered: bool,
    pub managed: bool,
    pub trust: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A unique-key race or a SQLite write conflict: the transaction may simply be run again.
fn is_write_conflict(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    // SQLITE_BUSY (5) and its extended codes, e.g. SQLITE_BUSY_SNAPSHOT (517).
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}
