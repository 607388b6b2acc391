//! Rego route policies, compiled once per bundle to regorus bytecode (RVM).
//!
//! Each route package (e.g. `routes.restaurant`) defines `allow` and optionally `reason`,
//! `headers` and `status`. We add one generated wrapper package per route package whose
//! `decision` rule gathers those four fields with defaults, so a request costs one
//! evaluation of one entry point.

use std::collections::BTreeMap;
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

/// Every route package of a bundle, compiled into one RVM program.
pub struct RegoPolicies {
    program: Arc<Program>,
    /// Rego package (without `data.`) → entry point index in `program`.
    entries: BTreeMap<String, usize>,
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

impl RegoPolicies {
    /// Compiles `sources` for the route packages in `required` (package → where it is
    /// referenced, for error messages: (file, line, col)).
    pub fn compile(
        sources: &[RegoSource],
        required: &BTreeMap<String, (String, usize, usize)>,
    ) -> Result<Option<RegoPolicies>, PolicyError> {
        let (mut engine, packages) = load_engine(sources)?;
        if required.is_empty() {
            return Ok(None);
        }
        let mut entry_names = Vec::with_capacity(required.len());
        for (index, (package, (file, line, col))) in required.iter().enumerate() {
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
            let path = format!("<gatehouse>/{}.rego", wrapper_package(index));
            engine
                .add_policy(path.clone(), wrapper_module(index, package))
                .map_err(|e| PolicyError::from_rego(&path, &format!("{e:#}")))?;
            entry_names.push((
                package.clone(),
                format!("data.{}.decision", wrapper_package(index)),
            ));
        }
        let first = entry_names[0].1.as_str();
        let compiled = engine
            .compile_with_entrypoint(&first.into())
            .map_err(|e| PolicyError::from_rego(&entry_names[0].0, &format!("{e:#}")))?;
        let names: Vec<&str> = entry_names.iter().map(|(_, n)| n.as_str()).collect();
        let program = Compiler::compile_from_policy(&compiled, &names)
            .map_err(|e| PolicyError::from_rego(&entry_names[0].0, &format!("{e:#}")))?;
        let mut entries = BTreeMap::new();
        for (package, name) in &entry_names {
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
            entries.insert(package.clone(), index);
        }
        Ok(Some(RegoPolicies { program, entries }))
    }

    pub fn has_package(&self, package: &str) -> bool {
        self.entries.contains_key(package)
    }

    /// Evaluates a route package's decision object for `input`.
    pub fn evaluate(&self, package: &str, input: Value) -> Result<Value, String> {
        let index = *self
            .entries
            .get(package)
            .ok_or_else(|| format!("package `{package}` is not compiled"))?;
        let mut vm = RegoVM::new();
        vm.load_program(self.program.clone());
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        vm.set_input(input);
        vm.execute_entry_point_by_index(index)
            .map_err(|e| format!("{e:#}"))
    }
}
