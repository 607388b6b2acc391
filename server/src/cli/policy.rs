//! `gatehouse policy check|test|eval`.

use std::path::Path;
use std::process::ExitCode;

use super::{PolicyCommand, fail};
use crate::policy::testing::{self, TestOutcome};
use crate::policy::{Bundle, BundleFiles};

pub(super) fn policy(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { dir } => match Bundle::load(&dir) {
            Ok(bundle) => {
                println!(
                    "ok: {} routes, {} files, version {}",
                    bundle.routes.routes().len(),
                    bundle.files.len(),
                    bundle.version
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.report());
                ExitCode::from(1)
            }
        },
        PolicyCommand::Test { dir, verbose } => policy_test(&dir, verbose),
        PolicyCommand::Eval { dir, route, input } => {
            let bundle = match Bundle::load(&dir) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{}", e.report());
                    return ExitCode::from(1);
                }
            };
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&input)
            };
            let document: serde_json::Value = match text
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(e) => return fail(2, format!("{}: {e}", input.display())),
            };
            match bundle.evaluate_document(&route, &document) {
                Ok(outcome) => {
                    let headers: serde_json::Map<String, serde_json::Value> = outcome
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    let out = serde_json::json!({
                        "route": route,
                        "allow": outcome.allow,
                        "reason": outcome.reason,
                        "headers": headers,
                        "status": outcome.status.unwrap_or(if outcome.allow { 200 } else { 403 }),
                        "bundle_version": bundle.version,
                    });
                    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

fn policy_test(dir: &Path, verbose: bool) -> ExitCode {
    let files = match BundleFiles::read(dir) {
        Ok(f) => f,
        Err(e) => return fail(1, e.report()),
    };
    let (policies, tests) = files.rego_sources();
    let results = match testing::run_tests(&policies, &tests) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}", e.report());
            return ExitCode::from(1);
        }
    };
    // With --verbose each test is shown with its source, which holds its `with input as`.
    let source_of = |r: &testing::TestResult| -> String {
        tests
            .iter()
            .find(|t| t.path == r.file)
            .map(|t| {
                t.text
                    .lines()
                    .skip(r.line.saturating_sub(1))
                    .take_while(|l| !l.trim().is_empty())
                    .map(|l| format!("    | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let mut failed = 0;
    for r in &results {
        if verbose {
            println!("{}", source_of(r));
        }
        match &r.outcome {
            TestOutcome::Pass if verbose => {
                println!("PASS {} ({:?})  {}:{}", r.name, r.duration, r.file, r.line)
            }
            TestOutcome::Pass => {}
            TestOutcome::Fail => {
                failed += 1;
                println!("FAIL {}  {}:{}", r.name, r.file, r.line);
            }
            TestOutcome::Error(e) => {
                failed += 1;
                println!(
                    "ERROR {}  {}:{}\n  {}",
                    r.name,
                    r.file,
                    r.line,
                    e.replace('\n', "\n  ")
                );
            }
        }
    }
    println!("{}", "-".repeat(40));
    println!("PASS: {}/{}", results.len() - failed, results.len());
    if failed > 0 {
        println!("FAIL: {failed}/{}", results.len());
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
