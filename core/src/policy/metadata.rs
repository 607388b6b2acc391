//! Rego annotations (`# METADATA` comment blocks) and the builtins that read them,
//! `rego.metadata.rule()` and `rego.metadata.chain()`.
//!
//! regorus ignores annotations. OPA resolves these two calls at compile time: each call's
//! value depends only on the rule it is written in, so OPA's compiler replaces it with a
//! constant (`rewriteRegoMetadataCalls` in OPA's ast/compile.go). Gatehouse does the same
//! before the modules reach regorus: [`resolve`] reads every module's annotations, checks them
//! as OPA does (YAML, scopes, redeclarations — a bad block refuses the bundle with its
//! `file:line:col`, even where nothing reads it), and writes each call's value as a JSON
//! literal in place of the call, on the call's own line, so every other position in the file
//! is unchanged. Both engines then see the same constant.
//!
//! The value's shape is OPA's: `rule()` is the rule's own annotations (`{}` without any);
//! `chain()` lists `{"path", "annotations"}` from the rule outwards — the rule (always present,
//! with its path only when it has no annotations), the document's (every definition of the
//! rule's path), the package's, then `subpackages` annotations of the package and of each
//! enclosing package, nearest first. Paths leave out `data`.

use std::borrow::Cow;
use std::collections::HashMap;

use regorus::unstable::Expr;
use serde_json::{Map, Value as Json, json};

use super::error::PolicyError;
use super::rego::RegoSource;

const RULE_CALL: &str = "rego.metadata.rule";
const CHAIN_CALL: &str = "rego.metadata.chain";

/// `sources` with every `rego.metadata.rule()` / `rego.metadata.chain()` call replaced by its
/// value; borrowed as they are when no module calls either. Errors are annotation errors
/// (bad YAML, a scope on the wrong statement, a redeclared package or document annotation).
/// A module that does not parse is left for the engine to report.
pub fn resolve(sources: &[RegoSource]) -> Result<Cow<'_, [RegoSource]>, PolicyError> {
    let mut files = Vec::with_capacity(sources.len());
    for source in sources {
        files.push(FileAnnotations::read(source)?);
    }
    let calls: Vec<Vec<usize>> = sources.iter().map(|s| call_sites(&s.text)).collect();
    let any_annotation = files.iter().any(|f| !f.blocks.is_empty());
    let any_call = calls.iter().any(|c| !c.is_empty());
    if !any_annotation && !any_call {
        return Ok(Cow::Borrowed(sources));
    }

    // Only modules with annotations or calls need their rules: parse those.
    let modules: Vec<Option<Parsed>> = sources
        .iter()
        .zip(&files)
        .zip(&calls)
        .map(|((source, file), calls)| {
            (!file.blocks.is_empty() || !calls.is_empty())
                .then(|| Parsed::parse(source))
                .flatten()
        })
        .collect();
    let set = AnnotationSet::build(sources, &files, &modules)?;
    if !any_call {
        return Ok(Cow::Borrowed(sources));
    }

    let mut out = sources.to_vec();
    for (index, at) in calls.iter().enumerate() {
        let Some(parsed) = &modules[index] else {
            continue;
        };
        let mut text = out[index].text.clone();
        // From the last call back, so earlier offsets stay valid.
        for &offset in at.iter().rev() {
            let Some(rule) = parsed.rules.iter().position(|r| r.contains(offset)) else {
                // Outside any rule (not valid Rego): the engine reports the call.
                continue;
            };
            let (name_len, value) = if text[offset..].starts_with(RULE_CALL) {
                (RULE_CALL.len(), set.rule((index, rule)))
            } else {
                (CHAIN_CALL.len(), set.chain(index, rule, parsed))
            };
            let end = call_end(&text, offset + name_len);
            text.replace_range(offset..end, &value.to_string());
        }
        out[index].text = text;
    }
    Ok(Cow::Owned(out))
}

/// Byte offsets of `rego.metadata.rule()` and `rego.metadata.chain()` calls with no
/// arguments, outside strings and comments.
fn call_sites(text: &str) -> Vec<usize> {
    if !text.contains("rego.metadata.") {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'r' if bytes[i..].starts_with(b"rego.metadata.")
                && (i == 0 || !is_name_byte(bytes[i - 1]) && bytes[i - 1] != b'.') =>
            {
                let name = [RULE_CALL, CHAIN_CALL]
                    .into_iter()
                    .find(|n| text[i..].starts_with(n));
                match name {
                    Some(name) if call_end_checked(text, i + name.len()).is_some() => {
                        found.push(i);
                        i += name.len();
                    }
                    _ => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    found
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of `()` (with optional blanks) right after a call's name, if it is there.
fn call_end_checked(text: &str, after_name: usize) -> Option<usize> {
    let rest = &text[after_name..];
    let open = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let rest = rest[open..].strip_prefix('(')?;
    let close = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    rest[close..]
        .starts_with(')')
        .then_some(after_name + open + 1 + close + 1)
}

fn call_end(text: &str, after_name: usize) -> usize {
    call_end_checked(text, after_name).unwrap_or(after_name)
}

/// What a `# METADATA` block is written before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Package,
    /// A rule starting on this line (1-based).
    Rule(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Rule,
    Document,
    Package,
    Subpackages,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Rule => "rule",
            Scope::Document => "document",
            Scope::Package => "package",
            Scope::Subpackages => "subpackages",
        }
    }
}

#[derive(Debug)]
struct Block {
    /// The `# METADATA` line, 1-based.
    line: usize,
    target: Target,
    scope: Scope,
    /// The annotations as `rego.metadata.*` return them, `scope` included.
    annotations: Json,
}

/// One module's annotation blocks, checked.
struct FileAnnotations {
    blocks: Vec<Block>,
}

impl FileAnnotations {
    fn read(source: &RegoSource) -> Result<FileAnnotations, PolicyError> {
        let lines: Vec<&str> = source.text.lines().collect();
        let comment = |l: &str| l.trim_start().strip_prefix('#').map(str::to_owned);
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let is_start = comment(lines[i]).is_some_and(|c| c.trim() == "METADATA");
            if !is_start {
                i += 1;
                continue;
            }
            let start = i;
            let mut yaml = String::new();
            i += 1;
            while i < lines.len() {
                match comment(lines[i]) {
                    Some(c) if c.trim() != "METADATA" => {
                        yaml.push_str(&c);
                        yaml.push('\n');
                        i += 1;
                    }
                    _ => break,
                }
            }
            // The statement the block is written before: the next line that is neither blank
            // nor a comment (other blocks for the same statement may come between).
            let next = (i..lines.len())
                .find(|&j| {
                    let t = lines[j].trim();
                    !t.is_empty() && !t.starts_with('#')
                })
                .map(|j| (j + 1, lines[j].trim_start()));
            let Some((next_line, statement)) = next else {
                continue;
            };
            let target = if statement.starts_with("package ") || statement.starts_with("package\t")
            {
                Target::Package
            } else {
                Target::Rule(next_line)
            };
            blocks.push(Block::parse(source, start + 1, &yaml, target)?);
        }
        Ok(FileAnnotations { blocks })
    }
}

impl Block {
    fn parse(
        source: &RegoSource,
        line: usize,
        yaml: &str,
        target: Target,
    ) -> Result<Block, PolicyError> {
        let at = |message: String| PolicyError::at(&source.path, line, 1, message);
        let raw: Json = if yaml.trim().is_empty() {
            Json::Object(Map::new())
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| {
                let (yaml_line, col) = crate::yaml::error_location(&e);
                // YAML line 1 is the line after `# METADATA`; `#` is column 1.
                PolicyError::at(
                    &source.path,
                    line + yaml_line,
                    col + 1,
                    format!("invalid METADATA YAML: {}", crate::yaml::error_message(&e)),
                )
            })?
        };
        let Json::Object(raw) = raw else {
            return Err(at("METADATA must be a YAML mapping".into()));
        };
        let mut annotations = Map::new();
        for key in ["title", "description"] {
            if let Some(value) = raw.get(key) {
                let Json::String(text) = value else {
                    return Err(at(format!("METADATA `{key}` must be a string")));
                };
                annotations.insert(key.into(), Json::String(text.clone()));
            }
        }
        if let Some(value) = raw.get("organizations") {
            let list = strings(value)
                .ok_or_else(|| at("METADATA `organizations` must be a list of strings".into()))?;
            annotations.insert("organizations".into(), json!(list));
        }
        // Lists whose items each take one of OPA's forms, normalized to its object form.
        type Item = fn(&Json) -> Result<Json, String>;
        let lists: [(&str, Item); 3] = [
            ("authors", author),
            ("related_resources", related_resource),
            ("schemas", schema),
        ];
        for (key, item) in lists {
            if let Some(value) = raw.get(key) {
                let items = list(value)
                    .iter()
                    .map(item)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(at)?;
                annotations.insert(key.into(), Json::Array(items));
            }
        }
        let entrypoint = match raw.get("entrypoint") {
            None => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err(at("METADATA `entrypoint` must be true or false".into())),
        };
        if entrypoint {
            annotations.insert("entrypoint".into(), Json::Bool(true));
        }
        if let Some(value) = raw.get("custom") {
            if !value.is_object() && !value.is_null() {
                return Err(at("METADATA `custom` must be a mapping".into()));
            }
            if value.as_object().is_some_and(|map| !map.is_empty()) {
                annotations.insert("custom".into(), value.clone());
            }
        }
        let scope = match raw.get("scope") {
            None => match target {
                Target::Package => Scope::Package,
                // OPA: an entrypoint names a document, so its default scope is the document.
                Target::Rule(_) if entrypoint => Scope::Document,
                Target::Rule(_) => Scope::Rule,
            },
            Some(Json::String(s)) => match s.as_str() {
                "rule" => Scope::Rule,
                "document" => Scope::Document,
                "package" => Scope::Package,
                "subpackages" => Scope::Subpackages,
                other => {
                    return Err(at(format!(
                        "invalid annotation scope '{other}'. Use one of 'rule', 'document', 'package', or 'subpackages'"
                    )));
                }
            },
            Some(_) => return Err(at("METADATA `scope` must be a string".into())),
        };
        let fits = match target {
            Target::Package => matches!(scope, Scope::Package | Scope::Subpackages),
            Target::Rule(_) => matches!(scope, Scope::Rule | Scope::Document),
        };
        if !fits {
            let (want, have) = match target {
                Target::Package => ("rule", "package"),
                Target::Rule(_) => ("package", "rule"),
            };
            return Err(at(format!(
                "annotation scope '{}' must be applied to {want} (have {have})",
                scope.name()
            )));
        }
        annotations.insert("scope".into(), Json::String(scope.name().into()));
        Ok(Block {
            line,
            target,
            scope,
            annotations: Json::Object(annotations),
        })
    }
}

fn list(value: &Json) -> Vec<Json> {
    match value {
        Json::Array(items) => items.clone(),
        Json::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn strings(value: &Json) -> Option<Vec<String>> {
    list(value)
        .into_iter()
        .map(|v| match v {
            Json::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// `Name <email>`, `name`, `<email>`, or `{name, email}`, as OPA's parseAuthor reads them.
fn author(value: &Json) -> Result<Json, String> {
    let (name, email) = match value {
        Json::String(text) => {
            let mut parts: Vec<&str> = text.split_whitespace().collect();
            let email = match parts.last() {
                Some(last) if last.len() >= 2 && last.starts_with('<') && last.ends_with('>') => {
                    let email = last[1..last.len() - 1].to_string();
                    parts.pop();
                    email
                }
                _ => String::new(),
            };
            (parts.join(" "), email)
        }
        Json::Object(map) => {
            let field = |k: &str| match map.get(k) {
                None => Ok(String::new()),
                Some(Json::String(s)) => Ok(s.trim().to_string()),
                Some(_) => Err(format!("METADATA author `{k}` must be a string")),
            };
            (field("name")?, field("email")?)
        }
        _ => return Err("METADATA author must be a string or a mapping".into()),
    };
    if name.is_empty() && email.is_empty() {
        return Err("author annotation requires name or email".into());
    }
    let mut out = Map::new();
    if !name.is_empty() {
        out.insert("name".into(), Json::String(name));
    }
    if !email.is_empty() {
        out.insert("email".into(), Json::String(email));
    }
    Ok(Json::Object(out))
}

/// A URL, or `{ref, description}`.
fn related_resource(value: &Json) -> Result<Json, String> {
    let (reference, description) = match value {
        Json::String(s) => (s.clone(), None),
        Json::Object(map) => match (map.get("ref"), map.get("description")) {
            (Some(Json::String(r)), None) => (r.clone(), None),
            (Some(Json::String(r)), Some(Json::String(d))) => (r.clone(), Some(d.clone())),
            (None, _) => return Err("'ref' value required in object".into()),
            _ => return Err("METADATA related resource fields must be strings".into()),
        },
        _ => return Err("METADATA related resource must be a URL or a mapping".into()),
    };
    let reference = reference.trim();
    if reference.is_empty() {
        return Err("ref URL may not be empty string".into());
    }
    url::Url::parse(reference)
        .map_err(|e| format!("invalid related resource URL `{reference}`: {e}"))?;
    let mut out = Map::new();
    out.insert("ref".into(), Json::String(reference.to_string()));
    if let Some(d) = description {
        out.insert("description".into(), Json::String(d));
    }
    Ok(Json::Object(out))
}

/// `{path: schema.ref}` or `{path: {inline definition}}`.
fn schema(value: &Json) -> Result<Json, String> {
    let Json::Object(map) = value else {
        return Err("METADATA schema must be a mapping of a path to a schema".into());
    };
    let Some((path, schema)) = map.iter().next().filter(|_| map.len() == 1) else {
        return Err("METADATA schema must map one path to a schema".into());
    };
    let path: Vec<&str> = path.split('.').map(str::trim).collect();
    if path.iter().any(|p| p.is_empty()) || !matches!(path[0], "input" | "data") {
        return Err(format!(
            "invalid schema path `{}`: it must start with input or data",
            path.join(".")
        ));
    }
    let mut out = Map::new();
    out.insert("path".into(), json!(path));
    match schema {
        Json::String(reference) => {
            let reference: Vec<&str> = reference.split('.').map(str::trim).collect();
            if reference[0] != "schema" || reference.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "invalid schema reference `{}`: it must start with schema",
                    reference.join(".")
                ));
            }
            out.insert("schema".into(), json!(reference));
        }
        Json::Object(_) => {
            out.insert("definition".into(), schema.clone());
        }
        _ => return Err("METADATA schema must be a reference or a definition".into()),
    }
    Ok(Json::Object(out))
}

/// A parsed module's package and rules.
struct Parsed {
    package: Vec<String>,
    rules: Vec<RuleInfo>,
}

struct RuleInfo {
    line: usize,
    start: usize,
    end: usize,
    /// The ground prefix of the rule's reference, without `data` and with the package.
    path: Vec<String>,
}

impl RuleInfo {
    fn contains(&self, offset: usize) -> bool {
        self.start <= offset && offset < self.end
    }
}

impl Parsed {
    fn parse(source: &RegoSource) -> Option<Parsed> {
        let module = super::rego::parse_module(source).ok()?;
        let mut package = Vec::new();
        ground_prefix(&module.package.refr, &mut package);
        let package: Vec<String> = package.into_iter().skip_while(|p| p == "data").collect();
        let rules = module
            .policy
            .iter()
            .map(|rule| {
                let span = rule.span();
                let mut path = package.clone();
                ground_prefix(super::rego::rule_head_ref(rule), &mut path);
                RuleInfo {
                    line: span.line as usize,
                    start: span.start as usize,
                    end: span.end as usize,
                    path,
                }
            })
            .collect();
        Some(Parsed { package, rules })
    }
}

/// Appends the leading names of a reference (`a.b["c"][x].d` → a, b, c) to `path`; returns
/// whether the whole reference was ground.
fn ground_prefix(expr: &Expr, path: &mut Vec<String>) -> bool {
    match expr {
        Expr::Var { value, .. } => {
            path.push(value.as_string().map(|s| s.to_string()).unwrap_or_default());
            true
        }
        Expr::RefDot { refr, field, .. } => {
            if !ground_prefix(refr, path) {
                return false;
            }
            match field.1.as_string() {
                Ok(name) => {
                    path.push(name.to_string());
                    true
                }
                Err(_) => false,
            }
        }
        Expr::RefBrack { refr, index, .. } => {
            if !ground_prefix(refr, path) {
                return false;
            }
            match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    match value.as_string() {
                        Ok(name) => {
                            path.push(name.to_string());
                            true
                        }
                        Err(_) => false,
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Every module's annotations, by where they apply.
#[derive(Default)]
struct AnnotationSet {
    /// (module, rule index) → the rule's own annotations.
    rules: HashMap<(usize, usize), Json>,
    documents: HashMap<Vec<String>, Json>,
    packages: HashMap<Vec<String>, Json>,
    subpackages: HashMap<Vec<String>, Json>,
}

impl AnnotationSet {
    fn build(
        sources: &[RegoSource],
        files: &[FileAnnotations],
        modules: &[Option<Parsed>],
    ) -> Result<AnnotationSet, PolicyError> {
        let mut set = AnnotationSet::default();
        // Where each package and document annotation was declared, for redeclaration errors.
        let mut declared: HashMap<(Scope, Vec<String>), (String, usize)> = HashMap::new();
        for (index, file) in files.iter().enumerate() {
            let Some(parsed) = &modules[index] else {
                continue;
            };
            let path = &sources[index].path;
            for block in &file.blocks {
                let (key, rule) = match block.target {
                    Target::Package => (parsed.package.clone(), None),
                    Target::Rule(line) => {
                        // A block inside a rule's body, or before an import, names no rule
                        // and applies to nothing, as in OPA.
                        let Some(rule) = parsed.rules.iter().position(|r| r.line == line) else {
                            continue;
                        };
                        (parsed.rules[rule].path.clone(), Some(rule))
                    }
                };
                if block.scope == Scope::Rule {
                    if let Some(rule) = rule {
                        set.rules
                            .entry((index, rule))
                            .or_insert_with(|| block.annotations.clone());
                    }
                    continue;
                }
                if let Some((first_file, first_line)) = declared.get(&(block.scope, key.clone())) {
                    return Err(PolicyError::at(
                        path,
                        block.line,
                        1,
                        format!(
                            "{} annotation redeclared: {first_file}:{first_line}",
                            block.scope.name()
                        ),
                    ));
                }
                declared.insert((block.scope, key.clone()), (path.clone(), block.line));
                let map = match block.scope {
                    Scope::Document => &mut set.documents,
                    Scope::Package => &mut set.packages,
                    Scope::Subpackages => &mut set.subpackages,
                    Scope::Rule => unreachable!("handled above"),
                };
                map.insert(key, block.annotations.clone());
            }
        }
        Ok(set)
    }

    fn rule(&self, rule: (usize, usize)) -> Json {
        self.rules
            .get(&rule)
            .cloned()
            .unwrap_or_else(|| Json::Object(Map::new()))
    }

    fn chain(&self, module: usize, rule: usize, parsed: &Parsed) -> Json {
        let entry = |path: &[String], annotations: Option<&Json>| {
            let mut e = Map::new();
            e.insert("path".into(), json!(path));
            if let Some(a) = annotations {
                e.insert("annotations".into(), a.clone());
            }
            Json::Object(e)
        };
        let path = &parsed.rules[rule].path;
        let mut chain = vec![entry(path, self.rules.get(&(module, rule)))];
        if let Some(doc) = self.documents.get(path) {
            chain.push(entry(path, Some(doc)));
        }
        if let Some(pkg) = self.packages.get(&parsed.package) {
            chain.push(entry(&parsed.package, Some(pkg)));
        }
        for len in (1..=parsed.package.len()).rev() {
            let prefix = &parsed.package[..len];
            if let Some(sub) = self.subpackages.get(prefix) {
                chain.push(entry(prefix, Some(sub)));
            }
        }
        Json::Array(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> RegoSource {
        RegoSource {
            path: path.into(),
            text: text.into(),
        }
    }

    #[test]
    fn bundles_without_annotations_are_borrowed() {
        let sources = [source("a.rego", "package a\n\nx := 1\n")];
        assert!(matches!(resolve(&sources).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn calls_are_replaced_on_their_own_line() {
        let text = "package a\n\n# METADATA\n# title: T\nr := rego.metadata.rule()\ns := 1 # rego.metadata.rule()\nt := \"rego.metadata.chain()\"\n";
        let sources = [source("a.rego", text)];
        let out = resolve(&sources).unwrap();
        let lines: Vec<&str> = out[0].text.lines().collect();
        assert_eq!(lines[4], r#"r := {"scope":"rule","title":"T"}"#);
        assert_eq!(&lines[5..], &text.lines().collect::<Vec<_>>()[5..]);
    }

    #[test]
    fn bad_annotations_name_their_line() {
        let cases = [
            (
                "package a\n\n# METADATA\n# title: [x\nr := 1\n",
                "a.rego:4:",
            ),
            (
                "package a\n\n# METADATA\n# scope: package\nr := 1\n",
                "a.rego:3:1: annotation scope 'package' must be applied to package (have rule)",
            ),
            (
                "# METADATA\n# scope: rule\npackage a\n",
                "a.rego:1:1: annotation scope 'rule' must be applied to rule (have package)",
            ),
            (
                "package a\n\n# METADATA\n# scope: other\nr := 1\n",
                "a.rego:3:1: invalid annotation scope 'other'",
            ),
            (
                "package a\n\n# METADATA\n# scope: document\nr := 1 if true\n\n# METADATA\n# scope: document\nr := 2 if false\n",
                "a.rego:7:1: document annotation redeclared: a.rego:3",
            ),
            (
                "package a\n\n# METADATA\n# authors:\n# - \"\"\nr := 1\n",
                "a.rego:3:1: author annotation requires name or email",
            ),
        ];
        for (text, want) in cases {
            let err = resolve(&[source("a.rego", text)]).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}\n{err}");
        }
    }

    #[test]
    fn rule_paths_are_the_ground_prefix_of_the_head() {
        let text = "package a.b\n\np[x] := rego.metadata.chain() if x := \"k\"\nq.r[\"s\"].t[x] := rego.metadata.chain() if x := 1\nf(x) := rego.metadata.chain() if x\n";
        let sources = [source("a.rego", text)];
        let out = resolve(&sources).unwrap();
        let lines: Vec<&str> = out[0].text.lines().collect();
        assert!(
            lines[2].contains(r#"[{"path":["a","b","p"]}]"#),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains(r#"[{"path":["a","b","q","r","s","t"]}]"#),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].contains(r#"[{"path":["a","b","f"]}]"#),
            "{}",
            lines[4]
        );
    }
}
