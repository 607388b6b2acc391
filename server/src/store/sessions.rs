//! Sessions (`sessions`): creating them, loading one with everything the decision needs
//! about its user and device, idle-timeout activity, and the server-side refresh of their
//! IdP claims. Ending sessions is [`super::revocation`]'s. Same SQL on both backends (see
//! the parent module), except `find_session`'s membership aggregates.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::users::{Memberships, WithMemberships};
use super::{
    Backend, DeviceRecord, NewSession, SessionRecord, Store, StoreError, StoredSession, UserRecord,
};

/// `find_session`'s statement with a backend's membership aggregates (`u` is the user).
fn find_session_sql(memberships: &str) -> String {
    format!(
        "SELECT s.id, s.user_id, s.device_id, s.created_at, s.expires_at, s.last_seen_at,
                s.auth_time, s.amr, s.revoked_at, s.idp_claims,
                u.subject, u.email, u.name, u.username, u.claims,
                {memberships},
                d.id AS device_row_id, d.registered, d.managed, d.trust, d.posture,
                d.cert_fingerprint
         FROM sessions s
         JOIN users u ON u.id = s.user_id
         LEFT JOIN devices d ON d.id = s.device_id
         WHERE s.token_hash = $1"
    )
}

static FIND_SESSION: WithMemberships = WithMemberships::new(find_session_sql);

/// One row of `find_session`: the session, its user's columns and memberships, and the
/// device's columns (all null without a device).
#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    session: StoredSession,
    subject: Option<String>,
    email: String,
    name: Option<String>,
    username: Option<String>,
    claims: Json<serde_json::Value>,
    #[sqlx(flatten)]
    memberships: Memberships,
    device_row_id: Option<String>,
    registered: Option<bool>,
    managed: Option<bool>,
    trust: Option<String>,
    posture: Option<Json<serde_json::Value>>,
    cert_fingerprint: Option<String>,
}

impl SessionRow {
    fn into_record(self) -> SessionRecord {
        let device = self.device_row_id.map(|id| DeviceRecord {
            id,
            registered: self.registered.unwrap_or(false),
            managed: self.managed.unwrap_or(false),
            trust: self.trust.unwrap_or_default(),
            posture: self
                .posture
                .unwrap_or_else(|| Json(serde_json::Value::Object(Default::default()))),
            cert_fingerprint: self.cert_fingerprint,
        });
        let user = UserRecord {
            id: self.session.user_id.clone(),
            subject: self.subject,
            email: self.email,
            name: self.name,
            username: self.username,
            claims: self.claims,
        };
        SessionRecord {
            session: self.session,
            user,
            groups: self.memberships.groups.0,
            roles: self.memberships.roles.0,
            tenants: self.memberships.tenants.0,
            device,
        }
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

impl Store {
    /// Writes a new session (at login or `session create`).
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

    /// Loads a session by token hash with its user, groups, roles, tenants and device, in
    /// one statement: this is a session-cache miss, on the verify path, and each sequential
    /// round trip to Postgres costs about as much as the whole query.
    /// Returns revoked and expired sessions too: the caller decides, and says why.
    pub async fn find_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let sql = FIND_SESSION.sql(&self.backend);
        let row: Option<SessionRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(token_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(SessionRow::into_record))
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
}

/// One live session as the admin UI lists it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct SessionListing {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Live sessions (not revoked, not expired), most recently seen first, optionally of one
    /// user (by email). `last_seen_at` is written coalesced (docs/operations.md), so it may
    /// trail the true last request by up to a minute.
    pub async fn list_sessions(
        &self,
        email: Option<&str>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SessionListing>, StoreError> {
        let sql = "SELECT s.id, u.email, u.name, s.device_id, s.ip, s.user_agent,
                          s.created_at, s.last_seen_at, s.expires_at
                   FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.revoked_at IS NULL AND s.expires_at > $1
                     AND ($2 IS NULL OR u.email = $2)
                   ORDER BY s.last_seen_at DESC, s.id
                   LIMIT $3";
        let email = email.map(|e| e.trim().to_ascii_lowercase());
        let rows = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(now).bind(&email).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }
}
