//! Rows as the store reads and writes them. Field types decode from both Postgres and
//! SQLite (text ids, `DateTime<Utc>`, JSON columns).

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

/// What `create_session` writes.
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

/// Filters for [`super::Store::query_audit`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub email: Option<String>,
    pub route: Option<String>,
    pub decision: Option<String>,
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// One audit row as `audit query` prints it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub time: String,
    pub request_id: String,
    pub kind: String,
    pub email: Option<String>,
    pub tenant: Option<String>,
    pub route: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub decision: String,
    pub status: i32,
    pub reason: Option<String>,
    pub policy_version: Option<String>,
    pub latency_us: i64,
    pub client_ip: Option<String>,
}

/// One row of `audit_events` as [`super::Store::insert_audit`] writes it. It borrows from
/// whatever the caller keeps its records in, so a batch is written without copying them.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEvent<'a> {
    pub time: DateTime<Utc>,
    pub request_id: &'a str,
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub route: Option<&'a str>,
    pub host: Option<&'a str>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub decision: &'a str,
    pub status: i32,
    pub reason: Option<&'a str>,
    pub policy_version: Option<&'a str>,
    pub latency_us: i64,
    pub client_ip: Option<&'a str>,
}

/// A record the store can write as an `audit_events` row. The audit trail implements it
/// for its own record type, so the store needs to know nothing of audit.
pub trait AsAuditEvent {
    fn as_audit_event(&self) -> NewAuditEvent<'_>;
}

impl AsAuditEvent for NewAuditEvent<'_> {
    fn as_audit_event(&self) -> NewAuditEvent<'_> {
        *self
    }
}

/// The facts about a user that an identity provider vouched for, as
/// [`super::Store::upsert_idp_user`] writes them. Borrowed from the caller's (OIDC) type.
#[derive(Debug, Clone, Copy)]
pub struct IdpUser<'a> {
    /// The IdP's `sub`.
    pub subject: &'a str,
    /// Lower-cased.
    pub email: &'a str,
    /// The IdP's `email_verified`, when it says.
    pub email_verified: Option<bool>,
    pub name: Option<&'a str>,
    pub username: Option<&'a str>,
    /// The user's groups at the IdP; they replace the user's IdP-sourced groups.
    pub groups: &'a [String],
    /// The merged claims, stored with the user.
    pub claims: &'a serde_json::Value,
}
