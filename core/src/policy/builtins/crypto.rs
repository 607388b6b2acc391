//! OPA's `crypto.md5`, `crypto.sha1`, `crypto.sha256` (hex digests of a string) and
//! `crypto.hmac.*` (hex HMAC of a message under a key; `equal` compares in constant time).
//! MD5 and SHA-1 are there because OPA has them (checksums, legacy signatures), not for
//! anything secret.

use anyhow::{Result, anyhow};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use regorus::Value;
use regorus::unstable::{Expr, Ref, Span};
use ring::{digest, hmac as ring_hmac};

use super::{Args, string};

fn hex_digest(name: &str, args: Args<'_>, algorithm: &'static digest::Algorithm) -> Result<Value> {
    let text = string(name, args, 0)?;
    Ok(Value::from(hex::encode(digest::digest(
        algorithm,
        text.as_bytes(),
    ))))
}

/// `(message, key)` as OPA orders them, under one of ring's HMACs.
fn hex_hmac(name: &str, args: Args<'_>, algorithm: ring_hmac::Algorithm) -> Result<Value> {
    let message = string(name, args, 0)?;
    let key = string(name, args, 1)?;
    let tag = ring_hmac::sign(
        &ring_hmac::Key::new(algorithm, key.as_bytes()),
        message.as_bytes(),
    );
    Ok(Value::from(hex::encode(tag)))
}

pub(super) fn md5(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let text = string("crypto.md5", args, 0)?;
    Ok(Value::from(hex::encode(Md5::digest(text.as_bytes()))))
}

pub(super) fn sha1(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    hex_digest("crypto.sha1", args, &digest::SHA1_FOR_LEGACY_USE_ONLY)
}

pub(super) fn sha256(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    hex_digest("crypto.sha256", args, &digest::SHA256)
}

/// ring has no MD5, so its HMAC comes from RustCrypto's `hmac` over `md-5`.
pub(super) fn hmac_md5(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let message = string("crypto.hmac.md5", args, 0)?;
    let key = string("crypto.hmac.md5", args, 1)?;
    let mut mac =
        Hmac::<Md5>::new_from_slice(key.as_bytes()).map_err(|e| anyhow!("crypto.hmac.md5: {e}"))?;
    mac.update(message.as_bytes());
    Ok(Value::from(hex::encode(mac.finalize().into_bytes())))
}

pub(super) fn hmac_sha1(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    hex_hmac(
        "crypto.hmac.sha1",
        args,
        ring_hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
    )
}

pub(super) fn hmac_sha256(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    hex_hmac("crypto.hmac.sha256", args, ring_hmac::HMAC_SHA256)
}

pub(super) fn hmac_sha512(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    hex_hmac("crypto.hmac.sha512", args, ring_hmac::HMAC_SHA512)
}

/// Constant-time comparison, as OPA's (`hmac.Equal`).
pub(super) fn hmac_equal(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let a = string("crypto.hmac.equal", args, 0)?.as_bytes();
    let b = string("crypto.hmac.equal", args, 1)?.as_bytes();
    let mut diff = a.len() ^ b.len();
    for (x, y) in a.iter().zip(b) {
        diff |= usize::from(x ^ y);
    }
    Ok(Value::from(diff == 0))
}
