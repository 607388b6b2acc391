//! OPA's `io.jwt.*` (OPA's `topdown/tokens.go`): decoding; verification with a secret, a
//! PEM public key or certificate, or a JWK (set); `decode_verify` with its constraints; and
//! signing with a JWK. Signatures and MACs are ring's (in the build already, for rustls),
//! except ES512: ring has no P-521, so that is RustCrypto's `p521`.
//!
//! Differences from OPA, listed in docs/policies.md: RSA keys need at least 2,048 bits
//! (ring refuses smaller ones; OPA takes 1,024): such a token does not verify, signing with
//! such a key is an error; and an EC key must be on the algorithm's curve to sign. The RSA
//! floor is on purpose: a 1,024-bit RSA key can be factored, and a token it signs must not
//! open a route.

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regorus::Value;
use regorus::unstable::{Expr, Ref, Span};
use ring::rand::SystemRandom;
use ring::{hmac, rsa, signature};
use serde_json::{Map, Value as Json};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::spki::SubjectPublicKeyInfoRef;

use super::{Args, string};

/// base64url without padding, as JWS writes it; decoding also accepts padding, as OPA's
/// `base64url.decode` does.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The algorithms OPA knows (`tokenAlgorithms`); a JWK naming another one is skipped.
const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256",
    "HS384", "HS512", "EdDSA",
];

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// Prefixes an error with the builtin's name (what `policy test` and strict mode show).
fn named(name: &'static str) -> impl Fn(anyhow::Error) -> anyhow::Error {
    move |e| anyhow!("{name}: {e:#}")
}

/// A compact JWS, split but not decoded.
struct Token<'a> {
    text: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Token<'a> {
    fn split(text: &'a str) -> Result<Self> {
        if !text.contains('.') {
            bail!("encoded JWT had no period separators");
        }
        let parts: Vec<&str> = text.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            bail!("encoded JWT must have 3 sections, found {}", parts.len());
        };
        Ok(Token {
            text,
            header,
            payload,
            signature,
        })
    }

    /// What the signature covers: `header.payload` as sent.
    fn signed(&self) -> &'a [u8] {
        &self.text.as_bytes()[..self.header.len() + 1 + self.payload.len()]
    }

    fn header(&self) -> Result<Map<String, Json>> {
        let bytes = B64URL
            .decode(self.header)
            .context("JWT header had invalid encoding")?;
        json_object(&bytes).context("JWT header")
    }

    fn payload(&self) -> Result<Vec<u8>> {
        B64URL
            .decode(self.payload)
            .context("JWT payload had invalid encoding")
    }

    fn signature(&self) -> Result<Vec<u8>> {
        B64URL
            .decode(self.signature)
            .context("JWT signature had invalid encoding")
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Json>> {
    match serde_json::from_slice(bytes)? {
        Json::Object(fields) => Ok(fields),
        _ => bail!("must be a JSON object"),
    }
}

/// The header fields OPA reads (`parseTokenHeader`): `alg`, `kid`, `typ` and `cty` must be
/// strings, `crit` a non-empty list; other names are kept to be checked against `crit`.
#[derive(Default)]
struct Header {
    alg: String,
    kid: String,
    cty: String,
    crit: Vec<String>,
    unknown: Vec<String>,
}

impl Header {
    fn parse(fields: &Map<String, Json>) -> Result<Self> {
        let mut header = Header::default();
        for (name, value) in fields {
            let text = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("{name}: must be a string"))
            };
            match name.as_str() {
                "alg" => header.alg = text()?,
                "kid" => header.kid = text()?,
                "typ" => {
                    text()?;
                }
                "cty" => header.cty = text()?,
                "crit" => {
                    let Json::Array(items) = value else {
                        bail!("crit: must be a list");
                    };
                    // OPA ignores the non-strings of the list.
                    header.crit = items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect();
                    if header.crit.is_empty() {
                        bail!("crit: must be a nonempty list");
                    }
                }
                _ => header.unknown.push(name.clone()),
            }
        }
        Ok(header)
    }

    /// RFC 7515: `alg` is required, and every critical parameter must be understood.
    fn valid(&self) -> bool {
        !self.alg.is_empty() && !self.unknown.iter().any(|name| self.crit.contains(name))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    /// Parsed so that a key set holding one still loads; nothing verifies with it.
    P521,
}

impl Curve {
    fn field_bytes(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

enum PublicKey {
    /// PKCS#1 `RSAPublicKey` DER (from a PEM key or certificate).
    RsaDer(Vec<u8>),
    /// Modulus and exponent, big-endian (from a JWK).
    RsaParts {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point, `04 || x || y`.
    Ec(Curve, Vec<u8>),
    Ed25519(Vec<u8>),
    /// A JWK of type `oct`, or `decode_verify`'s `secret`.
    Secret(Vec<u8>),
}

/// A key to verify with, and what a JWK set says of it.
struct VerificationKey {
    key: PublicKey,
    /// `""` when the key names no algorithm (every PEM key).
    alg: String,
    kid: String,
    /// A private JWK: OPA's `verify_*` refuse it, `decode_verify` uses its public half.
    private: bool,
}

/// The keys of a PEM certificate, a PEM public key, a JWK or a JWK set (OPA's
/// `getKeysFromCertOrJWK`).
fn keys_from_cert_or_jwk(text: &str) -> Result<Vec<VerificationKey>> {
    if let Some(start) = text.find("-----BEGIN") {
        let (label, der) = x509_cert::der::pem::decode_vec(text[start..].trim_end().as_bytes())
            .map_err(|e| anyhow!("failed to parse a PEM block: {e}"))?;
        let key = match label {
            "CERTIFICATE" => {
                let certificate = x509_cert::Certificate::from_der(&der)
                    .map_err(|e| anyhow!("failed to parse a PEM certificate: {e}"))?;
                let info = certificate
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| anyhow!("failed to parse a PEM certificate: {e}"))?;
                public_key_of_spki(&info).context("failed to parse a PEM certificate")?
            }
            "PUBLIC KEY" => public_key_of_spki(&der).context("failed to parse a PEM public key")?,
            _ => bail!("failed to extract a Key from the PEM certificate"),
        };
        return Ok(vec![VerificationKey {
            key,
            alg: String::new(),
            kid: String::new(),
            private: false,
        }]);
    }
    let mut keys = Vec::new();
    for jwk in parse_jwk_set(text.as_bytes()).context("failed to parse a JWK key (set)")? {
        if !jwk.alg.is_empty() && !ALGORITHMS.contains(&jwk.alg.as_str()) {
            continue;
        }
        keys.push(VerificationKey {
            key: jwk.public_key()?,
            private: jwk.is_private(),
            alg: jwk.alg,
            kid: jwk.kid,
        });
    }
    Ok(keys)
}

/// An X.509 `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7): RSA, EC on a named curve, Ed25519.
fn public_key_of_spki(der: &[u8]) -> Result<PublicKey> {
    let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| anyhow!("{e}"))?;
    let key = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| anyhow!("the public key is not a whole number of bytes"))?
        .to_vec();
    let algorithm = info.algorithm.oid;
    if algorithm == RSA_ENCRYPTION {
        Ok(PublicKey::RsaDer(key))
    } else if algorithm == EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters
            .ok_or_else(|| anyhow!("an EC key without its curve"))?
            .decode_as::<ObjectIdentifier>()
            .map_err(|e| anyhow!("an EC key's curve: {e}"))?;
        let curve = match curve {
            c if c == P256 => Curve::P256,
            c if c == P384 => Curve::P384,
            c if c == P521 => Curve::P521,
            other => bail!("unsupported elliptic curve {other}"),
        };
        Ok(PublicKey::Ec(curve, key))
    } else if algorithm == ED25519 {
        Ok(PublicKey::Ed25519(key))
    } else {
        bail!("unsupported public key algorithm {algorithm}")
    }
}

/// One JSON Web Key (RFC 7517), its fields as given.
struct Jwk {
    kty: String,
    alg: String,
    kid: String,
    fields: Map<String, Json>,
}

/// A JWK set (`{"keys": […]}`) or a single JWK.
fn parse_jwk_set(bytes: &[u8]) -> Result<Vec<Jwk>> {
    let value: Json = serde_json::from_slice(bytes)?;
    let items = match value {
        Json::Object(mut set) if set.contains_key("keys") => match set.remove("keys") {
            Some(Json::Array(keys)) => keys,
            _ => bail!("\"keys\" must be a list"),
        },
        single => vec![single],
    };
    items.into_iter().map(Jwk::from_json).collect()
}

impl Jwk {
    fn from_json(value: Json) -> Result<Self> {
        let Json::Object(fields) = value else {
            bail!("a JWK must be an object");
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let kty = text("kty");
        if kty.is_empty() {
            bail!("a JWK needs \"kty\"");
        }
        Ok(Jwk {
            kty,
            alg: text("alg"),
            kid: text("kid"),
            fields,
        })
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        let text = self
            .fields
            .get(name)
            .and_then(Json::as_str)
            .ok_or_else(|| anyhow!("the {} JWK has no \"{name}\"", self.kty))?;
        B64URL
            .decode(text)
            .with_context(|| format!("the JWK's \"{name}\""))
    }

    fn is_private(&self) -> bool {
        self.kty != "oct" && self.fields.contains_key("d")
    }

    fn curve(&self) -> Result<Curve> {
        match self.fields.get("crv").and_then(Json::as_str) {
            Some("P-256") => Ok(Curve::P256),
            Some("P-384") => Ok(Curve::P384),
            Some("P-521") => Ok(Curve::P521),
            other => bail!("unsupported elliptic curve {other:?}"),
        }
    }

    /// A coordinate, left-padded to the curve's size (some encoders drop leading zeros).
    fn coordinate(&self, name: &str, curve: Curve) -> Result<Vec<u8>> {
        let bytes = self.bytes(name)?;
        let size = curve.field_bytes();
        if bytes.len() > size {
            bail!("the JWK's \"{name}\" is longer than its curve allows");
        }
        let mut padded = vec![0; size - bytes.len()];
        padded.extend(bytes);
        Ok(padded)
    }

    fn ec_point(&self, curve: Curve) -> Result<Vec<u8>> {
        let mut point = vec![0x04];
        point.extend(self.coordinate("x", curve)?);
        point.extend(self.coordinate("y", curve)?);
        Ok(point)
    }

    fn public_key(&self) -> Result<PublicKey> {
        match self.kty.as_str() {
            "RSA" => Ok(PublicKey::RsaParts {
                n: self.bytes("n")?,
                e: self.bytes("e")?,
            }),
            "EC" => {
                let curve = self.curve()?;
                Ok(PublicKey::Ec(curve, self.ec_point(curve)?))
            }
            "OKP" => match self.fields.get("crv").and_then(Json::as_str) {
                Some("Ed25519") => Ok(PublicKey::Ed25519(self.bytes("x")?)),
                other => bail!("unsupported OKP curve {other:?}"),
            },
            "oct" => Ok(PublicKey::Secret(self.bytes("k")?)),
            other => bail!("unsupported JWK key type {other}"),
        }
    }

    /// Signs `message` with this (private) key under `alg`.
    fn sign(&self, alg: &str, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        let refused =
            |why: &dyn std::fmt::Display| anyhow!("cannot sign {alg} with this JWK: {why}");
        match (self.kty.as_str(), alg) {
            ("oct", "HS256" | "HS384" | "HS512") => {
                let key = hmac::Key::new(hmac_algorithm(alg), &self.bytes("k")?);
                Ok(hmac::sign(&key, message).as_ref().to_vec())
            }
            ("RSA", "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let pair = signature::RsaKeyPair::from_components(&rsa::KeyPairComponents {
                    public_key: rsa::PublicKeyComponents {
                        n: self.bytes("n")?,
                        e: self.bytes("e")?,
                    },
                    d: self.bytes("d")?,
                    p: self.bytes("p")?,
                    q: self.bytes("q")?,
                    dP: self.bytes("dp")?,
                    dQ: self.bytes("dq")?,
                    qInv: self.bytes("qi")?,
                })
                .map_err(|e| refused(&e))?;
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(encoding, &rng, message, &mut out)
                    .map_err(|_| refused(&"signing failed"))?;
                Ok(out)
            }
            ("EC", "ES256" | "ES384") => {
                let (curve, algorithm) = match alg {
                    "ES256" => (Curve::P256, &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
                    _ => (Curve::P384, &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
                };
                if self.curve()? != curve {
                    return Err(refused(&"the key is on another curve"));
                }
                let pair = signature::EcdsaKeyPair::from_private_key_and_public_key(
                    algorithm,
                    &self.coordinate("d", curve)?,
                    &self.ec_point(curve)?,
                    &rng,
                )
                .map_err(|e| refused(&e))?;
                let signed = pair
                    .sign(&rng, message)
                    .map_err(|_| refused(&"signing failed"))?;
                Ok(signed.as_ref().to_vec())
            }
            ("OKP", "EdDSA") => {
                let pair = signature::Ed25519KeyPair::from_seed_and_public_key(
                    &self.bytes("d")?,
                    &self.bytes("x")?,
                )
                .map_err(|e| refused(&e))?;
                Ok(pair.sign(message).as_ref().to_vec())
            }
            ("EC", "ES512") => {
                use p521::ecdsa::signature::Signer as _;
                if self.curve()? != Curve::P521 {
                    return Err(refused(&"the key is on another curve"));
                }
                let key = p521::ecdsa::SigningKey::from_slice(&self.coordinate("d", Curve::P521)?)
                    .map_err(|e| refused(&e))?;
                // ring checks a key pair's halves agree; the same here.
                if key.verifying_key().to_sec1_point(false).as_bytes()
                    != self.ec_point(Curve::P521)?.as_slice()
                {
                    return Err(refused(&"x and y are not d's public key"));
                }
                // RFC 6979 (deterministic) signatures; OPA's are random, both verify alike.
                let signed: p521::ecdsa::Signature = key.sign(message);
                Ok(signed.to_bytes().to_vec())
            }
            (kty, _) => Err(refused(&format!("a {kty} key"))),
        }
    }
}

fn hmac_algorithm(alg: &str) -> hmac::Algorithm {
    match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

/// Whether `signature` over `signed` verifies with `key` under `alg`. A key of the wrong
/// type for `alg` does not verify (so a public key never verifies an HMAC: no algorithm
/// confusion).
fn verifies(key: &PublicKey, alg: &str, signed: &[u8], signature: &[u8]) -> bool {
    use ring::signature as s;
    let rsa = |params: &'static s::RsaParameters| match key {
        PublicKey::RsaDer(der) => s::UnparsedPublicKey::new(params, der)
            .verify(signed, signature)
            .is_ok(),
        PublicKey::RsaParts { n, e } => s::RsaPublicKeyComponents { n, e }
            .verify(params, signed, signature)
            .is_ok(),
        _ => false,
    };
    let ec = |curve: Curve, algorithm: &'static s::EcdsaVerificationAlgorithm| {
        matches!(key, PublicKey::Ec(c, point) if *c == curve
            && s::UnparsedPublicKey::new(algorithm, point).verify(signed, signature).is_ok())
    };
    match alg {
        "RS256" => rsa(&s::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => rsa(&s::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => rsa(&s::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => rsa(&s::RSA_PSS_2048_8192_SHA256),
        "PS384" => rsa(&s::RSA_PSS_2048_8192_SHA384),
        "PS512" => rsa(&s::RSA_PSS_2048_8192_SHA512),
        "ES256" => ec(Curve::P256, &s::ECDSA_P256_SHA256_FIXED),
        "ES384" => ec(Curve::P384, &s::ECDSA_P384_SHA384_FIXED),
        "ES512" => {
            matches!(key, PublicKey::Ec(Curve::P521, point) if p521_verifies(point, signed, signature))
        }
        "EdDSA" => matches!(key, PublicKey::Ed25519(x)
            if s::UnparsedPublicKey::new(&s::ED25519, x).verify(signed, signature).is_ok()),
        "HS256" | "HS384" | "HS512" => matches!(key, PublicKey::Secret(secret)
            if hmac::verify(&hmac::Key::new(hmac_algorithm(alg), secret), signed, signature).is_ok()),
        // `none` and anything else.
        _ => false,
    }
}

/// ES512 with RustCrypto's P-521 (ring has no P-521): an uncompressed point, as Go's key
/// parsers require, and the fixed-size `r || s` signature of JWS.
fn p521_verifies(point: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    if point.len() != 133 || point[0] != 4 {
        return false;
    }
    let (Ok(key), Ok(signature)) = (
        p521::ecdsa::VerifyingKey::from_sec1_bytes(point),
        p521::ecdsa::Signature::from_slice(signature),
    ) else {
        return false;
    };
    key.verify(signed, &signature).is_ok()
}

/// OPA's choice of keys: the one whose `kid` is the token's, alone; otherwise any key that
/// names no algorithm or the token's.
fn verifies_with_any(
    keys: &[VerificationKey],
    header: &Header,
    alg: &str,
    token: &Token<'_>,
    signature: &[u8],
    private_keys_verify: bool,
) -> bool {
    let check = |key: &VerificationKey| {
        (private_keys_verify || !key.private) && verifies(&key.key, alg, token.signed(), signature)
    };
    if !header.kid.is_empty()
        && let Some(key) = keys.iter().find(|key| key.kid == header.kid)
    {
        return check(key);
    }
    keys.iter()
        .any(|key| (key.alg.is_empty() || key.alg == header.alg) && check(key))
}

/// `io.jwt.decode(token)`: `[header, payload, signature as hex]`, unverified; a nested token
/// (`cty: JWT`) is decoded in its place.
pub(super) fn decode(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    decode_token(string("io.jwt.decode", args, 0)?).map_err(named("io.jwt.decode"))
}

fn decode_token(text: &str) -> Result<Value> {
    let token = Token::split(text)?;
    let header = token.header()?;
    let payload = token.payload()?;
    if header.get("cty").and_then(Json::as_str) == Some("JWT") {
        let inner = String::from_utf8(payload).context("nested JWT")?;
        return decode_token(inner.trim_matches(|c| c == '"' || c == '\''));
    }
    let payload = json_object(&payload).context("JWT payload")?;
    let signature = token.signature()?;
    Ok(Value::from(vec![
        Value::from(Json::Object(header)),
        Value::from(Json::Object(payload)),
        Value::from(hex::encode(signature)),
    ]))
}

fn verify_hmac(name: &'static str, alg: &str, args: Args<'_>) -> Result<Value> {
    let text = string(name, args, 0)?;
    let secret = string(name, args, 1)?;
    let verified = (|| {
        let token = Token::split(text)?;
        let signature = token.signature()?;
        let key = PublicKey::Secret(secret.as_bytes().to_vec());
        anyhow::Ok(verifies(&key, alg, token.signed(), &signature))
    })()
    .map_err(named(name))?;
    Ok(Value::from(verified))
}

fn verify_public(name: &'static str, alg: &str, args: Args<'_>) -> Result<Value> {
    let text = string(name, args, 0)?;
    let keys = string(name, args, 1)?;
    let verified = (|| {
        let token = Token::split(text)?;
        let keys = keys_from_cert_or_jwk(keys)?;
        let signature = token.signature()?;
        let header = Header::parse(&token.header()?)?;
        anyhow::Ok(verifies_with_any(
            &keys, &header, alg, &token, &signature, false,
        ))
    })()
    .map_err(named(name))?;
    Ok(Value::from(verified))
}

macro_rules! verify_builtins {
    ($($fn_name:ident => $verify:ident($alg:literal)),* $(,)?) => {$(
        pub(super) fn $fn_name(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
            $verify(concat!("io.jwt.", stringify!($fn_name)), $alg, args)
        }
    )*};
}

verify_builtins! {
    verify_hs256 => verify_hmac("HS256"),
    verify_hs384 => verify_hmac("HS384"),
    verify_hs512 => verify_hmac("HS512"),
    verify_rs256 => verify_public("RS256"),
    verify_rs384 => verify_public("RS384"),
    verify_rs512 => verify_public("RS512"),
    verify_ps256 => verify_public("PS256"),
    verify_ps384 => verify_public("PS384"),
    verify_ps512 => verify_public("PS512"),
    verify_es256 => verify_public("ES256"),
    verify_es384 => verify_public("ES384"),
    verify_es512 => verify_public("ES512"),
    verify_eddsa => verify_public("EdDSA"),
}

/// `decode_verify`'s constraints (OPA's `tokenConstraints`); empty strings are absent.
struct Constraints {
    keys: Option<Vec<VerificationKey>>,
    secret: String,
    alg: String,
    iss: String,
    aud: String,
    time_ns: f64,
}

impl Constraints {
    fn parse(value: &Value) -> Result<Self> {
        let Value::Object(fields) = value else {
            bail!("operand 2 must be an object");
        };
        let mut constraints = Constraints {
            keys: None,
            secret: String::new(),
            alg: String::new(),
            iss: String::new(),
            aud: String::new(),
            time_ns: -1.0,
        };
        for (name, value) in fields.iter() {
            let Value::String(name) = name else {
                bail!("unknown token validation constraint: {name}");
            };
            let text = || match value {
                Value::String(text) => Ok(text.to_string()),
                _ => Err(anyhow!("{name} constraint: must be a string")),
            };
            match name.as_ref() {
                "cert" => constraints.keys = Some(keys_from_cert_or_jwk(&text()?)?),
                "secret" => constraints.secret = text()?,
                "alg" => constraints.alg = text()?,
                "iss" => constraints.iss = text()?,
                "aud" => constraints.aud = text()?,
                "time" => {
                    let Value::Number(_) = value else {
                        bail!("token time constraint: must be a number");
                    };
                    // Nanoseconds exceed f64's exact integers, which regorus's as_f64
                    // refuses: read an integer as one.
                    let time = match value.as_i64() {
                        Ok(ns) => ns as f64,
                        Err(_) => value.as_f64()?,
                    };
                    if time < 0.0 {
                        bail!("token time constraint: must not be negative");
                    }
                    constraints.time_ns = time;
                }
                other => bail!("unknown token validation constraint: {other}"),
            }
        }
        if constraints.time_ns < 0.0 {
            constraints.time_ns =
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) as f64;
        }
        match (constraints.keys.is_some(), !constraints.secret.is_empty()) {
            (true, true) => bail!("duplicate key constraints"),
            (false, false) => bail!("no key constraint"),
            _ => Ok(constraints),
        }
    }

    fn verifies(&self, header: &Header, token: &Token<'_>, signature: &[u8]) -> bool {
        match &self.keys {
            Some(keys) => verifies_with_any(keys, header, &header.alg, token, signature, true),
            None => {
                let secret = PublicKey::Secret(self.secret.as_bytes().to_vec());
                verifies(&secret, &header.alg, token.signed(), signature)
            }
        }
    }

    /// OPA's `validAudience`: the constraint equals `aud`, or one of `aud`'s items.
    fn audience_matches(&self, aud: &Json) -> bool {
        match aud {
            Json::String(aud) => *aud == self.aud,
            Json::Array(items) => items.iter().any(|item| item.as_str() == Some(&self.aud)),
            _ => false,
        }
    }
}

/// `io.jwt.decode_verify(token, constraints)`: `[valid, header, payload]`, `[false, {}, {}]`
/// when the signature or a claim fails; a malformed token or constraint is an error.
pub(super) fn decode_verify(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let name = "io.jwt.decode_verify";
    let text = string(name, args, 0)?;
    decode_verify_token(text, args.get(1).unwrap_or(&Value::Undefined)).map_err(named(name))
}

fn decode_verify_token(text: &str, constraints: &Value) -> Result<Value> {
    let unverified = || -> Result<Value> {
        Ok(Value::from(vec![
            Value::from(false),
            Value::new_object(),
            Value::new_object(),
        ]))
    };
    let constraints = Constraints::parse(constraints)?;
    let mut text = text.to_owned();
    let (header, payload) = loop {
        let token = Token::split(&text)?;
        let header = token.header()?;
        let fields = Header::parse(&header)?;
        if !fields.valid() || (!constraints.alg.is_empty() && constraints.alg != fields.alg) {
            return unverified();
        }
        let signature = token.signature()?;
        if !constraints.verifies(&fields, &token, &signature) {
            return unverified();
        }
        let payload = token.payload()?;
        if fields.cty.eq_ignore_ascii_case("JWT") {
            // A nested token: verify the inner one with the same constraints.
            text = String::from_utf8(payload).context("nested JWT")?;
            continue;
        }
        break (header, json_object(&payload).context("JWT payload")?);
    };
    if !constraints.iss.is_empty()
        && payload.get("iss").and_then(Json::as_str) != Some(&constraints.iss)
    {
        return unverified();
    }
    let audience_ok = match payload.get("aud") {
        Some(aud) => constraints.audience_matches(aud),
        None => constraints.aud.is_empty(),
    };
    if !audience_ok {
        return unverified();
    }
    let now = constraints.time_ns / 1e9;
    let claim_time = |claim: &str| -> Result<Option<f64>> {
        payload
            .get(claim)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| anyhow!("{claim} value must be a number"))
            })
            .transpose()
    };
    if claim_time("exp")?.is_some_and(|exp| now >= exp)
        || claim_time("nbf")?.is_some_and(|nbf| now < nbf)
    {
        return unverified();
    }
    Ok(Value::from(vec![
        Value::from(true),
        Value::from(Json::Object(header)),
        Value::from(Json::Object(payload)),
    ]))
}

/// `io.jwt.encode_sign(header, payload, jwk)`: the operands are marshalled as OPA's Go code
/// does (sorted keys, no spaces, `<>&` escaped), then signed.
pub(super) fn encode_sign(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let name = "io.jwt.encode_sign";
    let go_json = |at: usize| -> Result<Vec<u8>> {
        let value = args
            .get(at)
            .ok_or_else(|| anyhow!("{name}: operand {} missing", at + 1))?;
        let text = serde_json::to_string(value).map_err(|e| anyhow!("{name}: {e}"))?;
        Ok(regorus::unstable::go_json_escape(&text).into_bytes())
    };
    sign_compact(&go_json(0)?, &go_json(1)?, &go_json(2)?).map_err(named(name))
}

/// `io.jwt.encode_sign_raw(header, payload, jwk)`, each operand JSON text, signed as given.
pub(super) fn encode_sign_raw(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let name = "io.jwt.encode_sign_raw";
    let jwk = string(name, args, 2)?;
    let header = string(name, args, 0)?;
    let payload = string(name, args, 1)?;
    sign_compact(header.as_bytes(), payload.as_bytes(), jwk.as_bytes()).map_err(named(name))
}

/// Signs with the first key of a JWK (set) under the header's `alg` (OPA's
/// `commonBuiltinJWTEncodeSign`).
fn sign_compact(header: &[u8], payload: &[u8], jwk: &[u8]) -> Result<Value> {
    let keys = parse_jwk_set(jwk)?;
    let key = keys
        .first()
        .ok_or_else(|| anyhow!("no keys found in JWK set"))?;
    let fields: Json = serde_json::from_slice(header).unwrap_or(Json::Null);
    let alg = fields
        .get("alg")
        .and_then(Json::as_str)
        .ok_or_else(|| anyhow!("missing or invalid 'alg' header"))?;
    if !ALGORITHMS.contains(&alg) {
        bail!("unknown JWS algorithm: {alg}");
    }
    let typ = fields.get("typ").and_then(Json::as_str);
    if typ.is_none_or(|typ| typ == "JWT")
        && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err()
    {
        bail!("type is JWT but payload is not JSON");
    }
    let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let signature = key.sign(alg, signing_input.as_bytes())?;
    Ok(Value::from(format!(
        "{signing_input}.{}",
        B64URL.encode(signature)
    )))
}
