//! Chain verification as Go's `(*x509.Certificate).Verify` does it for OPA's
//! `crypto.x509.parse_and_verify_certificates*`: the first certificate is the only root, the
//! last the leaf, the others intermediates; every path from the leaf to the root is built
//! (Go's `buildChains`, in Go's candidate order, with Go's limit of 100 signature checks),
//! each link's signature checked with ring (P-521: RustCrypto's `p521`), validity times, CA and path-length constraints,
//! key usage (`keyCertSign`) of issuers, unhandled critical extensions, the host name and
//! the extended key usages asked for.
//!
//! Fail closed: what Go would check but this module does not reproduce (name constraints,
//! policy mappings and constraints; P-224, ECDSA with SHA-512 on P-256/P-384, P-521 with
//! SHA-256 and RSA keys under 2,048 or over 8,192 bits, which ring and `p521` lack) makes a
//! certificate unusable as a link, so the answer is `false` where Go might say `true`, never
//! the reverse.

use std::net::IpAddr;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use super::cert::{Cert, Curve, PublicKey, sig};

pub(super) struct Options {
    pub(super) dns_name: String,
    /// Nanoseconds since the Unix epoch.
    pub(super) now: i128,
    /// Go's `ExtKeyUsage` numbers; empty means server authentication, as in Go.
    pub(super) key_usages: Vec<u32>,
}

const MAX_SIGNATURE_CHECKS: usize = 100;
const EKU_ANY: u32 = 0;
const EKU_SERVER_AUTH: u32 = 1;

/// The chain Go's `Verify` returns first (leaf first), or `None` when Go's would fail.
pub(super) fn verify<'a>(certs: &'a [Cert], opts: &Options) -> Option<Vec<&'a Cert>> {
    if certs.len() < 2 {
        return None;
    }
    let root = &certs[0];
    let leaf = &certs[certs.len() - 1];
    let mut intermediates: Vec<&Cert> = Vec::new();
    for c in &certs[1..certs.len() - 1] {
        // A CertPool holds a certificate once.
        if !intermediates.iter().any(|i| i.raw == c.raw) {
            intermediates.push(c);
        }
    }
    // The leaf's policy extensions (requireExplicitPolicy and the rest) can fail Go's policy
    // check, which Gatehouse does not reproduce: refused, fail closed (issuers carrying them
    // are refused as links).
    if !valid_at(leaf, opts) || leaf.unhandled_critical > 0 || leaf.policy_controls {
        return None;
    }
    if !opts.dns_name.is_empty() && !verify_hostname(leaf, &opts.dns_name) {
        return None;
    }
    let candidates = if leaf.raw == root.raw {
        vec![vec![leaf]]
    } else {
        let mut checks = 0;
        build_chains(vec![leaf], &mut checks, root, &intermediates, opts)
    };
    // Go's policy checks are skipped for chains whose certificates carry none of the policy
    // extensions that could fail them; the others were refused (the leaf above, issuers as
    // links).
    let mut usages = opts.key_usages.clone();
    if usages.is_empty() {
        usages.push(EKU_SERVER_AUTH);
    }
    if usages.contains(&EKU_ANY) {
        return candidates.into_iter().next();
    }
    candidates
        .into_iter()
        .find(|chain| chain_allows_usages(chain, &usages))
}

fn valid_at(cert: &Cert, opts: &Options) -> bool {
    let before = i128::from(cert.not_before) * 1_000_000_000;
    let after = i128::from(cert.not_after) * 1_000_000_000;
    opts.now >= before && opts.now <= after
}

/// Go's `buildChains`.
fn build_chains<'a>(
    chain: Vec<&'a Cert>,
    checks: &mut usize,
    root: &'a Cert,
    intermediates: &[&'a Cert],
    opts: &Options,
) -> Vec<Vec<&'a Cert>> {
    let Some(&child) = chain.last() else {
        return Vec::new();
    };
    let mut chains = Vec::new();
    for (is_root, candidate) in potential_parents(child, &[root])
        .into_iter()
        .map(|c| (true, c))
        .chain(
            potential_parents(child, intermediates)
                .into_iter()
                .map(|c| (false, c)),
        )
    {
        if matches!(candidate.public_key, PublicKey::Unknown) || already_in_chain(candidate, &chain)
        {
            continue;
        }
        *checks += 1;
        if *checks > MAX_SIGNATURE_CHECKS {
            continue;
        }
        if !check_signature_from(child, candidate)
            || !valid_as_issuer(candidate, is_root, &chain, opts)
        {
            continue;
        }
        let mut next = chain.clone();
        next.push(candidate);
        if is_root {
            chains.push(next);
        } else {
            chains.extend(build_chains(next, checks, root, intermediates, opts));
        }
    }
    chains
}

/// Go's `findPotentialParents`: same subject as the child's issuer, those whose key id
/// matches the child's authority key id first, then those where one side has none, then the
/// rest.
fn potential_parents<'a>(child: &Cert, pool: &[&'a Cert]) -> Vec<&'a Cert> {
    let mut matching = Vec::new();
    let mut one = Vec::new();
    let mut mismatch = Vec::new();
    for &c in pool {
        if c.raw_subject != child.raw_issuer {
            continue;
        }
        let skid = c.subject_key_id.as_deref().unwrap_or_default();
        let akid = child.authority_key_id.as_deref().unwrap_or_default();
        if skid == akid {
            matching.push(c);
        } else if skid.is_empty() != akid.is_empty() {
            one.push(c);
        } else {
            mismatch.push(c);
        }
    }
    matching.extend(one);
    matching.extend(mismatch);
    matching
}

/// Go's `alreadyInChain`: same subject, key and subject alternative names.
fn already_in_chain(candidate: &Cert, chain: &[&Cert]) -> bool {
    chain.iter().any(|c| {
        c.raw_subject == candidate.raw_subject
            && c.raw_spki == candidate.raw_spki
            && c.san_value == candidate.san_value
    })
}

/// Go's `isValid` for an intermediate or the root.
fn valid_as_issuer(c: &Cert, is_root: bool, chain: &[&Cert], opts: &Options) -> bool {
    if c.unhandled_critical > 0 || c.unsupported_for_verification || !valid_at(c, opts) {
        return false;
    }
    if !is_root && (!c.basic_constraints_valid || !c.is_ca) {
        return false;
    }
    if c.basic_constraints_valid && c.max_path_len >= 0 {
        let intermediates = chain.len() as i64 - 1;
        if intermediates > c.max_path_len {
            return false;
        }
    }
    true
}

/// Go's `CheckSignatureFrom`, with ring doing the signature.
fn check_signature_from(child: &Cert, parent: &Cert) -> bool {
    if (parent.version == 3 && !parent.basic_constraints_valid)
        || (parent.basic_constraints_valid && !parent.is_ca)
    {
        return false;
    }
    // KeyUsageCertSign is bit 5.
    if parent.key_usage != 0 && parent.key_usage & (1 << 5) == 0 {
        return false;
    }
    let (algorithm, key): (&dyn VerificationAlgorithm, &[u8]) =
        match (child.signature_algorithm, &parent.public_key) {
            (sig::SHA256_RSA, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PKCS1_2048_8192_SHA256, der)
            }
            (sig::SHA384_RSA, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PKCS1_2048_8192_SHA384, der)
            }
            (sig::SHA256_RSA_PSS, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PSS_2048_8192_SHA256, der)
            }
            (sig::SHA384_RSA_PSS, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PSS_2048_8192_SHA384, der)
            }
            (sig::SHA512_RSA_PSS, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PSS_2048_8192_SHA512, der)
            }
            (sig::SHA512_RSA, PublicKey::Rsa { der, .. }) => {
                (&signature::RSA_PKCS1_2048_8192_SHA512, der)
            }
            (
                sig::ECDSA_SHA256,
                PublicKey::Ec {
                    curve: Curve::P256,
                    point,
                },
            ) => (&signature::ECDSA_P256_SHA256_ASN1, point),
            (
                sig::ECDSA_SHA384,
                PublicKey::Ec {
                    curve: Curve::P256,
                    point,
                },
            ) => (&signature::ECDSA_P256_SHA384_ASN1, point),
            (
                sig::ECDSA_SHA256,
                PublicKey::Ec {
                    curve: Curve::P384,
                    point,
                },
            ) => (&signature::ECDSA_P384_SHA256_ASN1, point),
            (
                sig::ECDSA_SHA384,
                PublicKey::Ec {
                    curve: Curve::P384,
                    point,
                },
            ) => (&signature::ECDSA_P384_SHA384_ASN1, point),
            (sig::PURE_ED25519, PublicKey::Ed25519(key)) => (&signature::ED25519, key),
            (
                sig::ECDSA_SHA384 | sig::ECDSA_SHA512,
                PublicKey::Ec {
                    curve: Curve::P521,
                    point,
                },
            ) => {
                return p521_verifies(
                    child.signature_algorithm,
                    point,
                    &child.raw_tbs,
                    &child.signature,
                );
            }
            // MD5 and SHA-1 (which Go refuses too), DSA, P-224, P-256/P-384 with SHA-512,
            // P-521 with SHA-256, or a signature algorithm that does not fit the key.
            _ => return false,
        };
    UnparsedPublicKey::new(algorithm, key)
        .verify(&child.raw_tbs, &child.signature)
        .is_ok()
}

/// ECDSA on P-521 (RustCrypto's `p521`; ring has no P-521), the signature in ASN.1 DER as
/// in certificates, over SHA-512 or SHA-384 (the digest left-padded to the field, as Go's
/// `hashToInt` reads it).
fn p521_verifies(algorithm: u8, point: &[u8], signed: &[u8], der: &[u8]) -> bool {
    use p521::ecdsa::signature::hazmat::PrehashVerifier as _;
    let (Ok(key), Ok(signature)) = (
        p521::ecdsa::VerifyingKey::from_sec1_bytes(point),
        p521::ecdsa::DerSignature::from_bytes(der),
    ) else {
        return false;
    };
    let digest = ring::digest::digest(
        if algorithm == sig::ECDSA_SHA512 {
            &ring::digest::SHA512
        } else {
            &ring::digest::SHA384
        },
        signed,
    );
    key.verify_prehash(digest.as_ref(), &signature).is_ok()
}

/// Go's `checkChainForKeyUsage`.
fn chain_allows_usages(chain: &[&Cert], requested: &[u32]) -> bool {
    let mut usages: Vec<Option<u32>> = requested.iter().copied().map(Some).collect();
    let mut remaining = usages.len();
    for cert in chain.iter().rev() {
        if cert.ext_key_usage.is_empty() && cert.unknown_ext_key_usage == 0 {
            continue;
        }
        if cert.ext_key_usage.contains(&EKU_ANY) {
            continue;
        }
        for slot in &mut usages {
            let Some(requested) = *slot else { continue };
            // Exact matches only: the Go that OPA is built with no longer takes the
            // server-gated-crypto usages for server authentication, as older Go did
            // (a conformance row holds this).
            if cert.ext_key_usage.contains(&requested) {
                continue;
            }
            *slot = None;
            remaining -= 1;
            if remaining == 0 {
                return false;
            }
        }
    }
    true
}

/// Go's `VerifyHostname`: an IP address against the IP SANs only; a name against the DNS
/// SANs, with a leading `*` label and a trailing dot for valid host names, exactly otherwise.
fn verify_hostname(cert: &Cert, host: &str) -> bool {
    let candidate_ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|_| host.len() >= 3)
        .unwrap_or(host);
    if let Ok(ip) = candidate_ip.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return cert.ip_addresses.iter().any(|c| c.to_canonical() == ip);
    }
    let name = host.to_ascii_lowercase();
    let valid_name = valid_hostname(&name, false);
    cert.dns_names.iter().any(|pattern| {
        if valid_name && valid_hostname(pattern, true) {
            match_hostnames(pattern, &name)
        } else {
            match_exactly(pattern, &name)
        }
    })
}

fn valid_hostname(host: &str, is_pattern: bool) -> bool {
    let host = if is_pattern {
        host
    } else {
        host.strip_suffix('.').unwrap_or(host)
    };
    if host.is_empty() || host == "*" {
        return false;
    }
    host.split('.').enumerate().all(|(i, part)| {
        if part.is_empty() {
            return false;
        }
        if is_pattern && i == 0 && part == "*" {
            return true;
        }
        part.char_indices()
            .all(|(j, c)| c.is_ascii_alphanumeric() || (c == '-' && j != 0) || c == '_')
    })
}

fn match_exactly(a: &str, b: &str) -> bool {
    if a.is_empty() || a == "." || b.is_empty() || b == "." {
        return false;
    }
    a.eq_ignore_ascii_case(b)
}

fn match_hostnames(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let pattern = pattern.strip_suffix('.').unwrap_or(&pattern);
    let host = host.strip_suffix('.').unwrap_or(host);
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}
