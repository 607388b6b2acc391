//! `gatehouse policy impact DIR`: the admin console's impact preview from the command line
//! (docs/admin.md). The baseline is the bundle of the configuration's `policies_dir` (what
//! a replica serving that configuration runs); the candidate is DIR. Exit 0 when no audited
//! decision would change, 1 when one would or the candidate is refused, 2 for bad usage.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{connect, fail};
use crate::authorizer::decision_settings;
use crate::policy::{Bundle, BundleFiles};
use crate::replay;

pub(super) async fn impact(dir: &Path, since: Duration, limit: usize, config: &Path) -> ExitCode {
    let (config, store) = match connect(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let build = |dir: &Path| BundleFiles::read(dir).and_then(|files| Bundle::build(&files));
    let baseline = match build(&config.policies_dir) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                2,
                format!("the configuration's bundle is refused: {}", e.report()),
            );
        }
    };
    let candidate = match build(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}", e.report());
            return ExitCode::from(1);
        }
    };
    let Ok(window) = chrono::Duration::from_std(since) else {
        return fail(2, "--since is too long");
    };
    let report = match replay::impact(
        &store,
        &decision_settings(&config),
        Arc::new(baseline),
        Arc::new(candidate),
        chrono::Utc::now() - window,
        limit.max(1),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    for group in &report.routes {
        println!("route {} ({} changed)", group.route, group.changes.len());
        for c in &group.changes {
            let side = |a: &replay::Answer| {
                format!(
                    "{} {}{}",
                    a.outcome,
                    a.status,
                    a.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            };
            println!(
                "  {}  {:<24} {} {}{}  {} -> {}",
                c.time.format("%Y-%m-%dT%H:%M:%SZ"),
                c.email.as_deref().unwrap_or("-"),
                c.method,
                c.host.as_deref().unwrap_or(""),
                c.path,
                side(&c.before),
                side(&c.after)
            );
        }
    }
    println!(
        "{} of {} audited decisions would change (baseline {}, candidate {}){}",
        report.changed,
        report.evaluated,
        report.baseline_version,
        report.candidate_version,
        if report.truncated {
            "; older ones not re-decided (--limit)"
        } else {
            ""
        }
    );
    if report.changed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
