//! The bundle's tests, run as `opa test` runs them (docs/policies.md, "Testing"; OPA's
//! `tester/runner.go` is the reference):
//!
//! - every rule whose name starts with `test_`, in any module, is a test; `todo_test_` rules
//!   are reported as skipped and not evaluated;
//! - each definition is its own test: a second `test_x` in a package is reported as
//!   `test_x#01`, so a failing definition is never hidden by a passing one;
//! - a test passes when it is `true`; undefined or any other value fails; an evaluation
//!   error (a conflict, a timeout) is an error; a failing builtin is undefined (OPA's
//!   non-strict default), so `not to_number("abc")` holds;
//! - a parameterized test, `test_x[name] if { some tc in cases; name := tc.note; … }`,
//!   reports each case: a case whose body fails after its name was bound fails, as OPA's
//!   injected `internal.test_case` call makes it;
//! - the bundle's data files are loaded.
//!
//! OPA rewrites the compiled rules to get the last two; Gatehouse rewrites the test module's
//! text the same way before regorus reads it: later definitions get an internal name, and
//! each parameterized test gets a companion rule holding the case names its body binds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use regorus::Value;
use regorus::unstable::{Expr, Literal, Rule, RuleHead};

use super::error::PolicyError;
use super::rego::{RegoSource, load_engine, parse_module, rule_head_ref};

/// OPA's prefixes for tests and for tests to skip.
const TEST_PREFIX: &str = "test_";
const SKIP_PREFIX: &str = "todo_test_";
/// OPA's per-test timeout (`opa test --timeout`, 5s by default).
const TEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Internal names of later definitions (`test_x` → `test_x__gatehouse_definition_01`) and
/// of companion rules; no author writes these.
const DEFINITION_MARK: &str = "__gatehouse_definition_";
const CASES_RULE: &str = "gatehouse_test_cases_";
const INPUT_RULE: &str = "gatehouse_test_input_";

#[derive(Debug, Clone)]
pub struct TestResult {
    /// `data.<package>`, as OPA reports it.
    pub package: String,
    /// The rule's name, `#NN`-suffixed for later definitions of one name (OPA's spelling).
    pub name: String,
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub outcome: TestOutcome,
    pub duration: Duration,
    /// A parameterized test's cases (name → passed), sorted by name.
    pub cases: BTreeMap<String, bool>,
    /// What `print()` wrote while the test ran.
    pub output: Vec<String>,
}

impl TestResult {
    /// `data.<package>.<rule>`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Pass,
    /// The rule was false, undefined or not `true`, or one of its cases failed.
    Fail,
    /// Evaluation raised an error.
    Error(String),
    /// A `todo_test_` rule: not run.
    Skipped,
}

impl TestOutcome {
    /// OPA's word for it.
    pub fn label(&self) -> &'static str {
        match self {
            TestOutcome::Pass => "PASS",
            TestOutcome::Fail => "FAIL",
            TestOutcome::Error(_) => "ERROR",
            TestOutcome::Skipped => "SKIPPED",
        }
    }
}

/// An input document a test gives a policy (`with input as …`), evaluated in its test
/// module, so the bundle can check that both engines decide it alike.
#[derive(Debug, Clone)]
pub struct TestInput {
    /// `data.<package>.<rule>` of the test.
    pub test: String,
    pub file: String,
    pub line: usize,
    pub value: Value,
    /// The `data.` paths the test module refers to (the policies it tests).
    pub references: Vec<String>,
}

/// A companion rule holding one test's `with input as` document.
struct InputProbe {
    rule: String,
    test: String,
    package: String,
    file: String,
    line: usize,
}

/// One test definition found in a module.
struct Found {
    package: String,
    /// OPA's name (`test_x`, `test_x#01`).
    name: String,
    /// The rule path regorus evaluates, relative to the package.
    rule: String,
    file: String,
    line: usize,
    col: usize,
    skip: bool,
    /// For a parameterized test: the companion rule holding its case names, if the
    /// case names could be derived from its body.
    cases_rule: Option<String>,
    parameterized: bool,
}

/// The name of a rule head and the span of that name, for a head whose ref starts with a
/// plain name (`test_x`, `test_x[k]`, `a.test_x`): OPA's `ruleName`.
fn head_name(refr: &Expr) -> Option<(String, u32, u32, bool)> {
    // Walk down to the root, remembering the components (name, start, end, dynamic below).
    fn walk(e: &Expr, out: &mut Vec<(String, u32, u32)>, dynamic: &mut bool) {
        match e {
            Expr::Var { span, .. } => out.push((span.text().to_string(), span.start, span.end)),
            Expr::RefDot { refr, field, .. } => {
                walk(refr, out, dynamic);
                out.push((field.0.text().to_string(), field.0.start, field.0.end));
            }
            Expr::RefBrack { refr, index, .. } => {
                walk(refr, out, dynamic);
                match index.as_ref() {
                    Expr::String { value, span, .. } if !*dynamic => {
                        if let Ok(s) = value.as_string() {
                            out.push((s.to_string(), span.start, span.end));
                        }
                    }
                    _ => *dynamic = true,
                }
            }
            _ => *dynamic = true,
        }
    }
    let mut parts = Vec::new();
    let mut dynamic = false;
    walk(refr, &mut parts, &mut dynamic);
    let position = parts
        .iter()
        .position(|(n, ..)| n.starts_with(TEST_PREFIX) || n.starts_with(SKIP_PREFIX))?;
    let (name, start, end) = parts.get(position)?.clone();
    // Below the name: a dynamic key (parameterized) or more static parts.
    let parameterized = dynamic || position + 1 < parts.len();
    Some((name, start, end, parameterized))
}

/// The identifiers a key expression's text uses as variables (not fields after `.`, not
/// inside strings).
fn key_variables(text: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut chars = text.char_indices().peekable();
    let mut previous = ' ';
    let mut in_string = false;
    while let Some((at, c)) = chars.next() {
        if in_string {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_string = false;
            }
            previous = c;
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = at + c.len_utf8();
            while let Some(&(i, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    end = i + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &text[at..end];
            if previous != '.'
                && !matches!(word, "true" | "false" | "null" | "_")
                && !is_call(&text[end..])
            {
                vars.insert(word.to_string());
            }
            previous = 'a';
            continue;
        }
        previous = c;
    }
    vars
}

/// Whether `rest`, following an identifier, makes it a function call: `(` or
/// `.name…(` (`sprintf(`, `object.get(`).
fn is_call(rest: &str) -> bool {
    let mut rest = rest.trim_start();
    loop {
        if rest.starts_with('(') {
            return true;
        }
        let Some(after_dot) = rest.strip_prefix('.') else {
            return false;
        };
        let len = after_dot
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after_dot.len());
        if len == 0 {
            return false;
        }
        rest = &after_dot[len..];
    }
}

/// Whether `text` mentions `word` as a whole identifier not following a `.`.
fn mentions(text: &str, word: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let end = at + word.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if !before.is_some_and(|b| ident(b) || b == b'.') && !after.is_some_and(ident) {
            return true;
        }
        from = end;
    }
    false
}

/// Finds the tests of one module and rewrites its text (see the module comment). `counts`
/// numbers definitions per test path across modules, as OPA's `rewriteDuplicateTestNames`.
fn prepare_module(
    source: &RegoSource,
    counts: &mut BTreeMap<String, usize>,
    next_cases: &mut usize,
    probes: &mut Vec<InputProbe>,
) -> Result<(String, Vec<Found>), PolicyError> {
    let module = parse_module(source)?;
    let package = format!("data.{}", module.package.refr.span().text());

    // Names a `with input as` document may use and still be evaluated outside the test's
    // body: the module's rules and imports (local variables of the body may not).
    let mut module_names: BTreeSet<String> = ["data", "input"].map(String::from).into();
    for rule in &module.policy {
        if let Some(root) = rule_head_ref(rule).span().text().split(['.', '[']).next() {
            module_names.insert(root.trim().to_string());
        }
    }
    for import in &module.imports {
        let alias = match &import.r#as {
            Some(alias) => alias.text().to_string(),
            None => import
                .refr
                .span()
                .text()
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_string(),
        };
        module_names.insert(alias);
    }

    let mut renames: Vec<(usize, usize, String)> = Vec::new();
    let mut companions = String::new();
    let mut found = Vec::new();
    for rule in &module.policy {
        let Rule::Spec { head, bodies, span } = rule.as_ref() else {
            continue;
        };
        let refr = match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
            RuleHead::Func { .. } => continue,
        };
        let Some((name, start, end, parameterized)) = head_name(refr) else {
            continue;
        };
        let skip = name.starts_with(SKIP_PREFIX);
        let key = format!("{package}.{name}");
        let count = counts.entry(key).or_insert(0);
        let (reported, rule_name) = if *count == 0 || skip {
            (name.clone(), name.clone())
        } else {
            renames.push((
                start as usize,
                end as usize,
                format!("{name}{DEFINITION_MARK}{count:02}"),
            ));
            (
                format!("{name}#{count:02}"),
                format!("{name}{DEFINITION_MARK}{count:02}"),
            )
        };
        *count += 1;

        // A parameterized test's companion: the same head key over the body's statements up
        // to the one that binds the key's last variable, so it holds every case name the
        // body reached (OPA injects `internal.test_case` at the same point).
        let mut cases_rule = None;
        if parameterized
            && !skip
            && let (RuleHead::Compr { refr, .. }, [body]) = (head, bodies.as_slice())
            && let Expr::RefBrack { index, .. } = refr.as_ref()
            && !body.is_else
        {
            let key_text = index.span().text();
            let stmts: Vec<&str> = body.query.stmts.iter().map(|s| s.span.text()).collect();
            let vars = key_variables(key_text);
            let mut last = None;
            let mut complete = true;
            for var in &vars {
                match stmts.iter().position(|s| mentions(s, var)) {
                    Some(at) => last = last.max(Some(at)),
                    None => complete = false,
                }
            }
            let uses_every = body
                .query
                .stmts
                .iter()
                .any(|s| matches!(s.literal, Literal::Every { .. }));
            if complete && !uses_every {
                let companion = format!("{CASES_RULE}{next_cases}");
                *next_cases += 1;
                let prefix = last.map_or(0, |l| l + 1);
                let body_text = if prefix == 0 {
                    "true".to_string()
                } else {
                    stmts[..prefix].join("\n\t")
                };
                companions.push_str(&format!(
                    "\n{companion}[{key_text}] := true if {{\n\t{body_text}\n}}\n"
                ));
                cases_rule = Some(companion);
            }
        }
        if !skip {
            for stmt in bodies.iter().flat_map(|b| b.query.stmts.iter()) {
                for with in &stmt.with_mods {
                    let document = with.r#as.span().text();
                    if with.refr.span().text() != "input"
                        || !key_variables(document).is_subset(&module_names)
                    {
                        continue;
                    }
                    let companion = format!("{INPUT_RULE}{}", *next_cases);
                    *next_cases += 1;
                    companions.push_str(&format!("\n{companion} := {document}\n"));
                    probes.push(InputProbe {
                        rule: companion,
                        test: format!("{package}.{reported}"),
                        package: package.clone(),
                        file: source.path.clone(),
                        line: stmt.span.line as usize,
                    });
                }
            }
        }
        found.push(Found {
            package: package.clone(),
            name: reported,
            rule: rule_name,
            file: source.path.clone(),
            line: span.line as usize,
            col: span.col as usize,
            skip,
            cases_rule,
            parameterized,
        });
    }
    let mut text = source.text.clone();
    // Spans are byte offsets; rename from the end so earlier offsets stay valid.
    renames.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (start, end, name) in renames {
        if text.get(start..end).is_some() {
            text.replace_range(start..end, &name);
        }
    }
    text.push_str(&companions);
    Ok((text, found))
}

/// Runs every test of `sources` (all the bundle's modules) with the bundle's `data`.
pub fn run_tests(sources: &[RegoSource], data: &Value) -> Result<Vec<TestResult>, PolicyError> {
    run_tests_with_inputs(sources, data).map(|(results, _)| results)
}

/// [`run_tests`], and the input documents the tests give policies (those that do not depend
/// on a variable of the test's body).
pub fn run_tests_with_inputs(
    sources: &[RegoSource],
    data: &Value,
) -> Result<(Vec<TestResult>, Vec<TestInput>), PolicyError> {
    let sources = &*super::metadata::resolve(sources)?;
    let mut counts = BTreeMap::new();
    let mut next_cases = 0;
    let mut prepared = Vec::with_capacity(sources.len());
    let mut tests = Vec::new();
    let mut probes = Vec::new();
    for source in sources {
        let (text, found) = prepare_module(source, &mut counts, &mut next_cases, &mut probes)?;
        prepared.push(RegoSource {
            path: source.path.clone(),
            text,
        });
        tests.extend(found);
    }
    if tests.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (mut engine, _) = load_engine(&prepared, data)?;
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
    });
    engine.set_gather_prints(true);
    let mut results = Vec::with_capacity(tests.len());
    for test in tests {
        let started = Instant::now();
        let mut cases = BTreeMap::new();
        let outcome = if test.skip {
            TestOutcome::Skipped
        } else {
            match engine.eval_rule(format!("{}.{}", test.package, test.rule)) {
                Err(e) => TestOutcome::Error(format!("{e:#}")),
                Ok(Value::Bool(true)) if !test.parameterized => TestOutcome::Pass,
                Ok(Value::Object(map)) if test.parameterized => {
                    for (k, v) in map.iter() {
                        cases.insert(case_name(k), *v == Value::Bool(true));
                    }
                    if let Some(rule) = &test.cases_rule
                        && let Ok(Value::Object(reached)) =
                            engine.eval_rule(format!("{}.{rule}", test.package))
                    {
                        for k in reached.keys() {
                            cases.entry(case_name(k)).or_insert(false);
                        }
                    }
                    if cases.values().all(|passed| *passed) {
                        TestOutcome::Pass
                    } else {
                        TestOutcome::Fail
                    }
                }
                Ok(_) => TestOutcome::Fail,
            }
        };
        let duration = started.elapsed();
        let output = engine.take_prints().unwrap_or_default();
        results.push(TestResult {
            package: test.package,
            name: test.name,
            file: test.file,
            line: test.line,
            col: test.col,
            outcome,
            duration: if test.skip { Duration::ZERO } else { duration },
            cases,
            output,
        });
    }
    let mut inputs = Vec::with_capacity(probes.len());
    for probe in probes {
        let value = engine
            .eval_rule(format!("{}.{}", probe.package, probe.rule))
            .unwrap_or(Value::Undefined);
        if value == Value::Undefined {
            continue;
        }
        let references = sources
            .iter()
            .find(|s| s.path == probe.file)
            .map(|s| {
                super::rego::data_references(&s.text)
                    .into_iter()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        inputs.push(TestInput {
            test: probe.test,
            file: probe.file,
            line: probe.line,
            value,
            references,
        });
    }
    Ok((results, inputs))
}

/// A case key as OPA prints it: strings as they are, anything else as JSON.
fn case_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// The first failing or erroring test as a load error, if any; skipped tests do not count.
pub fn first_failure(results: &[TestResult]) -> Option<PolicyError> {
    results
        .iter()
        .find(|r| matches!(r.outcome, TestOutcome::Fail | TestOutcome::Error(_)))
        .map(|r| {
            let why = match &r.outcome {
                TestOutcome::Error(e) => format!(
                    "test {} errored: {}",
                    r.full_name(),
                    e.lines().next().unwrap_or("")
                ),
                _ => {
                    let failed: Vec<&str> = r
                        .cases
                        .iter()
                        .filter(|(_, passed)| !**passed)
                        .map(|(name, _)| name.as_str())
                        .collect();
                    if failed.is_empty() {
                        format!("test {} failed", r.full_name())
                    } else {
                        format!(
                            "test {} failed (cases: {})",
                            r.full_name(),
                            failed.join(", ")
                        )
                    }
                }
            };
            PolicyError::at(&r.file, r.line, 1, why)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, text: &str) -> RegoSource {
        RegoSource {
            path: path.into(),
            text: text.into(),
        }
    }

    fn run(modules: &[(&str, &str)]) -> Vec<TestResult> {
        let sources: Vec<RegoSource> = modules.iter().map(|(p, t)| src(p, t)).collect();
        run_tests(&sources, &Value::new_object()).unwrap()
    }

    fn outcome(results: &[TestResult], name: &str) -> TestOutcome {
        results
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no test {name} in {results:#?}"))
            .outcome
            .clone()
    }

    #[test]
    fn passing_failing_and_erroring_tests_are_told_apart() {
        let results = run(&[
            (
                "a.rego",
                "package a\nallow if input.x == 1\nv := 1 if input.c\nv := 2 if input.c\n",
            ),
            (
                "a_test.rego",
                "package a_test\n\
                 test_allows if data.a.allow with input as {\"x\": 1}\n\
                 test_denies if not data.a.allow with input as {\"x\": 2}\n\
                 test_wrong if data.a.allow with input as {\"x\": 2}\n\
                 test_conflict if data.a.v with input as {\"c\": true}\n",
            ),
        ]);
        assert_eq!(results.len(), 4);
        assert_eq!(outcome(&results, "test_allows"), TestOutcome::Pass);
        assert_eq!(outcome(&results, "test_denies"), TestOutcome::Pass);
        assert_eq!(outcome(&results, "test_wrong"), TestOutcome::Fail);
        assert!(matches!(
            outcome(&results, "test_conflict"),
            TestOutcome::Error(_)
        ));
        let failure = first_failure(&results).unwrap().to_string();
        assert!(
            failure.starts_with("a_test.rego:4:1: test data.a_test.test_wrong failed"),
            "{failure}"
        );
    }

    #[test]
    fn same_named_tests_are_each_reported() {
        let results = run(&[(
            "t_test.rego",
            "package t\ntest_x if true\ntest_x if false\ntest_x if true\n",
        )]);
        let names: Vec<(&str, &str)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.label()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("test_x", "PASS"),
                ("test_x#01", "FAIL"),
                ("test_x#02", "PASS")
            ]
        );
        assert_eq!(results[1].line, 3);
    }

    #[test]
    fn test_rules_in_any_module_run_and_todo_tests_are_skipped() {
        let results = run(&[(
            "policy.rego",
            "package p\ntest_in_a_policy_file if true\ntodo_test_later if false\n",
        )]);
        assert_eq!(
            outcome(&results, "test_in_a_policy_file"),
            TestOutcome::Pass
        );
        assert_eq!(outcome(&results, "todo_test_later"), TestOutcome::Skipped);
        assert!(first_failure(&results).is_none());
    }

    #[test]
    fn builtin_errors_in_tests_are_undefined_as_in_opa() {
        let results = run(&[(
            "b_test.rego",
            "package b\ntest_not_a_number if not to_number(\"abc\")\n",
        )]);
        assert_eq!(outcome(&results, "test_not_a_number"), TestOutcome::Pass);
    }

    #[test]
    fn parameterized_tests_report_each_case_and_failing_bodies_fail() {
        let results = run(&[(
            "c_test.rego",
            "package c\n\
             cases := [{\"note\": \"one\", \"n\": 1}, {\"note\": \"two\", \"n\": 2}, {\"note\": \"three\", \"n\": 3}]\n\
             test_small[tc.note] if {\n\
             \tsome tc in cases\n\
             \ttc.n < 3\n\
             }\n\
             test_named[name] if {\n\
             \tsome tc in cases\n\
             \tname := tc.note\n\
             \ttc.n > 0\n\
             }\n",
        )]);
        let small = results.iter().find(|r| r.name == "test_small").unwrap();
        assert_eq!(small.outcome, TestOutcome::Fail);
        assert_eq!(
            small.cases,
            BTreeMap::from([
                ("one".to_string(), true),
                ("three".to_string(), false),
                ("two".to_string(), true)
            ])
        );
        let named = results.iter().find(|r| r.name == "test_named").unwrap();
        assert_eq!(named.outcome, TestOutcome::Pass, "{named:?}");
        assert_eq!(named.cases.len(), 3);
    }

    #[test]
    fn print_output_is_kept_per_test() {
        let results = run(&[(
            "p_test.rego",
            "package p\ntest_prints if {\n\tprint(\"hello\", 1)\n}\n",
        )]);
        assert_eq!(outcome(&results, "test_prints"), TestOutcome::Pass);
        assert!(
            results[0].output.iter().any(|l| l.contains("hello 1")),
            "{:?}",
            results[0].output
        );
    }

    #[test]
    fn bundle_data_is_visible_to_tests() {
        let sources = vec![src(
            "d_test.rego",
            "package d\ntest_data if data.teams.cooks[_] == \"ann\"\n",
        )];
        let data = Value::from(serde_json::json!({"teams": {"cooks": ["ann"]}}));
        let results = run_tests(&sources, &data).unwrap();
        assert_eq!(outcome(&results, "test_data"), TestOutcome::Pass);
    }

    #[test]
    fn test_inputs_are_collected_for_the_engine_agreement_check() {
        let sources = vec![
            src(
                "a.rego",
                "package a\nimport rego.v1\nallow if input.x == 1\n",
            ),
            src(
                "a_test.rego",
                "package a_test\nimport rego.v1\nimport data.a\n\
                 base := {\"x\": 1}\n\
                 test_one if a.allow with input as base\n\
                 test_two if not a.allow with input as object.union(base, {\"x\": 2})\n\
                 test_local if { some n in [1]; a.allow with input as {\"x\": n} }\n",
            ),
        ];
        let (results, inputs) = run_tests_with_inputs(&sources, &Value::new_object()).unwrap();
        assert!(
            results.iter().all(|r| r.outcome == TestOutcome::Pass),
            "{results:?}"
        );
        let documents: Vec<String> = inputs.iter().map(|i| i.value.to_string()).collect();
        // The body-local `{"x": n}` cannot be evaluated outside its test and is left out.
        assert_eq!(documents, vec!["{\"x\":1}", "{\"x\":2}"]);
        assert_eq!(inputs[1].test, "data.a_test.test_two");
        assert_eq!(inputs[1].line, 6);
        assert!(inputs[0].references.contains(&"a".to_string()));
    }

    #[test]
    fn key_variables_skip_fields_and_strings() {
        assert_eq!(key_variables("tc.note"), BTreeSet::from(["tc".to_string()]));
        assert_eq!(
            key_variables("sprintf(\"%s x\", [a.b, c])"),
            BTreeSet::from(["a".to_string(), "c".to_string()])
        );
        assert_eq!(
            key_variables("object.get(m, k, 1)"),
            BTreeSet::from(["k".to_string(), "m".to_string()])
        );
        assert!(mentions("some tc in cases", "tc"));
        assert!(!mentions("x.tc == 1", "tc"));
        assert!(!mentions("tcx := 1", "tc"));
    }
}
