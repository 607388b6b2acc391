//! Devices (`devices`): registered by mTLS client certificate fingerprint (CLI, admin) or
//! met as browsers by their device cookie at login; an administrator sets `managed` and the
//! trust level. Same SQL on both backends (see the parent module).

use chrono::{DateTime, Utc};

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

    /// Sets a device's `managed` flag and/or trust level (admin); false if no such device.
    pub async fn update_device(
        &self,
        device_id: &str,
        managed: Option<bool>,
        trust: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(t) = trust {
            check_trust(t)?;
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
