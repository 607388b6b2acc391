//! `gatehouse policy check|test|eval` (and `impact`, in its own module).

use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use gatehouse_core::decide::{HeaderNames, Settings};
use gatehouse_core::dry_run::DryRun;

use super::{PolicyCommand, TestFormat, fail};
use crate::authorizer::decision_settings;
use crate::policy::rego::RegoSource;
use crate::policy::testing::{self, TestOutcome};
use crate::policy::{Bundle, BundleFiles};

/// The login URL's base when no configuration is given: the example configuration's
/// `public_url` (gatehouse.example.yaml).
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:4180";

pub(super) async fn policy(command: PolicyCommand) -> ExitCode {
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
        PolicyCommand::Test {
            dir,
            verbose,
            format,
        } => policy_test(&dir, verbose, format),
        PolicyCommand::Eval { dir, input, config } => policy_eval(&dir, &input, config.as_deref()),
        PolicyCommand::Impact {
            dir,
            since,
            limit,
            config,
        } => super::impact::impact(&dir, since, limit, &config.config).await,
    }
}

/// `policy eval`: the described request through the core's `route` and `decide`
/// (gatehouse_core::dry_run), the same code the admin playground calls.
fn policy_eval(dir: &Path, input: &Path, config: Option<&Path>) -> ExitCode {
    let settings = match config {
        Some(path) => match super::load_config(path) {
            Ok(config) => decision_settings(&config),
            Err(code) => return code,
        },
        None => Settings::new(HeaderNames::default(), Vec::new(), DEFAULT_PUBLIC_URL),
    };
    let bundle = match Bundle::load(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}", e.report());
            return ExitCode::from(1);
        }
    };
    let text = if input.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(input)
    };
    let described: DryRun = match text {
        Ok(t) => match serde_json::from_str(&t) {
            Ok(d) => d,
            Err(e) => return fail(2, format!("{}: {e}", input.display())),
        },
        Err(e) => return fail(2, format!("{}: {e}", input.display())),
    };
    let answer = match described.answer(&bundle, &settings, Utc::now()) {
        Ok(a) => a,
        Err(e) => return fail(2, format!("{}: {e}", input.display())),
    };
    match serde_json::to_string_pretty(&answer) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

/// `opa test`'s report (OPA's `tester/reporter.go`): each failing, erroring or skipped test
/// (every test with `--verbose`) as `file:row:` and `data.pkg.test_x: OUTCOME (duration)`,
/// failing cases of parameterized tests below it, then the counts; `--format json` prints
/// OPA's JSON array instead.
fn policy_test(dir: &Path, verbose: bool, format: TestFormat) -> ExitCode {
    let files = match BundleFiles::read(dir) {
        Ok(f) => f,
        Err(e) => return fail(1, e.report()),
    };
    let (policies, tests) = files.rego_sources();
    let data = match files.data() {
        Ok(d) => d,
        Err(e) => return fail(1, e.report()),
    };
    let sources: Vec<_> = policies.iter().chain(&tests).cloned().collect();
    let results = match testing::run_tests(&sources, &data) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}", e.report());
            return ExitCode::from(1);
        }
    };
    let failed = results
        .iter()
        .any(|r| matches!(r.outcome, TestOutcome::Fail | TestOutcome::Error(_)));
    match format {
        TestFormat::Json => {
            let report: Vec<serde_json::Value> = results.iter().map(json_result).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        TestFormat::Pretty => print_pretty(&results, &sources, verbose),
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_pretty(results: &[testing::TestResult], sources: &[RegoSource], verbose: bool) {
    // With --verbose each test is also shown with its source, which holds its
    // `with input as` documents (OPA shows a trace instead).
    let source_of = |r: &testing::TestResult| -> String {
        sources
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
    let (mut pass, mut fail, mut skip, mut errors) = (0, 0, 0, 0);
    let mut dirty = false;
    let mut last_file: Option<&str> = None;
    for r in results {
        match &r.outcome {
            TestOutcome::Skipped => skip += 1,
            TestOutcome::Error(_) => errors += 1,
            // Parameterized tests count their cases, as OPA counts leaf sub-results.
            _ if !r.cases.is_empty() => {
                for passed in r.cases.values() {
                    if *passed {
                        pass += 1;
                    } else {
                        fail += 1;
                    }
                }
            }
            TestOutcome::Pass => pass += 1,
            TestOutcome::Fail => fail += 1,
        }
        if !verbose && r.outcome == TestOutcome::Pass {
            continue;
        }
        dirty = true;
        if last_file.is_some_and(|f| f != r.file) {
            println!();
        }
        last_file = Some(&r.file);
        println!("{}:{}:", r.file, r.line);
        match r.outcome {
            TestOutcome::Skipped => println!("{}: SKIPPED", r.full_name()),
            _ => println!(
                "{}: {} ({:?})",
                r.full_name(),
                r.outcome.label(),
                r.duration
            ),
        }
        for (case, passed) in &r.cases {
            if !passed || verbose {
                println!("  {case}: {}", if *passed { "PASS" } else { "FAIL" });
            }
        }
        if !r.output.is_empty() {
            println!();
            for line in &r.output {
                println!("  {line}");
            }
            println!();
        }
        if let TestOutcome::Error(e) = &r.outcome {
            println!("  {}", e.replace('\n', "\n  "));
        }
        if verbose {
            println!("{}", source_of(r));
        }
    }
    if dirty {
        println!("{}", "-".repeat(80));
    }
    let total = pass + fail + skip + errors;
    for (label, n) in [
        ("PASS", pass),
        ("FAIL", fail),
        ("SKIPPED", skip),
        ("ERROR", errors),
    ] {
        if n != 0 {
            println!("{label}: {n}/{total}");
        }
    }
}

/// One result in the shape of OPA's `tester.Result` JSON.
fn json_result(r: &testing::TestResult) -> serde_json::Value {
    let mut out = serde_json::json!({
        "location": {"file": r.file, "row": r.line, "col": r.col},
        "package": r.package,
        "name": r.name,
        "duration": u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX),
    });
    let mut set = |key: &str, value: serde_json::Value| {
        if let Some(map) = out.as_object_mut() {
            map.insert(key.to_string(), value);
        }
    };
    match &r.outcome {
        TestOutcome::Pass => {}
        TestOutcome::Fail => set("fail", true.into()),
        TestOutcome::Skipped => set("skip", true.into()),
        TestOutcome::Error(e) => set(
            "error",
            serde_json::json!({"code": "eval_error", "message": e}),
        ),
    }
    if !r.cases.is_empty() {
        let cases: serde_json::Map<String, serde_json::Value> = r
            .cases
            .iter()
            .map(|(name, passed)| {
                let mut case = serde_json::json!({ "name": name });
                if !passed && let Some(map) = case.as_object_mut() {
                    map.insert("fail".into(), true.into());
                }
                (name.clone(), case)
            })
            .collect();
        set("sub_results", cases.into());
    }
    if !r.output.is_empty() {
        // OPA's `output` is bytes, which Go's JSON encodes in base64.
        use base64::Engine as _;
        let text: String = r.output.iter().map(|l| format!("{l}\n")).collect();
        set(
            "output",
            base64::engine::general_purpose::STANDARD
                .encode(text)
                .into(),
        );
    }
    out
}
