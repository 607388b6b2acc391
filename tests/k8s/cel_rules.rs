//! The CEL rules of the vendored CRDs (`x-kubernetes-validations`), evaluated on every
//! custom resource of `deploy/k8s` as the API server evaluates them: after the schema's
//! defaults are applied, with `self` bound to the value at the rule's place, and a property
//! whose name is a CEL reserved word spelt `__name__` (Kubernetes' escaping). `validate.py`
//! checks the structure; these rules are the cross-field constraints no JSON schema states
//! (an ExternalAuth filter with `protocol: GRPC` needs its `grpc` block, a SecurityPolicy
//! one of `grpc` or `http`, a Service backendRef a port). Rules on `oldSelf` (transition
//! rules) only apply to updates and are skipped. Evaluated with the `cel` crate the policy
//! engine uses.

use std::path::Path;

use serde_json::{Map, Value};

use crate::harness::repo_root;
use crate::manifests::docs;

/// CEL's reserved words, which Kubernetes escapes as `__word__` when they name a property.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The served version's openAPIV3Schema of each CRD: (group, version, kind) → schema.
fn crds() -> Vec<((String, String, String), Value)> {
    let mut out = Vec::new();
    let dir = repo_root().join("tests/k8s/crds");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for crd in docs(&path) {
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let spec = &crd["spec"];
            for version in spec["versions"].as_array().unwrap() {
                if version["served"] == true {
                    out.push((
                        (
                            spec["group"].as_str().unwrap().to_string(),
                            version["name"].as_str().unwrap().to_string(),
                            spec["names"]["kind"].as_str().unwrap().to_string(),
                        ),
                        version["schema"]["openAPIV3Schema"].clone(),
                    ));
                }
            }
        }
    }
    out
}

/// Structural defaulting: every absent property with a `default` gets it, recursively.
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                }
                for (name, item) in map.iter_mut() {
                    if let Some(prop) = props.get(name) {
                        apply_defaults(prop, item);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for item in map.values_mut() {
                    apply_defaults(&schema["additionalProperties"], item);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_defaults(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// The value as CEL sees it: the properties of schema objects with reserved names escaped
/// (map keys are data, not escaped).
fn cel_view(schema: &Value, value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let mut out = Map::new();
            for (name, item) in map {
                let (key, sub) = match props {
                    Some(p) => (
                        if RESERVED.contains(&name.as_str()) {
                            format!("__{name}__")
                        } else {
                            name.clone()
                        },
                        p.get(name).cloned().unwrap_or(Value::Null),
                    ),
                    None => (name.clone(), schema["additionalProperties"].clone()),
                };
                out.insert(key, cel_view(&sub, item));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| cel_view(&schema["items"], i))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One rule's verdict on one place of one document.
struct Outcome {
    place: String,
    rule: String,
    result: Result<bool, String>,
}

fn evaluate(schema: &Value, value: &Value, place: &str, out: &mut Vec<Outcome>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap();
        if text.contains("oldSelf") {
            continue;
        }
        let result = match cel::Program::compile(text) {
            Err(e) => Err(format!("does not compile: {e}")),
            Ok(program) => {
                let mut ctx = cel::Context::default();
                ctx.add_variable("self", cel_view(schema, value))
                    .map_err(|e| e.to_string())
                    .and_then(|()| program.execute(&ctx).map_err(|e| e.to_string()))
                    .and_then(|v| match v {
                        cel::Value::Bool(b) => Ok(b),
                        other => Err(format!("not a bool: {other:?}")),
                    })
            }
        };
        let result = result
            .map_err(|e| format!("{e} ({})", rule["message"].as_str().unwrap_or("no message")));
        out.push(Outcome {
            place: place.to_string(),
            rule: text.to_string(),
            result,
        });
    }
    match value {
        Value::Object(map) => {
            for (name, item) in map {
                let sub = schema["properties"]
                    .get(name)
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    evaluate(sub, item, &format!("{place}.{name}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                evaluate(&schema["items"], item, &format!("{place}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every rule that applies to `doc` (found by its apiVersion and kind), with its result.
fn rules_of(doc: &Value, crds: &[((String, String, String), Value)]) -> Option<Vec<Outcome>> {
    let api = doc["apiVersion"].as_str()?;
    let (group, version) = api.rsplit_once('/')?;
    let kind = doc["kind"].as_str()?;
    let (_, schema) = crds
        .iter()
        .find(|((g, v, k), _)| g == group && v == version && k == kind)?;
    let mut value = doc.clone();
    apply_defaults(schema, &mut value);
    let mut out = Vec::new();
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    evaluate(schema, &value, &format!("{kind}/{name}"), &mut out);
    Some(out)
}

fn custom_resources() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![repo_root().join("deploy/k8s")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && !path.ends_with("kustomization.yaml")
            {
                for doc in docs(&path) {
                    out.push((relative(&path), doc));
                }
            }
        }
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_crd_rule_holds_for_the_shipped_custom_resources() {
    let crds = crds();
    let mut evaluated = 0;
    let mut problems = Vec::new();
    for (file, doc) in custom_resources() {
        let Some(outcomes) = rules_of(&doc, &crds) else {
            continue;
        };
        for o in outcomes {
            evaluated += 1;
            match o.result {
                Ok(true) => {}
                Ok(false) => problems.push(format!("{file}: {}: violates {}", o.place, o.rule)),
                Err(e) => problems.push(format!("{file}: {}: {e}: {}", o.place, o.rule)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(evaluated > 100, "only {evaluated} rules evaluated");
}

/// The rules do catch what the schema alone lets through.
#[test]
fn crd_rules_refuse_what_the_schemas_allow() {
    let crds = crds();
    let route = docs(&repo_root().join("deploy/k8s/gateway-api/httproute.yaml")).remove(0);
    let policy = docs(&repo_root().join("deploy/k8s/envoy-gateway/securitypolicy.yaml")).remove(0);
    let mut broken_route = route.clone();
    broken_route["spec"]["rules"][0]["filters"][0]["externalAuth"]
        .as_object_mut()
        .unwrap()
        .remove("grpc");
    let mut broken_policy = policy.clone();
    broken_policy["spec"]["extAuth"]
        .as_object_mut()
        .unwrap()
        .remove("grpc");
    let mut portless = route.clone();
    portless["spec"]["rules"][0]["filters"][0]["externalAuth"]["backendRef"]
        .as_object_mut()
        .unwrap()
        .remove("port");
    for (what, doc) in [
        ("ExternalAuth GRPC without grpc", broken_route),
        ("extAuth without grpc or http", broken_policy),
        ("a Service backendRef without a port", portless),
    ] {
        let outcomes = rules_of(&doc, &crds).unwrap();
        assert!(
            outcomes.iter().any(|o| o.result == Ok(false)),
            "{what} passed every rule"
        );
        assert!(
            outcomes.iter().all(|o| o.result.is_ok()),
            "{what}: a rule could not be evaluated"
        );
    }
}
