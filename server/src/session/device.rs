//! Devices identified by an mTLS client certificate that a trusted ingress verified and
//! passed on as a fingerprint (`X-Client-Cert-Fingerprint`, or NGINX's
//! `$ssl_client_fingerprint` sent as `X-SSL-Client-Fingerprint`). A registered certificate
//! becomes `input.device`, so a policy can demand a managed device.

use std::sync::Arc;
use std::time::Duration;

use crate::policy::input::{CelVal, DeviceFacts, SharedCelVal, device_doc};
use crate::store::{DeviceRecord, Store, StoreError};

/// The request headers a trusted ingress may carry the fingerprint in.
pub const FINGERPRINT_HEADERS: [&str; 2] =
    ["x-client-cert-fingerprint", "x-ssl-client-fingerprint"];

/// `sha256:<hex>` for a SHA-256 fingerprint, `sha1:<hex>` for NGINX's SHA-1 one, from any of
/// the usual spellings (`AB:CD:…`, `abcd…`, with or without the algorithm prefix).
pub fn normalize_fingerprint(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let body = raw
        .strip_prefix("sha256:")
        .or_else(|| raw.strip_prefix("SHA256:"))
        .or_else(|| raw.strip_prefix("sha1:"))
        .or_else(|| raw.strip_prefix("SHA1:"))
        .unwrap_or(raw);
    let hex: String = body
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        64 => Some(format!("sha256:{hex}")),
        40 => Some(format!("sha1:{hex}")),
        _ => None,
    }
}

/// What policies may know of a stored device (`input.device`).
pub fn device_facts(d: &DeviceRecord) -> DeviceFacts<'_> {
    DeviceFacts {
        id: &d.id,
        registered: d.registered,
        managed: d.managed,
        trust: &d.trust,
        posture: &d.posture.0,
        cert_fingerprint: d.cert_fingerprint.as_deref(),
    }
}

/// A device's policy documents, ready to put in place of the session's.
#[derive(Debug, Clone)]
pub struct DeviceDocs {
    pub id: String,
    pub rego: regorus::Value,
    pub cel: SharedCelVal,
}

/// Looks devices up by fingerprint, with a short cache (unknown fingerprints are cached too,
/// so a client cannot make every request a store lookup).
#[derive(Clone)]
pub struct DeviceResolver {
    store: Store,
    cache: moka::future::Cache<String, Option<Arc<DeviceDocs>>>,
}

impl DeviceResolver {
    pub fn new(store: Store, ttl: Duration) -> DeviceResolver {
        DeviceResolver {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub async fn resolve(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Arc<DeviceDocs>>, Arc<StoreError>> {
        let store = self.store.clone();
        let key = fingerprint.to_string();
        self.cache
            .try_get_with(key.clone(), async move {
                let device = store.find_cert_device(&key).await?;
                Ok::<_, StoreError>(device.map(|d| {
                    Arc::new(DeviceDocs {
                        id: d.id.clone(),
                        rego: device_doc(&device_facts(&d)),
                        cel: device_doc::<CelVal>(&device_facts(&d)).into(),
                    })
                }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_fold_to_one_spelling() {
        let sha256 = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let want = format!("sha256:{}", "abcdef0123456789".repeat(4));
        assert_eq!(
            normalize_fingerprint(sha256).as_deref(),
            Some(want.as_str())
        );
        assert_eq!(normalize_fingerprint(&want).as_deref(), Some(want.as_str()));
        assert_eq!(
            normalize_fingerprint(&"a".repeat(40)).as_deref(),
            Some(format!("sha1:{}", "a".repeat(40)).as_str())
        );
        for bad in [
            "",
            "xyz",
            &"a".repeat(39),
            &"g".repeat(64),
            "sha256:",
            "sha256:ab cd",
        ] {
            assert_eq!(normalize_fingerprint(bad), None, "{bad:?}");
        }
    }
}
