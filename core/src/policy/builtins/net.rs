//! OPA's `net.cidr_intersects`, `net.cidr_contains_matches` and `net.cidr_merge`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{Result, anyhow, bail};
use ipnet::IpNet;
use regorus::Value;
use regorus::unstable::{Expr, Ref, Span};

use super::{Args, string};

/// A CIDR (`10.0.0.0/8`) or an address (one host).
fn net_of(name: &str, text: &str) -> Result<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| anyhow!("{name}: `{text}` is neither a CIDR nor an IP address"))?;
    Ok(IpNet::from(ip))
}

pub(super) fn net_cidr_intersects(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let name = "net.cidr_intersects";
    let a = string(name, args, 0)?
        .parse::<IpNet>()
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let b = string(name, args, 1)?
        .parse::<IpNet>()
        .map_err(|e| anyhow!("{name}: {e}"))?;
    Ok(Value::from(
        a.contains(&b.network()) || b.contains(&a.network()),
    ))
}

/// `(key, CIDR or address)` pairs of a string, an array, a set or an object, as OPA accepts
/// for `net.cidr_contains_matches` (an element may be `[cidr, …]`; its first item counts).
fn keyed_nets(name: &str, value: &Value) -> Result<Vec<(Value, IpNet)>> {
    let text_of = |v: &Value| -> Result<IpNet> {
        match v {
            Value::String(s) => net_of(name, s),
            Value::Array(items) => match items.first() {
                Some(Value::String(s)) => net_of(name, s),
                _ => bail!("{name}: an array element must start with a string"),
            },
            other => bail!("{name}: unexpected {other}"),
        }
    };
    Ok(match value {
        Value::String(s) => vec![(value.clone(), net_of(name, s)?)],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Ok((Value::from(i), text_of(v)?)))
            .collect::<Result<_>>()?,
        Value::Set(items) => items
            .iter()
            .map(|v| Ok((v.clone(), text_of(v)?)))
            .collect::<Result<_>>()?,
        Value::Object(items) => items
            .iter()
            .map(|(k, v)| Ok((k.clone(), text_of(v)?)))
            .collect::<Result<_>>()?,
        other => bail!("{name}: unexpected {other}"),
    })
}

pub(super) fn net_cidr_contains_matches(
    _: &Span,
    _: &[Ref<Expr>],
    args: Args<'_>,
    _: bool,
) -> Result<Value> {
    let name = "net.cidr_contains_matches";
    let cidrs = keyed_nets(name, args.first().unwrap_or(&Value::Undefined))?;
    let targets = keyed_nets(name, args.get(1).unwrap_or(&Value::Undefined))?;
    let mut out = BTreeSet::new();
    for (ck, cidr) in &cidrs {
        for (tk, target) in &targets {
            if cidr.contains(target) {
                out.insert(Value::from(vec![ck.clone(), tk.clone()]));
            }
        }
    }
    Ok(Value::from(out))
}

/// OPA merges adjacent and contained networks. An address without a prefix gets Go's
/// classful default mask (`net.IP.DefaultMask`) without being masked, which is what OPA
/// answers: `192.168.1.1` becomes `192.168.1.1/24`.
pub(super) fn net_cidr_merge(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let name = "net.cidr_merge";
    let items: Vec<&Value> = match args.first() {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Set(s)) => s.iter().collect(),
        _ => bail!("{name}: operand 1 must be an array or a set"),
    };
    let mut nets = Vec::new();
    let mut unmasked: BTreeMap<String, ()> = BTreeMap::new();
    for item in items {
        let Value::String(text) = item else {
            bail!("{name}: elements must be strings");
        };
        if let Ok(net) = text.parse::<IpNet>() {
            nets.push(net);
            continue;
        }
        let ip: IpAddr = text.parse().map_err(|_| anyhow!("{name}: `{text}`"))?;
        match ip {
            IpAddr::V4(v4) => {
                let prefix = match v4.octets()[0] {
                    0..=127 => 8,
                    128..=191 => 16,
                    _ => 24,
                };
                unmasked.insert(format!("{v4}/{prefix}"), ());
            }
            IpAddr::V6(_) => bail!("{name}: `{text}` has no default mask"),
        }
    }
    let mut out: BTreeSet<Value> = IpNet::aggregate(&nets)
        .into_iter()
        .map(|n| Value::from(n.to_string()))
        .collect();
    out.extend(unmasked.into_keys().map(Value::from));
    Ok(Value::from(out))
}
