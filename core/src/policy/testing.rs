//! `test_*` rules in `*_test.rego` files, run as `opa test` runs them: a test passes when
//! its rule evaluates to `true`.

use std::time::{Duration, Instant};

use super::error::PolicyError;
use super::rego::{RegoSource, load_engine};

#[derive(Debug, Clone)]
pub struct TestResult {
    /// `data.<package>.<rule>`
    pub name: String,
    pub file: String,
    pub line: usize,
    pub outcome: TestOutcome,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// Evaluation raised an error.
    Error(String),
}

/// The `test_*` rule names declared at the start of a line of `text`, with their lines.
/// Each candidate is confirmed against the parsed module before it is run.
fn candidate_tests(text: &str) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("test_") {
            continue;
        }
        let name: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.iter().any(|(existing, _)| *existing == name) {
            out.push((name, n + 1));
        }
    }
    out
}

/// Runs every test in `tests` against the policies in `sources`.
pub fn run_tests(
    sources: &[RegoSource],
    tests: &[RegoSource],
) -> Result<Vec<TestResult>, PolicyError> {
    let all: Vec<RegoSource> = sources.iter().chain(tests.iter()).cloned().collect();
    let (mut engine, packages) = load_engine(&all)?;
    let mut results = Vec::new();
    for test in tests {
        let Some(package) = packages
            .iter()
            .find(|(_, files)| files.contains(&test.path))
            .map(|(p, _)| p.clone())
        else {
            continue;
        };
        for (rule, line) in candidate_tests(&test.text) {
            if !engine
                .has_declared_rule_rooted_at(&test.path, &rule)
                .unwrap_or(false)
            {
                continue;
            }
            let name = format!("data.{package}.{rule}");
            let started = Instant::now();
            let outcome = match engine.eval_rule(name.clone()) {
                Ok(regorus::Value::Bool(true)) => TestOutcome::Pass,
                Ok(_) => TestOutcome::Fail,
                Err(e) => TestOutcome::Error(format!("{e:#}")),
            };
            results.push(TestResult {
                name,
                file: test.path.clone(),
                line,
                outcome,
                duration: started.elapsed(),
            });
        }
    }
    Ok(results)
}

/// The first failing test as a load error, if any.
pub fn first_failure(results: &[TestResult]) -> Option<PolicyError> {
    results
        .iter()
        .find(|r| r.outcome != TestOutcome::Pass)
        .map(|r| {
            let why = match &r.outcome {
                TestOutcome::Error(e) => format!(
                    "test {} errored: {}",
                    r.name,
                    e.lines().next().unwrap_or("")
                ),
                _ => format!("test {} failed", r.name),
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

    #[test]
    fn passing_failing_and_erroring_tests_are_told_apart() {
        let policy = src("a.rego", "package a\nallow if input.x == 1\n");
        let tests = src(
            "a_test.rego",
            "package a_test\n\
             test_allows if data.a.allow with input as {\"x\": 1}\n\
             test_denies if not data.a.allow with input as {\"x\": 2}\n\
             test_wrong if data.a.allow with input as {\"x\": 2}\n",
        );
        let results = run_tests(&[policy], &[tests]).unwrap();
        let outcome = |n: &str| {
            results
                .iter()
                .find(|r| r.name.ends_with(n))
                .unwrap()
                .outcome
                .clone()
        };
        assert_eq!(results.len(), 3);
        assert_eq!(outcome("test_allows"), TestOutcome::Pass);
        assert_eq!(outcome("test_denies"), TestOutcome::Pass);
        assert_eq!(outcome("test_wrong"), TestOutcome::Fail);
        let failure = first_failure(&results).unwrap().to_string();
        assert!(
            failure.starts_with("a_test.rego:4:1: test data.a_test.test_wrong failed"),
            "{failure}"
        );
    }
}
