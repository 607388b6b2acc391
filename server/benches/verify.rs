//! The verify decision, in process: what one `/auth/verify` costs past the HTTP layer.
//!
//! Every case runs the full `Decider::decide` (trusted-proxy headers, normalization, route
//! match, cached session, policy, answer) against the example bundle, with the session
//! already in the cache, as it is for all but the first request of a session. The summary
//! prints each case as a ratio of `public_route` (the same work minus session and policy),
//! measured in this same run, so the numbers compare across machines.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group};
use gatehouse::config::Config;
use gatehouse::decision::{Credentials, Decider, UnauthenticatedMode};
use gatehouse::policy::Bundle;
use gatehouse::request::original::VerifyCall;
use gatehouse::session::resolver::{SessionResolver, SessionTimeouts};
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;

const SECRET: &str = "bench-cookie-secret-0123456789abcdef0123";

struct Fixture {
    decider: Decider,
    cookie: String,
}

async fn fixture() -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = format!(
        "public_url: https://auth.example.com\ndatabase_url: 'sqlite::memory:'\npolicies_dir: {}\ncookie:\n  secret: {SECRET}\n",
        root.join("policies").display()
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("bench.yaml"), &[]).expect("config");
    let store = Store::connect(config.database_url.expose())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let bundle = Arc::new(ArcSwap::from_pointee(
        Bundle::load(&config.policies_dir).expect("bundle"),
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
        username: Some("ann".into()),
        store_groups: Some(vec!["kitchen".into(), "staff".into(), "finance".into()]),
        tenant: Some(("acme".into(), "admin".into())),
        ttl: Duration::from_secs(3600),
        amr: vec!["pwd".into()],
        ip: None,
        user_agent: None,
    };
    let signer = CookieSigner::new(SECRET.as_bytes());
    let cookie = issue_session(&store, &signer, &grant, chrono::Utc::now())
        .await
        .expect("session")
        .cookie_value;
    Fixture {
        decider: Decider::new(&config, bundle, sessions),
        cookie,
    }
}

fn nginx_headers(url: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-original-url", url),
        ("x-original-method", "GET"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("header"),
        );
    }
    h
}

const CASES: &[(&str, &str, bool, u16)] = &[
    (
        "public_route",
        "https://apps.example.com/healthz",
        false,
        200,
    ),
    (
        "rego_allow",
        "https://apps.example.com/restaurant/orders?page=2",
        true,
        200,
    ),
    ("rego_deny", "https://apps.example.com/marketing", true, 403),
    (
        "rego_tenant_allow",
        "https://acme.apps.example.com/dashboard",
        true,
        200,
    ),
    (
        "cel_route",
        "https://apps.example.com/reports/q3",
        true,
        403,
    ),
    (
        "unauthenticated",
        "https://apps.example.com/restaurant",
        false,
        401,
    ),
    (
        "unmatched_default_deny",
        "https://apps.example.com/nowhere",
        true,
        403,
    ),
];

fn bench_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(fixture());
    let peer: IpAddr = "127.0.0.1".parse().expect("ip");
    let mut group = c.benchmark_group("verify");
    for (name, url, with_cookie, expected) in CASES {
        let headers = nginx_headers(url);
        let cookies = [f.cookie.as_str()];
        let credentials = Credentials {
            cookies: if *with_cookie { &cookies } else { &[] },
            bearer: None,
        };
        let call = VerifyCall {
            method: "GET",
            target: "/auth/verify",
            peer,
            scheme: "http",
        };
        let decide = || {
            f.decider.decide(
                call,
                &headers,
                credentials,
                UnauthenticatedMode::Status,
                true,
                chrono::Utc::now(),
            )
        };
        // Warm the session cache and check the case decides what it claims to.
        let status = rt.block_on(decide()).status;
        assert_eq!(status, *expected, "{name}");
        group.bench_function(*name, |b| b.to_async(&rt).iter(decide));
    }
    group.finish();
}

/// The policy evaluation alone (input built per call, as verify does), to split the
/// decision's cost between the engines and the rest of the path.
fn bench_policy(c: &mut Criterion) {
    use gatehouse::policy::input::{RequestFacts, RouteFacts};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bundle = Bundle::load(&root.join("policies")).expect("bundle");
    let identity = gatehouse::policy::IdentityInput {
        rego: gatehouse::policy::input::IdentityDocs::anonymous(),
        cel: gatehouse::policy::input::IdentityDocs::anonymous(),
    };
    let mut group = c.benchmark_group("policy");
    for (name, path) in [
        ("rego_restaurant", "/restaurant/orders"),
        ("cel_reports", "/reports"),
    ] {
        let path = gatehouse::request::normalize::normalize_path(path, false).expect("path");
        let m = bundle
            .routes
            .matches(Some("apps.example.com"), &path)
            .expect("route");
        let headers = vec![("user-agent".to_string(), "bench".to_string())];
        let request = RequestFacts {
            method: "GET",
            scheme: "https",
            host: Some("apps.example.com"),
            path: &path,
            query: None,
            headers: &headers,
            source_ip: "127.0.0.1".parse().expect("ip"),
        };
        let facts = RouteFacts {
            name: &m.route.name,
            tenant: None,
            params: &[],
        };
        let now = chrono::Utc::now();
        group.bench_function(name, |b| {
            b.iter(|| bundle.evaluate(m.route, &request, &facts, &identity, now))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .output_directory(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_verify, bench_policy
}

/// Reads criterion's mean estimate for `verify/<name>` from this run's output.
fn mean_ns(name: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../target/criterion/verify/{name}/new/estimates.json"
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs each case once: no estimates, no summary.
    let Some(baseline) = mean_ns("public_route") else {
        return;
    };
    println!(
        "\nverify cost relative to public_route ({:.1} µs) in this run:",
        baseline / 1000.0
    );
    for (name, ..) in CASES {
        if let Some(ns) = mean_ns(name) {
            println!(
                "  {name:<24} {:>8.1} µs  {:>5.2}x",
                ns / 1000.0,
                ns / baseline
            );
        }
    }
}
