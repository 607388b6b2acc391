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
];

#[test]
fn both_engines_answer_as_opa_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("opa-answers.json")).unwrap())
            .unwrap();
    assert!(rows.len() >= 60, "the table lost rows");
    let mut failures = Vec::new();
    let mut still_listed = Vec::new();
    for row in &rows {
        let expression = row["expression"].as_str().unwrap();
        let input = row["input"]
            .as_str()
            .map(|text| regorus::Value::from_json_str(text).unwrap())
            .unwrap_or(regorus::Value::Undefined);
        let module = format!("package c\n\nx := {expression}\n");
        let answers = evaluate_on_both_engines(&module, "data.c.x", input);
        let opa = &row["opa"];
        let mut differs = Vec::new();
        for (engine, answer) in ["rvm", "interpreter"].iter().zip(answers) {
            let ok = match (&answer, opa.get("value")) {
                // Compare as JSON: sets are arrays in OPA's JSON, numbers by value.
                (Ok(value), Some(want)) if *value != regorus::Value::Undefined => {
                    let got: serde_json::Value = serde_json::from_str(&value.to_string()).unwrap();
                    same(&got, want)
                }
                // OPA (strict, as the bindings run it) errors; routes and tests are
                // non-strict, where the same builtin error is undefined.
                (Ok(regorus::Value::Undefined), None) | (Err(_), None) => true,
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
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("answers.json")).unwrap()).unwrap();
    assert!(rows.len() >= 10, "the table lost rows");
    let mut failures = Vec::new();
    for row in &rows {
        let query = row["query"].as_str().unwrap();
        let want = &row["opa"]["value"];
        assert!(
            !want.is_null(),
            "OPA gave no value for {query}: {}",
            row["opa"]
        );
        let input = row["input"]
            .as_str()
            .map(|text| regorus::Value::from_json_str(text).unwrap())
            .unwrap_or(regorus::Value::Undefined);
        let answers = evaluate_modules_on_both_engines(&sources, query, input);
        for (engine, answer) in ["rvm", "interpreter"].iter().zip(answers) {
            let ok = answer.as_ref().is_ok_and(|value| {
                *value != regorus::Value::Undefined
                    && same(&serde_json::from_str(&value.to_string()).unwrap(), want)
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

/// JSON equality where numbers compare by value (OPA's `1000.0` and regorus's `1000`).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i128(), y.as_i128()) {
            // Integers exactly (big ones lose precision as floats).
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
