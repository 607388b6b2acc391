//! Policy reload cost: building a 500-route bundle (parse, compile, run its tests) against
//! the 6-route example bundle, and the verify decision while reloads run continuously
//! against the same decision without them. Ratios are printed from this run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::Criterion;
use gatehouse::policy::Bundle;

const ROUTES: usize = 500;

fn example() -> std::path::PathBuf {
    common::example_policies()
}

/// A bundle of `n` route policies, each with one test, like a large organisation's.
fn large_bundle(dir: &Path, n: usize) {
    let mut routes = String::from("default: deny\nroutes:\n");
    for i in 0..n {
        routes.push_str(&format!(
            "  - name: app{i}\n    path: /app{i}\n    policy: routes.app{i}\n"
        ));
        std::fs::write(
            dir.join(format!("app{i}.rego")),
            format!(
                "package routes.app{i}\n\nimport rego.v1\n\ndefault allow := false\n\n\
                 allow if \"team{i}\" in input.user.groups\n\n\
                 allow if {{\n\t\"admins\" in input.user.groups\n\tinput.device.managed\n}}\n\n\
                 reason := \"not_team{i}\" if not allow\n\n\
                 headers := {{\"X-App\": \"app{i}\"}} if allow\n"
            ),
        )
        .expect("write policy");
        std::fs::write(
            dir.join(format!("app{i}_test.rego")),
            format!(
                "package routes.app{i}_test\n\nimport rego.v1\n\n\
                 test_team_allowed if data.routes.app{i}.allow with input as {{\"user\": {{\"groups\": [\"team{i}\"]}}}}\n"
            ),
        )
        .expect("write test");
    }
    std::fs::write(dir.join("routes.yaml"), routes).expect("write routes");
}

fn bench_build(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    large_bundle(dir.path(), ROUTES);
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("example_bundle", |b| {
        b.iter(|| Bundle::load(&example()).expect("bundle"))
    });
    group.bench_function("bundle_500_routes", |b| {
        b.iter(|| Bundle::load(dir.path()).expect("bundle"))
    });
    group.finish();
}

fn bench_verify_during_reloads(c: &mut Criterion) {
    let rt = common::runtime(1);
    let fixture = rt.block_on(common::fixture("sqlite::memory:", &["kitchen"], None));
    let live = fixture.bundle.clone();
    let headers = common::nginx_headers("https://apps.example.com/restaurant");
    let decide = || fixture.decide(&headers, true);
    assert_eq!(rt.block_on(decide()).status, 200);

    let mut group = c.benchmark_group("verify_reloading");
    group.bench_function("quiet", |b| b.to_async(&rt).iter(decide));
    // A second thread rebuilds and swaps the bundle back to back while verify runs.
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = {
        let stop = stop.clone();
        let live = live.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                live.store(Arc::new(Bundle::load(&example()).expect("bundle")));
                swaps += 1;
            }
            swaps
        })
    };
    group.bench_function("during_reloads", |b| b.to_async(&rt).iter(decide));
    stop.store(true, Ordering::Relaxed);
    let swaps = reloader.join().expect("reloader");
    group.finish();
    println!("bundle swaps during the measurement: {swaps}");
}

fn main() {
    let mut c = common::criterion(Duration::from_secs(3));
    bench_build(&mut c);
    bench_verify_during_reloads(&mut c);
    c.final_summary();
    if let (Some(small), Some(large)) = (
        common::mean_ns("reload", "example_bundle"),
        common::mean_ns("reload", "bundle_500_routes"),
    ) {
        println!(
            "\nbundle build: example {:.1} ms, {ROUTES} routes {:.1} ms ({:.1}x)",
            small / 1e6,
            large / 1e6,
            large / small
        );
    }
    if let (Some(quiet), Some(busy)) = (
        common::mean_ns("verify_reloading", "quiet"),
        common::mean_ns("verify_reloading", "during_reloads"),
    ) {
        println!(
            "verify: quiet {:.1} µs, during reloads {:.1} µs ({:.2}x)",
            quiet / 1e3,
            busy / 1e3,
            busy / quiet
        );
    }
}
