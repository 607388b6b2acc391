//! The rows of a session as the decision reads them (session, user, device, with groups,
//! roles and tenants) and the row `create_session` writes. Field types decode from both
//! Postgres and SQLite (text ids, `DateTime<Utc>`, JSON columns). Rows that belong to one
//! table's queries only live beside those queries.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub subject: Option<String>,
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub claims: Json<serde_json::Value>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredSession {
    pub id: String,
    pub user_id: String,
    pub device_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub auth_time: DateTime<Utc>,
    pub amr: Json<Vec<String>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub idp_claims: Json<serde_json::Value>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRecord {
    pub id: String,
    pub registered: bool,
    pub managed: bool,
    pub trust: String,
    pub posture: Json<serde_json::Value>,
    pub cert_fingerprint: Option<String>,
}

/// A session with everything the decision needs about its user and device.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: StoredSession,
    pub user: UserRecord,
    /// Union of IdP and store groups, sorted, without duplicates.
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// (tenant id, role) pairs.
    pub tenants: Vec<(String, String)>,
    pub device: Option<DeviceRecord>,
}

/// What [`super::Store::create_session`] writes.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub device_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub auth_time: DateTime<Utc>,
    pub amr: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub idp_sid: Option<String>,
    pub idp_claims: serde_json::Value,
    /// The IdP's refresh token, encrypted (see `oidc::crypto`).
    pub refresh_token_enc: Option<Vec<u8>>,
    /// The IdP's ID token, encrypted, for `id_token_hint` at logout.
    pub id_token_enc: Option<Vec<u8>>,
}
