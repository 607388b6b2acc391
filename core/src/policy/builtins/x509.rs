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

/// Go's `VerifyOptions{}` as OPA fills it: now, any host name, server authentication.
fn default_options() -> verify::Options {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    verify::Options {
        dns_name: String::new(),
        now,
        key_usages: Vec::new(),
    }
}

/// `[true, chain]` (leaf first) or `[false, []]`.
fn verified(certs: &[Cert], opts: &verify::Options, uri_strings: bool) -> Value {
    match verify::verify(certs, opts) {
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
    let Ok(certs) = certs_from_string(text) else {
        return Ok(not_verified());
    };
    Ok(verified(&certs, &default_options(), true))
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
    let mut opts = default_options();
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
    // OPA returns these without `URIStrings`.
    Ok(verified(&certs, &opts, false))
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

#[cfg(test)]
mod tests {
    use regorus::Value;

    use crate::policy::rego::evaluate_on_both_engines;

    use super::cert::parse_certificates;
    use super::keys::keys_from_pem_data;
    use super::verify::{Options, verify};
    use super::{certs_from_string, der};

    // An EC root and a leaf it signed (SPIFFE ID and a DNS name), valid 2025–2124, and the
    // leaf's key: made with Python's `cryptography`.
    const ROOT: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBKjCB0qADAgECAgEBMAoGCCqGSM49BAMCMBQxEjAQBgNVBAMMCVRlc3QgUm9v\n",
        "dDAgFw0yNTAxMDEwMDAwMDBaGA8yMTI0MTIwODAwMDAwMFowFDESMBAGA1UEAwwJ\n",
        "VGVzdCBSb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbOUBpqessBGPaqTv\n",
        "Dr/al/VIaOiEaDkOQ+xwJafWbnhXyb2RuXosqPaUQO15fwAABbIu3ic/B2z8YoeV\n",
        "uodFhqMTMBEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAhThqE\n",
        "dbJHQYPwLaTRBubOXfOhWl7kmC4Jz4OF5ECBWgIgDh9rBQVkgqmcimC3VPmaVT7G\n",
        "gFAjOKrUAazTDCai3YU=\n",
        "-----END CERTIFICATE-----\n",
    );
    const LEAF: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBVTCB/KADAgECAgECMAoGCCqGSM49BAMCMBQxEjAQBgNVBAMMCVRlc3QgUm9v\n",
        "dDAgFw0yNTAxMDEwMDAwMDBaGA8yMTI0MTIwODAwMDAwMFowDjEMMAoGA1UEAwwD\n",
        "c3ZjMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7YtgndoFi0hbudkHBRaGLRfz\n",
        "X4chU7CkJ8yT+8bJFwDz9NVQYEXFMGYfVYzaR+9xK2fXWyBFSi/oXJaOZ+avxqND\n",
        "MEEwPwYDVR0RBDgwNoYjc3BpZmZlOi8vZXhhbXBsZS5vcmcvbnMvcHJvZC9zYS9h\n",
        "cGmCD3N2Yy5leGFtcGxlLmNvbTAKBggqhkjOPQQDAgNIADBFAiB5bSCQ6SZKQoSp\n",
        "AuByVo7YCR/E/1KW+CTeDXppF23JfAIhALtdDJYWJjGepGDWnwMz3fVG4HV2vNiR\n",
        "u2bsb9IugAfq\n",
        "-----END CERTIFICATE-----\n",
    );
    const LEAF_KEY: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVZV+Ih0c+vbM2Ica\n",
        "ODXdgy64jcfoh6LLuVd7njhA9g2hRANCAATti2Cd2gWLSFu52QcFFoYtF/NfhyFT\n",
        "sKQnzJP7xskXAPP01VBgRcUwZh9VjNpH73ErZ9dbIEVKL+hclo5n5q/G\n",
        "-----END PRIVATE KEY-----\n",
    );

    fn der_of(pem: &str) -> Vec<u8> {
        der::pem_decode(pem.as_bytes()).unwrap().0.bytes
    }

    fn opts() -> Options {
        Options {
            dns_name: String::new(),
            now: 1_800_000_000_000_000_000,
            key_usages: Vec::new(),
        }
    }

    fn eval(expression: &str, input: serde_json::Value) -> Vec<Value> {
        let module = format!("package c\nx := {expression}\n");
        evaluate_on_both_engines(&module, "data.c.x", Value::from(input))
            .into_iter()
            .map(|answer| answer.unwrap_or(Value::Undefined))
            .collect()
    }

    #[test]
    fn policies_read_spiffe_ids_and_verify_chains_on_both_engines() {
        let input = serde_json::json!({"certs": format!("{ROOT}{LEAF}"), "now": 1_800_000_000_000_000_000i64});
        for answer in eval(
            "crypto.x509.parse_certificates(input.certs)[1].URIStrings[0]",
            input.clone(),
        ) {
            assert_eq!(answer, Value::from("spiffe://example.org/ns/prod/sa/api"));
        }
        let verified = "crypto.x509.parse_and_verify_certificates_with_options(input.certs, {\"CurrentTime\": input.now, \"DNSName\": \"svc.example.com\"})[0]";
        for answer in eval(verified, input.clone()) {
            assert_eq!(answer, Value::from(true));
        }
        // Without the root there is nothing to verify against.
        let alone = serde_json::json!({"certs": LEAF, "now": 1_800_000_000_000_000_000i64});
        for answer in eval(verified, alone) {
            assert_eq!(answer, Value::from(false));
        }
    }

    #[test]
    fn a_tampered_signature_or_a_wrong_root_never_verifies() {
        let root = der_of(ROOT);
        let mut leaf = der_of(LEAF);
        let certs = parse_certificates(&[root.clone(), leaf.clone()].concat()).unwrap();
        assert!(verify(&certs, &opts()).is_some());
        // Flip one bit of the signature (the DER's last byte).
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        let certs = parse_certificates(&[root.clone(), leaf.clone()].concat()).unwrap();
        assert!(verify(&certs, &opts()).is_none());
        // The leaf given as the root is trusted as it is, CA or not (Go's `Roots.contains`),
        // as OPA answers.
        let leaf = der_of(LEAF);
        let certs =
            parse_certificates(&[leaf.clone(), leaf.clone(), leaf.clone()].concat()).unwrap();
        assert_eq!(verify(&certs, &opts()).map(|chain| chain.len()), Some(1));
        // A root that did not sign the leaf.
        let certs =
            parse_certificates(&[leaf.clone(), leaf.clone(), root.clone()].concat()).unwrap();
        assert!(verify(&certs, &opts()).is_none());
        // Outside the validity period.
        let certs = parse_certificates(&[root, der_of(LEAF)].concat()).unwrap();
        assert!(verify(&certs, &Options { now: 0, ..opts() }).is_none());
    }

    #[test]
    fn hostile_certificates_are_errors_never_panics() {
        let leaf = der_of(LEAF);
        // Every truncation, and every byte flipped, of a real certificate.
        for end in 0..leaf.len() {
            assert!(parse_certificates(&leaf[..end]).is_err() || end == 0);
        }
        let root = der_of(ROOT);
        for i in 0..leaf.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = leaf.clone();
                bad[i] ^= flip;
                if let Ok(certs) = parse_certificates(&[root.clone(), bad].concat()) {
                    let _ = verify(&certs, &opts());
                    for c in &certs {
                        let _ = c.to_value(true);
                    }
                }
            }
        }
        // Garbage, lengths that overrun, deep or huge lengths.
        for garbage in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x80\x00\x00",
            b"\x1f\x01\x00",
            &[0x30; 4096][..],
        ] {
            let _ = parse_certificates(garbage);
        }
        for text in [
            "",
            "not base64!",
            "-----BEGIN CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                certs_from_string(text)
                    .map(|c| c.is_empty())
                    .unwrap_or(true)
            );
        }
    }

    #[test]
    fn huge_input_is_refused_quickly() {
        let started = std::time::Instant::now();
        // 8 MiB of BEGIN lines without an END: Go's decoder is quadratic on it.
        let many_begins = "-----BEGIN CERTIFICATE-----\n".repeat(300_000);
        assert!(certs_from_string(&many_begins).unwrap().is_empty());
        let _ = keys_from_pem_data(&many_begins);
        // A 100,000-byte serial number.
        let mut big = vec![
            0x30, 0x83, 0x01, 0x86, 0xaa, 0x30, 0x83, 0x01, 0x86, 0xa5, 0x02, 0x83, 0x01, 0x86,
            0xa0, 0x01,
        ];
        big.resize(100_016, 0x11);
        assert!(parse_certificates(&big).is_err());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn integers_beyond_f64_print_with_all_their_digits() {
        // A 2,048-bit number (617 digits): serde_json alone cannot write it, and Value's
        // Display failed (a panic in `to_string`) before regorus's Number was patched.
        let n = der::big_number(&[0xff; 256]);
        assert_eq!(n.to_string().len(), 617);
        let chain = serde_json::json!({"certs": format!("{ROOT}{LEAF}")});
        for answer in eval(
            "json.marshal(crypto.x509.parse_certificates(input.certs)[0].PublicKey)",
            chain,
        ) {
            let Value::String(text) = answer else {
                panic!("{answer:?}")
            };
            assert!(text.starts_with("{\"Curve\":{},\"X\":"), "{text}");
        }
    }

    #[test]
    fn hostile_keys_and_requests_are_undefined() {
        for (expression, input) in [
            ("crypto.x509.parse_certificates(input.x)", "garbage"),
            (
                "crypto.x509.parse_certificate_request(input.x)",
                "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
            ),
            (
                "crypto.x509.parse_rsa_private_key(input.x)",
                "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
            ),
            (
                "crypto.parse_private_keys(input.x)",
                "-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----\n",
            ),
            ("crypto.x509.parse_keypair(input.x, input.x)", "AAAA"),
        ] {
            for answer in eval(expression, serde_json::json!({"x": input})) {
                assert_eq!(answer, Value::Undefined, "{expression}");
            }
        }
        // The leaf with its own key: a pair.
        let pair = "crypto.x509.parse_keypair(input.cert, input.key).Leaf.Subject.CommonName";
        for answer in eval(pair, serde_json::json!({"cert": LEAF, "key": LEAF_KEY})) {
            assert_eq!(answer, Value::from("svc"));
        }
        // Every truncation of the key.
        let key = der_of(LEAF_KEY);
        for end in 0..key.len() {
            assert!(super::keys::parse_pkcs8(&key[..end]).is_err());
        }
    }
}
