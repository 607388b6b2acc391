//! HMAC-SHA256 signed values: the session cookie and the login form's copy of the
//! authorization request, so that neither can be forged or tampered with. The key is
//! random per run.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct Signer {
    /// One SHA-256 block: HMAC's natural key size, so `KeyInit::new` cannot fail.
    key: [u8; 64],
}

impl Signer {
    pub fn random() -> Self {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        Signer { key }
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new(&self.key.into());
        // The purpose keeps a value signed for one use from being accepted for another.
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// `base64url(payload).base64url(mac)`.
    pub fn sign(&self, purpose: &str, payload: &[u8]) -> String {
        let tag = self.mac(purpose, payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload, if `text` was signed by this signer for `purpose`.
    pub fn verify(&self, purpose: &str, text: &str) -> Option<Vec<u8>> {
        let (payload, tag) = text.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, &payload).verify_slice(&tag).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_round_trip_only_unchanged_and_for_their_purpose() {
        let signer = Signer::random();
        let signed = signer.sign("login", b"{\"client_id\":\"gatehouse\"}");
        assert_eq!(
            signer.verify("login", &signed).as_deref(),
            Some(&b"{\"client_id\":\"gatehouse\"}"[..])
        );
        assert_eq!(signer.verify("session", &signed), None);
        assert_eq!(Signer::random().verify("login", &signed), None);

        let (_, tag) = signed.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(b"{\"client_id\":\"evil\"}")
        );
        assert_eq!(signer.verify("login", &forged), None);
        assert_eq!(signer.verify("login", "garbage"), None);
    }
}
