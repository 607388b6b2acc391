//! Gatehouse's Rego against real OPA: every expression of `conformance/expressions.txt`,
//! with OPA's answer recorded in `conformance/opa-answers.json` (regenerated from OPA by
//! `scripts/opa-conformance`), evaluated on both of regorus's engines as Gatehouse
//! configures them. An answer that differs fails, unless the expression is listed in
//! `KNOWN_DIFFERENCES`, which docs/policies.md lists for policy authors too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate

use gatehouse_core::policy::rego::{
    RegoSource, evaluate_modules_on_both_engines, evaluate_on_both_engines,
};

/// Expressions where Gatehouse still answers differently from OPA (docs/policies.md,
/// "Differences from OPA"). Each must really differ: once fixed, remove it here.
const KNOWN_DIFFERENCES: &[&str] = &[
    // OPA hands a template a number's literal text (`1.50`, `1e300`); regorus keeps only its
    // value, and integers beyond 64 bits as floats.
    r#"strings.render_template(`{{printf "%v|%s|%q|%d|%x|%T" .n .n .n .n .n .n}}`, {"n": 1.50})"#,
    r#"strings.render_template(`{{.n}} {{.m}} {{.e}}`, {"n": -12, "m": 0.001, "e": 1e300})"#,
    "strings.render_template(`{{.b}} {{.c}}`, input)",
    // ring refuses RSA keys under 2,048 bits; OPA takes 1,024.
    "io.jwt.verify_rs256(input.token_of_a_1024_bit_key, input.key)",
    // OPA signs with an EC key of another curve than the algorithm's (here a P-256 key under
    // ES512, giving a P-256 signature); Gatehouse refuses the key.
    r#"io.jwt.encode_sign({"alg": "ES512"}, {"sub": "ann"}, input.jwk)"#,
    // ring has no RSA under 2,048 bits in chain verification either, and name constraints
    // are not checked: Gatehouse answers [false, []] (fail closed).
    r#"crypto.x509.parse_and_verify_certificates_with_options(input.certs_under_name_constraints, {"CurrentTime": input.now})"#,
    r#"crypto.x509.parse_and_verify_certificates_with_options(input.certs_under_a_1024_bit_root, {"CurrentTime": input.now})"#,
    // A leaf with policy mappings or inhibitAnyPolicy: Go's policy check passes these, but
    // Gatehouse does not reproduce it and refuses every leaf with policy controls.
    r#"crypto.x509.parse_and_verify_certificates_with_options(input.certs_18_leaf_critical_inhibitanypolicy, {"CurrentTime": 1800000000000000000})[0]"#,
    r#"crypto.x509.parse_and_verify_certificates_with_options(input.certs_19_leaf_critical_policymappings, {"CurrentTime": 1800000000000000000})[0]"#,
];

#[test]
fn both_engines_answer_as_opa_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    // OPA's answers hold integers of hundreds of digits (RSA moduli, certificate serials),
    // beyond any JSON reader here: they are read as marked strings, and Gatehouse's answers
    // compared in the same form (`canonical`).
    let text = std::fs::read_to_string(dir.join("opa-answers.json")).unwrap();
    let table = regorus::Value::from_json_str(&big_integers_as_strings(&text)).unwrap();
    let rows = table.as_array().unwrap();
    assert!(rows.len() >= 60, "the table lost rows");
    let mut failures = Vec::new();
    let mut still_listed = Vec::new();
    for row in rows {
        let expression = row["expression"].as_string().unwrap().as_ref();
        let input = match &row["input"] {
            regorus::Value::String(text) => regorus::Value::from_json_str(text).unwrap(),
            _ => regorus::Value::Undefined,
        };
        let module = format!("package c\n\nx := {expression}\n");
        let answers = evaluate_on_both_engines(&module, "data.c.x", input);
        let opa = &row["opa"];
        let mut differs = Vec::new();
        for (engine, answer) in ["rvm", "interpreter"].iter().zip(answers) {
            let want = &opa["value"];
            let ok = match (&answer, want) {
                (_, regorus::Value::Undefined) => {
                    matches!(answer, Ok(regorus::Value::Undefined) | Err(_))
                }
                // Compare as JSON: sets are arrays in OPA's JSON; numbers compare by value
                // (OPA's `1000.0` and regorus's `1000`).
                (Ok(value), want) if *value != regorus::Value::Undefined => {
                    canonical(value) == canonical(want)
                }
                _ => false,
            };
            if !ok {
                differs.push(format!("{engine}: {answer:?}"));
            }
        }
        let known = KNOWN_DIFFERENCES.contains(&expression);
        if !differs.is_empty() && !known {
            failures.push(format!(
                "{expression}\n    OPA: {opa}\n    {}",
                differs.join("\n    ")
            ));
        }
        if differs.is_empty() && known {
            still_listed.push(expression);
        }
    }
    assert!(
        failures.is_empty() && still_listed.is_empty(),
        "{} answers differ from OPA's:\n{}\nlisted as known differences but now agree: {still_listed:?}",
        failures.len(),
        failures.join("\n")
    );
}

/// Annotations and `rego.metadata.rule()` / `chain()` over the modules of
/// `conformance/metadata/` (package, subpackages across files, document scope, several
/// definitions of one rule, functions, `else`), against OPA's answers recorded by
/// `scripts/opa-metadata-conformance`.
#[test]
fn annotations_read_as_in_opa_on_both_engines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/metadata");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rego") {
            sources.push(RegoSource {
                path: path.file_name().unwrap().to_string_lossy().into_owned(),
                text: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
    let text = std::fs::read_to_string(dir.join("answers.json")).unwrap();
    let table = regorus::Value::from_json_str(&text).unwrap();
    let rows = table.as_array().unwrap();
    assert!(rows.len() >= 10, "the table lost rows");
    let mut failures = Vec::new();
    for row in rows {
        let query = row["query"].as_string().unwrap().as_ref();
        let want = &row["opa"]["value"];
        assert!(
            *want != regorus::Value::Undefined,
            "OPA gave no value for {query}: {}",
            row["opa"]
        );
        let input = match &row["input"] {
            regorus::Value::String(text) => regorus::Value::from_json_str(text).unwrap(),
            _ => regorus::Value::Undefined,
        };
        let answers = evaluate_modules_on_both_engines(&sources, query, input);
        for (engine, answer) in ["rvm", "interpreter"].iter().zip(answers) {
            let ok = answer.as_ref().is_ok_and(|value| {
                *value != regorus::Value::Undefined && canonical(value) == canonical(want)
            });
            if !ok {
                failures.push(format!(
                    "{query} ({engine})\n    OPA: {want}\n    got: {answer:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// JSON text with every integer of 20 digits or more (outside strings) turned into the string
/// `"#big:<digits>"`.
fn big_integers_as_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '-' || c.is_ascii_digit() {
            let mut number = String::from(c);
            while let Some(&d) = chars.peek() {
                if !(d.is_ascii_digit() || "+-.eE".contains(d)) {
                    break;
                }
                number.push(d);
                chars.next();
            }
            let digits = number.trim_start_matches('-');
            if digits.len() >= 20 && digits.chars().all(|d| d.is_ascii_digit()) {
                out.push_str(&format!("\"#big:{number}\""));
            } else {
                out.push_str(&number);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as OPA's JSON has it: sets as arrays, integers of 20 digits or more as
/// `"#big:<digits>"` strings.
fn canonical(value: &regorus::Value) -> regorus::Value {
    use regorus::Value;
    match value {
        Value::Array(items) => Value::from(items.iter().map(canonical).collect::<Vec<_>>()),
        Value::Set(items) => Value::from(items.iter().map(canonical).collect::<Vec<_>>()),
        Value::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
        Value::Number(n) if n.is_integer() => {
            let text = n.format_decimal();
            let digits = text.trim_start_matches('-');
            if digits.len() >= 20 && digits.chars().all(|d| d.is_ascii_digit()) {
                Value::from(format!("#big:{text}"))
            } else {
                value.clone()
            }
        }
        Value::String(s) if s.starts_with("#big:") => value.clone(),
        other => other.clone(),
    }
}
