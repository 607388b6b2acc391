//! Policy bundle versions (`policy_versions`): which bundle was loaded, first and last.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Backend, Store, StoreError};

impl Store {
    /// Records that a bundle version was loaded (first and last load time, file list).
    pub async fn record_policy_version(
        &self,
        version: &str,
        files: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO policy_versions (version, files, first_loaded_at, last_loaded_at)
                   VALUES ($1, $2, $3, $3)
                   ON CONFLICT (version) DO UPDATE SET last_loaded_at = EXCLUDED.last_loaded_at";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(version).bind(Json(files)).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
