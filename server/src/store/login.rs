//! Pending logins (`login_states`): what `/auth/login` remembers until `/auth/callback`,
//! taken once. Same SQL on both backends (see the parent module).

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

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

impl Store {
    /// Remembers a login started at `/auth/login` until its callback.
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
}
