//! Data files: `data.json` and `data.yaml` (or `data.yml`) anywhere in a bundle, merged
//! under `data` at the path of their directory, as OPA bundles load them
//! (docs/policies.md, "Data files"): `teams/data.json` holding `{"cooks": ["ann"]}` is
//! `data.teams.cooks`.
//!
//! A file that does not parse, a file at the root that is not an object, and two files
//! giving one key different values refuse the bundle with the file's position, so a typo
//! in a permission map never reaches the live bundle.

use super::error::PolicyError;

/// The names of the files read as data, in every directory of a bundle.
pub const DATA_FILES: [&str; 3] = ["data.json", "data.yaml", "data.yml"];

/// Whether a file name (without its directory) is a data file.
pub fn is_data_file(name: &str) -> bool {
    DATA_FILES.contains(&name)
}

/// Parses one data file's text (`rel` is its path in the bundle, `display` how errors name it).
fn parse(rel: &str, display: &str, text: &str) -> Result<serde_json::Value, PolicyError> {
    if rel.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| {
            // serde_json counts columns from 1 and points just past the offending token.
            PolicyError::at(display, e.line(), e.column(), format!("invalid JSON: {e}"))
        })
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let (line, col) = crate::yaml::error_location(&e);
            PolicyError::at(
                display,
                line,
                col,
                format!("invalid YAML: {}", crate::yaml::error_message(&e)),
            )
        })
    }
}

/// Why two data files cannot be merged (OPA refuses such bundles with a merge error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("a data file at the root of the bundle must hold an object")]
    RootNotAnObject,
    /// `data.<path>` is given two different values.
    #[error("data.{0} is given two different values")]
    TwoValues(String),
    /// `data.<path>` is not an object, yet a directory below it holds a data file.
    #[error("data.{0} is not an object, so a directory below it cannot hold data")]
    NotAnObject(String),
}

/// Merges `value` into `target` at `path`; `key_path` is the path so far, for errors.
fn merge_at(
    target: &mut serde_json::Map<String, serde_json::Value>,
    path: &[&str],
    value: serde_json::Value,
    key_path: &mut Vec<String>,
) -> Result<(), MergeError> {
    let Some((first, rest)) = path.split_first() else {
        let serde_json::Value::Object(entries) = value else {
            return Err(MergeError::RootNotAnObject);
        };
        for (key, value) in entries {
            key_path.push(key.clone());
            merge_value(target, key, value, key_path)?;
            key_path.pop();
        }
        return Ok(());
    };
    key_path.push((*first).to_string());
    let slot = target
        .entry((*first).to_string())
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let result = if rest.is_empty() {
        match (slot, value) {
            (serde_json::Value::Object(existing), serde_json::Value::Object(entries)) => {
                let mut result = Ok(());
                for (key, value) in entries {
                    key_path.push(key.clone());
                    result = merge_value(existing, key, value, key_path);
                    key_path.pop();
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            (slot, value) if slot.as_object().is_some_and(|o| o.is_empty()) => {
                *slot = value;
                Ok(())
            }
            (slot, value) if *slot == value => Ok(()),
            _ => Err(MergeError::TwoValues(key_path.join("."))),
        }
    } else {
        match slot {
            serde_json::Value::Object(inner) => merge_at(inner, rest, value, key_path),
            _ => Err(MergeError::NotAnObject(key_path.join("."))),
        }
    };
    key_path.pop();
    result
}

/// Merges one key: objects merge key by key, equal values agree, anything else conflicts
/// (OPA refuses such bundles with a merge error).
fn merge_value(
    target: &mut serde_json::Map<String, serde_json::Value>,
    key: String,
    value: serde_json::Value,
    key_path: &mut Vec<String>,
) -> Result<(), MergeError> {
    match target.get_mut(&key) {
        None => {
            target.insert(key, value);
            Ok(())
        }
        Some(serde_json::Value::Object(existing)) => match value {
            serde_json::Value::Object(entries) => {
                for (k, v) in entries {
                    key_path.push(k.clone());
                    merge_value(existing, k, v, key_path)?;
                    key_path.pop();
                }
                Ok(())
            }
            _ => Err(MergeError::TwoValues(key_path.join("."))),
        },
        Some(existing) if *existing == value => Ok(()),
        Some(_) => Err(MergeError::TwoValues(key_path.join("."))),
    }
}

/// The bundle's `data` document from its data files: `(path in the bundle, display path,
/// text)`. Files are merged in path order.
pub fn load<'a>(
    files: impl IntoIterator<Item = (&'a str, String, &'a str)>,
) -> Result<regorus::Value, PolicyError> {
    let mut root = serde_json::Map::new();
    for (rel, display, text) in files {
        let value = parse(rel, &display, text)?;
        let directory: Vec<&str> = match rel.rsplit_once('/') {
            Some((dir, _)) => dir.split('/').collect(),
            None => Vec::new(),
        };
        merge_at(&mut root, &directory, value, &mut Vec::new())
            .map_err(|e| PolicyError::at(&display, 1, 1, e.to_string()))?;
    }
    Ok(regorus::Value::from(serde_json::Value::Object(root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_all(files: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let value = load(
            files
                .iter()
                .map(|(rel, text)| (*rel, format!("b/{rel}"), *text)),
        )
        .map_err(|e| e.to_string())?;
        Ok(serde_json::from_str(&value.to_string()).unwrap())
    }

    #[test]
    fn data_files_land_at_their_directory_path() {
        let data = load_all(&[
            ("data.json", r#"{"top": 1}"#),
            ("teams/data.yaml", "cooks: [ann, bob]\n"),
            ("teams/kitchen/data.json", r#"["x"]"#),
        ])
        .unwrap();
        assert_eq!(
            data,
            serde_json::json!({"top": 1, "teams": {"cooks": ["ann", "bob"], "kitchen": ["x"]}})
        );
    }

    #[test]
    fn files_of_one_directory_merge_and_agreeing_values_are_fine() {
        let data = load_all(&[
            ("a/data.json", r#"{"x": {"p": 1}, "same": 2}"#),
            ("a/data.yaml", "x: {q: 2}\nsame: 2\n"),
        ])
        .unwrap();
        assert_eq!(
            data,
            serde_json::json!({"a": {"x": {"p": 1, "q": 2}, "same": 2}})
        );
    }

    #[test]
    fn conflicting_values_are_a_bundle_error() {
        let err =
            load_all(&[("a/data.json", r#"{"x": 1}"#), ("a/data.yaml", "x: 2\n")]).unwrap_err();
        assert!(
            err.starts_with("b/a/data.yaml:1:1:") && err.contains("data.a.x"),
            "{err}"
        );
    }

    #[test]
    fn unparsable_files_report_their_position() {
        let err = load_all(&[("data.json", "{\n  \"a\": [1,\n}\n")]).unwrap_err();
        assert!(err.starts_with("b/data.json:3:1: invalid JSON"), "{err}");
        let err = load_all(&[("x/data.yaml", "a: 1\nb: [1, 2\n")]).unwrap_err();
        assert!(err.starts_with("b/x/data.yaml:"), "{err}");
        assert!(err.contains("invalid YAML"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 2, "{err}");
    }

    #[test]
    fn a_root_data_file_must_hold_an_object() {
        let err = load_all(&[("data.json", "[1]")]).unwrap_err();
        assert!(err.contains("must hold an object"), "{err}");
    }
}
