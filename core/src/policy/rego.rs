//! Rego route policies, compiled once per bundle to regorus bytecode (RVM).
//!
//! Each route package (e.g. `routes.restaurant`) defines `allow` and optionally `reason`,
//! `headers` and `status`. We add one generated wrapper package per route package whose
//! `decision` rule gathers those four fields with defaults, so a request costs one
//! evaluation of one entry point.
//!
//! Conflicts fail closed, as in OPA (`eval_conflict_error`). regorus 0.14.1 has two
//! evaluators and only one of them reports conflicts:
//! - the RVM (bytecode, ~4 µs) hides them: two complete definitions with different values
//!   make the rule undefined (its `default` is skipped too), one body iterating to several
//!   values keeps the last one, and an object comprehension or a partial object rule keeps
//!   the last value of a duplicate key. Nothing in the program's answer tells these apart
//!   from a rule that simply did not fire, and it has no option to make them errors.
//! - the interpreter (`Engine`) raises OPA's errors for all of them ("rule conflicts with
//!   rule at…", "rules must not produce multiple outputs", "value for key … generated
//!   multiple times"), and costs a few times more per evaluation.
//!
//! So each route is checked once, when the bundle is compiled: [`conflict_risk`] walks the
//! RVM bytecode reachable from the route's entry point and proves that nothing in it can
//! conflict (every complete rule and function has one definition or definitions with one
//! static value, no iteration feeds a non-constant value into a complete rule, no object
//! comprehension, no partial object rule, no dynamic `data` lookup). Such routes, which is
//! what ordinary policies look like, run on the RVM; any other route runs on the interpreter,
//! so a conflict it can produce is an error (→ 500), never an allow without its headers.
//! A policy cannot conflict-check itself in Rego: a complete rule has one value or none, so
//! the wrapper cannot collect the values of its definitions, and rewriting the author's rules
//! into partial sets would change what `else`, defaults and the bundle's own tests mean.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use regorus::Value;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::instructions::{ComprehensionMode, Instruction, LoopMode};
use regorus::rvm::program::{Program, RuleType};
use regorus::rvm::vm::RegoVM;
use regorus::unstable::{Expr, Module, Parser, Ref, Rule, RuleHead, Source};
use regorus::utils::limits::PolicyLengthConfig;

use super::error::{Engine, EvalError, PolicyError};

/// The generated wrappers live under this package root, which authors will not use.
const WRAPPER_ROOT: &str = "gatehouse_generated_decisions";
/// A bound on the work of one evaluation: a runaway policy fails closed instead of
/// stalling the ingress. Generous for real policies (ours use a few hundred).
const MAX_INSTRUCTIONS: usize = 200_000;
/// The same bound for routes evaluated by the interpreter, which counts time, not
/// instructions: far above what a real policy takes (tens of microseconds).
const INTERPRETER_TIME_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

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

/// How one route package is evaluated.
#[derive(Debug, Clone)]
enum Entry {
    /// Provably conflict-free: the RVM program and the entry point's index in it.
    /// `engine` and `rule`: the chunk's interpreter, which the bundle's test inputs are
    /// checked against (both engines must decide them alike).
    Vm {
        program: usize,
        index: usize,
        engine: usize,
        rule: String,
    },
    /// May conflict: the interpreter (the chunk's engine) evaluates `rule`, so that a
    /// conflict is an error. `why` says what made the bytecode unprovable.
    Interpreter {
        engine: usize,
        rule: String,
        why: String,
    },
}

/// Every route package of a bundle, compiled into RVM programs of up to
/// [`ENTRIES_PER_PROGRAM`] entry points each, with the chunk's interpreter for the routes
/// the RVM cannot evaluate faithfully (see the module comment).
pub struct RegoPolicies {
    programs: Vec<Arc<Program>>,
    /// The bundle's data files (docs/policies.md), given to every VM once when it is made.
    data: Value,
    /// Per chunk that needs one: its prepared interpreter, cloned once per thread.
    engines: Vec<Arc<regorus::Engine>>,
    /// Rego package (without `data.`) → how to evaluate it.
    entries: BTreeMap<String, Entry>,
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

/// regorus's length limits, widened to the longest line of `texts`. OPA has no limit on a
/// line's width and regorus refuses lines over 1,024 columns; a resolved
/// `rego.metadata.chain()` (policy/metadata.rs) alone can be longer. The file size limit
/// (1 MiB) still bounds what a module can hold.
fn length_limits<'a>(texts: impl IntoIterator<Item = &'a str>) -> PolicyLengthConfig {
    let longest = texts
        .into_iter()
        .flat_map(str::lines)
        // regorus counts a tab as four columns.
        .map(|l| {
            l.chars()
                .map(|c| if c == '\t' { 4 } else { 1 })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    let mut limits = PolicyLengthConfig::default();
    if let Some(width) = u32::try_from(longest)
        .ok()
        .and_then(|w| std::num::NonZeroU32::new(w.saturating_add(2)))
        .filter(|w| *w > limits.max_col)
    {
        limits.max_col = width;
    }
    limits
}

/// The reference a rule's head defines (`p`, `a.b[x]`, `f` of `f(x)`), default rules included.
pub(crate) fn rule_head_ref(rule: &Rule) -> &Ref<Expr> {
    match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    }
}

/// One module's syntax tree, parsed as the engines parse it (Rego v1, the same limits).
pub(crate) fn parse_module(source: &RegoSource) -> Result<Module, PolicyError> {
    let error = |e: &dyn std::fmt::Display| PolicyError::from_rego(&source.path, &format!("{e:#}"));
    let parsed_source =
        Source::from_contents(source.path.clone(), source.text.clone()).map_err(|e| error(&e))?;
    let mut parser = Parser::new(&parsed_source).map_err(|e| error(&e))?;
    parser.set_max_col(length_limits([source.text.as_str()]).max_col);
    parser.enable_rego_v1().map_err(|e| error(&e))?;
    parser.parse().map_err(|e| error(&e))
}

/// Parses every module into a fresh engine; returns the engine and package → files.
pub fn load_engine(
    sources: &[RegoSource],
    data: &Value,
) -> Result<(regorus::Engine, BTreeMap<String, Vec<String>>), PolicyError> {
    super::builtins::register();
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    let limits = length_limits(sources.iter().map(|s| s.text.as_str()));
    engine.set_policy_length_config(limits);
    // OPA's default (and the RVM's): a builtin that fails, such as `to_number("abc")`, is
    // undefined rather than an error, so `not to_number(x)` means what policy authors
    // read in OPA's documentation. regorus's interpreter defaults to strict.
    engine.set_strict_builtin_errors(false);
    engine
        .add_data(data.clone())
        .map_err(|e| PolicyError::at("<data>", 1, 1, format!("cannot load data: {e:#}")))?;
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
pub(crate) fn data_references(text: &str) -> Vec<&str> {
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
        data: &Value,
        required: &BTreeMap<String, (String, usize, usize)>,
    ) -> Result<Option<RegoPolicies>, PolicyError> {
        let sources = &*super::metadata::resolve(sources)?;
        // Parse everything once: every file must compile, used by a route or not.
        let (engine, packages) = load_engine(sources, data)?;
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
        let mut engines = Vec::new();
        let mut entries = BTreeMap::new();
        for (chunk_index, chunk) in required.chunks(ENTRIES_PER_PROGRAM).enumerate() {
            let roots: Vec<&str> = chunk.iter().map(|p| p.as_str()).collect();
            let needed = closure(&roots, &packages, &texts);
            let chunk_sources: Vec<RegoSource> = sources
                .iter()
                .filter(|s| needed.contains(&s.path))
                .cloned()
                .collect();
            let (mut engine, _) = load_engine(&chunk_sources, data)?;
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
            let first_file = packages
                .get(chunk[0].as_str())
                .and_then(|f| f.first().cloned())
                .unwrap_or_default();
            // The compiler's error names the call it refused (`app.rego:5:3`, "Unknown
            // function: 'no_such.fn'"); the bundle's first file is only the fallback.
            let refused = |e: &dyn std::fmt::Display, which: &str| match PolicyError::from_rego(
                &first_file,
                &format!("{e:#}"),
            ) {
                PolicyError::Load {
                    file,
                    line,
                    col,
                    message,
                    detail,
                } => PolicyError::Load {
                    file,
                    line,
                    col,
                    message: format!("cannot compile {which} to bytecode: {message}"),
                    detail,
                },
                other => other,
            };
            // The RVM compiler lacks some of what the interpreter runs (`with`, partial
            // objects with constant keys, …): a route using them runs on the interpreter.
            // An unknown function is still refused here, whichever engine would run it.
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut groups: Vec<(Compiled, Vec<usize>)> = Vec::new();
            match Compiler::compile_from_policy(&compiled, &name_refs) {
                Ok(program) => {
                    groups.push((Compiled::Program(program), (0..names.len()).collect()))
                }
                Err(e) if !rvm_limitation(&e.to_string()) => {
                    return Err(refused(&e, &format!("packages {}", roots.join(", "))));
                }
                Err(_) => {
                    for (offset, name) in names.iter().enumerate() {
                        match Compiler::compile_from_policy(&compiled, &[name.as_str()]) {
                            Ok(program) => groups.push((Compiled::Program(program), vec![offset])),
                            Err(e) if rvm_limitation(&e.to_string()) => {
                                let first = e.to_string();
                                let first = first.lines().next().unwrap_or("").to_string();
                                groups.push((Compiled::Unsupported(first), vec![offset]));
                            }
                            Err(e) => {
                                return Err(refused(&e, &format!("package {}", chunk[offset])));
                            }
                        }
                    }
                }
            }
            let mut chunk_engine: Option<usize> = None;
            let mut interpreter = |engines: &mut Vec<Arc<regorus::Engine>>| {
                *chunk_engine.get_or_insert_with(|| {
                    let mut engine = engine.clone();
                    engine.set_execution_timer_config(
                        regorus::utils::limits::ExecutionTimerConfig {
                            limit: INTERPRETER_TIME_LIMIT,
                            check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
                        },
                    );
                    engines.push(Arc::new(engine));
                    engines.len() - 1
                })
            };
            for (program, offsets) in groups {
                let program = match program {
                    Compiled::Program(program) => program,
                    Compiled::Unsupported(why) => {
                        for offset in offsets {
                            let engine = interpreter(&mut engines);
                            entries.insert(
                                chunk[offset].clone(),
                                Entry::Interpreter {
                                    engine,
                                    rule: names[offset].clone(),
                                    why: format!(
                                        "the bytecode compiler does not support it: {why}"
                                    ),
                                },
                            );
                        }
                        continue;
                    }
                };
                // A data file at the path of a rule is a conflict OPA refuses; the VM checks it.
                vm_for(&program, data).map_err(|e| {
                    PolicyError::at(
                        "<data>",
                        1,
                        1,
                        format!("the bundle's data conflicts with its rules: {e}"),
                    )
                })?;
                for offset in offsets {
                    let (package, name) = (chunk[offset], &names[offset]);
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
                    let entry = match conflict_risk(&program, program.entry_points[index]) {
                        None => Entry::Vm {
                            program: programs.len(),
                            index,
                            engine: interpreter(&mut engines),
                            rule: name.clone(),
                        },
                        Some(why) => {
                            tracing::debug!(
                                package = %package,
                                reason = %why,
                                "Rego route evaluated by the interpreter so that conflicts are errors"
                            );
                            Entry::Interpreter {
                                engine: interpreter(&mut engines),
                                rule: name.clone(),
                                why,
                            }
                        }
                    };
                    entries.insert(package.clone(), entry);
                }
                programs.push(program);
            }
        }
        Ok(Some(RegoPolicies {
            programs,
            data: data.clone(),
            engines,
            entries,
        }))
    }

    pub fn has_package(&self, package: &str) -> bool {
        self.entries.contains_key(package)
    }

    /// Why `package` is evaluated by the interpreter rather than the RVM, if it is.
    pub fn interpreter_reason(&self, package: &str) -> Option<&str> {
        match self.entries.get(package)? {
            Entry::Vm { .. } => None,
            Entry::Interpreter { why, .. } => Some(why),
        }
    }

    /// Evaluates a route package's decision object for `input`. A conflict the policy
    /// produces is an error.
    pub fn evaluate(&self, package: &str, input: Value) -> Result<Value, EvalError> {
        let not_compiled = || EvalError::NotCompiled(format!("package `{package}`"));
        let entry = self.entries.get(package).ok_or_else(not_compiled)?;
        match entry {
            Entry::Vm { program, index, .. } => {
                let program = self.programs.get(*program).ok_or_else(not_compiled)?;
                with_vm(program, &self.data, |vm| {
                    vm.set_max_instructions(MAX_INSTRUCTIONS);
                    vm.set_input(input);
                    let result = vm
                        .execute_entry_point_by_index(*index)
                        .map_err(|e| EvalError::engine(Engine::RegoVm, e));
                    // Do not keep this request's input alive in the idle VM.
                    vm.set_input(Value::Null);
                    result
                })
            }
            Entry::Interpreter { engine, rule, .. } => self.interpret(*engine, rule, input),
        }
    }

    fn interpret(&self, engine: usize, rule: &str, input: Value) -> Result<Value, EvalError> {
        let engine = self
            .engines
            .get(engine)
            .ok_or_else(|| EvalError::NotCompiled(format!("rule `{rule}`")))?;
        with_engine(engine, |engine| {
            engine.set_input(input);
            let result = engine
                .eval_rule(rule.to_string())
                .map_err(|e| EvalError::engine(Engine::RegoInterpreter, e));
            engine.set_input(Value::Null);
            result
        })
    }

    /// The route packages the bytecode VM serves.
    pub fn packages_on_vm(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Vm { .. }))
            .map(|(p, _)| p.as_str())
    }

    /// For a route the VM serves: checks that the interpreter, which runs the bundle's
    /// tests, decides `input` as the VM does, so passing tests vouch for the live engine.
    pub fn engines_agree(&self, package: &str, input: &Value) -> Result<(), EnginesDisagree> {
        let Some(Entry::Vm { engine, rule, .. }) = self.entries.get(package) else {
            return Ok(());
        };
        let vm = self.evaluate(package, input.clone());
        let interpreted = self.interpret(*engine, rule, input.clone());
        match (vm, interpreted) {
            (Ok(a), Ok(b)) if a == b => Ok(()),
            (Err(_), Err(_)) => Ok(()),
            // A route the VM serves is proven conflict-free, so an interpreter error here is
            // its wall-clock limit on a loaded machine: no answer to compare.
            (Ok(_), Err(_)) => Ok(()),
            (vm, interpreted) => Err(EnginesDisagree {
                vm: show(&vm),
                interpreter: show(&interpreted),
            }),
        }
    }
}

/// The bytecode VM and the interpreter decided one input differently; the bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the bytecode VM, which serves the route, decides {vm} where the interpreter, which runs the tests, decides {interpreter}"
)]
pub struct EnginesDisagree {
    pub vm: String,
    pub interpreter: String,
}

fn show(result: &Result<Value, EvalError>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(e) => format!("an error ({})", e.to_string().lines().last().unwrap_or("")),
    }
}

/// The value of `rule` (a full path such as `data.c.x`) in the module `text` for `input`,
/// on the bytecode VM and on the interpreter, configured as for routes and tests. The
/// conformance table (`core/tests/conformance.rs`) holds both to OPA's answers.
pub fn evaluate_on_both_engines(
    text: &str,
    rule: &str,
    input: Value,
) -> [Result<Value, EvalError>; 2] {
    let source = [RegoSource {
        path: "conformance.rego".into(),
        text: text.into(),
    }];
    evaluate_modules_on_both_engines(&source, rule, input)
}

/// [`evaluate_on_both_engines`] over several modules (annotations across files, for one).
pub fn evaluate_modules_on_both_engines(
    sources: &[RegoSource],
    rule: &str,
    input: Value,
) -> [Result<Value, EvalError>; 2] {
    let loaded = super::metadata::resolve(sources)
        .and_then(|sources| load_engine(&sources, &Value::new_object()));
    let mut engine = match loaded {
        Ok((engine, _)) => engine,
        Err(e) => {
            let e = EvalError::engine(Engine::RegoInterpreter, e);
            return [Err(e.clone()), Err(e)];
        }
    };
    fn on_vm(e: impl std::fmt::Display) -> EvalError {
        EvalError::engine(Engine::RegoVm, e)
    }
    let vm = (|| {
        let compiled = engine
            .compile_with_entrypoint(&rule.into())
            .map_err(on_vm)?;
        let program = Compiler::compile_from_policy(&compiled, &[rule]).map_err(on_vm)?;
        let mut vm = vm_for(&program, &Value::new_object())?;
        vm.set_input(input.clone());
        vm.execute_entry_point_by_name(rule).map_err(on_vm)
    })();
    engine.set_input(input);
    let interpreter = engine
        .eval_rule(rule.to_string())
        .map_err(|e| EvalError::engine(Engine::RegoInterpreter, e));
    [vm, interpreter]
}

/// A bytecode program, or why the RVM compiler could not make one (one of its limitations,
/// not a mistake in the policy): the routes it serves then run on the interpreter.
enum Compiled {
    Program(Arc<Program>),
    Unsupported(String),
}

/// Whether an RVM compile error is one of the compiler's limitations (the interpreter runs
/// the same code) rather than a mistake in the policy, such as an unknown function.
fn rvm_limitation(message: &str) -> bool {
    !(message.contains("Unknown function")
        || message.contains("Unknown builtin function")
        || message.contains("Not a builtin function")
        || message.contains("Undefined variable"))
}

/// Why the RVM's answer for the entry point at `entry_pc` could hide a conflict, or `None`
/// when it cannot: the rules reachable from it are walked through their bytecode.
///
/// Sound rather than complete: anything not recognised as safe is a risk, and a risk only
/// costs the route the interpreter's speed. Relies on how regorus 0.14.1 lays out code:
/// each rule body runs from its `RuleInit` to its `RuleReturn`, with loops and
/// comprehensions inline, and a complete rule's value is written by `Move` into its
/// result register.
fn conflict_risk(program: &Program, entry_pc: usize) -> Option<String> {
    let instructions = &program.instructions;
    // The instructions from `start` up to and including the first of `ends`.
    let block = |start: usize, ends: &dyn Fn(&Instruction) -> bool| -> &[Instruction] {
        let tail = instructions.get(start..).unwrap_or(&[]);
        let len = tail.iter().position(ends).map_or(tail.len(), |p| p + 1);
        &tail[..len]
    };
    let mut seen = vec![false; program.rule_infos.len()];
    let mut queue: Vec<usize> = Vec::new();
    // Rules a block calls; a dynamic `data` lookup can reach any rule.
    let calls = |code: &[Instruction], queue: &mut Vec<usize>| -> Option<String> {
        for instruction in code {
            match *instruction {
                Instruction::CallRule { rule_index, .. } => queue.push(rule_index.into()),
                Instruction::FunctionCall { params_index } => {
                    match program
                        .instruction_data
                        .get_function_call_params(params_index)
                    {
                        Some(p) => queue.push(p.func_rule_index.into()),
                        None => return Some("an unresolved function call".into()),
                    }
                }
                Instruction::VirtualDataDocumentLookup { .. } => {
                    return Some("a dynamic `data` reference".into());
                }
                Instruction::ComprehensionBegin { params_index } => {
                    match program
                        .instruction_data
                        .get_comprehension_begin_params(params_index)
                    {
                        Some(p) if !matches!(p.mode, ComprehensionMode::Object) => {}
                        _ => return Some("an object comprehension (duplicate keys)".into()),
                    }
                }
                _ => {}
            }
        }
        None
    };
    let entry_code = block(entry_pc, &|i| {
        matches!(i, Instruction::Return { .. } | Instruction::Halt {})
    });
    if let Some(why) = calls(entry_code, &mut queue) {
        return Some(why);
    }
    while let Some(rule) = queue.pop() {
        let Some(info) = program.rule_infos.get(rule) else {
            return Some(format!("an unknown rule #{rule}"));
        };
        if std::mem::replace(&mut seen[rule], true) {
            continue;
        }
        let name = &info.name;
        let single_valued =
            info.function_info.is_some() || matches!(info.rule_type, RuleType::Complete);
        if matches!(info.rule_type, RuleType::PartialObject) && info.function_info.is_none() {
            return Some(format!(
                "`{name}` is a partial object rule (duplicate keys)"
            ));
        }
        if single_valued && info.definitions.len() > 1 && !info.early_exit_on_first_success {
            return Some(format!(
                "`{name}` has several definitions that may produce different values"
            ));
        }
        let destructuring = info.destructuring_blocks.iter().flatten().map(|pc| {
            block(*pc as usize, &|i| {
                matches!(
                    i,
                    Instruction::DestructuringSuccess {} | Instruction::RuleReturn {}
                )
            })
        });
        let bodies = info
            .definitions
            .iter()
            .flatten()
            .map(|pc| block(*pc as usize, &|i| matches!(i, Instruction::RuleReturn {})));
        for code in bodies.chain(destructuring) {
            if let Some(why) = calls(code, &mut queue) {
                return Some(format!("{why} in `{name}`"));
            }
            if single_valued && iterates_to_a_varying_value(program, code, info.result_reg) {
                return Some(format!(
                    "`{name}` may produce several values by iteration in one body"
                ));
            }
        }
    }
    None
}

/// Whether `code` (a complete rule's or function's body) iterates and writes a value other
/// than a constant loaded just before into `result`: then one body can produce several
/// values, which the RVM resolves by keeping the last.
fn iterates_to_a_varying_value(program: &Program, code: &[Instruction], result: u8) -> bool {
    let iterates = code.iter().any(|i| match *i {
        Instruction::LoopStart { params_index } => !matches!(
            program.instruction_data.get_loop_params(params_index),
            Some(p) if matches!(p.mode, LoopMode::Every)
        ),
        _ => false,
    });
    if !iterates {
        return false;
    }
    code.iter().enumerate().any(|(at, i)| match *i {
        Instruction::Move { dest, src } if dest == result => {
            let constant = at
                .checked_sub(1)
                .and_then(|p| code.get(p))
                .is_some_and(|prev| {
                    matches!(*prev,
                    Instruction::Load { dest, .. }
                    | Instruction::LoadTrue { dest }
                    | Instruction::LoadFalse { dest }
                    | Instruction::LoadNull { dest }
                    | Instruction::LoadBool { dest, .. } if dest == src)
                });
            !constant
        }
        _ => false,
    })
}

/// VMs kept per thread; a few programs (bundle chunks, and the previous bundle just after
/// a reload) are in use at once.
const VMS_PER_THREAD: usize = 8;

/// A VM for `program` holding the bundle's `data`; `set_data` refuses data at the path of
/// a rule, as OPA does.
fn vm_for(program: &Arc<Program>, data: &Value) -> Result<RegoVM, EvalError> {
    let mut vm = RegoVM::new();
    vm.load_program(program.clone());
    vm.set_data(data.clone())
        .map_err(|e| EvalError::engine(Engine::RegoVm, e))?;
    Ok(vm)
}

thread_local! {
    static VMS: std::cell::RefCell<Vec<RegoVM>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's VM for `program`, creating it on first use. A VM clears all
/// per-run state (rule and builtin caches, registers, evaluated values) at the start of
/// every execution, so reusing it cannot carry one request's results into another; it
/// saves building a VM (registers, pools, caches) per request. The VM holds its `Arc` of
/// the program, so a pointer match can never be a different, later program.
fn with_vm<T>(
    program: &Arc<Program>,
    data: &Value,
    f: impl FnOnce(&mut RegoVM) -> Result<T, EvalError>,
) -> Result<T, EvalError> {
    VMS.with(|cell| {
        let Ok(mut vms) = cell.try_borrow_mut() else {
            // Re-entered (never expected): use a fresh VM rather than share one.
            let mut vm = vm_for(program, data)?;
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
                vms.push(vm_for(program, data)?);
                vms.len() - 1
            }
        };
        f(&mut vms[position])
    })
}

/// Interpreter clones kept per thread, as [`VMS_PER_THREAD`].
const ENGINES_PER_THREAD: usize = 8;

thread_local! {
    static ENGINES: std::cell::RefCell<Vec<(Arc<regorus::Engine>, regorus::Engine)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's clone of `base`, cloning it on first use. `eval_rule` clears
/// the interpreter's evaluation state (rule values, caches) before every evaluation, so a
/// reused clone cannot carry one request's results into another.
fn with_engine<T>(base: &Arc<regorus::Engine>, f: impl FnOnce(&mut regorus::Engine) -> T) -> T {
    ENGINES.with(|cell| {
        let Ok(mut engines) = cell.try_borrow_mut() else {
            return f(&mut regorus::Engine::clone(base));
        };
        let position = engines.iter().position(|(b, _)| Arc::ptr_eq(b, base));
        let position = match position {
            Some(p) => p,
            None => {
                if engines.len() >= ENGINES_PER_THREAD {
                    engines.remove(0);
                }
                engines.push((base.clone(), regorus::Engine::clone(base)));
                engines.len() - 1
            }
        };
        f(&mut engines[position].1)
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
        let policies = RegoPolicies::compile(&sources, &Value::new_object(), &required)
            .unwrap()
            .unwrap();
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

    fn compile_one(text: &str) -> RegoPolicies {
        let sources = vec![RegoSource {
            path: "c.rego".into(),
            text: text.into(),
        }];
        let required =
            BTreeMap::from([("routes.c".to_string(), ("routes.yaml".to_string(), 1, 1))]);
        RegoPolicies::compile(&sources, &Value::new_object(), &required)
            .unwrap()
            .unwrap()
    }

    fn eval(policies: &RegoPolicies, input: serde_json::Value) -> Result<Value, EvalError> {
        policies.evaluate("routes.c", Value::from(input))
    }

    fn json(value: &Value) -> serde_json::Value {
        serde_json::from_str(&value.to_string()).unwrap()
    }

    /// Asserts that `text` answers an error for `conflicting` and, since a policy that may
    /// conflict must still work when it does not, `expected` for each other input.
    fn assert_conflict(
        text: &str,
        conflicting: serde_json::Value,
        fine: &[(serde_json::Value, serde_json::Value)],
    ) {
        let policies = compile_one(text);
        let result = eval(&policies, conflicting.clone());
        assert!(
            result.is_err(),
            "{text}\nwith {conflicting} must be an error, got {result:?}"
        );
        for (input, expected) in fine {
            let decision = eval(&policies, input.clone()).unwrap();
            assert_eq!(&json(&decision), expected, "{text}\nwith {input}");
        }
    }

    fn decision(
        allow: bool,
        reason: &str,
        headers: serde_json::Value,
        status: u16,
    ) -> serde_json::Value {
        serde_json::json!({"allow": allow, "reason": reason, "headers": headers, "status": status})
    }

    #[test]
    fn conflicting_headers_rules_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := true\nheaders := {\"X-A\": \"1\"} if input.x\nheaders := {\"X-A\": \"2\"} if input.y\n",
            serde_json::json!({"x": true, "y": true}),
            &[
                (
                    serde_json::json!({"x": true}),
                    decision(true, "", serde_json::json!({"X-A": "1"}), 0),
                ),
                (
                    serde_json::json!({"y": true}),
                    decision(true, "", serde_json::json!({"X-A": "2"}), 0),
                ),
                (
                    serde_json::json!({}),
                    decision(true, "", serde_json::json!({}), 0),
                ),
            ],
        );
    }

    #[test]
    fn duplicate_keys_in_an_object_comprehension_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := true\nheaders := {k: v | some x in input.xs; k := \"X-A\"; v := sprintf(\"%d\", [x])}\n",
            serde_json::json!({"xs": [1, 2]}),
            &[
                // The same key with the same value is one entry, as in OPA.
                (
                    serde_json::json!({"xs": [1, 1]}),
                    decision(true, "", serde_json::json!({"X-A": "1"}), 0),
                ),
                (
                    serde_json::json!({"xs": [3]}),
                    decision(true, "", serde_json::json!({"X-A": "3"}), 0),
                ),
            ],
        );
    }

    #[test]
    fn duplicate_keys_of_a_partial_object_rule_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := true\nheaders[k] := v if { some x in input.xs; k := \"X-A\"; v := sprintf(\"%d\", [x]) }\n",
            serde_json::json!({"xs": [1, 2]}),
            &[(
                serde_json::json!({"xs": [2, 2]}),
                decision(true, "", serde_json::json!({"X-A": "2"}), 0),
            )],
        );
    }

    #[test]
    fn conflicting_allow_rules_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nallow := true if input.x\nallow := false if input.y\n",
            serde_json::json!({"x": true, "y": true}),
            &[
                (
                    serde_json::json!({"x": true}),
                    decision(true, "", serde_json::json!({}), 0),
                ),
                (
                    serde_json::json!({"y": true}),
                    decision(false, "", serde_json::json!({}), 0),
                ),
                (
                    serde_json::json!({}),
                    decision(false, "", serde_json::json!({}), 0),
                ),
            ],
        );
    }

    #[test]
    fn conflicting_reason_rules_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nreason := \"not_in_group\" if input.x\nreason := \"no_mfa\" if input.y\n",
            serde_json::json!({"x": true, "y": true}),
            &[(
                serde_json::json!({"y": true}),
                decision(false, "no_mfa", serde_json::json!({}), 0),
            )],
        );
    }

    #[test]
    fn conflicting_status_rules_are_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nstatus := 401 if input.x\nstatus := 403 if input.y\n",
            serde_json::json!({"x": true, "y": true}),
            &[(
                serde_json::json!({"x": true}),
                decision(false, "", serde_json::json!({}), 401),
            )],
        );
    }

    #[test]
    fn a_complete_rule_iterating_to_several_values_is_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nreason := r if { some r in input.reasons }\n",
            serde_json::json!({"reasons": ["a", "b"]}),
            &[(
                serde_json::json!({"reasons": ["a", "a"]}),
                decision(false, "a", serde_json::json!({}), 0),
            )],
        );
    }

    #[test]
    fn a_complete_rule_iterating_over_object_keys_to_several_values_is_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nreason := k if { input.m[k] == 1 }\n",
            serde_json::json!({"m": {"a": 1, "b": 1}}),
            &[(
                serde_json::json!({"m": {"a": 1, "b": 2}}),
                decision(false, "a", serde_json::json!({}), 0),
            )],
        );
    }

    #[test]
    fn a_conflict_in_a_helper_rule_is_an_error_not_an_allow_without_headers() {
        assert_conflict(
            "package routes.c\ndefault allow := true\ntenant := \"a\" if input.x\ntenant := \"b\" if input.y\nheaders := {\"X-Tenant\": tenant}\n",
            serde_json::json!({"x": true, "y": true}),
            &[(
                serde_json::json!({"y": true}),
                decision(true, "", serde_json::json!({"X-Tenant": "b"}), 0),
            )],
        );
    }

    #[test]
    fn a_function_with_several_outputs_for_one_input_is_an_error() {
        assert_conflict(
            "package routes.c\ndefault allow := false\nf(n) := \"small\" if n > 0\nf(n) := \"big\" if n > 1\nreason := f(input.n)\n",
            serde_json::json!({"n": 2}),
            &[(
                serde_json::json!({"n": 1}),
                decision(false, "small", serde_json::json!({}), 0),
            )],
        );
    }

    #[test]
    fn rules_that_agree_or_do_not_overlap_are_not_conflicts() {
        // Two definitions with the same value, static or computed, both true: OPA allows it.
        let texts = [
            "package routes.c\ndefault allow := false\nallow if input.x\nallow if input.y\nheaders := {\"X-A\": \"1\"} if input.x\nheaders := {\"X-A\": \"1\"} if input.y\n",
            "package routes.c\ndefault allow := false\nallow if input.x\nallow if input.y\nheaders := {\"X-A\": input.v} if input.x\nheaders := {\"X-A\": input.v} if input.y\n",
        ];
        for text in texts {
            let policies = compile_one(text);
            let d = eval(
                &policies,
                serde_json::json!({"x": true, "y": true, "v": "1"}),
            )
            .unwrap();
            assert_eq!(
                json(&d),
                decision(true, "", serde_json::json!({"X-A": "1"}), 0),
                "{text}"
            );
        }
        // Disjoint conditions: exactly one definition holds.
        let policies = compile_one(
            "package routes.c\ndefault allow := false\nallow if input.role == \"admin\"\nreason := \"not_admin\" if input.role != \"admin\"\nreason := \"no_role\" if not input.role\nstatus := 401 if not input.role\nstatus := 403 if input.role == \"guest\"\n",
        );
        for (input, expected) in [
            (
                serde_json::json!({"role": "admin"}),
                decision(true, "", serde_json::json!({}), 0),
            ),
            (
                serde_json::json!({"role": "guest"}),
                decision(false, "not_admin", serde_json::json!({}), 403),
            ),
            (
                serde_json::json!({}),
                decision(false, "no_role", serde_json::json!({}), 401),
            ),
        ] {
            assert_eq!(
                json(&eval(&policies, input.clone()).unwrap()),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn ordinary_policies_stay_on_the_rvm_and_possible_conflicts_do_not() {
        let rvm = [
            // The shapes of the example bundle: iteration feeding a constant, one definition each.
            "package routes.c\ndefault allow := false\nallowed := {\"a\", \"b\"}\nallow if { some g in input.user.groups; g in allowed }\nreason := \"no\" if not allow\nheaders := {\"X-R\": \"k\"} if { allow; \"k\" in input.user.groups }\n",
            "package routes.c\ndefault allow := false\ntenant := input.route.tenant\nrole := input.user.tenants[tenant]\nallow if role\nheaders := {\"X-Tenant-Id\": tenant, \"X-Tenant-Role\": role} if allow\n",
            // Several definitions with one static value; `every` yields once.
            "package routes.c\ndefault allow := false\nallow if input.x\nallow if input.y\nallow if { every g in input.gs { g != \"banned\" } }\n",
        ];
        for text in rvm {
            let policies = compile_one(text);
            assert_eq!(policies.interpreter_reason("routes.c"), None, "{text}");
        }
        let interpreted = [
            "package routes.c\ndefault allow := false\nreason := \"a\" if input.x\nreason := \"b\" if input.y\n",
            "package routes.c\ndefault allow := false\nreason := r if { some r in input.reasons }\n",
            "package routes.c\ndefault allow := false\nreason := r if { r := input.reasons[_] }\n",
            "package routes.c\ndefault allow := false\nreason := k if { input.m[k] == 1 }\n",
            "package routes.c\ndefault allow := false\nheaders := {k: \"1\" | some k in input.ks}\n",
            "package routes.c\ndefault allow := false\nheaders[k] := \"1\" if { some k in input.ks }\n",
            "package routes.c\ndefault allow := false\nx := \"a\" if input.x\nx := \"b\" if input.y\nallow if x == \"a\"\n",
        ];
        for text in interpreted {
            let policies = compile_one(text);
            assert!(policies.interpreter_reason("routes.c").is_some(), "{text}");
        }
    }

    #[test]
    fn the_example_bundle_runs_on_the_rvm() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let files = super::super::BundleFiles::read(&dir).unwrap();
        let (sources, _) = files.rego_sources();
        let (_, packages) = load_engine(&sources, &Value::new_object()).unwrap();
        let required: BTreeMap<String, (String, usize, usize)> = packages
            .keys()
            .map(|p| (p.clone(), ("routes.yaml".to_string(), 1, 1)))
            .collect();
        let policies = RegoPolicies::compile(&sources, &Value::new_object(), &required)
            .unwrap()
            .unwrap();
        for package in required.keys() {
            assert_eq!(policies.interpreter_reason(package), None, "{package}");
        }
    }

    #[test]
    fn reused_interpreters_never_carry_one_input_into_the_next_evaluation() {
        let policies = compile_one(
            "package routes.c\ndefault allow := false\nallow if input.user.groups[_] == \"x\"\nreason := sprintf(\"%v\", [input.n]) if input.n > 0\nreason := \"zero\" if input.n == 0\n",
        );
        assert!(policies.interpreter_reason("routes.c").is_some());
        for n in 0..50 {
            let groups = if n % 2 == 0 { vec!["x"] } else { vec!["y"] };
            let d = eval(
                &policies,
                serde_json::json!({"user": {"groups": groups}, "n": n}),
            )
            .unwrap();
            let reason = if n == 0 {
                "zero".to_string()
            } else {
                n.to_string()
            };
            assert_eq!(
                json(&d),
                decision(n % 2 == 0, &reason, serde_json::json!({}), 0),
                "evaluation {n}"
            );
        }
    }

    #[test]
    fn a_runaway_policy_on_the_interpreter_fails_closed() {
        let policies = compile_one(
            "package routes.c\ndefault allow := false\nreason := \"a\" if input.x\nreason := \"b\" if input.y\nallow if count([1 | some a in numbers.range(1, 2000); some b in numbers.range(1, 2000); a == b + 1]) > 0\n",
        );
        assert!(policies.interpreter_reason("routes.c").is_some());
        let started = std::time::Instant::now();
        assert!(eval(&policies, serde_json::json!({})).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
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
        let policies = RegoPolicies::compile(&sources, &Value::new_object(), &required)
            .unwrap()
            .unwrap();
        let input = regorus::Value::from(serde_json::json!({"user": {"groups": ["team299"]}}));
        let decision = policies.evaluate("routes.app299", input.clone()).unwrap();
        assert_eq!(decision["allow"], regorus::Value::Bool(true));
        let decision = policies.evaluate("routes.app7", input).unwrap();
        assert_eq!(decision["allow"], regorus::Value::Bool(false));
    }
}
