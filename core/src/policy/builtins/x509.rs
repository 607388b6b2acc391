//! OPA's `crypto.x509.*` and `crypto.parse_private_keys` (OPA's `topdown/crypto.go`): Go's
//! certificate, request and key parsers, their answers as Go's `encoding/json` writes those
//! structs (`cert`, `keys`), and Go's chain verification for
//! `parse_and_verify_certificates*` (`verify`), fail-closed where it is incomplete.
//!
//! Errors make the call undefined, as OPA's non-strict default; a chain that does not verify
//! is `[false, []]`, as in OPA.

mod cert;
mod der;
mod keys;
mod verify;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use regorus::Value;
use regorus::unstable::{Expr, Ref, Span};

use self::cert::Cert;
use self::der::{b64, object, pem_decode, std_base64};
use super::{Args, string};

/// Go's `pem.Decode` loop of OPA's `getX509CertsFromPem`: only CERTIFICATE blocks.
fn certs_from_pem(mut data: &[u8]) -> Result<Vec<Cert>> {
    let mut der = Vec::new();
    while !data.is_empty() {
        let Some((block, rest)) = pem_decode(data) else {
            break;
        };
        if block.label != "CERTIFICATE" {
            bail!("PEM block type is '{}', expected CERTIFICATE", block.label);
        }
        der.extend_from_slice(&block.bytes);
        data = rest;
    }
    cert::parse_certificates(&der)
}

/// OPA's `getX509CertsFromString`: PEM, or base64 of DER or of PEM.
fn certs_from_string(text: &str) -> Result<Vec<Cert>> {
    if text.starts_with("-----BEGIN") {
        return certs_from_pem(text.as_bytes());
    }
    let bytes = std_base64(text.as_bytes())?;
    if bytes.starts_with(b"-----BEGIN") {
        return certs_from_pem(&bytes);
    }
    cert::parse_certificates(&bytes)
}

fn cert_list(certs: &[&Cert], uri_strings: bool) -> Value {
    Value::from(
        certs
            .iter()
            .map(|c| c.to_value(uri_strings))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn parse_certificates(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string("crypto.x509.parse_certificates", args, 0)?;
    let certs = certs_from_string(text)?;
    Ok(cert_list(&certs.iter().collect::<Vec<_>>(), true))
}

fn not_verified() -> Value {
    Value::from(vec![Value::from(false), Value::from(Vec::<Value>::new())])
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn verify_with(text: &str, opts: &verify::Options, uri_strings: bool) -> Value {
    let Ok(certs) = certs_from_string(text) else {
        return not_verified();
    };
    match verify::verify(&certs, opts) {
        Some(chain) => Value::from(vec![Value::from(true), cert_list(&chain, uri_strings)]),
        None => not_verified(),
    }
}

pub(super) fn parse_and_verify_certificates(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string("crypto.x509.parse_and_verify_certificates", args, 0)?;
    let opts = verify::Options {
        dns_name: String::new(),
        now: now_ns(),
        key_usages: Vec::new(),
    };
    Ok(verify_with(text, &opts, true))
}

/// OPA's `allowedKeyUsages`, to Go's `ExtKeyUsage` numbers.
const KEY_USAGES: &[(&str, u32)] = &[
    ("KeyUsageAny", 0),
    ("KeyUsageServerAuth", 1),
    ("KeyUsageClientAuth", 2),
    ("KeyUsageCodeSigning", 3),
    ("KeyUsageEmailProtection", 4),
    ("KeyUsageIPSECEndSystem", 5),
    ("KeyUsageIPSECTunnel", 6),
    ("KeyUsageIPSECUser", 7),
    ("KeyUsageTimeStamping", 8),
    ("KeyUsageOCSPSigning", 9),
    ("KeyUsageMicrosoftServerGatedCrypto", 10),
    ("KeyUsageNetscapeServerGatedCrypto", 11),
    ("KeyUsageMicrosoftCommercialCodeSigning", 12),
    ("KeyUsageMicrosoftKernelCodeSigning", 13),
];

/// OPA's `extractVerifyOpts`.
fn verify_options(options: &Value) -> Result<verify::Options> {
    const NAME: &str = "crypto.x509.parse_and_verify_certificates_with_options";
    let Value::Object(fields) = options else {
        bail!("{NAME}: operand 2 must be an object");
    };
    let mut opts = verify::Options {
        dns_name: String::new(),
        now: now_ns(),
        key_usages: Vec::new(),
    };
    for (key, value) in fields.iter() {
        let Value::String(key) = key else { continue };
        match key.as_ref() {
            "DNSName" => match value {
                Value::String(s) => opts.dns_name = s.trim_matches('"').to_string(),
                _ => bail!("'DNSName' should be a string"),
            },
            "CurrentTime" => match value {
                Value::Number(n) => {
                    let ns = n
                        .as_i64()
                        .filter(|_| n.as_f64().is_none_or(|f| f.fract() == 0.0))
                        .ok_or_else(|| anyhow!("'CurrentTime' should be a valid int64 number"))?;
                    opts.now = i128::from(ns);
                }
                _ => bail!("'CurrentTime' should be a number"),
            },
            "MaxConstraintComparisons" => match value {
                // Only name constraints use it, and those never verify here.
                Value::Number(n) if n.as_i64().is_some() => {}
                Value::Number(_) => bail!("'MaxConstraintComparisons' should be a valid number"),
                _ => bail!("'MaxConstraintComparisons' should be a number"),
            },
            "KeyUsages" => {
                let items: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    Value::Set(s) => s.iter().collect(),
                    _ => bail!("'KeyUsages' should be an Array or Set"),
                };
                let mut invalid = Vec::new();
                for item in items {
                    let Value::String(s) = item else { continue };
                    let s = s.trim_matches('"');
                    match KEY_USAGES.iter().find(|(k, _)| *k == s) {
                        Some((_, usage)) => opts.key_usages.push(*usage),
                        None => invalid.push(s.to_string()),
                    }
                }
                if !invalid.is_empty() {
                    bail!("invalid entries for 'KeyUsages' found: {invalid:?}");
                }
            }
            _ => bail!("invalid key option"),
        }
    }
    Ok(opts)
}

pub(super) fn parse_and_verify_certificates_with_options(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string(
        "crypto.x509.parse_and_verify_certificates_with_options",
        args,
        0,
    )?;
    let options = args.get(1).ok_or_else(|| anyhow!("missing options"))?;
    if !matches!(options, Value::Object(_)) {
        bail!(
            "crypto.x509.parse_and_verify_certificates_with_options: operand 2 must be an object"
        );
    }
    // OPA answers [false, []] for input that does not parse before it looks at the options.
    let Ok(certs) = certs_from_string(text) else {
        return Ok(not_verified());
    };
    let opts = verify_options(options)?;
    Ok(match verify::verify(&certs, &opts) {
        // OPA returns these without `URIStrings`.
        Some(chain) => Value::from(vec![Value::from(true), cert_list(&chain, false)]),
        None => not_verified(),
    })
}

pub(super) fn parse_certificate_request(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string("crypto.x509.parse_certificate_request", args, 0)?;
    let mut bytes = text.as_bytes().to_vec();
    if !text.starts_with("-----BEGIN CERTIFICATE REQUEST-----") {
        bytes = std_base64(text.as_bytes())?;
    }
    if let Some((block, _)) = pem_decode(&bytes) {
        if block.label != "CERTIFICATE REQUEST" {
            bail!("invalid PEM-encoded certificate signing request");
        }
        bytes = block.bytes;
    }
    cert::parse_certificate_request(&bytes)
}

pub(super) fn parse_rsa_private_key(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string("crypto.x509.parse_rsa_private_key", args, 0)?;
    if text.is_empty() {
        bail!("input PEM data was empty");
    }
    let owned;
    let text = if text.starts_with("-----BEGIN") {
        text
    } else {
        owned = String::from_utf8(std_base64(text.as_bytes())?)?;
        owned.as_str()
    };
    let keys = keys::keys_from_pem_data(text)?;
    Ok(keys.first().map_or(Value::Null, keys::PrivateKey::jwk))
}

pub(super) fn parse_private_keys(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let text = string("crypto.parse_private_keys", args, 0)?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    let keys = keys::keys_from_pem_data(text)?;
    Ok(Value::from(
        keys.iter()
            .map(keys::PrivateKey::go_value)
            .collect::<Vec<_>>(),
    ))
}

/// OPA's `getTLSx509KeyPairFromString` and Go's `tls.X509KeyPair`.
pub(super) fn parse_keypair(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let cert_text = string("crypto.x509.parse_keypair", args, 0)?;
    let key_text = string("crypto.x509.parse_keypair", args, 1)?;
    let pem_of = |text: &str, label: &str| -> Result<Vec<u8>> {
        if text.starts_with("-----BEGIN ") {
            return Ok(text.as_bytes().to_vec());
        }
        let bytes = std_base64(text.as_bytes())?;
        if bytes.starts_with(b"-----BEGIN") {
            return Ok(bytes);
        }
        // DER: OPA wraps it in a PEM block of its own.
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line)?);
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        Ok(pem.into_bytes())
    };
    let cert_pem = pem_of(cert_text, "CERTIFICATE")?;
    let key_pem = pem_of(key_text, "PRIVATE KEY")?;

    let mut certificates = Vec::new();
    let mut data = cert_pem.as_slice();
    while let Some((block, rest)) = pem_decode(data) {
        if block.label == "CERTIFICATE" {
            certificates.push(block.bytes);
        }
        data = rest;
    }
    let first = certificates
        .first()
        .ok_or_else(|| anyhow!("tls: failed to find any PEM data in certificate input"))?;
    let mut data = key_pem.as_slice();
    let key_der = loop {
        let (block, rest) = pem_decode(data)
            .ok_or_else(|| anyhow!("tls: failed to find any PEM data in key input"))?;
        if block.label == "PRIVATE KEY" || block.label.ends_with(" PRIVATE KEY") {
            break block.bytes;
        }
        data = rest;
    };
    let leaf = cert::parse_certificate(first)?;
    let key = keys::tls_private_key(&key_der)?;
    key.check_matches(&leaf.public_key)?;
    Ok(object(vec![
        (
            "Certificate",
            Value::from(certificates.iter().map(|c| b64(c)).collect::<Vec<_>>()),
        ),
        ("Leaf", leaf.to_value(false)),
        ("OCSPStaple", Value::Null),
        ("PrivateKey", key.go_value()),
        ("SignedCertificateTimestamps", Value::Null),
        ("SupportedSignatureAlgorithms", Value::Null),
    ]))
}
