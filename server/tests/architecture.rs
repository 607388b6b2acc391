//! The workspace's architecture rules (issue 10 item 2, docs/architecture.md), read from the
//! source rather than from a build:
//!
//! - within every crate of the workspace, the top-level modules import each other without a
//!   cycle (edges from `crate::x`, `super::` resolved against the file's module, and
//!   `use crate::{a, b::c}` groups; comments and string literals are not read);
//! - `gatehouse-core` depends on no I/O or transport crate;
//! - in `gatehouse`, `policy` names neither `store` nor `http`, and `store` names none of
//!   `audit`, `oidc` and `http`.
//!
//! The checker is tested on a small synthetic module set too (`checker_*`), so a checker that
//! stopped seeing edges would fail here instead of passing everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Lexing: identifiers, `::` and the punctuation that shapes paths; comments, strings and
// character literals dropped.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The tokens of `source` with their 1-based line numbers.
fn lex(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let is_ident_start = |c: char| c == '_' || c.is_alphabetic();
    let is_ident = |c: char| c == '_' || c.is_alphanumeric();
    // Skips a quoted string whose opening `"` is at `i`; returns the index after it.
    let skip_string = |mut i: usize, line: &mut usize| -> usize {
        i += 1;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    if chars.get(i + 1) == Some(&'\n') {
                        *line += 1;
                    }
                    i += 2;
                    continue;
                }
                '"' => return i + 1,
                '\n' => *line += 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            // Block comments nest.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(i, &mut line);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{7f}', '{') or a lifetime ('a, 'static).
            if chars.get(i + 1) == Some(&'\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw strings r"…", r#"…"#, br"…", cr"…"; raw identifiers r#type.
            if matches!(word.as_str(), "r" | "br" | "cr")
                && matches!(chars.get(i), Some('#') | Some('"'))
            {
                let mut hashes = 0;
                while chars.get(i + hashes) == Some(&'#') {
                    hashes += 1;
                }
                if chars.get(i + hashes) == Some(&'"') {
                    i += hashes + 1;
                    loop {
                        if i >= chars.len() {
                            break;
                        }
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                            i += hashes + 1;
                            break;
                        }
                        i += 1;
                    }
                    continue;
                }
                if word == "r" && hashes == 1 {
                    // r#ident
                    let start = i + 1;
                    i = start;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                    out.push((Tok::Ident(chars[start..i].iter().collect()), line));
                    continue;
                }
            }
            // b"…", c"…" are ordinary strings after their prefix.
            if matches!(word.as_str(), "b" | "c") && chars.get(i) == Some(&'"') {
                i = skip_string(i, &mut line);
                continue;
            }
            // b'x' is a byte literal.
            if word == "b" && chars.get(i) == Some(&'\'') {
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Edges between top-level modules.

/// One reference from a file of module `from` to the top-level module `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    /// `path/to/file.rs:line`
    at: String,
}

/// The module path of a file from its path under `src/`: `lib.rs`/`main.rs` → the crate root
/// (empty), `foo/mod.rs` → `foo`, `foo/bar.rs` → `foo::bar`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.strip_suffix(".rs").unwrap_or(&file).to_string();
    let root_file = parts.is_empty() && (stem == "lib" || stem == "main");
    if stem != "mod" && !root_file {
        parts.push(stem);
    }
    parts
}

/// The first segment of every item of the use group whose `{` is at `tokens[open]`
/// (nested groups included), and the index after its `}`.
fn group_heads(tokens: &[(Tok, usize)], open: usize) -> (Vec<(String, usize)>, usize) {
    let mut heads = Vec::new();
    let mut i = open + 1;
    let mut item_start = true;
    while i < tokens.len() {
        match &tokens[i].0 {
            Tok::Punct('}') => return (heads, i + 1),
            Tok::Punct(',') => {
                item_start = true;
                i += 1;
            }
            Tok::Punct('{') if item_start => {
                let (inner, next) = group_heads(tokens, i);
                heads.extend(inner);
                i = next;
                item_start = false;
            }
            Tok::Punct('{') => {
                // `b::{c, d}`: the item's head is already taken; skip its group.
                let (_, next) = group_heads(tokens, i);
                i = next;
            }
            Tok::Ident(name) if item_start => {
                heads.push((name.clone(), tokens[i].1));
                item_start = false;
                i += 1;
            }
            _ => {
                item_start = false;
                i += 1;
            }
        }
    }
    (heads, i)
}

/// The edges between the top-level modules of one crate, given its files as
/// (path under `src/`, source). References to the crate root's own items, to re-exports of
/// other crates and within one top-level module are not edges.
fn crate_edges(files: &[(PathBuf, String)]) -> Vec<Edge> {
    let top_level: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| module_path(path).into_iter().next())
        .collect();
    let mut edges = BTreeSet::new();
    for (path, source) in files {
        let file_module = module_path(path);
        let tokens = lex(source);
        // Inline modules (`mod tests { … }`): (name, brace depth inside them).
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut pending_mod: Option<String> = None;
        let mut i = 0;
        while i < tokens.len() {
            let tok = &tokens[i].0;
            match tok {
                Tok::Punct('{') => {
                    depth += 1;
                    if let Some(name) = pending_mod.take() {
                        inline.push((name, depth));
                    }
                }
                Tok::Punct('}') => {
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                Tok::Punct(';') => pending_mod = None,
                Tok::Ident(word) if word == "mod" => {
                    if let Some((Tok::Ident(name), _)) = tokens.get(i + 1) {
                        pending_mod = Some(name.clone());
                    }
                }
                _ => {}
            }
            let starts_path = matches!(tok, Tok::Ident(w) if w == "crate" || w == "super")
                && tokens.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                && !(i > 0 && tokens[i - 1].0 == Tok::PathSep);
            if !starts_path {
                i += 1;
                continue;
            }
            // The absolute module path the reference starts from.
            let mut base: Vec<String> = Vec::new();
            let mut j = i;
            if tokens[i].0 == Tok::Ident("super".into()) {
                base = file_module.clone();
                base.extend(inline.iter().map(|(name, _)| name.clone()));
                while tokens.get(j).map(|t| &t.0) == Some(&Tok::Ident("super".into()))
                    && tokens.get(j + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                {
                    base.pop();
                    j += 2;
                }
            } else {
                j += 2;
            }
            let mut heads: Vec<(String, usize)> = Vec::new();
            if let Some(first) = base.first() {
                heads.push((first.clone(), tokens[i].1));
            } else {
                match tokens.get(j).map(|t| &t.0) {
                    Some(Tok::Ident(name)) => heads.push((name.clone(), tokens[j].1)),
                    Some(Tok::Punct('{')) => heads = group_heads(&tokens, j).0,
                    _ => {}
                }
            }
            let from = file_module.first().cloned().unwrap_or_default();
            for (to, line) in heads {
                if from.is_empty() || to == from || !top_level.contains(&to) {
                    continue;
                }
                edges.insert(Edge {
                    from: from.clone(),
                    to,
                    at: format!("{}:{line}", path.display()),
                });
            }
            i = j.max(i + 1);
        }
    }
    edges.into_iter().collect()
}

/// Every cycle of the module graph, one per strongly connected component, spelled
/// `a → b → c → a` (starting from the component's smallest name), each followed by where its
/// edges are.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
        graph.entry(&e.to).or_default();
    }
    // Tarjan's strongly connected components.
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &graph[v] {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, &graph, &mut state);
        }
    }
    let mut found = Vec::new();
    for component in state.components.iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<&str> = component.iter().copied().collect();
        let start = *members.iter().next().unwrap();
        // A shortest way back to `start` inside the component (breadth first).
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(v) = queue.pop_front() {
            for &w in &graph[v] {
                if !members.contains(w) {
                    continue;
                }
                if w == start {
                    last = Some(v);
                    break 'search;
                }
                if !previous.contains_key(w) {
                    previous.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![start];
        let mut v = last.unwrap();
        while v != start {
            path.push(v);
            v = previous[v];
        }
        path[1..].reverse();
        path.push(start);
        let mut text = path.join(" → ");
        if members.len() > path.len() - 1 {
            let _ = write!(
                text,
                "  (one cycle of the component {{{}}})",
                members.iter().copied().collect::<Vec<_>>().join(", ")
            );
        }
        for pair in path.windows(2) {
            let at: Vec<&str> = edges
                .iter()
                .filter(|e| e.from == pair[0] && e.to == pair[1])
                .map(|e| e.at.as_str())
                .collect();
            let _ = write!(text, "\n    {} → {}: {}", pair[0], pair[1], at.join(", "));
        }
        found.push(text);
    }
    found
}

// ---------------------------------------------------------------------------------------
// The workspace.

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The workspace members named in the root Cargo.toml (`members = ["core", …]`).
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members").expect("workspace members");
    let list = &manifest[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    let members: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    for expected in ["core", "server", "dev-idp"] {
        assert!(
            members.iter().any(|m| m == expected),
            "{expected} not among {members:?}"
        );
    }
    members
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, source).
fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), source));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// The top-level module edges of a member crate, with paths shown from the workspace root.
fn member_edges(member: &str) -> Vec<Edge> {
    let src = workspace_root().join(member).join("src");
    let files = rust_files(&src);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    crate_edges(&files)
        .into_iter()
        .map(|e| Edge {
            at: format!("{member}/src/{}", e.at),
            ..e
        })
        .collect()
}

/// The edges of `from` to any of `forbidden`, one line each, for a failure message.
fn forbidden_edges(edges: &[Edge], from: &str, forbidden: &[&str]) -> Vec<String> {
    edges
        .iter()
        .filter(|e| e.from == from && forbidden.contains(&e.to.as_str()))
        .map(|e| format!("{} → {} at {}", e.from, e.to, e.at))
        .collect()
}

#[test]
fn no_module_cycles_in_any_crate() {
    let mut report = String::new();
    for member in members() {
        for cycle in cycles(&member_edges(&member)) {
            let _ = writeln!(report, "{member}: {cycle}");
        }
    }
    assert!(
        report.is_empty(),
        "top-level modules import each other in a cycle (docs/architecture.md):\n{report}"
    );
}

#[test]
fn core_depends_on_no_io_or_transport_crate() {
    const FORBIDDEN: [&str; 10] = [
        "actix-web",
        "actix",
        "tokio",
        "sqlx",
        "reqwest",
        "openidconnect",
        "notify",
        "prometheus",
        "tonic",
        "hyper",
    ];
    let manifest = std::fs::read_to_string(workspace_root().join("core/Cargo.toml")).unwrap();
    let dependencies = dependency_names(&manifest);
    assert!(
        dependencies.iter().any(|d| d == "regorus"),
        "the manifest reader found no dependencies: {dependencies:?}"
    );
    let named: Vec<&String> = dependencies
        .iter()
        .filter(|d| FORBIDDEN.contains(&d.as_str()))
        .collect();
    assert!(
        named.is_empty(),
        "gatehouse-core depends on {named:?} (docs/architecture.md: no I/O or transport crate in core)"
    );
}

/// The crate names of a manifest's `[dependencies]` (and `[target.….dependencies]`,
/// `[dependencies.name]`), by their `package = "…"` when renamed.
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_dependencies = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_dependencies = table == "dependencies" || table.ends_with(".dependencies");
            if let Some(name) = table.strip_prefix("dependencies.") {
                names.push(name.trim_matches('"').to_string());
            }
            continue;
        }
        if !in_dependencies || line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let key = key.split('.').next().unwrap_or(key).trim_matches('"');
        names.push(key.to_string());
        if let Some(rest) = value.split("package").nth(1)
            && let Some(package) = rest.split('"').nth(1)
        {
            names.push(package.to_string());
        }
    }
    names
}

#[test]
fn policy_lives_in_the_core_and_names_no_store_or_http() {
    // The policy engine is gatehouse-core's, whose dependencies cannot reach a store or a
    // transport; the service has no policy module of its own that could grow such an edge
    // (the reloader, which records versions in the store, is the service's `reload`).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(root.join("core/src/policy/mod.rs").is_file());
    assert!(
        !root.join("server/src/policy").exists() && !root.join("server/src/policy.rs").exists(),
        "the service must not grow its own policy module"
    );
    for member in ["core", "server"] {
        let broken = forbidden_edges(&member_edges(member), "policy", &["store", "http"]);
        assert!(
            broken.is_empty(),
            "policy must not name store or http (docs/architecture.md):\n{}",
            broken.join("\n")
        );
    }
}

#[test]
fn server_store_names_no_audit_oidc_or_http() {
    let broken = forbidden_edges(&member_edges("server"), "store", &["audit", "oidc", "http"]);
    assert!(
        broken.is_empty(),
        "store must not name audit, oidc or http (docs/architecture.md):\n{}",
        broken.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The checker on a synthetic crate.

fn synthetic(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .map(|(path, source)| (PathBuf::from(path), source.to_string()))
        .collect()
}

fn pairs(edges: &[Edge]) -> BTreeSet<(String, String)> {
    edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone()))
        .collect()
}

#[test]
fn checker_module_paths() {
    let path = |p: &str| module_path(Path::new(p));
    assert!(path("lib.rs").is_empty());
    assert!(path("main.rs").is_empty());
    assert_eq!(path("store/mod.rs"), ["store"]);
    assert_eq!(path("store/audit.rs"), ["store", "audit"]);
    assert_eq!(path("config.rs"), ["config"]);
    assert_eq!(path("a/b/c.rs"), ["a", "b", "c"]);
}

#[test]
fn checker_finds_a_known_cycle() {
    // audit → decision → session → store → audit, spelled in four different forms.
    let files = synthetic(&[
        (
            "lib.rs",
            "pub mod audit; pub mod decision; pub mod session; pub mod store; pub mod util;",
        ),
        ("audit/mod.rs", "mod record;"),
        ("audit/record.rs", "use crate::decision::Verdict;"),
        (
            "decision.rs",
            "use crate::{\n    util,\n    session::{self, Identity},\n};",
        ),
        ("session/mod.rs", "pub mod rows;"),
        (
            "session/rows.rs",
            "fn f() { let _ = super::super::store::Store::open(); }",
        ),
        ("store/mod.rs", "pub mod write;"),
        ("store/write.rs", "fn f(r: &crate::audit::Record) {}"),
        ("util.rs", "pub fn helper() {}"),
    ]);
    let edges = crate_edges(&files);
    let expected: BTreeSet<(String, String)> = [
        ("audit", "decision"),
        ("decision", "util"),
        ("decision", "session"),
        ("session", "store"),
        ("store", "audit"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs(&edges), expected);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    let first_line = found[0].lines().next().unwrap();
    assert_eq!(first_line, "audit → decision → session → store → audit");
    assert!(
        found[0].contains("store → audit: store/write.rs:1"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("decision → session: decision.rs:3"),
        "{}",
        found[0]
    );
}

#[test]
fn checker_accepts_a_known_dag() {
    // The same modules with the store no longer naming audit: a DAG, and everything that
    // only looks like a path (comments, doc comments, strings, char literals, inline test
    // modules' `super`) is not an edge.
    let files = synthetic(&[
        (
            "lib.rs",
            "//! See crate::store and crate::audit.\npub mod audit; pub mod decision; \
             pub mod session; pub mod store;\npub use other_crate::request;\npub fn root_item() {}",
        ),
        (
            "audit/mod.rs",
            "use crate::decision::Verdict;\nuse crate::request::Thing;\nuse crate::root_item;",
        ),
        ("decision.rs", "use crate::{session::Identity};"),
        (
            "session/mod.rs",
            "use super::store::Store;\nuse self::x::Y;",
        ),
        (
            "store/mod.rs",
            r####"
            /// Writes rows for crate::audit (a doc comment, not an edge).
            // crate::audit::Record in a line comment
            /* crate::audit in a block comment /* nested crate::session */ still comment */
            const A: &str = "crate::audit::Record";
            const B: &str = r#"use crate::{audit, session};"#;
            const C: char = '{';
            const D: &[u8] = b"crate::audit";
            fn f<'a>(x: &'a str) -> &'a str { x }
            pub mod write;
            mod tests {
                use super::*;
                use super::write::Row;
            }
            "####,
        ),
        (
            "store/write.rs",
            "use super::super::store::Row; use super::*;",
        ),
        (
            "config.rs",
            "pub fn store() {}\n#[cfg(test)]\nmod tests {\n    use super::store;\n    \
             use super::super::decision;\n}",
        ),
    ]);
    let edges = crate_edges(&files);
    let expected: BTreeSet<(String, String)> = [
        ("audit", "decision"),
        ("decision", "session"),
        ("session", "store"),
        ("config", "decision"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs(&edges), expected);
    assert!(cycles(&edges).is_empty());
    assert_eq!(
        forbidden_edges(&edges, "store", &["audit", "oidc", "http"]),
        Vec::<String>::new()
    );
    assert_eq!(
        forbidden_edges(&edges, "audit", &["decision"]),
        ["audit → decision at audit/mod.rs:1"]
    );
}

#[test]
fn checker_reads_dependency_tables() {
    let manifest = r#"
[package]
name = "x"
tokio = "not a dependency"

[dependencies]
serde = { workspace = true }
regorus.workspace = true
web = { package = "actix-web", version = "4" }  # renamed

[dependencies.hyper]
version = "1"

[target.'cfg(unix)'.dependencies]
notify = "8"

[dev-dependencies]
sqlx = "0.9"
"#;
    let names = dependency_names(manifest);
    assert_eq!(
        names,
        ["serde", "regorus", "web", "actix-web", "hyper", "notify"]
    );
}
