//! The small pieces of Go's decoders that OPA's answers depend on: `encoding/pem`'s lenient
//! `Decode`, `encoding/base64`'s `StdEncoding` (which skips `\r` and `\n`), a DER TLV walker for
//! the raw byte ranges Go keeps (`RawTBSCertificate`, `RawSubject`, …) and the extensions'
//! insides, and big integers as the decimal numbers Go's JSON writes.

use anyhow::{Result, bail};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regorus::Value;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits accepted, and `\r`/`\n`
/// anywhere ignored.
pub(super) fn std_base64(text: &[u8]) -> Result<Vec<u8>> {
    const STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let cleaned: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    Ok(STD.decode(cleaned)?)
}

pub(super) fn b64(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Go's `[]byte` in JSON: `null` when nil, base64 otherwise.
pub(super) fn b64_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, b64)
}

pub(super) struct Block<'a> {
    pub(super) label: &'a str,
    pub(super) bytes: Vec<u8>,
}

fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (mut line, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    while let Some((last, head)) = line.split_last() {
        if *last == b' ' || *last == b'\t' {
            line = head;
        } else {
            break;
        }
    }
    (line, rest)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Go's `pem.Decode`: the first well-formed block anywhere in `data` and what follows it, or
/// `None` (Go returns `nil, data`). Malformed candidates are skipped, as Go does.
pub(super) fn pem_decode(data: &[u8]) -> Option<(Block<'_>, &[u8])> {
    let mut rest = data;
    // Where the next END line is, from where it was looked for (both offsets into `data`):
    // each candidate's body is a suffix of the previous one's, so one search serves them all
    // and hostile input of many BEGIN lines stays linear (Go's decoder is quadratic there).
    let mut end_cache: Option<(usize, Option<usize>)> = None;
    loop {
        if let Some(after) = rest.strip_prefix(b"-----BEGIN ") {
            rest = after;
        } else if let Some(i) = find(rest, b"\n-----BEGIN ") {
            rest = &rest[i + 12..];
        } else {
            return None;
        }
        let (type_line, after_type) = get_line(rest);
        rest = after_type;
        let Some(label) = type_line.strip_suffix(b"-----") else {
            continue;
        };
        let mut headers = 0usize;
        let mut body = rest;
        loop {
            if body.is_empty() {
                return None;
            }
            let (line, next) = get_line(body);
            if !line.contains(&b':') {
                break;
            }
            headers += 1;
            body = next;
        }
        let (end_index, trailer_index) = if headers == 0 && body.starts_with(b"-----END ") {
            (0, 9)
        } else {
            let start = data.len() - body.len();
            let found = match end_cache {
                Some((from, Some(at))) if from <= start && at >= start => Some(at),
                Some((from, None)) if from <= start => None,
                _ => {
                    let found = find(body, b"\n-----END ").map(|i| i + start);
                    end_cache = Some((start, found));
                    found
                }
            };
            match found {
                Some(at) => (at - start, at - start + 10),
                None => continue,
            }
        };
        let trailer = &body[trailer_index..];
        let trailer_len = label.len() + 5;
        if trailer.len() < trailer_len {
            continue;
        }
        let (end_line, rest_of_end_line) = trailer.split_at(trailer_len);
        if !end_line.starts_with(label) || !end_line.ends_with(b"-----") {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }
        let data64: Vec<u8> = body[..end_index]
            .iter()
            .copied()
            .filter(|b| *b != b' ' && *b != b'\t')
            .collect();
        let Ok(bytes) = std_base64(&data64) else {
            continue;
        };
        let Ok(label) = std::str::from_utf8(label) else {
            continue;
        };
        let (_, after) = get_line(&body[end_index + 9..]);
        return Some((Block { label, bytes }, after));
    }
}

/// One DER element: its tag, its contents and the whole encoding.
#[derive(Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    pub(super) content: &'a [u8],
    pub(super) whole: &'a [u8],
}

/// Reads one element off the front of `input` (single-byte tags, definite lengths only: X.509
/// needs no more, and anything else is refused).
pub(super) fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    let [tag, first, ..] = *input else {
        bail!("truncated DER")
    };
    if tag & 0x1f == 0x1f {
        bail!("unsupported DER tag");
    }
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < 2 + count {
            bail!("bad DER length");
        }
        let mut len = 0usize;
        for b in &input[2..2 + count] {
            len = (len << 8) | usize::from(*b);
        }
        // DER: the shortest length form only (as Go's cryptobyte). The outer headers of a
        // certificate are not signed, so a padded length would make another certificate
        // (other `Raw` bytes) that still verifies; Go refuses it.
        if len < 0x80 || input[2] == 0 {
            bail!("non-minimal DER length");
        }
        (len, 2 + count)
    };
    let end = header
        .checked_add(len)
        .filter(|end| *end <= input.len())
        .ok_or_else(|| anyhow::anyhow!("truncated DER"))?;
    Ok((
        Tlv {
            tag,
            content: &input[header..end],
            whole: &input[..end],
        },
        &input[end..],
    ))
}

/// The elements of a constructed value's contents, in order.
pub(super) fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (item, rest) = tlv(content)?;
        out.push(item);
        content = rest;
    }
    Ok(out)
}

/// One element of the given tag that fills `input` exactly.
pub(super) fn expect(input: &[u8], tag: u8) -> Result<Tlv<'_>> {
    let (item, rest) = tlv(input)?;
    if item.tag != tag || !rest.is_empty() {
        bail!("unexpected DER element");
    }
    Ok(item)
}

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OID: u8 = 0x06;
pub(super) const BOOLEAN: u8 = 0x01;

/// An OID's arcs, as Go's `asn1.ObjectIdentifier` ([]int) marshals them.
pub(super) fn oid_arcs(content: &[u8]) -> Result<Vec<u64>> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        if value == 0 && *b == 0x80 {
            bail!("non-minimal OID");
        }
        if value > (u64::MAX >> 8) {
            bail!("OID arc too large");
        }
        value = (value << 7) | u64::from(b & 0x7f);
        // Go's cryptobyte reads arcs as 31-bit ints and refuses larger ones.
        if value >= 1 << 31 {
            bail!("OID arc too large");
        }
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = if value < 80 { value / 40 } else { 2 };
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == content.len() {
            bail!("truncated OID");
        }
    }
    if arcs.is_empty() {
        bail!("empty OID");
    }
    Ok(arcs)
}

pub(super) fn oid_value(content: &[u8]) -> Result<Value> {
    Ok(Value::from(
        oid_arcs(content)?
            .into_iter()
            .map(Value::from)
            .collect::<Vec<_>>(),
    ))
}

pub(super) fn oid_string(content: &[u8]) -> Result<String> {
    Ok(oid_arcs(content)?
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// An unsigned big-endian integer in decimal.
pub(super) fn decimal(bytes: &[u8]) -> String {
    // Base 10^9 limbs, least significant first; a 4,096-bit modulus is ~140 limbs.
    let mut limbs: Vec<u32> = Vec::new();
    for byte in bytes {
        let mut carry = u64::from(*byte);
        for limb in &mut limbs {
            let v = u64::from(*limb) * 256 + carry;
            *limb = (v % 1_000_000_000) as u32;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    let Some((last, lower)) = limbs.split_last() else {
        return "0".into();
    };
    let mut out = last.to_string();
    for limb in lower.iter().rev() {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

/// A number of any size: regorus keeps big integers exact (as OPA does), also beyond what
/// its JSON reader takes (an RSA modulus is over 600 digits).
pub(super) fn big_number(bytes: &[u8]) -> Value {
    Value::from_numeric_string(&decimal(bytes)).unwrap_or(Value::Null)
}

/// The largest integer taken (16,384 bits): decimal conversion is quadratic, and no
/// certificate or key needs more.
const MAX_INTEGER_BYTES: usize = 2049;

/// A DER INTEGER's contents as a non-negative magnitude, or an error when negative.
pub(super) fn unsigned(content: &[u8]) -> Result<&[u8]> {
    if content.len() > MAX_INTEGER_BYTES {
        bail!("integer too large");
    }
    match content {
        [] => bail!("empty integer"),
        [b, ..] if b & 0x80 != 0 => bail!("negative integer"),
        // DER integers are minimal, as Go's parsers require.
        [0, next, ..] if next & 0x80 == 0 => bail!("non-minimal integer"),
        _ => {}
    }
    let mut magnitude = content;
    while let [0, rest @ ..] = magnitude {
        magnitude = rest;
    }
    Ok(magnitude)
}

/// An object from its fields.
pub(super) fn object(fields: Vec<(&str, Value)>) -> Value {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in fields {
        map.insert(Value::from(k), v);
    }
    Value::from(map)
}

/// `[]string` in Go's JSON: `null` when nil.
pub(super) fn strings_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::from(
            items
                .iter()
                .map(|s| Value::from(s.as_str()))
                .collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_pem_as_go() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0x10, 0x54]), "4180");
        assert_eq!(
            decimal(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            "18446744073709551616"
        );
        let (block, rest) =
            pem_decode(b"junk\n-----BEGIN X-----\nAAEC\n-----END X-----\ntail").unwrap();
        assert_eq!(
            (block.label, block.bytes.as_slice(), rest),
            ("X", &[0u8, 1, 2][..], &b"tail"[..])
        );
        assert!(pem_decode(b"-----BEGIN X-----\nAAEC\n-----END Y-----\n").is_none());
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
