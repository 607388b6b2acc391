//! OPA builtins regorus 0.14.1 lacks, written here and registered in regorus's builtin table
//! (a Gatehouse patch of the vendored regorus, `register_host_builtins`), so both of its
//! engines — the bytecode VM that serves most routes and the interpreter that runs tests —
//! run the same code (docs/policies.md, "Builtins"). regorus's own extension mechanism
//! reaches the interpreter only.
//!
//! Each follows OPA's documented behaviour (answers checked against real OPA in
//! `core/tests/conformance/`). An argument of the wrong type is an error, which the engines
//! turn into undefined (OPA's non-strict default).
//!
//! regorus's builtin signature returns `anyhow::Result`, hence `anyhow` here and nowhere
//! else in the core.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Once;

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use regorus::Value;
use regorus::unstable::{BuiltinFcn, Expr, Ref, Span};
use sha2::{Digest, Sha256};

type Args<'a> = &'a [Value];

/// Registers Gatehouse's builtins once, before any engine resolves one.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let table: &[(&'static str, BuiltinFcn)] = &[
            ("crypto.sha256", (crypto_sha256, 1)),
            ("crypto.hmac.sha256", (crypto_hmac_sha256, 2)),
            ("crypto.hmac.equal", (crypto_hmac_equal, 2)),
            ("io.jwt.decode", (jwt_decode, 1)),
            ("io.jwt.verify_hs256", (jwt_verify_hs256, 2)),
            ("io.jwt.decode_verify", (jwt_decode_verify, 2)),
            ("net.cidr_intersects", (net_cidr_intersects, 2)),
            ("net.cidr_contains_matches", (net_cidr_contains_matches, 2)),
            ("net.cidr_merge", (net_cidr_merge, 1)),
        ];
        if let Err(e) = regorus::unstable::register_host_builtins(table) {
            // Only possible if something resolved a builtin before the first bundle was
            // built; policies using these builtins are then refused as unknown functions.
            tracing::error!(error = %e, "Gatehouse's Rego builtins could not be registered");
        }
    });
}

fn string<'a>(name: &str, args: Args<'a>, at: usize) -> Result<&'a str> {
    match args.get(at) {
        Some(Value::String(s)) => Ok(s),
        other => bail!("{name}: operand {} must be a string, got {other:?}", at + 1),
    }
}

fn crypto_sha256(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let text = string("crypto.sha256", args, 0)?;
    Ok(Value::from(hex::encode(Sha256::digest(text.as_bytes()))))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| anyhow!("hmac: {e}"))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn crypto_hmac_sha256(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let message = string("crypto.hmac.sha256", args, 0)?;
    let key = string("crypto.hmac.sha256", args, 1)?;
    Ok(Value::from(hex::encode(hmac_sha256(
        key.as_bytes(),
        message.as_bytes(),
    )?)))
}

/// Constant-time comparison, as OPA's (`hmac.Equal`).
fn crypto_hmac_equal(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let a = string("crypto.hmac.equal", args, 0)?.as_bytes();
    let b = string("crypto.hmac.equal", args, 1)?.as_bytes();
    let mut diff = a.len() ^ b.len();
    for (x, y) in a.iter().zip(b) {
        diff |= usize::from(x ^ y);
    }
    Ok(Value::from(diff == 0))
}

/// A compact JWS split into its parts: (header, payload, signature, signed input).
struct Jws<'a> {
    header: serde_json::Value,
    payload: serde_json::Value,
    signature: Vec<u8>,
    signed: &'a str,
}

fn parse_jws(token: &str) -> Result<Jws<'_>> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("io.jwt: token must have three parts");
    };
    let decode = |part: &str| b64.decode(part.trim_end_matches('='));
    let header: serde_json::Value = serde_json::from_slice(&decode(h)?)?;
    let payload: serde_json::Value = serde_json::from_slice(&decode(p)?)?;
    let signature = decode(s)?;
    let signed = token
        .rsplit_once('.')
        .map(|(signed, _)| signed)
        .unwrap_or_default();
    Ok(Jws {
        header,
        payload,
        signature,
        signed,
    })
}

fn jwt_decode(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let jws = parse_jws(string("io.jwt.decode", args, 0)?)?;
    Ok(Value::from(vec![
        Value::from(jws.header),
        Value::from(jws.payload),
        Value::from(hex::encode(&jws.signature)),
    ]))
}

fn hs256_valid(jws: &Jws<'_>, secret: &str) -> Result<bool> {
    let expected = hmac_sha256(secret.as_bytes(), jws.signed.as_bytes())?;
    let mut diff = expected.len() ^ jws.signature.len();
    for (x, y) in expected.iter().zip(&jws.signature) {
        diff |= usize::from(x ^ y);
    }
    Ok(diff == 0)
}

fn jwt_verify_hs256(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let jws = parse_jws(string("io.jwt.verify_hs256", args, 0)?)?;
    let secret = string("io.jwt.verify_hs256", args, 1)?;
    Ok(Value::from(hs256_valid(&jws, secret)?))
}

/// `io.jwt.decode_verify(token, constraints)` for HS256 tokens (`secret`), with OPA's
/// checks of `alg`, `iss`, `aud`, `exp` and `nbf` (`time` in ns, default now). Tokens signed
/// otherwise are invalid here; see docs/policies.md for what is not supported.
fn jwt_decode_verify(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let invalid = || {
        Value::from(vec![
            Value::from(false),
            Value::new_object(),
            Value::new_object(),
        ])
    };
    let token = string("io.jwt.decode_verify", args, 0)?;
    let Some(Value::Object(constraints)) = args.get(1) else {
        bail!("io.jwt.decode_verify: operand 2 must be an object");
    };
    let get = |k: &str| constraints.get(&Value::from(k));
    let Ok(jws) = parse_jws(token) else {
        return Ok(invalid());
    };
    let alg = jws.header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    if let Some(Value::String(want)) = get("alg")
        && want.as_ref() != alg
    {
        return Ok(invalid());
    }
    let valid = match (alg, get("secret")) {
        ("HS256", Some(Value::String(secret))) => hs256_valid(&jws, secret)?,
        _ => false,
    };
    if !valid {
        return Ok(invalid());
    }
    let claims = &jws.payload;
    if let Some(Value::String(iss)) = get("iss")
        && claims.get("iss").and_then(|v| v.as_str()) != Some(iss.as_ref())
    {
        return Ok(invalid());
    }
    let audience_ok = match (get("aud"), claims.get("aud")) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Value::String(want)), Some(serde_json::Value::String(aud))) => want.as_ref() == aud,
        (Some(Value::String(want)), Some(serde_json::Value::Array(auds))) => {
            auds.iter().any(|a| a.as_str() == Some(want.as_ref()))
        }
        _ => false,
    };
    if !audience_ok {
        return Ok(invalid());
    }
    let now_seconds = match get("time") {
        // Nanoseconds exceed f64's exact integers: read them as an integer.
        Some(t) => {
            t.as_i64()
                .map_err(|e| anyhow!("io.jwt.decode_verify: time: {e}"))? as f64
                / 1e9
        }
        None => chrono::Utc::now().timestamp_micros() as f64 / 1e6,
    };
    if let Some(exp) = claims.get("exp").and_then(|v| v.as_f64())
        && now_seconds >= exp
    {
        return Ok(invalid());
    }
    if let Some(nbf) = claims.get("nbf").and_then(|v| v.as_f64())
        && now_seconds < nbf
    {
        return Ok(invalid());
    }
    Ok(Value::from(vec![
        Value::from(true),
        Value::from(jws.header),
        Value::from(jws.payload),
    ]))
}

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

fn net_cidr_intersects(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
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

fn net_cidr_contains_matches(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
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
fn net_cidr_merge(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::rego::{RegoPolicies, RegoSource};

    #[test]
    fn gatehouse_builtins_run_in_routes_on_the_bytecode_vm() {
        let sources = vec![RegoSource {
            path: "jwt.rego".into(),
            text: "package routes.api\nimport rego.v1\ndefault allow := false\nallow if {\n\t[valid, _, claims] := io.jwt.decode_verify(input.token, {\"secret\": \"secret\"})\n\tvalid\n\t\"kitchen\" in claims.groups\n\tnet.cidr_intersects(\"10.0.0.0/8\", input.net)\n}\n".into(),
        }];
        let required =
            BTreeMap::from([("routes.api".to_string(), ("routes.yaml".to_string(), 1, 1))]);
        let policies = RegoPolicies::compile(&sources, &regorus::Value::new_object(), &required)
            .unwrap()
            .unwrap();
        assert_eq!(policies.interpreter_reason("routes.api"), None);
        // {"alg":"HS256","typ":"JWT"}.{"sub":"ann","groups":["kitchen"],…} signed with "secret"
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4iLCJncm91cHMiOlsia2l0Y2hlbiJdLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsImF1ZCI6ImdhdGVob3VzZSIsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwfQ.nGHOfa15doj2-9K-1uOJCqy-Zi-N23hGMLCIO2AmuMc";
        let decide = |token: &str, net: &str| {
            let input = regorus::Value::from(serde_json::json!({"token": token, "net": net}));
            policies.evaluate("routes.api", input).unwrap()["allow"].clone()
        };
        // The token has an `aud` and no audience is asked for: OPA refuses it too.
        assert_eq!(decide(token, "10.1.0.0/16"), regorus::Value::Bool(false));
        let tampered = token.replace(".nGHO", ".xGHO");
        assert_eq!(
            decide(&tampered, "10.1.0.0/16"),
            regorus::Value::Bool(false)
        );
    }

    #[test]
    fn tokens_verify_and_cidrs_merge_as_in_opa_on_both_engines() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4iLCJncm91cHMiOlsia2l0Y2hlbiJdLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsImF1ZCI6ImdhdGVob3VzZSIsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwfQ.nGHOfa15doj2-9K-1uOJCqy-Zi-N23hGMLCIO2AmuMc";
        let cases = [
            (
                format!(
                    "io.jwt.decode_verify(\"{token}\", {{\"secret\": \"secret\", \"aud\": \"gatehouse\"}})[2].sub"
                ),
                "\"ann\"",
            ),
            (
                format!(
                    "io.jwt.decode_verify(\"{token}\", {{\"secret\": \"secret\", \"aud\": \"gatehouse\", \"time\": 4102444800000000000}})[0]"
                ),
                "false",
            ),
            (
                "net.cidr_merge([\"10.0.0.0/9\", \"10.128.0.0/9\", \"10.1.0.0/16\"])".to_string(),
                "[\"10.0.0.0/8\"]",
            ),
            ("crypto.hmac.equal(\"ab\", \"abc\")".to_string(), "false"),
        ];
        for (expression, want) in cases {
            let module = format!("package c\nx := {expression}\n");
            for answer in super::super::rego::evaluate_on_both_engines(
                &module,
                "data.c.x",
                regorus::Value::Undefined,
            ) {
                assert_eq!(answer.unwrap().to_string(), want, "{expression}");
            }
        }
    }
}
