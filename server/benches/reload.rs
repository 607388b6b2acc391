//! Policy reload cost: building a 500-route bundle (parse, compile, run its tests) against
//! the 6-route example bundle, and the verify decision while reloads run continuously
//! against the same decision without them. Ratios are printed from this run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use arc_swap::ArcSwap;
use criterion::Criterion;
use gatehouse::config::Config;
use gatehouse::decision::{Credentials, Decider, UnauthenticatedMode};
use gatehouse::policy::Bundle;
use gatehouse::request::original::VerifyCall;
use gatehouse::session::resolver::{SessionResolver, SessionTimeouts};
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;

const SECRET: &str = "bench-cookie-secret-0123456789abcdef0123";
const ROUTES: usize = 500;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let yaml = format!(
        "public_url: https://auth.example.com\ndatabase_url: 'sqlite::memory:'\npolicies_dir: {}\ncookie:\n  secret: {SECRET}\n",
        example().display()
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("bench.yaml"), &[]).expect("config");
    let (decider, cookie, live) = rt.block_on(async {
        let store = Store::connect(config.database_url.expose())
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let live = Arc::new(ArcSwap::from_pointee(
            Bundle::load(&example()).expect("bundle"),
        ));
        let sessions = SessionResolver::new(
            store.clone(),
            SessionTimeouts {
                idle_timeout: Duration::from_secs(3600),
                cache_ttl: Duration::from_secs(3600),
            },
        );
        let grant = SessionGrant {
            email: "ann@example.com".into(),
            name: None,
            username: None,
            store_groups: Some(vec!["kitchen".into()]),
            tenant: None,
            ttl: Duration::from_secs(3600),
            amr: vec![],
            ip: None,
            user_agent: None,
        };
        let cookie = issue_session(
            &store,
            &CookieSigner::new(SECRET.as_bytes()),
            &grant,
            chrono::Utc::now(),
        )
        .await
        .expect("session")
        .cookie_value;
        (Decider::new(&config, live.clone(), sessions), cookie, live)
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-original-url"),
        HeaderValue::from_static("https://apps.example.com/restaurant"),
    );
    let cookies = [cookie.as_str()];
    let credentials = Credentials {
        cookies: &cookies,
        bearer: None,
    };
    let call = VerifyCall {
        method: "GET",
        target: "/auth/verify",
        peer: "127.0.0.1".parse().expect("ip"),
        scheme: "http",
    };
    let decide = || {
        decider.decide(
            call,
            &headers,
            credentials,
            UnauthenticatedMode::Status,
            false,
            chrono::Utc::now(),
        )
    };
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

fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../target/criterion/{group}/{name}/new/estimates.json"
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_build(&mut c);
    bench_verify_during_reloads(&mut c);
    c.final_summary();
    if let (Some(small), Some(large)) = (
        mean_ns("reload", "example_bundle"),
        mean_ns("reload", "bundle_500_routes"),
    ) {
        println!(
            "\nbundle build: example {:.1} ms, {ROUTES} routes {:.1} ms ({:.1}x)",
            small / 1e6,
            large / 1e6,
            large / small
        );
    }
    if let (Some(quiet), Some(busy)) = (
        mean_ns("verify_reloading", "quiet"),
        mean_ns("verify_reloading", "during_reloads"),
    ) {
        println!(
            "verify: quiet {:.1} µs, during reloads {:.1} µs ({:.2}x)",
            quiet / 1e3,
            busy / 1e3,
            busy / quiet
        );
    }
}
