//! The signing key: RSA 2048, generated at start and kept in memory only, so every run of
//! the dev IdP has a new key (relying parties re-read the JWKS on an unknown `kid`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{JsonWebKey, JsonWebKeyId, PrivateSigningKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs1::LineEnding;
use sha2::{Digest, Sha256};

pub const ALG: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;

/// Why a key could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate an RSA key: {0}")]
    Generate(#[source] rsa::Error),
    #[error("cannot encode the RSA key: {0}")]
    Encode(#[source] rsa::pkcs1::Error),
    /// openidconnect reports a PEM it cannot read as text only.
    #[error("cannot load the RSA key: {0}")]
    Load(String),
    #[error("cannot sign a {typ} token: {source}")]
    Sign {
        typ: String,
        source: openidconnect::SigningError,
    },
}

pub struct SigningKey {
    pub key: CoreRsaPrivateSigningKey,
    pub kid: String,
    public: CoreJsonWebKey,
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(KeyError::Generate)?;
        // openidconnect reads only PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), not PKCS#8.
        let pem = private
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(KeyError::Encode)?;
        let unnamed = CoreRsaPrivateSigningKey::from_pem(&pem, None).map_err(KeyError::Load)?;
        // The kid is a thumbprint-like hash of the public key: stable for one key.
        let modulus = serde_json::to_vec(&unnamed.as_verification_key()).unwrap_or_default();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&modulus)[..12]);
        let key = CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.clone())))
            .map_err(KeyError::Load)?;
        let public = key.as_verification_key();
        Ok(SigningKey { key, kid, public })
    }

    pub fn jwks(&self) -> CoreJsonWebKeySet {
        CoreJsonWebKeySet::new(vec![self.public.clone()])
    }

    /// A compact JWS (RS256) of `claims` with the given `typ` header, for tokens that
    /// openidconnect has no type for (the back-channel logout token).
    pub fn sign_jwt(&self, typ: &str, claims: &serde_json::Value) -> Result<String, KeyError> {
        let header = serde_json::json!({"alg": "RS256", "typ": typ, "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&ALG, signing_input.as_bytes())
            .map_err(|source| KeyError::Sign {
                typ: typ.to_string(),
                source,
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The payload of a JWT this key signed, checking the signature only (not expiry:
    /// an `id_token_hint` may be an expired ID token).
    pub fn verify_jwt(&self, token: &str) -> Option<serde_json::Value> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.public
            .verify_signature(&ALG, message.as_bytes(), &signature)
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_jwts_verify_and_tampered_ones_do_not() {
        let key = SigningKey::generate().unwrap();
        let claims = serde_json::json!({"sub": "alice", "sid": "s1"});
        let jwt = key.sign_jwt("logout+jwt", &claims).unwrap();
        assert_eq!(key.verify_jwt(&jwt), Some(claims));

        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory","sid":"s1"}"#);
        parts[1] = &forged;
        assert_eq!(key.verify_jwt(&parts.join(".")), None);
        assert_eq!(key.verify_jwt("a.b"), None);

        let other = SigningKey::generate().unwrap();
        assert_eq!(other.verify_jwt(&jwt), None);
        assert_ne!(key.kid, other.kid);
        let jwks = serde_json::to_value(key.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], key.kid.as_str());
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
    }
}
