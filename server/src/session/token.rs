//! Session tokens and their signed cookie form (docs/security.md).
//!
//! A token is 256 random bits. The store keeps only its SHA-256 hash, so a leaked database
//! yields no usable cookie. The cookie value is `<token>.<hmac>` (both base64url): the HMAC
//! lets us refuse forged or mangled cookies before touching the store.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

const TOKEN_BYTES: usize = 32;
/// base64url length of 32 bytes without padding.
const ENCODED_LEN: usize = 43;

/// Why a presented cookie or bearer value was refused. All of these are a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed session token")]
    Malformed,
    #[error("session token signature does not verify")]
    BadSignature,
}

/// A 256-bit session token. Its `Debug` never shows the secret bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

/// The hex SHA-256 of a token: the only form the store ever sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl SessionToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> SessionToken {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        SessionToken(bytes)
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(self.digest()))
    }

    /// The raw SHA-256 of the token: the session cache key (no hex encoding per request).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }

    /// The raw token in base64url, as accepted in `Authorization: Bearer`.
    pub fn encode(&self) -> String {
        B64.encode(self.0)
    }

    fn decode(text: &str) -> Result<SessionToken, TokenError> {
        if text.len() != ENCODED_LEN {
            return Err(TokenError::Malformed);
        }
        let bytes = B64.decode(text).map_err(|_| TokenError::Malformed)?;
        let array: [u8; TOKEN_BYTES] = bytes.try_into().map_err(|_| TokenError::Malformed)?;
        Ok(SessionToken(array))
    }
}

/// Signs and verifies cookie values with the configured secret.
#[derive(Clone)]
pub struct CookieSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSigner(***)")
    }
}

impl CookieSigner {
    pub fn new(secret: &[u8]) -> CookieSigner {
        // HMAC accepts keys of any length; the config enforces at least 32 bytes.
        let mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
        CookieSigner { mac }
    }

    /// A signer with a key of its own derived from `secret` for `purpose`, so values signed
    /// for one purpose (a device cookie) are never accepted for another (a session).
    pub fn derived(secret: &[u8], purpose: &str) -> CookieSigner {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
        mac.update(b"gatehouse-derived-key-v1:");
        mac.update(purpose.as_bytes());
        CookieSigner::new(&mac.finalize().into_bytes())
    }

    fn tag(&self, encoded_token: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"gatehouse-session-v1:");
        mac.update(encoded_token.as_bytes());
        mac
    }

    /// The cookie value for `token`: `<token>.<signature>`.
    pub fn sign(&self, token: &SessionToken) -> String {
        let encoded = token.encode();
        let signature = B64.encode(self.tag(&encoded).finalize().into_bytes());
        format!("{encoded}.{signature}")
    }

    /// Verifies a cookie value and returns its token. The comparison is constant-time.
    pub fn verify(&self, value: &str) -> Result<SessionToken, TokenError> {
        let (encoded, signature) = value.split_once('.').ok_or(TokenError::Malformed)?;
        let token = SessionToken::decode(encoded)?;
        if signature.len() != ENCODED_LEN {
            return Err(TokenError::Malformed);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        self.tag(encoded)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(token)
    }

    /// The CSRF token of a session: cookie-authenticated changes to the admin API must
    /// echo it in `X-CSRF-Token`, which a cross-site form cannot do.
    pub fn csrf_token(&self, session_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"gatehouse-csrf-v1:");
        mac.update(session_id.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is the CSRF token of `session_id` (constant-time).
    pub fn verify_csrf(&self, session_id: &str, presented: &str) -> bool {
        let Ok(bytes) = B64.decode(presented) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(b"gatehouse-csrf-v1:");
        mac.update(session_id.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    /// Reads an `Authorization: Bearer` value: the signed cookie value, exactly as
    /// `session create` prints it. A raw token without its signature is refused like an
    /// unsigned cookie (docs/security.md), so no unsigned value ever reaches the store.
    pub fn verify_bearer(&self, value: &str) -> Result<SessionToken, TokenError> {
        self.verify(value)
    }
}

fn unreachable_key() -> Hmac<Sha256> {
    #[allow(
        clippy::expect_used,
        reason = "new_from_slice fails only for fixed-size-key MACs; HMAC takes any key length"
    )]
    Hmac::<Sha256>::new_from_slice(b"").expect("HMAC accepts any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CookieSigner {
        CookieSigner::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn signed_cookie_round_trips() {
        let token = SessionToken::generate();
        let value = signer().sign(&token);
        assert_eq!(signer().verify(&value).unwrap(), token);
        assert_eq!(signer().verify_bearer(&value).unwrap(), token);
    }

    #[test]
    fn unsigned_or_badly_signed_bearer_values_are_refused() {
        let token = SessionToken::generate();
        // The raw token alone (a well-formed 256-bit value) is not enough.
        assert_eq!(
            signer().verify_bearer(&token.encode()),
            Err(TokenError::Malformed)
        );
        // Nor is a value signed with another key, or a signature from another token.
        let other = CookieSigner::new(b"another-secret-another-secret-xx");
        assert_eq!(
            signer().verify_bearer(&other.sign(&token)),
            Err(TokenError::BadSignature)
        );
        let (_, sig) = signer()
            .sign(&SessionToken::generate())
            .split_once('.')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert_eq!(
            signer().verify_bearer(&format!("{}.{sig}", token.encode())),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tokens_are_unique_and_hash_to_hex() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.hash().0.len(), 64);
        assert!(!format!("{a:?}").contains(&a.encode()));
    }

    #[test]
    fn tampered_cookies_are_refused() {
        let token = SessionToken::generate();
        let value = signer().sign(&token);
        let other = CookieSigner::new(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&value), Err(TokenError::BadSignature));

        let (tok, sig) = value.split_once('.').unwrap();
        let mut flipped = sig.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{tok}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(signer().verify(&forged), Err(TokenError::BadSignature));

        let swapped = format!("{}.{sig}", SessionToken::generate().encode());
        assert_eq!(signer().verify(&swapped), Err(TokenError::BadSignature));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let t = signer().csrf_token("session-a");
        assert!(signer().verify_csrf("session-a", &t));
        assert!(!signer().verify_csrf("session-b", &t));
        assert!(!signer().verify_csrf("session-a", "forged"));
    }

    #[test]
    fn malformed_values_are_refused_without_panic() {
        for bad in [
            "",
            ".",
            "abc",
            "abc.def",
            "a.b.c",
            "%%%%.%%%%",
            &"x".repeat(5000),
            "é.é",
        ] {
            assert!(signer().verify(bad).is_err(), "{bad:?}");
            assert!(signer().verify_bearer(bad).is_err(), "{bad:?}");
        }
    }
}
