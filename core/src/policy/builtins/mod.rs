//! OPA builtins regorus 0.14.1 lacks, written here and registered in regorus's builtin table
//! (a Gatehouse patch of the vendored regorus, `register_host_builtins`), so both of its
//! engines — the bytecode VM that serves most routes and the interpreter that runs tests —
//! run the same code (docs/policies.md, "Builtins"). regorus's own extension mechanism
//! reaches the interpreter only.
//!
//! Each follows OPA's behaviour (OPA's `topdown` sources; answers checked against real OPA in
//! `core/tests/conformance/`). An argument of the wrong type is an error, which the engines
//! turn into undefined (OPA's non-strict default).
//!
//! regorus's builtin signature returns `anyhow::Result`, hence `anyhow` here and nowhere
//! else in the core.

mod crypto;
mod jwt;
mod net;
mod template;
mod x509;

use std::sync::Once;

use anyhow::{Result, bail};
use regorus::Value;
use regorus::unstable::BuiltinFcn;

type Args<'a> = &'a [Value];

/// Registers Gatehouse's builtins once, before any engine resolves one.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let table: &[(&'static str, BuiltinFcn)] = &[
            ("crypto.md5", (crypto::md5, 1)),
            ("crypto.sha1", (crypto::sha1, 1)),
            ("crypto.sha256", (crypto::sha256, 1)),
            ("crypto.hmac.md5", (crypto::hmac_md5, 2)),
            ("crypto.hmac.sha1", (crypto::hmac_sha1, 2)),
            ("crypto.hmac.sha256", (crypto::hmac_sha256, 2)),
            ("crypto.hmac.sha512", (crypto::hmac_sha512, 2)),
            ("crypto.hmac.equal", (crypto::hmac_equal, 2)),
            ("io.jwt.decode", (jwt::decode, 1)),
            ("io.jwt.decode_verify", (jwt::decode_verify, 2)),
            ("io.jwt.encode_sign", (jwt::encode_sign, 3)),
            ("io.jwt.encode_sign_raw", (jwt::encode_sign_raw, 3)),
            ("io.jwt.verify_hs256", (jwt::verify_hs256, 2)),
            ("io.jwt.verify_hs384", (jwt::verify_hs384, 2)),
            ("io.jwt.verify_hs512", (jwt::verify_hs512, 2)),
            ("io.jwt.verify_rs256", (jwt::verify_rs256, 2)),
            ("io.jwt.verify_rs384", (jwt::verify_rs384, 2)),
            ("io.jwt.verify_rs512", (jwt::verify_rs512, 2)),
            ("io.jwt.verify_ps256", (jwt::verify_ps256, 2)),
            ("io.jwt.verify_ps384", (jwt::verify_ps384, 2)),
            ("io.jwt.verify_ps512", (jwt::verify_ps512, 2)),
            ("io.jwt.verify_es256", (jwt::verify_es256, 2)),
            ("io.jwt.verify_es384", (jwt::verify_es384, 2)),
            ("io.jwt.verify_es512", (jwt::verify_es512, 2)),
            ("io.jwt.verify_eddsa", (jwt::verify_eddsa, 2)),
            ("net.cidr_intersects", (net::net_cidr_intersects, 2)),
            (
                "net.cidr_contains_matches",
                (net::net_cidr_contains_matches, 2),
            ),
            ("net.cidr_merge", (net::net_cidr_merge, 1)),
            ("strings.render_template", (template::render_template, 2)),
            (
                "crypto.x509.parse_certificates",
                (x509::parse_certificates, 1),
            ),
            (
                "crypto.x509.parse_and_verify_certificates",
                (x509::parse_and_verify_certificates, 1),
            ),
            (
                "crypto.x509.parse_and_verify_certificates_with_options",
                (x509::parse_and_verify_certificates_with_options, 2),
            ),
            (
                "crypto.x509.parse_certificate_request",
                (x509::parse_certificate_request, 1),
            ),
            ("crypto.x509.parse_keypair", (x509::parse_keypair, 2)),
            (
                "crypto.x509.parse_rsa_private_key",
                (x509::parse_rsa_private_key, 1),
            ),
            ("crypto.parse_private_keys", (x509::parse_private_keys, 1)),
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
