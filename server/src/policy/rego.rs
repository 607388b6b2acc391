//! Rego route policies, compiled once per bundle to regorus bytecode (RVM).
//!
//! Each route package (e.g. `routes.restaurant`) defines `allow` and optionally `reason`,
//! `headers` and `status`. We add one generated wrapper package per route package whose
//! `decision` rule gathers those four fields with defaults, so a request costs one
//! evaluation of one entry point.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use regorus::Value;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;

use super::error::PolicyError;

/// The generated wrappers live under this package root, which authors will not use.
const WRAPPER_ROOT: &str = "gatehouse_generated_decisions";
/// A bound on the work of one evaluation: a runaway policy fails closed instead of
/// stalling the ingress. Generous for real policies (ours use a few hundred).
const MAX_INSTRUCTIONS: usize = 200_000;

/// A `.rego` file of the bundle: its display path and text.
#[derive(Debug, Clone)]
pub struct RegoSource {
    pub path: String,
    pub text: String,
}

/// How many route entry points share one RVM program. Each entry point takes a register
/// of the program's 255-register main window, so a bundle of a few hundred routes in one
/// program fails to compile ("Register overflow"); chunks keep any bundle size working.
const ENTRIES_PER_PROGRAM: usize = 32;

/// Every route package of a bundle, compiled into RVM programs of up to
/// [`ENTRIES_PER_PROGRAM`] entry points each.
pub struct RegoPolicies {
    programs: Vec<Arc<Program>>,
    /// Rego package (without `data.`) → (program, entry point index in that program).
    entries: BTreeMap<String, (usize, usize)>,
}

impl std::fmt::Debug for RegoPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicies")
            .field("entries", &self.entries)
            .finish()
    }
}

fn wrapper_package(index: usize) -> String {
    format!("{WRAPPER_ROOT}.p{index}")
}

fn wrapper_module(index: usize, package: &str) -> String {
    let p = format!("data.{package}");
    format!(
        "package {wrapper}\n\
         default allow := false\n\
         allow := {p}.allow\n\
         default reason := \"\"\n\
         reason := {p}.reason\n\
         default headers := {{}}\n\
         headers := {p}.headers\n\
         default status := 0\n\
         status := {p}.status\n\
         decision := {{\"allow\": allow, \"reason\": reason, \"headers\": headers, \"status\": status}}\n",
        wrapper = wrapper_package(index)
    )
}

/// Parses every module into a fresh engine; returns the engine and package → files.
pub fn load_engine(
    sources: &[RegoSource],
) -> Result<(regorus::Engine, BTreeMap<String, Vec<String>>), PolicyError> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for source in sources {
        let package = engine
            .add_policy(source.path.clone(), source.text.clone())
            .map_err(|e| PolicyError::from_rego(&source.path, &format!("{e:#}")))?;
        let package = package
            .strip_prefix("data.")
            .unwrap_or(&package)
            .to_string();
        if package == WRAPPER_ROOT || package.starts_with(&format!("{WRAPPER_ROOT}.")) {
            return Err(PolicyError::at(
                &source.path,
                1,
                1,
                format!("package name `{package}` is reserved"),
            ));
        }
        packages
            .entry(package)
            .or_default()
            .push(source.path.clone());
    }
    Ok((engine, packages))
}

/// The `data.<path>` references in a module's text (e.g. `data.lib.tenants`).
fn data_references(text: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("data.") {
        let after = &rest[at + 5..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        let path = after[..len].trim_end_matches('.');
        if !path.is_empty() {
            refs.push(path);
        }
        rest = &after[len..];
    }
    refs
}

/// The files `packages` need: their own and, transitively, those of every package their
/// files reference through `data.` (or import).
fn closure(
    roots: &[&str],
    packages: &BTreeMap<String, Vec<String>>,
    texts: &HashMap<&str, &str>,
) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    while let Some(package) = queue.pop() {
        if !seen.insert(package.clone()) {
            continue;
        }
        for file in packages.get(&package).into_iter().flatten() {
            files.insert(file.clone());
            for r in data_references(texts.get(file.as_str()).copied().unwrap_or("")) {
                for candidate in packages.keys() {
                    let related = candidate == r
                        || candidate
                            .strip_prefix(r)
                            .is_some_and(|t| t.starts_with('.'))
                        || r.strip_prefix(candidate.as_str())
                            .is_some_and(|t| t.starts_with('.'));
                    if related && !seen.contains(candidate) {
                        queue.push(candidate.clone());
                    }
                }
            }
        }
    }
    files
}

impl RegoPolicies {
    /// Compiles `sources` for the route packages in `required` (package → where it is
    /// referenced, for error messages: (file, line, col)).
    ///
    /// regorus caps one RVM program at 256 source files, 4,000 rules and 255 registers in
    /// its main window, so route packages are compiled in chunks, each from an engine holding
    /// only the files those packages need.
    pub fn compile(
        sources: &[RegoSource],
        required: &BTreeMap<String, (String, usize, usize)>,
    ) -> Result<Option<RegoPolicies>, PolicyError> {
        // Parse everything once: every file must compile, used by a route or not.
        let (engine, packages) = load_engine(sources)?;
        if required.is_empty() {
            return Ok(None);
        }
        for (package, (file, line, col)) in required {
            let Some(files) = packages.get(package) else {
                return Err(PolicyError::at(
                    file,
                    *line,
                    *col,
                    format!(
                        "policy `{package}` is not the package of any .rego file in the bundle"
                    ),
                ));
            };
            let defines_allow = files.iter().any(|f| {
                engine
                    .has_declared_rule_rooted_at(f, "allow")
                    .unwrap_or(false)
            });
            if !defines_allow {
                return Err(PolicyError::at(
                    &files[0],
                    1,
                    1,
                    format!(
                        "package `{package}` must define `allow` (e.g. `default allow := false`)"
                    ),
                ));
            }
        }
        let texts: HashMap<&str, &str> = sources
            .iter()
            .map(|s| (s.path.as_str(), s.text.as_str()))
            .collect();
        let required: Vec<&String> = required.keys().collect();
        let mut programs = Vec::new();
        let mut entries = BTreeMap::new();
        for (chunk_index, chunk) in required.chunks(ENTRIES_PER_PROGRAM).enumerate() {
            let roots: Vec<&str> = chunk.iter().map(|p| p.as_str()).collect();
            let needed = closure(&roots, &packages, &texts);
            let chunk_sources: Vec<RegoSource> = sources
                .iter()
                .filter(|s| needed.contains(&s.path))
                .cloned()
                .collect();
            let (mut engine, _) = load_engine(&chunk_sources)?;
            let mut names = Vec::with_capacity(chunk.len());
            for (offset, package) in chunk.iter().enumerate() {
                let index = chunk_index * ENTRIES_PER_PROGRAM + offset;
                let path = format!("<gatehouse>/{}.rego", wrapper_package(index));
                engine
                    .add_policy(path.clone(), wrapper_module(index, package))
                    .map_err(|e| PolicyError::from_rego(&path, &format!("{e:#}")))?;
                names.push(format!("data.{}.decision", wrapper_package(index)));
            }
            let compiled = engine
                .compile_with_entrypoint(&names[0].as_str().into())
                .map_err(|e| PolicyError::from_rego(chunk[0], &format!("{e:#}")))?;
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let program = Compiler::compile_from_policy(&compiled, &name_refs).map_err(|e| {
                PolicyError::at(
                    &packages
                        .get(chunk[0].as_str())
                        .and_then(|f| f.first().cloned())
                        .unwrap_or_default(),
                    1,
                    1,
                    format!(
                        "cannot compile packages {} to bytecode: {e:#}",
                        roots.join(", ")
                    ),
                )
            })?;
            for (package, name) in chunk.iter().zip(&names) {
                let index = program
                    .entry_points
                    .get_index_of(name.as_str())
                    .ok_or_else(|| {
                        PolicyError::at(
                            "<gatehouse>",
                            1,
                            1,
                            format!("entry point {name} missing after compile"),
                        )
                    })?;
                entries.insert((*package).clone(), (programs.len(), index));
            }
            programs.push(program);
        }
        Ok(Some(RegoPolicies { programs, entries }))
    }

    pub fn has_package(&self, package: &str) -> bool {
        self.entries.contains_key(package)
    }

    /// Evaluates a route package's decision object for `input`.
    pub fn evaluate(&self, package: &str, input: Value) -> Result<Value, String> {
        let (program, index) = *self
            .entries
            .get(package)
            .ok_or_else(|| format!("package `{package}` is not compiled"))?;
        let program = self
            .programs
            .get(program)
            .ok_or("program index out of range")?;
        with_vm(program, |vm| {
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            vm.set_input(input);
            let result = vm
                .execute_entry_point_by_index(index)
                .map_err(|e| format!("{e:#}"));
            // Do not keep this request's input alive in the idle VM.
            vm.set_input(Value::Null);
            result
        })
    }
}

/// VMs kept per thread; a few programs (bundle chunks, and the previous bundle just after
/// a reload) are in use at once.
const VMS_PER_THREAD: usize = 8;

thread_local! {
    static VMS: std::cell::RefCell<Vec<RegoVM>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's VM for `program`, creating it on first use. A VM clears all
/// per-run state (rule and builtin caches, registers, evaluated values) at the start of
/// every execution, so reusing it cannot carry one request's results into another; it
/// saves building a VM (registers, pools, caches) per request. The VM holds its `Arc` of
/// the program, so a pointer match can never be a different, later program.
fn with_vm<T>(program: &Arc<Program>, f: impl FnOnce(&mut RegoVM) -> T) -> T {
    VMS.with(|cell| {
        let Ok(mut vms) = cell.try_borrow_mut() else {
            // Re-entered (never expected): use a fresh VM rather than share one.
            let mut vm = RegoVM::new();
            vm.load_program(program.clone());
            return f(&mut vm);
        };
        let position = vms
            .iter()
            .position(|vm| Arc::ptr_eq(vm.get_program(), program));
        let position = match position {
            Some(p) => p,
            None => {
                if vms.len() >= VMS_PER_THREAD {
                    vms.remove(0);
                }
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                vms.push(vm);
                vms.len() - 1
            }
        };
        f(&mut vms[position])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_vms_never_carry_one_input_into_the_next_evaluation() {
        let sources = vec![RegoSource {
            path: "a.rego".into(),
            text: "package routes.a\ndefault allow := false\nallow if input.user.groups[_] == \"x\"\nreason := sprintf(\"%v\", [input.n])\n".into(),
        }];
        let required =
            BTreeMap::from([("routes.a".to_string(), ("routes.yaml".to_string(), 1, 1))]);
        let policies = RegoPolicies::compile(&sources, &required).unwrap().unwrap();
        for n in 0..50 {
            let groups = if n % 2 == 0 { vec!["x"] } else { vec!["y"] };
            let input =
                regorus::Value::from(serde_json::json!({"user": {"groups": groups}, "n": n}));
            let d = policies.evaluate("routes.a", input).unwrap();
            assert_eq!(
                d["allow"],
                regorus::Value::Bool(n % 2 == 0),
                "evaluation {n}"
            );
            assert_eq!(
                d["reason"],
                regorus::Value::from(n.to_string()),
                "evaluation {n}"
            );
        }
    }

    #[test]
    fn data_references_are_found() {
        let text = "package a\nimport data.lib.util\nallow if data.routes.x.allow; y := data.z";
        assert_eq!(
            data_references(text),
            vec!["lib.util", "routes.x.allow", "z"]
        );
    }

    #[test]
    fn large_bundles_compile_in_chunks_with_their_dependencies() {
        let mut sources = vec![RegoSource {
            path: "lib.rego".into(),
            text: "package lib\nteam(n) := sprintf(\"team%d\", [n])\n".into(),
        }];
        let mut required = BTreeMap::new();
        for i in 0..300 {
            sources.push(RegoSource {
                path: format!("app{i}.rego"),
                text: format!("package routes.app{i}\ndefault allow := false\nallow if data.lib.team({i}) in input.user.groups\n"),
            });
            required.insert(format!("routes.app{i}"), ("routes.yaml".to_string(), 1, 1));
        }
        let policies = RegoPolicies::compile(&sources, &required).unwrap().unwrap();
        let input = regorus::Value::from(serde_json::json!({"user": {"groups": ["team299"]}}));
        let decision = policies.evaluate("routes.app299", input.clone()).unwrap();
        assert_eq!(decision["allow"], regorus::Value::Bool(true));
        let decision = policies.evaluate("routes.app7", input).unwrap();
        assert_eq!(decision["allow"], regorus::Value::Bool(false));
    }
}
