//! JWT and JWKS verification: an identity provider's key set, JWS signatures with
//! asymmetric algorithms only ([`ALLOWED_ALGS`]: never `none`, never HMAC with the client
//! secret), ID tokens (signature, issuer, audience, expiry, nonce; through `openidconnect`'s
//! verifier) and back-channel logout tokens (Back-Channel Logout 1.0 §2.6).
//!
//! No I/O here: fetching the keys, and fetching them again when a token names a key the set
//! does not have ([`JwtError::UnknownKey`], after a key rotation), is [`super::provider`]'s;
//! so is remembering logout tokens already used. Machine clients verify their tokens with
//! the same key set.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, JsonWebKey, Nonce, SignatureVerificationError,
};
use serde_json::{Map, Value};

use super::error_chain;

/// Asymmetric algorithms only: never `none`, never HMAC with the client secret.
pub const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Allowed clock difference with the IdP for logout tokens.
const CLOCK_SKEW_SECS: i64 = 120;
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a token was not accepted. The text says what failed, for the log and the audit.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// No key of the set matches the token: the IdP may have rotated its keys, so the
    /// caller may read them again and try once more.
    #[error("{0}")]
    UnknownKey(String),
    /// Anything else: a malformed token, a bad signature, a claim that does not hold.
    #[error("{0}")]
    Invalid(String),
    /// A part of the token is not base64url-encoded JSON.
    #[error(transparent)]
    Malformed(#[from] MalformedJwt),
}

/// Why a part of a compact JWT (its header or claims) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MalformedJwt {
    #[error("not a JWT")]
    NotAJwt,
    #[error("not base64url")]
    NotBase64(#[source] base64::DecodeError),
    #[error("not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("claims are not a JSON object")]
    ClaimsNotAnObject,
}

fn invalid(message: &str) -> JwtError {
    JwtError::Invalid(message.to_string())
}

/// What an ID token's `nonce` must be.
#[derive(Debug, Clone, Copy)]
pub enum NonceRule<'a> {
    /// The nonce of the login that asked for the token.
    Equals(&'a Nonce),
    /// Anything: refreshed ID tokens carry no nonce (OIDC Core 12.2).
    Any,
}

/// One identity provider's signing keys (its JWKS), with the issuer and audience its
/// tokens must name.
#[derive(Debug, Clone)]
pub struct KeySet {
    issuer: IssuerUrl,
    audience: ClientId,
    jwks: CoreJsonWebKeySet,
}

impl KeySet {
    /// The keys of `jwks`, for tokens from `issuer` to `audience` (our client id).
    pub fn new(issuer: IssuerUrl, audience: ClientId, jwks: CoreJsonWebKeySet) -> KeySet {
        KeySet {
            issuer,
            audience,
            jwks,
        }
    }

    /// The issuer, exactly as discovery gave it.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.jwks.keys().len()
    }

    /// Whether the set holds no key (every token is then refused).
    pub fn is_empty(&self) -> bool {
        self.jwks.keys().is_empty()
    }

    /// Verifies an ID token (signature with an allowed algorithm, issuer, audience, expiry
    /// and `nonce`) and returns its claims as JSON.
    pub fn verify_id_token(
        &self,
        token: &CoreIdToken,
        nonce: NonceRule<'_>,
    ) -> Result<Map<String, Value>, JwtError> {
        let verifier = CoreIdTokenVerifier::new_public_client(
            self.audience.clone(),
            self.issuer.clone(),
            self.jwks.clone(),
        )
        .set_allowed_algs(ALLOWED_ALGS);
        let checked = match nonce {
            NonceRule::Equals(nonce) => token.claims(&verifier, nonce).map(|_| ()),
            NonceRule::Any => token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(|_| ()),
        };
        match checked {
            Ok(()) => {}
            Err(
                e @ ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ),
            ) => return Err(JwtError::UnknownKey(error_chain(&e))),
            Err(e) => return Err(JwtError::Invalid(error_chain(&e))),
        }
        Ok(jwt_claims(&token.to_string())?)
    }

    /// Verifies a JWS signature: by the key its `kid` names (any key when it names none).
    pub fn verify_signature(&self, jwt: &SignedJwt<'_>) -> Result<(), JwtError> {
        verify_with_keys(
            self.jwks.keys(),
            jwt.kid.as_deref(),
            &jwt.alg,
            jwt.message,
            &jwt.signature,
        )
    }

    /// Verifies a back-channel logout token (Back-Channel Logout 1.0 §2.6): signed by one of
    /// the keys with an allowed algorithm, our issuer and audience, fresh at `now` (Unix
    /// seconds), the logout event, `sub` or `sid`, no `nonce`, and a `jti`. Whether the
    /// `jti` was seen before is the caller's to check.
    pub fn verify_logout_token(
        &self,
        jwt: &SignedJwt<'_>,
        now: i64,
    ) -> Result<LogoutToken, JwtError> {
        self.verify_signature(jwt)?;
        let claims = jwt.claims()?;
        let request = check_logout_claims(&claims, self.issuer(), &self.audience, now)?;
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| invalid("no jti"))?;
        Ok(LogoutToken {
            request,
            jti: jti.to_string(),
        })
    }
}

/// A compact JWS split into its parts with its header read; nothing verified yet.
#[derive(Debug, Clone)]
pub struct SignedJwt<'a> {
    alg: CoreJwsSigningAlgorithm,
    kid: Option<String>,
    /// `header.payload`: the signed bytes.
    message: &'a [u8],
    signature: Vec<u8>,
    payload: &'a str,
}

impl<'a> SignedJwt<'a> {
    /// Splits `token`, reads its header and refuses an algorithm outside [`ALLOWED_ALGS`].
    pub fn parse(token: &'a str) -> Result<SignedJwt<'a>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a signed JWT"));
        };
        let header: Value = decode_json(header_b64)?;
        let alg: CoreJwsSigningAlgorithm =
            serde_json::from_value(header["alg"].clone()).map_err(|_| invalid("unknown alg"))?;
        if !ALLOWED_ALGS.contains(&alg) {
            return Err(invalid("algorithm not allowed"));
        }
        let signature = B64
            .decode(sig_b64)
            .map_err(|_| invalid("signature is not base64url"))?;
        Ok(SignedJwt {
            alg,
            kid: header["kid"].as_str().map(str::to_string),
            message: &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()],
            signature,
            payload: payload_b64,
        })
    }

    /// The payload as JSON. Trust it only after [`KeySet::verify_signature`].
    pub fn claims(&self) -> Result<Value, JwtError> {
        Ok(decode_json(self.payload)?)
    }
}

/// Who a verified back-channel logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub subject: Option<String>,
    pub sid: Option<String>,
}

/// A verified logout token: whom it logs out, and its `jti`, which may be used only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    pub request: LogoutRequest,
    pub jti: String,
}

fn verify_with_keys(
    keys: &[CoreJsonWebKey],
    kid: Option<&str>,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JwtError> {
    let candidates: Vec<&CoreJsonWebKey> = keys
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.key_id().is_some_and(|id| id.as_str() == kid),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey(
            "no key of the identity provider matches".into(),
        ));
    }
    if candidates
        .iter()
        .any(|k| k.verify_signature(alg, message, signature).is_ok())
    {
        Ok(())
    } else {
        Err(invalid("signature does not verify"))
    }
}

fn check_logout_claims(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<LogoutRequest, JwtError> {
    if claims["iss"].as_str() != Some(issuer) {
        return Err(invalid("wrong issuer"));
    }
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == client_id,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err(invalid("wrong audience"));
    }
    let iat = claims["iat"].as_i64().ok_or_else(|| invalid("no iat"))?;
    if iat > now + CLOCK_SKEW_SECS {
        return Err(invalid("issued in the future"));
    }
    // Back-Channel Logout 1.0 requires `exp`.
    let exp = claims["exp"].as_i64().ok_or_else(|| invalid("no exp"))?;
    if exp.saturating_add(CLOCK_SKEW_SECS) < now {
        return Err(invalid("expired"));
    }
    if !claims["events"][BACKCHANNEL_EVENT].is_object() {
        return Err(invalid("not a back-channel logout event"));
    }
    if claims.get("nonce").is_some() {
        return Err(invalid("a logout token must not carry a nonce"));
    }
    let subject = claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let sid = claims["sid"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if subject.is_none() && sid.is_none() {
        return Err(invalid("neither sub nor sid"));
    }
    Ok(LogoutRequest { subject, sid })
}

fn decode_json(part: &str) -> Result<Value, MalformedJwt> {
    let bytes = B64
        .decode(part.trim_end_matches('='))
        .map_err(MalformedJwt::NotBase64)?;
    serde_json::from_slice(&bytes).map_err(MalformedJwt::NotJson)
}

/// The claims of a JWT whose signature was already verified.
fn jwt_claims(jwt: &str) -> Result<Map<String, Value>, MalformedJwt> {
    let payload = jwt.split('.').nth(1).ok_or(MalformedJwt::NotAJwt)?;
    match decode_json(payload)? {
        Value::Object(m) => Ok(m),
        _ => Err(MalformedJwt::ClaimsNotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn logout_claims() -> Value {
        json!({
            "iss": "https://idp.test", "aud": ["gatehouse"], "iat": 1000, "exp": 1100,
            "jti": "j1", "sid": "s1", "sub": "u1",
            "events": {BACKCHANNEL_EVENT: {}}
        })
    }

    #[test]
    fn logout_claims_accept_a_good_token() {
        let r =
            check_logout_claims(&logout_claims(), "https://idp.test", "gatehouse", 1050).unwrap();
        assert_eq!(r.sid.as_deref(), Some("s1"));
        assert_eq!(r.subject.as_deref(), Some("u1"));
    }

    #[test]
    fn logout_claims_refuse_each_defect() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("issuer", Box::new(|c| c["iss"] = json!("https://evil"))),
            ("audience", Box::new(|c| c["aud"] = json!("other"))),
            ("expired", Box::new(|c| c["exp"] = json!(10))),
            (
                "no exp",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            ("future", Box::new(|c| c["iat"] = json!(99999))),
            ("event", Box::new(|c| c["events"] = json!({}))),
            ("nonce", Box::new(|c| c["nonce"] = json!("n"))),
            (
                "no sub or sid",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("sub");
                    c.as_object_mut().unwrap().remove("sid");
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut c = logout_claims();
            mutate(&mut c);
            assert!(
                check_logout_claims(&c, "https://idp.test", "gatehouse", 1050).is_err(),
                "{name} must be refused"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_signatures_are_told_apart() {
        assert!(matches!(
            verify_with_keys(
                &[],
                Some("k"),
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                b"m",
                b"s"
            ),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn parse_refuses_unsigned_and_symmetric_tokens() {
        let part = |v: Value| B64.encode(v.to_string());
        let payload = part(json!({"sub": "u1"}));
        for (alg, why) in [
            ("none", "algorithm not allowed"),
            ("HS256", "algorithm not allowed"),
            ("XY99", "unknown alg"),
        ] {
            let token = format!("{}.{payload}.c2ln", part(json!({"alg": alg})));
            assert_eq!(
                SignedJwt::parse(&token).unwrap_err().to_string(),
                why,
                "{alg}"
            );
        }
        assert_eq!(
            SignedJwt::parse("a.b").unwrap_err().to_string(),
            "not a signed JWT"
        );
        let not_json = format!("{}.{payload}.c2ln", B64.encode("{alg"));
        assert!(matches!(
            SignedJwt::parse(&not_json),
            Err(JwtError::Malformed(MalformedJwt::NotJson(_)))
        ));
    }
}
