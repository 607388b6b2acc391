//! Private keys as Go's `crypto/x509` parses them (PKCS #1, PKCS #8, SEC 1), and as OPA
//! returns them: Go's JSON of `rsa.PrivateKey` / `ecdsa.PrivateKey` / `ed25519.PrivateKey`
//! for `crypto.parse_private_keys` and `crypto.x509.parse_keypair`, a JWK for
//! `crypto.x509.parse_rsa_private_key`.

use anyhow::{Result, anyhow, bail, ensure};
use regorus::Value;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use super::cert::{Curve, PublicKey};
use super::der::{
    self, BIT_STRING, INTEGER, OCTET_STRING, OID, SEQUENCE, b64, big_number, children, expect,
    object, oid_string, pem_decode, std_base64,
};

pub(super) enum PrivateKey {
    /// Magnitudes, big-endian: n, e, d, p, q, dp, dq, qi.
    Rsa([Vec<u8>; 8]),
    Ec {
        curve: Curve,
        d: Vec<u8>,
        point: Vec<u8>,
    },
    Ed25519 {
        seed: Vec<u8>,
        public: Vec<u8>,
    },
}

fn jwk_b64(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    Value::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl PrivateKey {
    /// Go's `encoding/json` of the key.
    pub(super) fn go_value(&self) -> Value {
        match self {
            PrivateKey::Rsa([n, e, d, p, q, dp, dq, qi]) => object(vec![
                ("D", big_number(d)),
                ("E", big_number(e)),
                ("N", big_number(n)),
                (
                    "Precomputed",
                    object(vec![
                        ("CRTValues", Value::from(Vec::<Value>::new())),
                        ("Dp", big_number(dp)),
                        ("Dq", big_number(dq)),
                        ("Qinv", big_number(qi)),
                    ]),
                ),
                ("Primes", Value::from(vec![big_number(p), big_number(q)])),
            ]),
            PrivateKey::Ec { curve, d, point } => {
                let size = curve.size();
                object(vec![
                    ("Curve", object(vec![])),
                    ("D", big_number(d)),
                    ("X", big_number(&point[1..=size])),
                    ("Y", big_number(&point[1 + size..])),
                ])
            }
            PrivateKey::Ed25519 { seed, public } => b64(&[seed.as_slice(), public].concat()),
        }
    }

    /// OPA's JWK of the key (its `jwk.New`): big integers unpadded, EC coordinates and
    /// scalar padded to the curve's size.
    pub(super) fn jwk(&self) -> Value {
        match self {
            PrivateKey::Rsa([n, e, d, p, q, dp, dq, qi]) => object(vec![
                ("d", jwk_b64(d)),
                ("dp", jwk_b64(dp)),
                ("dq", jwk_b64(dq)),
                ("e", jwk_b64(e)),
                ("kty", Value::from("RSA")),
                ("n", jwk_b64(n)),
                ("p", jwk_b64(p)),
                ("q", jwk_b64(q)),
                ("qi", jwk_b64(qi)),
            ]),
            PrivateKey::Ec { curve, d, point } => {
                let size = curve.size();
                let mut padded = vec![0u8; size.saturating_sub(d.len())];
                padded.extend_from_slice(d);
                object(vec![
                    ("crv", Value::from(curve.jwk_name())),
                    ("d", jwk_b64(&padded)),
                    ("kty", Value::from("EC")),
                    ("x", jwk_b64(&point[1..=size])),
                    ("y", jwk_b64(&point[1 + size..])),
                ])
            }
            PrivateKey::Ed25519 { seed, public } => object(vec![
                ("crv", Value::from("Ed25519")),
                ("d", jwk_b64(seed)),
                ("kty", Value::from("OKP")),
                ("x", jwk_b64(public)),
            ]),
        }
    }

    /// `tls.X509KeyPair`'s check that the key is the certificate's.
    pub(super) fn check_matches(&self, public: &PublicKey) -> Result<()> {
        let matches = match (public, self) {
            (PublicKey::Rsa { n, .. }, PrivateKey::Rsa(parts)) => *n == parts[0],
            (PublicKey::Ec { point, .. }, PrivateKey::Ec { point: mine, .. }) => point == mine,
            (PublicKey::Ed25519(key), PrivateKey::Ed25519 { public: mine, .. }) => key == mine,
            (PublicKey::Rsa { .. } | PublicKey::Ec { .. } | PublicKey::Ed25519(_), _) => {
                bail!("tls: private key type does not match public key type")
            }
            _ => bail!("tls: unknown public key algorithm"),
        };
        ensure!(matches, "tls: private key does not match public key");
        Ok(())
    }
}

/// Go's `x509.ParsePKCS1PrivateKey` (two primes only, as Go).
pub(super) fn parse_pkcs1(der: &[u8]) -> Result<PrivateKey> {
    let seq = expect(der, SEQUENCE)?;
    let items = children(seq.content)?;
    ensure!(
        items.len() == 9,
        "x509: failed to parse private key (use ParsePKCS8PrivateKey instead for this key format)"
    );
    ensure!(
        items.iter().all(|t| t.tag == INTEGER),
        "x509: invalid RSA private key"
    );
    ensure!(
        items[0].content == [0],
        "x509: unsupported private key version"
    );
    let mut parts: [Vec<u8>; 8] = Default::default();
    for (slot, item) in parts.iter_mut().zip(&items[1..]) {
        let magnitude = der::unsigned(item.content)
            .map_err(|_| anyhow!("x509: private key contains zero or negative value"))?;
        ensure!(
            !magnitude.is_empty(),
            "x509: private key contains zero or negative value"
        );
        *slot = magnitude.to_vec();
    }
    // Go validates the key (`Validate`); ring does the same checks, but also refuses sizes
    // Go takes, so only its verdict of inconsistency counts.
    if let Err(e) = signature::RsaKeyPair::from_der(der)
        && e.to_string().contains("Inconsistent")
    {
        bail!("crypto/rsa: invalid private key");
    }
    Ok(PrivateKey::Rsa(parts))
}

/// Go's `x509.ParsePKCS8PrivateKey` for RSA, EC and Ed25519 keys.
pub(super) fn parse_pkcs8(der: &[u8]) -> Result<PrivateKey> {
    let seq = expect(der, SEQUENCE)?;
    let items = children(seq.content)?;
    let [version, alg, key, ..] = items.as_slice() else {
        bail!("x509: malformed PKCS#8 private key")
    };
    ensure!(
        version.tag == INTEGER && alg.tag == SEQUENCE && key.tag == OCTET_STRING,
        "x509: malformed PKCS#8 private key"
    );
    let alg_items = children(alg.content)?;
    let oid = alg_items
        .first()
        .filter(|t| t.tag == OID)
        .ok_or_else(|| anyhow!("x509: malformed PKCS#8 private key"))?;
    match oid_string(oid.content)?.as_str() {
        "1.2.840.113549.1.1.1" => parse_pkcs1(key.content),
        "1.2.840.10045.2.1" => {
            let params = alg_items
                .get(1)
                .filter(|t| t.tag == OID)
                .ok_or_else(|| anyhow!("x509: invalid EC parameters"))?;
            let curve = Curve::from_oid(&oid_string(params.content)?)
                .ok_or_else(|| anyhow!("x509: unknown elliptic curve"))?;
            parse_sec1(key.content, Some(curve))
        }
        "1.3.101.112" => {
            ensure!(
                alg_items.len() == 1,
                "x509: invalid Ed25519 private key parameters"
            );
            let seed = expect(key.content, OCTET_STRING)?.content;
            ensure!(seed.len() == 32, "x509: invalid Ed25519 private key length");
            let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| anyhow!("{e}"))?;
            Ok(PrivateKey::Ed25519 {
                seed: seed.to_vec(),
                public: pair.public_key().as_ref().to_vec(),
            })
        }
        other => {
            bail!("x509: PKCS#8 wrapping contained private key with unknown algorithm: {other}")
        }
    }
}

/// Go's `x509.ParseECPrivateKey`. Go derives the public point from the scalar; here it is
/// the one the key carries (checked against the scalar by ring on P-256 and P-384), so a key
/// without its public point is refused.
pub(super) fn parse_sec1(der: &[u8], curve: Option<Curve>) -> Result<PrivateKey> {
    let seq = expect(der, SEQUENCE)?;
    let items = children(seq.content)?;
    let [version, d, rest @ ..] = items.as_slice() else {
        bail!("x509: failed to parse EC private key")
    };
    ensure!(
        version.tag == INTEGER && version.content == [1],
        "x509: unknown EC private key version"
    );
    ensure!(
        d.tag == OCTET_STRING,
        "x509: failed to parse EC private key"
    );
    let mut curve = curve;
    let mut point = None;
    for item in rest {
        match item.tag {
            0xa0 if curve.is_none() => {
                let oid = expect(item.content, OID)?;
                curve = Some(
                    Curve::from_oid(&oid_string(oid.content)?)
                        .ok_or_else(|| anyhow!("x509: unknown elliptic curve"))?,
                );
            }
            0xa0 => {}
            0xa1 => {
                let bits = expect(item.content, BIT_STRING)?;
                point = bits.content.get(1..).map(<[u8]>::to_vec);
            }
            _ => bail!("x509: failed to parse EC private key"),
        }
    }
    let curve = curve.ok_or_else(|| anyhow!("x509: unknown elliptic curve"))?;
    let size = curve.size();
    let mut scalar = d.content;
    while scalar.len() > size {
        ensure!(scalar[0] == 0, "x509: invalid private key length");
        scalar = &scalar[1..];
    }
    let mut padded = vec![0u8; size - scalar.len()];
    padded.extend_from_slice(scalar);
    let point = point.ok_or_else(|| {
        anyhow!("x509: an EC private key without its public key is not supported")
    })?;
    ensure!(
        point.len() == 1 + 2 * size && point[0] == 4,
        "x509: invalid EC public key"
    );
    let alg = match curve {
        Curve::P256 => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        Curve::P384 => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        Curve::P224 | Curve::P521 => None,
    };
    if let Some(alg) = alg {
        signature::EcdsaKeyPair::from_private_key_and_public_key(
            alg,
            &padded,
            &point,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| anyhow!("x509: invalid elliptic curve private key value"))?;
    }
    let mut magnitude = padded.as_slice();
    while let [0, tail @ ..] = magnitude {
        magnitude = tail;
    }
    Ok(PrivateKey::Ec {
        curve,
        d: magnitude.to_vec(),
        point,
    })
}

/// OPA's `getPrivateKeysFromPEMData`: the input may be base64 of PEM; blocks of other types
/// are skipped, a bad key of a known type is an error.
pub(super) fn keys_from_pem_data(text: &str) -> Result<Vec<PrivateKey>> {
    let decoded = std_base64(text.as_bytes()).ok();
    let mut data: &[u8] = decoded.as_deref().unwrap_or(text.as_bytes());
    let mut keys = Vec::new();
    while !data.is_empty() {
        let Some((block, rest)) = pem_decode(data) else {
            break;
        };
        data = rest;
        match block.label {
            "RSA PRIVATE KEY" => keys.push(parse_pkcs1(&block.bytes)?),
            "PRIVATE KEY" => keys.push(parse_pkcs8(&block.bytes)?),
            "EC PRIVATE KEY" => keys.push(parse_sec1(&block.bytes, None)?),
            _ => {}
        }
    }
    Ok(keys)
}

/// `crypto/tls`'s `parsePrivateKey`: PKCS #1, then PKCS #8, then SEC 1.
pub(super) fn tls_private_key(der: &[u8]) -> Result<PrivateKey> {
    if let Ok(key) = parse_pkcs1(der) {
        return Ok(key);
    }
    if let Ok(key) = parse_pkcs8(der) {
        return Ok(key);
    }
    parse_sec1(der, None).map_err(|_| anyhow!("tls: failed to parse private key"))
}
