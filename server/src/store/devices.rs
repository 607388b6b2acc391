//! Devices (`devices`): registered by mTLS client certificate fingerprint (CLI, admin) or
//! met as browsers by their device cookie at login; an administrator sets `managed` and the
//! trust level. Same SQL on both backends (see the parent module).

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::revocation::{Revoked, SessionColumn};
use super::{Backend, DeviceRecord, Store, StoreError};

impl Store {
    /// Registers (or updates) the device identified by an mTLS client certificate
    /// fingerprint (`sha256:<hex>` or `sha1:<hex>`); returns its id.
    pub async fn register_cert_device(
        &self,
        fingerprint: &str,
        managed: bool,
        trust: &str,
        owner_email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        check_trust(trust)?;
        let id = uuid::Uuid::new_v4().to_string();
        let owner = owner_email.map(|e| e.trim().to_ascii_lowercase());
        let sql = "INSERT INTO devices (id, user_id, cert_fingerprint, registered, managed, trust, posture, created_at)
                   VALUES ($1, (SELECT id FROM users WHERE email = $2), $3, TRUE, $4, $5, '{}', $6)
                   ON CONFLICT (cert_fingerprint) DO UPDATE SET
                       registered = TRUE, managed = EXCLUDED.managed, trust = EXCLUDED.trust,
                       user_id = COALESCE(EXCLUDED.user_id, devices.user_id)
                   RETURNING id";
        let row: (String,) = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&id).bind(&owner).bind(fingerprint).bind(managed).bind(trust).bind(now)
            .fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// The device registered for a client certificate fingerprint.
    pub async fn find_cert_device(
        &self,
        fingerprint: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = "SELECT id, registered, managed, trust, posture, cert_fingerprint FROM devices WHERE cert_fingerprint = $1";
        let device = on_pool!(self, pool => sqlx::query_as(sql).bind(fingerprint).fetch_optional(pool).await)?;
        Ok(device)
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

    /// Sets a device's `managed` flag, trust level and/or posture document (admin); false if
    /// no such device. Its live sessions are announced as changed, so every replica drops
    /// their cached input documents, which carry the device's facts.
    pub async fn update_device(
        &self,
        device_id: &str,
        change: &DeviceChange,
    ) -> Result<bool, StoreError> {
        if let Some(t) = &change.trust {
            check_trust(t)?;
        }
        if let Some(p) = &change.posture
            && !p.is_object()
        {
            return Err(StoreError::Invalid("posture must be a JSON object".into()));
        }
        let sql = "UPDATE devices SET managed = COALESCE($2, managed), trust = COALESCE($3, trust),
                                      posture = COALESCE($4, posture), registered = TRUE
                   WHERE id = $1";
        let posture = change.posture.as_ref().map(Json);
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(device_id).bind(change.managed).bind(&change.trust).bind(posture)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        if n > 0 {
            let hashes = self
                .live_session_hashes_where(SessionColumn::Device, device_id)
                .await?;
            self.announce_revocation(Revoked::Sessions(&hashes)).await?;
        }
        Ok(n > 0)
    }

    /// The token hashes of a device's live sessions (to drop them from this replica's cache
    /// after a change; other replicas hear the announcement).
    pub async fn device_session_hashes(&self, device_id: &str) -> Result<Vec<String>, StoreError> {
        self.live_session_hashes_where(SessionColumn::Device, device_id)
            .await
    }

    /// Devices, newest first, optionally of one user (by email).
    pub async fn list_devices(
        &self,
        email: Option<&str>,
    ) -> Result<Vec<DeviceListing>, StoreError> {
        let sql = "SELECT d.id, u.email, d.cert_fingerprint, d.cookie_hash IS NOT NULL AS browser,
                          d.registered, d.managed, d.trust, d.posture, d.created_at, d.last_seen_at
                   FROM devices d LEFT JOIN users u ON u.id = d.user_id
                   WHERE ($1 IS NULL OR u.email = $1)
                   ORDER BY d.created_at DESC";
        let email = email.map(|e| e.trim().to_ascii_lowercase());
        let rows = on_pool!(self, pool => sqlx::query_as(sql).bind(&email).fetch_all(pool).await)?;
        Ok(rows)
    }
}

/// A device's trust level is one of `low`, `medium` or `high` (what policies compare).
fn check_trust(trust: &str) -> Result<(), StoreError> {
    if matches!(trust, "low" | "medium" | "high") {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "trust must be low, medium or high, not `{trust}`"
        )))
    }
}

/// What an administrator changes on a device; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceChange {
    pub managed: Option<bool>,
    /// `low`, `medium` or `high`.
    pub trust: Option<String>,
    /// A JSON object: `input.device.posture`.
    pub posture: Option<serde_json::Value>,
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
    pub posture: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}
