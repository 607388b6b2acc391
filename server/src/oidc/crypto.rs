//! Encryption of the IdP tokens Gatehouse keeps server-side (the refresh token, and the ID
//! token used as `id_token_hint` at logout).
//!
//! AES-256-GCM with a key derived from `cookie.secret` (HMAC-SHA256 over a fixed label), a
//! random 96-bit nonce per value, and the session id as associated data: a ciphertext copied
//! into another session's row does not decrypt. A leaked database alone yields no usable
//! refresh token.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const NONCE_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored token does not decrypt (wrong cookie.secret, or tampered)")]
pub struct DecryptError;

/// Encrypts and decrypts stored IdP tokens.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(***)")
    }
}

impl TokenCipher {
    /// A cipher keyed from the cookie secret. The label separates this key from the cookie
    /// signing key derived from the same secret.
    pub fn from_secret(secret: &[u8]) -> TokenCipher {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"gatehouse-idp-token-encryption-v1");
        let key = mac.finalize().into_bytes();
        TokenCipher {
            cipher: Aes256Gcm::new(&key),
        }
    }

    /// `nonce || ciphertext+tag`, bound to `session_id`.
    pub fn encrypt(&self, session_id: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: session_id.as_bytes(),
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of a short token cannot fail"));
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, session_id: &str, sealed: &[u8]) -> Result<String, DecryptError> {
        if sealed.len() <= NONCE_BYTES {
            return Err(DecryptError);
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: session_id.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain).map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = TokenCipher::from_secret(b"0123456789abcdef0123456789abcdef");
        let sealed = c.encrypt("s1", "refresh-token-value");
        assert!(!sealed.windows(7).any(|w| w == b"refresh"));
        assert_eq!(c.decrypt("s1", &sealed).unwrap(), "refresh-token-value");
        // Bound to its session.
        assert_eq!(c.decrypt("s2", &sealed), Err(DecryptError));
        // Another secret cannot read it.
        let other = TokenCipher::from_secret(b"another-secret-another-secret-xx");
        assert_eq!(other.decrypt("s1", &sealed), Err(DecryptError));
        // Tampering is detected.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(c.decrypt("s1", &bad), Err(DecryptError));
        assert_eq!(c.decrypt("s1", &sealed[..5]), Err(DecryptError));
        // Fresh nonce each time.
        assert_ne!(c.encrypt("s1", "x"), c.encrypt("s1", "x"));
    }
}
