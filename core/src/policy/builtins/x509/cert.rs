//! Certificates and certificate requests as Go's `crypto/x509` parses them, and as OPA hands
//! them to policies: `encoding/json`'s marshalling of `x509.Certificate` /
//! `x509.CertificateRequest` (exported fields by name, `[]byte` as base64, nil slices as
//! `null`, `big.Int` as a number, `time.Time` as RFC 3339, OIDs as lists of arcs).
//!
//! The parse is a DER walk over the original bytes, so the `Raw*` fields are Go's exactly.

use std::net::IpAddr;

use anyhow::{Result, anyhow, bail, ensure};
use chrono::{DateTime, NaiveDate};
use regorus::Value;

use super::der::{
    self, BIT_STRING, BOOLEAN, INTEGER, OCTET_STRING, OID, SEQUENCE, Tlv, b64, b64_or_null,
    big_number, children, expect, object, oid_arcs, oid_string, oid_value, strings_or_null, tlv,
};

/// Go's `x509.PublicKeyAlgorithm`.
pub(super) const RSA: u8 = 1;
pub(super) const DSA: u8 = 2;
pub(super) const ECDSA: u8 = 3;
pub(super) const ED25519: u8 = 4;

/// Go's `x509.SignatureAlgorithm` values this module names.
pub(super) mod sig {
    pub(crate) const SHA256_RSA: u8 = 4;
    pub(crate) const SHA384_RSA: u8 = 5;
    pub(crate) const SHA512_RSA: u8 = 6;
    pub(crate) const ECDSA_SHA256: u8 = 10;
    pub(crate) const SHA256_RSA_PSS: u8 = 13;
    pub(crate) const SHA384_RSA_PSS: u8 = 14;
    pub(crate) const SHA512_RSA_PSS: u8 = 15;
    pub(crate) const ECDSA_SHA384: u8 = 11;
    pub(crate) const ECDSA_SHA512: u8 = 12;
    pub(crate) const PURE_ED25519: u8 = 16;
}

/// Named curves, by OID (Go's `namedCurveFromOID`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    pub(super) fn from_oid(text: &str) -> Option<Curve> {
        match text {
            "1.3.132.0.33" => Some(Curve::P224),
            "1.2.840.10045.3.1.7" => Some(Curve::P256),
            "1.3.132.0.34" => Some(Curve::P384),
            "1.3.132.0.35" => Some(Curve::P521),
            _ => None,
        }
    }

    pub(super) fn size(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    pub(super) fn jwk_name(self) -> &'static str {
        match self {
            Curve::P224 => "P-224",
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
}

/// A public key as the verifier needs it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum PublicKey {
    /// PKCS #1 `RSAPublicKey` DER, and the modulus.
    Rsa {
        der: Vec<u8>,
        n: Vec<u8>,
    },
    /// The uncompressed point.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    /// DSA keys parse (Go's answer has them) but never verify anything here.
    Dsa,
    /// An algorithm Go does not know: `PublicKey` is `null`.
    Unknown,
}

/// A parsed certificate: what verification needs, and OPA's JSON of it.
pub(super) struct Cert {
    pub(super) raw: Vec<u8>,
    pub(super) raw_tbs: Vec<u8>,
    pub(super) raw_subject: Vec<u8>,
    pub(super) raw_issuer: Vec<u8>,
    pub(super) raw_spki: Vec<u8>,
    pub(super) version: u8,
    pub(super) signature_algorithm: u8,
    pub(super) signature: Vec<u8>,
    pub(super) public_key: PublicKey,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) basic_constraints_valid: bool,
    pub(super) is_ca: bool,
    pub(super) max_path_len: i64,
    pub(super) key_usage: u32,
    pub(super) ext_key_usage: Vec<u32>,
    pub(super) unknown_ext_key_usage: usize,
    pub(super) subject_key_id: Option<Vec<u8>>,
    pub(super) authority_key_id: Option<Vec<u8>>,
    pub(super) unhandled_critical: usize,
    pub(super) dns_names: Vec<String>,
    pub(super) ip_addresses: Vec<IpAddr>,
    pub(super) san_value: Option<Vec<u8>>,
    /// Name constraints, policy mappings, policy constraints or inhibitAnyPolicy: the parts
    /// of Go's verification not reproduced here, so such a certificate never verifies.
    pub(super) unsupported_for_verification: bool,
    /// Policy mappings, policy constraints or inhibitAnyPolicy: on a leaf they can fail Go's
    /// policy check (`requireExplicitPolicy: 0`), which is not reproduced, so such a leaf
    /// never verifies (name constraints on a leaf do not matter to Go).
    pub(super) policy_controls: bool,
    uri_strings: Vec<String>,
    json: Vec<(&'static str, Value)>,
}

impl Cert {
    /// The object OPA returns, with its `URIStrings` or without (as `parse_keypair` and
    /// `parse_and_verify_certificates_with_options` return it).
    pub(super) fn to_value(&self, uri_strings: bool) -> Value {
        let mut fields = self.json.clone();
        if uri_strings {
            fields.push(("URIStrings", strings_or_null(&self.uri_strings)));
        }
        object(fields)
    }
}

/// Go's `x509.ParseCertificates`: concatenated DER certificates (none is an empty list).
pub(super) fn parse_certificates(mut der: &[u8]) -> Result<Vec<Cert>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (item, rest) = tlv(der)?;
        out.push(parse_certificate(item.whole)?);
        der = rest;
    }
    Ok(out)
}

fn malformed() -> anyhow::Error {
    anyhow!("x509: malformed certificate")
}

pub(super) fn parse_certificate(raw: &[u8]) -> Result<Cert> {
    let outer = expect(raw, SEQUENCE).map_err(|_| malformed())?;
    let parts = children(outer.content)?;
    let [tbs, outer_alg, signature] = parts.as_slice() else {
        return Err(malformed());
    };
    ensure!(
        tbs.tag == SEQUENCE && outer_alg.tag == SEQUENCE,
        malformed()
    );
    let mut items = children(tbs.content)?.into_iter().peekable();
    let mut version = 1u8;
    if items.peek().is_some_and(|t| t.tag == 0xa0) {
        let explicit = items.next().ok_or_else(malformed)?;
        let v = expect(explicit.content, INTEGER)?;
        version = match v.content {
            [0] => 1,
            [1] => 2,
            [2] => 3,
            _ => bail!("x509: invalid version"),
        };
    }
    let mut next = |tag: u8| -> Result<Tlv<'_>> {
        let item = items.next().ok_or_else(malformed)?;
        ensure!(item.tag == tag, malformed());
        Ok(item)
    };
    let serial = next(INTEGER)?;
    let inner_alg = next(SEQUENCE)?;
    let issuer = next(SEQUENCE)?;
    let validity = next(SEQUENCE)?;
    let subject = next(SEQUENCE)?;
    let spki = next(SEQUENCE)?;
    ensure!(
        inner_alg.whole == outer_alg.whole,
        "x509: inner and outer signature algorithm identifiers don't match"
    );
    let serial_bytes =
        der::unsigned(serial.content).map_err(|_| anyhow!("x509: negative serial number"))?;
    let times = children(validity.content)?;
    let [not_before, not_after] = times.as_slice() else {
        return Err(malformed());
    };
    let not_before = parse_time(not_before)?;
    let not_after = parse_time(not_after)?;
    let signature_algorithm = signature_algorithm(&inner_alg)?;
    let (public_key_algorithm, public_key, public_key_json) = parse_spki(&spki)?;
    let signature = bit_string_bytes(signature)?;

    let mut extensions_tlv = None;
    for item in items {
        match item.tag {
            0x81 | 0x82 => {}
            // Go reads extensions of v3 certificates only (a v1 certificate's are ignored: it
            // is never a CA, its SANs name nothing).
            0xa3 if version == 3 => extensions_tlv = Some(expect(item.content, SEQUENCE)?),
            0xa3 => {}
            _ => return Err(malformed()),
        }
    }
    let extensions = match extensions_tlv {
        Some(seq) => parse_extensions(seq.content)?,
        None => Vec::new(),
    };
    let mut ext = Extensions::default();
    ext.process(&extensions)?;

    let subject_json = name_value(&subject)?;
    let issuer_json = name_value(&issuer)?;
    let extensions_json = extensions_value(&extensions, extensions_tlv.is_some());
    let uris = ext.uris_value()?;
    let json = vec![
        (
            "AuthorityKeyId",
            b64_or_null(ext.authority_key_id.as_deref()),
        ),
        (
            "BasicConstraintsValid",
            Value::from(ext.basic_constraints_valid),
        ),
        (
            "CRLDistributionPoints",
            strings_or_null(&ext.crl_distribution_points),
        ),
        ("DNSNames", strings_or_null(&ext.dns_names)),
        ("EmailAddresses", strings_or_null(&ext.email_addresses)),
        ("ExcludedDNSDomains", strings_or_null(&ext.excluded.dns)),
        (
            "ExcludedEmailAddresses",
            strings_or_null(&ext.excluded.emails),
        ),
        ("ExcludedIPRanges", ext.excluded.ips_value()),
        (
            "ExcludedURIDomains",
            strings_or_null(&ext.excluded.uri_domains),
        ),
        ("ExtKeyUsage", numbers_or_null(&ext.ext_key_usage)),
        ("Extensions", extensions_json),
        ("ExtraExtensions", Value::Null),
        ("IPAddresses", ips_value(&ext.ip_addresses)),
        (
            "InhibitAnyPolicy",
            Value::from(ext.inhibit_any_policy.unwrap_or(0)),
        ),
        (
            "InhibitAnyPolicyZero",
            Value::from(ext.inhibit_any_policy == Some(0)),
        ),
        (
            "InhibitPolicyMapping",
            Value::from(ext.inhibit_policy_mapping.unwrap_or(0)),
        ),
        (
            "InhibitPolicyMappingZero",
            Value::from(ext.inhibit_policy_mapping == Some(0)),
        ),
        ("IsCA", Value::from(ext.is_ca)),
        ("Issuer", issuer_json),
        (
            "IssuingCertificateURL",
            strings_or_null(&ext.issuing_certificate_url),
        ),
        ("KeyUsage", Value::from(ext.key_usage)),
        ("MaxPathLen", Value::from(ext.max_path_len)),
        (
            "MaxPathLenZero",
            Value::from(ext.basic_constraints_valid && ext.max_path_len == 0),
        ),
        ("NotAfter", Value::from(go_time(not_after)?)),
        ("NotBefore", Value::from(go_time(not_before)?)),
        ("OCSPServer", strings_or_null(&ext.ocsp_server)),
        ("PermittedDNSDomains", strings_or_null(&ext.permitted.dns)),
        (
            "PermittedDNSDomainsCritical",
            Value::from(ext.permitted_critical),
        ),
        (
            "PermittedEmailAddresses",
            strings_or_null(&ext.permitted.emails),
        ),
        ("PermittedIPRanges", ext.permitted.ips_value()),
        (
            "PermittedURIDomains",
            strings_or_null(&ext.permitted.uri_domains),
        ),
        ("Policies", strings_or_null(&ext.policies)),
        ("PolicyIdentifiers", arcs_or_null(&ext.policy_identifiers)),
        (
            "PolicyMappings",
            if ext.policy_mappings.is_empty() {
                Value::Null
            } else {
                Value::from(ext.policy_mappings.clone())
            },
        ),
        ("PublicKey", public_key_json),
        (
            "PublicKeyAlgorithm",
            Value::from(u32::from(public_key_algorithm)),
        ),
        ("Raw", b64(raw)),
        ("RawIssuer", b64(issuer.whole)),
        ("RawSubject", b64(subject.whole)),
        ("RawSubjectPublicKeyInfo", b64(spki.whole)),
        ("RawTBSCertificate", b64(tbs.whole)),
        (
            "RequireExplicitPolicy",
            Value::from(ext.require_explicit_policy.unwrap_or(0)),
        ),
        (
            "RequireExplicitPolicyZero",
            Value::from(ext.require_explicit_policy == Some(0)),
        ),
        ("SerialNumber", big_number(serial_bytes)),
        ("Signature", b64(&signature)),
        (
            "SignatureAlgorithm",
            Value::from(u32::from(signature_algorithm)),
        ),
        ("Subject", subject_json),
        ("SubjectKeyId", b64_or_null(ext.subject_key_id.as_deref())),
        ("URIs", uris),
        (
            "UnhandledCriticalExtensions",
            arcs_or_null(&ext.unhandled_critical),
        ),
        (
            "UnknownExtKeyUsage",
            arcs_or_null(&ext.unknown_ext_key_usage),
        ),
        ("Version", Value::from(u32::from(version))),
    ];
    Ok(Cert {
        raw: raw.to_vec(),
        raw_tbs: tbs.whole.to_vec(),
        raw_subject: subject.whole.to_vec(),
        raw_issuer: issuer.whole.to_vec(),
        raw_spki: spki.whole.to_vec(),
        version,
        signature_algorithm,
        signature,
        public_key,
        not_before,
        not_after,
        basic_constraints_valid: ext.basic_constraints_valid,
        is_ca: ext.is_ca,
        max_path_len: ext.max_path_len,
        key_usage: ext.key_usage,
        unknown_ext_key_usage: ext.unknown_ext_key_usage.len(),
        ext_key_usage: ext.ext_key_usage,
        subject_key_id: ext.subject_key_id,
        authority_key_id: ext.authority_key_id,
        unhandled_critical: ext.unhandled_critical.len(),
        dns_names: ext.dns_names,
        ip_addresses: ext.ip_addresses,
        san_value: ext.san_value,
        unsupported_for_verification: ext.unsupported_for_verification,
        policy_controls: ext.policy_controls,
        uri_strings: ext.uri_strings,
        json,
    })
}

/// Go's `x509.ParseCertificateRequest` (the signature is not checked, as in Go).
pub(super) fn parse_certificate_request(raw: &[u8]) -> Result<Value> {
    let outer = expect(raw, SEQUENCE)?;
    let parts = children(outer.content)?;
    let [info, alg, signature] = parts.as_slice() else {
        bail!("x509: malformed certificate request")
    };
    ensure!(
        info.tag == SEQUENCE && alg.tag == SEQUENCE,
        "x509: malformed certificate request"
    );
    let items = children(info.content)?;
    let [version, subject, spki, rest @ ..] = items.as_slice() else {
        bail!("x509: malformed certificate request")
    };
    ensure!(
        version.tag == INTEGER && subject.tag == SEQUENCE && spki.tag == SEQUENCE,
        "x509: malformed certificate request"
    );
    let version = match version.content {
        [v] if *v < 0x80 => i64::from(*v),
        _ => bail!("x509: unsupported certificate request version"),
    };
    let signature_algorithm = signature_algorithm(alg)?;
    let (public_key_algorithm, _, public_key_json) = parse_spki(spki)?;
    let signature = bit_string_bytes(signature)?;
    let mut attributes = Vec::new();
    let mut extensions = Vec::new();
    let mut saw_extensions = false;
    if let Some(attrs) = rest.first() {
        ensure!(
            attrs.tag == 0xa0 && rest.len() == 1,
            "x509: malformed certificate request"
        );
        for attribute in children(attrs.content)? {
            let fields = children(attribute.content)?;
            let [kind, values] = fields.as_slice() else {
                continue;
            };
            if kind.tag != OID || values.tag != 0x31 {
                continue;
            }
            // Go's deprecated `Attributes`: only those that unmarshal as a SET of SEQUENCEs of
            // (type, value) pairs; others are skipped, as Go's `parseRawAttributes` does.
            if let Some(value) = attribute_value(values.content) {
                attributes.push(object(vec![
                    ("Type", oid_value(kind.content)?),
                    ("Value", value),
                ]));
            }
            if oid_string(kind.content)? == "1.2.840.113549.1.9.14" {
                let set = children(values.content)?;
                let first = set
                    .first()
                    .ok_or_else(|| anyhow!("x509: malformed extension request"))?;
                ensure!(first.tag == SEQUENCE, "x509: malformed extension request");
                extensions.extend(parse_extensions(first.content)?);
                saw_extensions = true;
            }
        }
    }
    let mut ext = Extensions::default();
    for extension in &extensions {
        if extension.arcs == [2, 5, 29, 17] {
            ext.parse_san(extension.value)?;
        }
    }
    Ok(object(vec![
        (
            "Attributes",
            if attributes.is_empty() {
                Value::Null
            } else {
                Value::from(attributes)
            },
        ),
        ("DNSNames", strings_or_null(&ext.dns_names)),
        ("EmailAddresses", strings_or_null(&ext.email_addresses)),
        (
            "Extensions",
            extensions_value(&extensions, saw_extensions && !extensions.is_empty()),
        ),
        ("ExtraExtensions", Value::Null),
        ("IPAddresses", ips_value(&ext.ip_addresses)),
        ("PublicKey", public_key_json),
        (
            "PublicKeyAlgorithm",
            Value::from(u32::from(public_key_algorithm)),
        ),
        ("Raw", b64(raw)),
        ("RawSubject", b64(subject.whole)),
        ("RawSubjectPublicKeyInfo", b64(spki.whole)),
        ("RawTBSCertificateRequest", b64(info.whole)),
        ("Signature", b64(&signature)),
        (
            "SignatureAlgorithm",
            Value::from(u32::from(signature_algorithm)),
        ),
        ("Subject", name_value(subject)?),
        ("URIs", ext.uris_value()?),
        ("Version", Value::from(version)),
    ]))
}

/// A request attribute as Go's `pkix.AttributeTypeAndValueSET` unmarshals it, or `None`
/// when Go's unmarshalling fails (the attribute is then left out).
fn attribute_value(set: &[u8]) -> Option<Value> {
    let mut outer = Vec::new();
    for seq in children(set).ok()? {
        if seq.tag != SEQUENCE {
            return None;
        }
        let mut inner = Vec::new();
        for pair in children(seq.content).ok()? {
            if pair.tag != SEQUENCE {
                return None;
            }
            let fields = children(pair.content).ok()?;
            let [kind, value, ..] = fields.as_slice() else {
                return None;
            };
            if kind.tag != OID {
                return None;
            }
            // Go's `any` field takes the first element after the type; later ones are ignored.
            let value = match value.tag {
                OCTET_STRING => b64(value.content),
                BOOLEAN => Value::from(value.content.first().is_some_and(|b| *b != 0)),
                0x0c | 0x13 | 0x16 => Value::from(std::str::from_utf8(value.content).ok()?),
                _ => return None,
            };
            inner.push(object(vec![
                ("Type", oid_value(kind.content).ok()?),
                ("Value", value),
            ]));
        }
        outer.push(Value::from(inner));
    }
    Some(Value::from(outer))
}

struct Extension<'a> {
    arcs: Vec<u64>,
    critical: bool,
    value: &'a [u8],
}

fn parse_extensions(content: &[u8]) -> Result<Vec<Extension<'_>>> {
    let mut out: Vec<Extension<'_>> = Vec::new();
    for item in children(content)? {
        ensure!(item.tag == SEQUENCE, "x509: malformed extension");
        let fields = children(item.content)?;
        let (id, critical, value) = match fields.as_slice() {
            [id, value] => (id, false, value),
            [id, critical, value] if critical.tag == BOOLEAN => {
                let flag = match critical.content {
                    [0] => false,
                    [0xff] => true,
                    _ => bail!("x509: malformed extension critical field"),
                };
                (id, flag, value)
            }
            _ => bail!("x509: malformed extension"),
        };
        ensure!(
            id.tag == OID && value.tag == OCTET_STRING,
            "x509: malformed extension"
        );
        let arcs = oid_arcs(id.content)?;
        ensure!(
            out.iter().all(|e| e.arcs != arcs),
            "x509: certificate contains duplicate extensions"
        );
        out.push(Extension {
            arcs,
            critical,
            value: value.content,
        });
    }
    Ok(out)
}

fn extensions_value(extensions: &[Extension<'_>], present: bool) -> Value {
    if !present || extensions.is_empty() {
        return Value::Null;
    }
    Value::from(
        extensions
            .iter()
            .map(|e| {
                object(vec![
                    ("Critical", Value::from(e.critical)),
                    (
                        "Id",
                        Value::from(e.arcs.iter().map(|a| Value::from(*a)).collect::<Vec<_>>()),
                    ),
                    ("Value", b64(e.value)),
                ])
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Default)]
struct Extensions {
    key_usage: u32,
    basic_constraints_valid: bool,
    is_ca: bool,
    max_path_len: i64,
    dns_names: Vec<String>,
    email_addresses: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    uris: Vec<String>,
    uri_strings: Vec<String>,
    san_value: Option<Vec<u8>>,
    crl_distribution_points: Vec<String>,
    authority_key_id: Option<Vec<u8>>,
    subject_key_id: Option<Vec<u8>>,
    ext_key_usage: Vec<u32>,
    unknown_ext_key_usage: Vec<Vec<u64>>,
    policies: Vec<String>,
    policy_identifiers: Vec<Vec<u64>>,
    ocsp_server: Vec<String>,
    issuing_certificate_url: Vec<String>,
    unhandled_critical: Vec<Vec<u64>>,
    unsupported_for_verification: bool,
    policy_controls: bool,
    permitted: Subtrees,
    excluded: Subtrees,
    permitted_critical: bool,
    policy_mappings: Vec<Value>,
    require_explicit_policy: Option<i64>,
    inhibit_policy_mapping: Option<i64>,
    inhibit_any_policy: Option<i64>,
}

/// One side of a name constraints extension (Go's `Permitted*` or `Excluded*` fields).
#[derive(Default)]
struct Subtrees {
    dns: Vec<String>,
    /// `net.IPNet` as Go's JSON writes it: `{"IP": "10.0.0.0", "Mask": base64}`.
    ips: Vec<Value>,
    emails: Vec<String>,
    uri_domains: Vec<String>,
}

impl Subtrees {
    fn ips_value(&self) -> Value {
        if self.ips.is_empty() {
            Value::Null
        } else {
            Value::from(self.ips.clone())
        }
    }
}

/// Go's `parseNameConstraintsExtension`: whether some constraint is of a type Go does not
/// handle (then a critical extension is unhandled). Mailbox constraints are checked for one
/// `@` and a valid domain, less than Go's RFC 2821 parser.
fn parse_subtrees(content: &[u8], out: &mut Subtrees) -> Result<bool> {
    let mut unhandled = false;
    let domain_ok = |text: &str| valid_reverse_labels(text.strip_prefix('.').unwrap_or(text));
    for subtree in children(content)? {
        ensure!(
            subtree.tag == SEQUENCE,
            "x509: invalid NameConstraints extension"
        );
        let (value, _) =
            tlv(subtree.content).map_err(|_| anyhow!("x509: invalid NameConstraints extension"))?;
        let text = || -> Result<String> {
            ensure!(value.content.is_ascii(), "x509: invalid constraint value");
            Ok(String::from_utf8_lossy(value.content).into_owned())
        };
        match value.tag {
            0x82 => {
                let domain = text()?;
                ensure!(
                    domain_ok(&domain),
                    "x509: failed to parse dnsName constraint {domain:?}"
                );
                out.dns.push(domain);
            }
            0x87 => {
                let (ip, mask) = match value.content.len() {
                    8 | 32 => value.content.split_at(value.content.len() / 2),
                    n => bail!("x509: IP constraint contained value of length {n}"),
                };
                let ones = mask.iter().map(|b| b.leading_ones()).sum::<u32>() as usize;
                let contiguous = mask
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == expected_mask_byte(ones, i));
                ensure!(contiguous, "x509: IP constraint contained invalid mask");
                let ip = match ip.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(ip)?),
                    _ => IpAddr::from(<[u8; 16]>::try_from(ip)?),
                };
                out.ips.push(object(vec![
                    ("IP", Value::from(ip.to_canonical().to_string())),
                    ("Mask", b64(mask)),
                ]));
            }
            0x81 => {
                let constraint = text()?;
                let ok = match constraint.split_once('@') {
                    Some((local, domain)) => {
                        !local.is_empty() && !domain.contains('@') && valid_reverse_labels(domain)
                    }
                    None => domain_ok(&constraint),
                };
                ensure!(
                    ok,
                    "x509: failed to parse rfc822Name constraint {constraint:?}"
                );
                out.emails.push(constraint);
            }
            0x86 => {
                let domain = text()?;
                ensure!(
                    domain.parse::<IpAddr>().is_err(),
                    "x509: failed to parse URI constraint {domain:?}: cannot be IP address"
                );
                ensure!(
                    domain_ok(&domain),
                    "x509: failed to parse URI constraint {domain:?}"
                );
                out.uri_domains.push(domain);
            }
            _ => unhandled = true,
        }
    }
    Ok(unhandled)
}

/// Byte `i` of a mask with `ones` leading one bits.
fn expected_mask_byte(ones: usize, i: usize) -> u8 {
    let full = ones / 8;
    if i < full {
        0xff
    } else if i == full {
        !(0xffu8.checked_shr((ones % 8) as u32).unwrap_or(0))
    } else {
        0
    }
}

/// Go's `extKeyUsageOIDs`.
const EXT_KEY_USAGES: &[(&str, u32)] = &[
    ("2.5.29.37.0", 0),
    ("1.3.6.1.5.5.7.3.1", 1),
    ("1.3.6.1.5.5.7.3.2", 2),
    ("1.3.6.1.5.5.7.3.3", 3),
    ("1.3.6.1.5.5.7.3.4", 4),
    ("1.3.6.1.5.5.7.3.5", 5),
    ("1.3.6.1.5.5.7.3.6", 6),
    ("1.3.6.1.5.5.7.3.7", 7),
    ("1.3.6.1.5.5.7.3.8", 8),
    ("1.3.6.1.5.5.7.3.9", 9),
    ("1.3.6.1.4.1.311.10.3.3", 10),
    ("2.16.840.1.113730.4.1", 11),
    ("1.3.6.1.4.1.311.2.1.22", 12),
    ("1.3.6.1.4.1.311.61.1.1", 13),
];

impl Extensions {
    /// Go's `processExtensions`.
    fn process(&mut self, extensions: &[Extension<'_>]) -> Result<()> {
        for e in extensions {
            let mut unhandled = false;
            match e.arcs.as_slice() {
                [2, 5, 29, n] => match n {
                    15 => {
                        let bits = expect(e.value, BIT_STRING)?;
                        // Padding bits must be zero (Go refuses the certificate otherwise).
                        bit_string_bytes(&bits)?;
                        let bytes = bits.content.get(1..).unwrap_or_default();
                        for i in 0..9 {
                            if bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0) {
                                self.key_usage |= 1 << i;
                            }
                        }
                    }
                    19 => {
                        let seq = expect(e.value, SEQUENCE)?;
                        let mut items = children(seq.content)?.into_iter().peekable();
                        if items.peek().is_some_and(|t| t.tag == BOOLEAN) {
                            // DER booleans are 0x00 or 0xff; Go refuses anything else.
                            self.is_ca = match items.next().map(|t| t.content) {
                                Some([0xff]) => true,
                                Some([0x00]) => false,
                                _ => return Err(malformed()),
                            };
                        }
                        self.max_path_len = -1;
                        if let Some(n) = items.next().filter(|t| t.tag == INTEGER) {
                            // Go reads the length as unsigned: a negative one is an error,
                            // not "no limit".
                            let n = small_int(n.content)?;
                            ensure!(n >= 0, malformed());
                            self.max_path_len = n;
                        }
                        self.basic_constraints_valid = true;
                    }
                    17 => {
                        self.parse_san(e.value)?;
                        self.san_value = Some(e.value.to_vec());
                        unhandled = self.dns_names.is_empty()
                            && self.email_addresses.is_empty()
                            && self.ip_addresses.is_empty()
                            && self.uris.is_empty();
                    }
                    30 => {
                        self.unsupported_for_verification = true;
                        let seq = expect(e.value, SEQUENCE)
                            .map_err(|_| anyhow!("x509: invalid NameConstraints extension"))?;
                        let parts = children(seq.content)?;
                        let mut permitted = None;
                        let mut excluded = None;
                        for part in &parts {
                            match part.tag {
                                0xa0 if permitted.is_none() && excluded.is_none() => {
                                    permitted = Some(part.content)
                                }
                                0xa1 if excluded.is_none() => excluded = Some(part.content),
                                _ => bail!("x509: invalid NameConstraints extension"),
                            }
                        }
                        if permitted.is_none_or(<[u8]>::is_empty)
                            && excluded.is_none_or(<[u8]>::is_empty)
                        {
                            bail!("x509: empty name constraints extension");
                        }
                        unhandled |=
                            parse_subtrees(permitted.unwrap_or_default(), &mut self.permitted)?;
                        unhandled |=
                            parse_subtrees(excluded.unwrap_or_default(), &mut self.excluded)?;
                        self.permitted_critical = e.critical;
                    }
                    33 => {
                        self.unsupported_for_verification = true;
                        self.policy_controls = true;
                        let seq = expect(e.value, SEQUENCE)?;
                        for mapping in children(seq.content)? {
                            let oids = children(mapping.content)?;
                            let [issuer, subject, ..] = oids.as_slice() else {
                                bail!("x509: invalid policy mappings extension")
                            };
                            ensure!(
                                mapping.tag == SEQUENCE && issuer.tag == OID && subject.tag == OID,
                                "x509: invalid policy mappings extension"
                            );
                            self.policy_mappings.push(object(vec![
                                (
                                    "IssuerDomainPolicy",
                                    Value::from(oid_string(issuer.content)?),
                                ),
                                (
                                    "SubjectDomainPolicy",
                                    Value::from(oid_string(subject.content)?),
                                ),
                            ]));
                        }
                    }
                    36 => {
                        self.unsupported_for_verification = true;
                        self.policy_controls = true;
                        let seq = expect(e.value, SEQUENCE)?;
                        let mut items = children(seq.content)?.into_iter().peekable();
                        if let Some(v) = items.next_if(|t| t.tag == 0x80) {
                            self.require_explicit_policy = Some(small_int(v.content)?);
                        }
                        if let Some(v) = items.next_if(|t| t.tag == 0x81) {
                            self.inhibit_policy_mapping = Some(small_int(v.content)?);
                        }
                    }
                    54 => {
                        self.unsupported_for_verification = true;
                        self.policy_controls = true;
                        self.inhibit_any_policy =
                            Some(small_int(expect(e.value, INTEGER)?.content)?);
                    }
                    31 => {
                        let seq = expect(e.value, SEQUENCE)?;
                        for dp in children(seq.content)? {
                            ensure!(dp.tag == SEQUENCE, "x509: invalid CRL distribution points");
                            let Some(name) =
                                children(dp.content)?.into_iter().find(|t| t.tag == 0xa0)
                            else {
                                continue;
                            };
                            let full = expect(name.content, 0xa0)?;
                            for general in children(full.content)? {
                                if general.tag != 0x86 {
                                    break;
                                }
                                self.crl_distribution_points
                                    .push(String::from_utf8_lossy(general.content).into_owned());
                            }
                        }
                    }
                    35 => {
                        // Go: "authority key identifier incorrectly marked critical".
                        ensure!(!e.critical, malformed());
                        let seq = expect(e.value, SEQUENCE)?;
                        if let Ok((first, _)) = tlv(seq.content)
                            && first.tag == 0x80
                        {
                            self.authority_key_id = Some(first.content.to_vec());
                        }
                    }
                    37 => {
                        let seq = expect(e.value, SEQUENCE)?;
                        for oid in children(seq.content)? {
                            ensure!(oid.tag == OID, "x509: invalid extended key usages");
                            let dotted = oid_string(oid.content)?;
                            match EXT_KEY_USAGES.iter().find(|(o, _)| *o == dotted) {
                                Some((_, usage)) => self.ext_key_usage.push(*usage),
                                None => self.unknown_ext_key_usage.push(oid_arcs(oid.content)?),
                            }
                        }
                    }
                    14 => {
                        // Go: "subject key identifier incorrectly marked critical".
                        ensure!(!e.critical, malformed());
                        self.subject_key_id = Some(expect(e.value, OCTET_STRING)?.content.to_vec())
                    }
                    32 => {
                        let seq = expect(e.value, SEQUENCE)?;
                        for info in children(seq.content)? {
                            let (oid, _) = tlv(info.content)?;
                            ensure!(oid.tag == OID, "x509: invalid certificate policies");
                            let dotted = oid_string(oid.content)?;
                            // Go: "duplicate policy identifiers".
                            ensure!(!self.policies.contains(&dotted), malformed());
                            self.policies.push(dotted);
                            let arcs = oid_arcs(oid.content)?;
                            if arcs.iter().all(|a| i64::try_from(*a).is_ok()) {
                                self.policy_identifiers.push(arcs);
                            }
                        }
                    }
                    _ => unhandled = true,
                },
                [1, 3, 6, 1, 5, 5, 7, 1, 1] => {
                    // Go: "authority info access incorrectly marked critical".
                    ensure!(!e.critical, malformed());
                    let seq = expect(e.value, SEQUENCE)?;
                    for access in children(seq.content)? {
                        let fields = children(access.content)?;
                        let [method, location, ..] = fields.as_slice() else {
                            continue;
                        };
                        if method.tag != OID || location.tag != 0x86 {
                            continue;
                        }
                        let url = String::from_utf8_lossy(location.content).into_owned();
                        match oid_string(method.content)?.as_str() {
                            "1.3.6.1.5.5.7.48.1" => self.ocsp_server.push(url),
                            "1.3.6.1.5.5.7.48.2" => self.issuing_certificate_url.push(url),
                            _ => {}
                        }
                    }
                }
                _ => unhandled = true,
            }
            if e.critical && unhandled {
                self.unhandled_critical.push(e.arcs.clone());
            }
        }
        Ok(())
    }

    /// Go's `parseSANExtension`.
    fn parse_san(&mut self, value: &[u8]) -> Result<()> {
        let seq = expect(value, SEQUENCE)?;
        for name in children(seq.content)? {
            let text = || -> Result<String> {
                ensure!(
                    name.content.is_ascii(),
                    "x509: SAN is not a valid IA5String"
                );
                Ok(String::from_utf8_lossy(name.content).into_owned())
            };
            match name.tag {
                0x81 => self.email_addresses.push(text()?),
                0x82 => self.dns_names.push(text()?),
                0x86 => {
                    let uri = text()?;
                    let parsed = GoUrl::parse(&uri)?;
                    if !parsed.host.is_empty() && !valid_reverse_labels(&parsed.host) {
                        bail!("x509: cannot parse URI {uri:?}: invalid domain");
                    }
                    self.uri_strings.push(parsed.string());
                    self.uris.push(uri);
                }
                0x87 => self.ip_addresses.push(match name.content.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(name.content)?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(name.content)?),
                    n => bail!("x509: cannot parse IP address of length {n}"),
                }),
                _ => {}
            }
        }
        Ok(())
    }

    fn uris_value(&self) -> Result<Value> {
        if self.uris.is_empty() {
            return Ok(Value::Null);
        }
        Ok(Value::from(
            self.uris
                .iter()
                .map(|u| GoUrl::parse(u).map(|p| p.value()))
                .collect::<Result<Vec<_>>>()?,
        ))
    }
}

/// Go's `domainToReverseLabels` acceptance: non-empty labels of printable ASCII.
fn valid_reverse_labels(host: &str) -> bool {
    host.split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|c| (33..=126).contains(&c)))
}

/// The `net/url.URL` fields Go's `url.Parse` fills for the URIs certificates carry. Percent
/// escapes are decoded into `Path`/`Fragment`; Go's `RawPath`/`RawFragment` (set only for
/// non-canonical escapes) stay empty here.
struct GoUrl {
    scheme: String,
    opaque: String,
    user: bool,
    host: String,
    path: String,
    omit_host: bool,
    force_query: bool,
    raw_query: String,
    fragment: String,
    /// Everything after `scheme:` as written, for `String()`.
    tail: String,
}

fn unescape(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| anyhow!("invalid URL escape"))?;
            // Two hex digits exactly (`from_str_radix` alone would take `%+f`, Go refuses it).
            ensure!(
                hex.iter().all(u8::is_ascii_hexdigit),
                anyhow!("invalid URL escape")
            );
            let hex = std::str::from_utf8(hex)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| anyhow!("invalid URL escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl GoUrl {
    fn parse(text: &str) -> Result<Self> {
        ensure!(
            !text.bytes().any(|b| b < 0x20 || b == 0x7f),
            "invalid control character in URL"
        );
        let (rest, fragment) = match text.split_once('#') {
            Some((r, f)) => (r, unescape(f)?),
            None => (text, String::new()),
        };
        let mut url = GoUrl {
            scheme: String::new(),
            opaque: String::new(),
            user: false,
            host: String::new(),
            path: String::new(),
            omit_host: false,
            force_query: false,
            raw_query: String::new(),
            fragment,
            tail: String::new(),
        };
        let mut rest = rest;
        if let Some(colon) = rest.find(':') {
            let scheme = &rest[..colon];
            let valid = scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if valid {
                url.scheme = scheme.to_ascii_lowercase();
                rest = &rest[colon + 1..];
            } else if colon == 0 {
                bail!("missing protocol scheme");
            }
        }
        url.tail = text
            [text.len() - rest.len() - text.split_once('#').map_or(0, |(_, f)| f.len() + 1)..]
            .to_string();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((r, q)) = rest.split_once('?') {
            url.raw_query = q.to_string();
            rest = r;
        }
        if !rest.starts_with('/') && !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        if !url.scheme.is_empty() && rest.starts_with("//") {
            let authority_and_path = &rest[2..];
            let (authority, path) = match authority_and_path.find('/') {
                Some(i) => authority_and_path.split_at(i),
                None => (authority_and_path, ""),
            };
            let host = match authority.rsplit_once('@') {
                Some((_, host)) => {
                    url.user = true;
                    host
                }
                None => authority,
            };
            url.host = unescape(host)?;
            rest = path;
        } else if !url.scheme.is_empty() && rest.starts_with('/') {
            url.omit_host = true;
        }
        url.path = unescape(rest)?;
        Ok(url)
    }

    /// Go's `URL.String()` for these URLs: the scheme lowercased, the rest as written.
    fn string(&self) -> String {
        if self.scheme.is_empty() {
            self.tail.clone()
        } else {
            format!("{}:{}", self.scheme, self.tail)
        }
    }

    fn value(&self) -> Value {
        object(vec![
            ("ForceQuery", Value::from(self.force_query)),
            ("Fragment", Value::from(self.fragment.as_str())),
            ("Host", Value::from(self.host.as_str())),
            ("OmitHost", Value::from(self.omit_host)),
            ("Opaque", Value::from(self.opaque.as_str())),
            ("Path", Value::from(self.path.as_str())),
            ("RawFragment", Value::from("")),
            ("RawPath", Value::from("")),
            ("RawQuery", Value::from(self.raw_query.as_str())),
            ("Scheme", Value::from(self.scheme.as_str())),
            (
                "User",
                if self.user {
                    object(vec![])
                } else {
                    Value::Null
                },
            ),
        ])
    }
}

fn small_int(content: &[u8]) -> Result<i64> {
    ensure!(
        !content.is_empty() && content.len() <= 4,
        "x509: invalid integer"
    );
    let mut v: i64 = if content[0] & 0x80 != 0 { -1 } else { 0 };
    for b in content {
        v = (v << 8) | i64::from(*b);
    }
    Ok(v)
}

fn numbers_or_null(items: &[u32]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::from(items.iter().map(|n| Value::from(*n)).collect::<Vec<_>>())
    }
}

fn arcs_or_null(items: &[Vec<u64>]) -> Value {
    if items.is_empty() {
        return Value::Null;
    }
    Value::from(
        items
            .iter()
            .map(|arcs| Value::from(arcs.iter().map(|a| Value::from(*a)).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    )
}

/// `net.IP.String()`: IPv4 (also IPv4-mapped IPv6) dotted, IPv6 per RFC 5952.
fn ips_value(ips: &[IpAddr]) -> Value {
    if ips.is_empty() {
        return Value::Null;
    }
    Value::from(
        ips.iter()
            .map(|ip| Value::from(ip.to_canonical().to_string()))
            .collect::<Vec<_>>(),
    )
}

/// A BIT STRING's bits, right-aligned as Go's `BitString.RightAlign` gives them; the
/// padding bits must be zero (Go's cryptobyte refuses others). The signature's BIT STRING is
/// outside the signed part: without this, a changed unused-bits count would be another
/// certificate whose signature still verifies.
fn bit_string_bytes(item: &Tlv<'_>) -> Result<Vec<u8>> {
    ensure!(item.tag == BIT_STRING, malformed());
    let (&unused, bytes) = item.content.split_first().ok_or_else(malformed)?;
    ensure!(
        unused < 8 && (unused == 0 || !bytes.is_empty()),
        malformed()
    );
    if unused == 0 {
        return Ok(bytes.to_vec());
    }
    let last = bytes.last().copied().unwrap_or_default();
    ensure!(last & ((1u8 << unused) - 1) == 0, malformed());
    let mut aligned = Vec::with_capacity(bytes.len());
    let mut carry = 0u8;
    for &b in bytes {
        aligned.push(carry | (b >> unused));
        carry = b << (8 - unused);
    }
    Ok(aligned)
}

/// Go's `getSignatureAlgorithmFromAI`.
fn signature_algorithm(alg: &Tlv<'_>) -> Result<u8> {
    let (oid, params) = tlv(alg.content)?;
    ensure!(oid.tag == OID, malformed());
    Ok(match oid_string(oid.content)?.as_str() {
        "1.2.840.113549.1.1.10" => pss_algorithm(params).unwrap_or(0),
        "1.2.840.113549.1.1.2" => 1,
        "1.2.840.113549.1.1.4" => 2,
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => 3,
        "1.2.840.113549.1.1.11" => sig::SHA256_RSA,
        "1.2.840.113549.1.1.12" => sig::SHA384_RSA,
        "1.2.840.113549.1.1.13" => sig::SHA512_RSA,
        "1.2.840.10040.4.3" => 7,
        "2.16.840.1.101.3.4.3.2" => 8,
        "1.2.840.10045.4.1" => 9,
        "1.2.840.10045.4.3.2" => sig::ECDSA_SHA256,
        "1.2.840.10045.4.3.3" => sig::ECDSA_SHA384,
        "1.2.840.10045.4.3.4" => sig::ECDSA_SHA512,
        // Go: Ed25519 takes no parameters at all (not even NULL).
        "1.3.101.112" if params.is_empty() => sig::PURE_ED25519,
        _ => 0,
    })
}

/// RSA-PSS as Go takes it: the MGF1 hash the message hash, parameters absent or NULL, the
/// salt as long as the hash, the default trailer; anything else is an unknown algorithm.
fn pss_algorithm(params: &[u8]) -> Option<u8> {
    let seq = expect(params, SEQUENCE).ok()?;
    let fields = children(seq.content).ok()?;
    // Go's asn1 reads the four optional fields in order, each at most once, and nothing else.
    let in_order = fields.windows(2).all(|w| w[0].tag < w[1].tag);
    if !in_order || fields.iter().any(|f| !(0xa0..=0xa3).contains(&f.tag)) {
        return None;
    }
    let field = |tag: u8| fields.iter().find(|f| f.tag == tag);
    // An AlgorithmIdentifier whose parameters are absent or NULL: its OID.
    let hash_of = |alg: &[u8]| -> Option<String> {
        let alg = expect(alg, SEQUENCE).ok()?;
        let parts = children(alg.content).ok()?;
        match parts.as_slice() {
            [oid] if oid.tag == OID => oid_string(oid.content).ok(),
            [oid, null] if oid.tag == OID && null.whole == [0x05, 0x00] => {
                oid_string(oid.content).ok()
            }
            _ => None,
        }
    };
    let hash = hash_of(field(0xa0)?.content)?;
    let mgf = expect(field(0xa1)?.content, SEQUENCE).ok()?;
    let mgf_parts = children(mgf.content).ok()?;
    let [mgf_oid, mgf_hash] = mgf_parts.as_slice() else {
        return None;
    };
    if mgf_oid.tag != OID || oid_string(mgf_oid.content).ok()? != "1.2.840.113549.1.1.8" {
        return None;
    }
    if hash_of(mgf_hash.whole)? != hash {
        return None;
    }
    let salt = small_int(expect(field(0xa2)?.content, INTEGER).ok()?.content).ok()?;
    if let Some(trailer) = field(0xa3)
        && small_int(expect(trailer.content, INTEGER).ok()?.content).ok()? != 1
    {
        return None;
    }
    match (hash.as_str(), salt) {
        ("2.16.840.1.101.3.4.2.1", 32) => Some(sig::SHA256_RSA_PSS),
        ("2.16.840.1.101.3.4.2.2", 48) => Some(sig::SHA384_RSA_PSS),
        ("2.16.840.1.101.3.4.2.3", 64) => Some(sig::SHA512_RSA_PSS),
        _ => None,
    }
}

/// Go's `parsePublicKey`: the algorithm, the key, and the key as Go's JSON writes it
/// (`rsa.PublicKey` `{N, E}`, `ecdsa.PublicKey` `{Curve: {}, X, Y}`, Ed25519 as base64).
pub(super) fn parse_spki(spki: &Tlv<'_>) -> Result<(u8, PublicKey, Value)> {
    let fields = children(spki.content)?;
    let [alg, key] = fields.as_slice() else {
        bail!("x509: malformed public key")
    };
    ensure!(
        alg.tag == SEQUENCE,
        "x509: malformed public key algorithm identifier"
    );
    let alg_fields = children(alg.content)?;
    let (oid, params) = match alg_fields.as_slice() {
        [oid] => (oid, None),
        [oid, params] => (oid, Some(params)),
        _ => bail!("x509: malformed public key algorithm identifier"),
    };
    ensure!(
        oid.tag == OID,
        "x509: malformed public key algorithm identifier"
    );
    let key = bit_string_bytes(key)?;
    match oid_string(oid.content)?.as_str() {
        "1.2.840.113549.1.1.1" => {
            ensure!(
                params.is_some_and(|p| p.whole == [0x05, 0x00]),
                "x509: RSA key missing NULL parameters"
            );
            let seq = expect(&key, SEQUENCE)?;
            let parts = children(seq.content)?;
            let [n, e] = parts.as_slice() else {
                bail!("x509: invalid RSA public key")
            };
            ensure!(
                n.tag == INTEGER && e.tag == INTEGER,
                "x509: invalid RSA public key"
            );
            let n_bytes = der::unsigned(n.content)
                .map_err(|_| anyhow!("x509: RSA modulus is not a positive number"))?;
            let e_bytes = der::unsigned(e.content)
                .map_err(|_| anyhow!("x509: RSA public exponent is not a positive number"))?;
            ensure!(
                !n_bytes.is_empty(),
                "x509: RSA modulus is not a positive number"
            );
            ensure!(
                !e_bytes.is_empty()
                    && e_bytes.len() <= 4
                    && !(e_bytes.len() == 4 && e_bytes[0] & 0x80 != 0),
                "x509: RSA public exponent is not a positive number"
            );
            let json = object(vec![("E", big_number(e_bytes)), ("N", big_number(n_bytes))]);
            Ok((
                RSA,
                PublicKey::Rsa {
                    der: key.clone(),
                    n: n_bytes.to_vec(),
                },
                json,
            ))
        }
        "1.2.840.10045.2.1" => {
            let params = params.ok_or_else(|| anyhow!("x509: invalid ECDSA parameters"))?;
            ensure!(params.tag == OID, "x509: invalid ECDSA parameters");
            let curve = Curve::from_oid(&oid_string(params.content)?)
                .ok_or_else(|| anyhow!("x509: unsupported elliptic curve"))?;
            let size = curve.size();
            ensure!(
                key.len() == 1 + 2 * size && key[0] == 4,
                "x509: failed to unmarshal elliptic curve point"
            );
            ensure!(
                on_curve(curve, &key),
                "x509: failed to unmarshal elliptic curve point"
            );
            let json = object(vec![
                ("Curve", object(vec![])),
                ("X", big_number(&key[1..=size])),
                ("Y", big_number(&key[1 + size..])),
            ]);
            Ok((ECDSA, PublicKey::Ec { curve, point: key }, json))
        }
        "1.3.101.112" => {
            ensure!(
                params.is_none(),
                "x509: Ed25519 key encoded with illegal parameters"
            );
            ensure!(key.len() == 32, "x509: wrong Ed25519 public key size");
            let json = b64(&key);
            Ok((ED25519, PublicKey::Ed25519(key), json))
        }
        "1.2.840.10040.4.1" => {
            let y = expect(&key, INTEGER)?;
            let params = params.ok_or_else(|| anyhow!("x509: invalid DSA parameters"))?;
            let pqg = children(params.content)?;
            let [p, q, g] = pqg.as_slice() else {
                bail!("x509: invalid DSA parameters")
            };
            let int = |t: &Tlv<'_>| -> Result<Value> {
                let m = der::unsigned(t.content)?;
                ensure!(
                    t.tag == INTEGER && !m.is_empty(),
                    "x509: zero or negative DSA parameter"
                );
                Ok(big_number(m))
            };
            // Go's dsa.PublicKey embeds its Parameters: P, Q and G sit beside Y.
            let json = object(vec![
                ("G", int(g)?),
                ("P", int(p)?),
                ("Q", int(q)?),
                ("Y", int(&y)?),
            ]);
            Ok((DSA, PublicKey::Dsa, json))
        }
        _ => Ok((0, PublicKey::Unknown, Value::Null)),
    }
}

/// Go's `elliptic.Unmarshal` refuses points off the curve. ring checks a peer's point in an
/// ECDH agreement, which is the check; RustCrypto's `p521` checks P-521 points; P-224 points,
/// which neither has, go unchecked here (such keys never verify a signature here either).
pub(super) fn on_curve(curve: Curve, point: &[u8]) -> bool {
    use ring::agreement;
    let alg = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        Curve::P521 => return p521::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok(),
        Curve::P224 => return true,
    };
    let rng = ring::rand::SystemRandom::new();
    let Ok(mine) = agreement::EphemeralPrivateKey::generate(alg, &rng) else {
        return false;
    };
    agreement::agree_ephemeral(mine, &agreement::UnparsedPublicKey::new(alg, point), |_| ()).is_ok()
}

/// UTCTime or GeneralizedTime in UTC (`Z`), as Unix seconds.
fn parse_time(item: &Tlv<'_>) -> Result<i64> {
    let text = std::str::from_utf8(item.content).map_err(|_| malformed())?;
    let digits = text
        .strip_suffix('Z')
        .ok_or_else(|| anyhow!("x509: malformed validity"))?;
    ensure!(
        digits.bytes().all(|b| b.is_ascii_digit()),
        "x509: malformed validity"
    );
    let (year, rest) = match (item.tag, digits.len()) {
        (0x17, 12) => {
            let yy: i32 = digits[..2].parse()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse()?, &digits[4..]),
        _ => bail!("x509: malformed validity"),
    };
    let n = |i: usize| -> Result<u32> { Ok(rest[i..i + 2].parse()?) };
    let date = NaiveDate::from_ymd_opt(year, n(0)?, n(2)?)
        .ok_or_else(|| anyhow!("x509: malformed validity"))?;
    let time = date
        .and_hms_opt(n(4)?, n(6)?, n(8)?)
        .ok_or_else(|| anyhow!("x509: malformed validity"))?;
    Ok(time.and_utc().timestamp())
}

/// `time.Time` in Go's JSON (RFC 3339, UTC as `Z`).
fn go_time(seconds: i64) -> Result<String> {
    let t = DateTime::from_timestamp(seconds, 0).ok_or_else(|| anyhow!("time out of range"))?;
    Ok(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// `pkix.Name` in Go's JSON, from an RDNSequence (Go's `parseName` and
/// `FillFromRDNSequence`).
fn name_value(name: &Tlv<'_>) -> Result<Value> {
    let mut names = Vec::new();
    let mut multi: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    let mut common_name = String::new();
    let mut serial_number = String::new();
    for rdn in children(name.content)? {
        ensure!(rdn.tag == 0x31, "x509: invalid RDNSequence");
        for atv in children(rdn.content)? {
            ensure!(atv.tag == SEQUENCE, "x509: invalid RDNSequence");
            let fields = children(atv.content)?;
            let [kind, value] = fields.as_slice() else {
                bail!("x509: invalid RDNSequence")
            };
            ensure!(kind.tag == OID, "x509: invalid RDNSequence");
            let text = asn1_string(value)?;
            let arcs = oid_arcs(kind.content)?;
            if let [2, 5, 4, n] = arcs.as_slice() {
                let field = match n {
                    3 => {
                        common_name = text.clone();
                        None
                    }
                    5 => {
                        serial_number = text.clone();
                        None
                    }
                    6 => Some("Country"),
                    7 => Some("Locality"),
                    8 => Some("Province"),
                    9 => Some("StreetAddress"),
                    10 => Some("Organization"),
                    11 => Some("OrganizationalUnit"),
                    17 => Some("PostalCode"),
                    _ => None,
                };
                if let Some(field) = field {
                    multi
                        .entry(field)
                        .or_default()
                        .push(Value::from(text.as_str()));
                }
            }
            names.push(object(vec![
                ("Type", oid_value(kind.content)?),
                ("Value", Value::from(text)),
            ]));
        }
    }
    let list = |field: &str| {
        multi
            .get(field)
            .map_or(Value::Null, |v| Value::from(v.clone()))
    };
    Ok(object(vec![
        ("CommonName", Value::from(common_name)),
        ("Country", list("Country")),
        ("ExtraNames", Value::Null),
        ("Locality", list("Locality")),
        (
            "Names",
            if names.is_empty() {
                Value::Null
            } else {
                Value::from(names)
            },
        ),
        ("Organization", list("Organization")),
        ("OrganizationalUnit", list("OrganizationalUnit")),
        ("PostalCode", list("PostalCode")),
        ("Province", list("Province")),
        ("SerialNumber", Value::from(serial_number)),
        ("StreetAddress", list("StreetAddress")),
    ]))
}

/// Go's `parseASN1String`.
fn asn1_string(value: &Tlv<'_>) -> Result<String> {
    let bytes = value.content;
    match value.tag {
        // T61String: Go takes the bytes as they are.
        0x14 => Ok(String::from_utf8_lossy(bytes).into_owned()),
        0x13 => {
            ensure!(
                bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(b)),
                "invalid PrintableString"
            );
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
        0x0c => Ok(std::str::from_utf8(bytes)
            .map_err(|_| anyhow!("invalid UTF-8 string"))?
            .to_string()),
        0x1e => {
            ensure!(bytes.len().is_multiple_of(2), "invalid BMPString");
            let mut units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            if units.last() == Some(&0) {
                units.pop();
            }
            Ok(String::from_utf16(&units).map_err(|_| anyhow!("invalid BMPString"))?)
        }
        0x16 => {
            ensure!(bytes.is_ascii(), "invalid IA5String");
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
        0x12 => {
            ensure!(
                bytes.iter().all(|b| b.is_ascii_digit() || *b == b' '),
                "invalid NumericString"
            );
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => bail!("x509: invalid RDNSequence: invalid attribute value: unsupported string type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_escapes_are_two_hex_digits() {
        assert_eq!(unescape("a%2Fb").unwrap(), "a/b");
        for bad in ["%+f", "%-1", "% f", "%g0", "%2"] {
            assert!(unescape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pss_parameters_must_be_in_order_and_once() {
        // sha256 AlgorithmIdentifier, MGF1(sha256), salt 32: RSASSA-PSS with SHA-256.
        let sha256 = [
            0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
            0x00,
        ];
        let hash = [&[0xa0, 0x0f][..], &sha256].concat();
        let mgf_inner = [
            &[
                0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08,
            ][..],
            &sha256,
        ]
        .concat();
        let mgf = [&[0xa1, 0x1c][..], &mgf_inner].concat();
        let salt = [0xa2, 0x03, 0x02, 0x01, 0x20];
        let params = |parts: &[&[u8]]| {
            let body = parts.concat();
            [&[0x30, u8::try_from(body.len()).unwrap()][..], &body].concat()
        };
        assert_eq!(
            pss_algorithm(&params(&[&hash, &mgf, &salt])),
            Some(sig::SHA256_RSA_PSS)
        );
        assert_eq!(pss_algorithm(&params(&[&mgf, &hash, &salt])), None);
        assert_eq!(pss_algorithm(&params(&[&hash, &mgf, &salt, &salt])), None);
    }
}
