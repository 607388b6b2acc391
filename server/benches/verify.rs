//! The verify decision, in process: what one `/auth/verify` costs past the HTTP layer.
//!
//! Every case runs the full `Authorizer::decide` (trusted-proxy headers, normalization, route
//! match, cached session, policy, answer) against the example bundle, with the session
//! already in the cache, as it is for all but the first request of a session. The summary
//! prints each case as a ratio of `public_route` (the same work minus session and policy),
//! measured in this same run, so the numbers compare across machines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::Criterion;
use gatehouse::policy::Bundle;

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
    let f = rt.block_on(common::fixture(
        "sqlite::memory:",
        &["kitchen", "staff", "finance"],
        Some("acme"),
    ));
    let mut group = c.benchmark_group("verify");
    for (name, url, with_cookie, expected) in CASES {
        let headers = common::nginx_headers(url);
        let decide = || f.decide(&headers, *with_cookie);
        // Warm the session cache and check the case decides what it claims to.
        let status = rt.block_on(decide()).status;
        assert_eq!(status, *expected, "{name}");
        group.bench_function(*name, |b| b.to_async(&rt).iter(decide));
    }
    group.finish();
}

/// Route tables from the example's handful to a thousand more routes: the whole decision
/// for a Rego route and a public one, which should stay flat (issue 14 item 4).
const ROUTE_COUNTS: &[usize] = &[0, 100, 1000];

fn bench_routes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("routes");
    for &extra in ROUTE_COUNTS {
        let dir = tempfile::tempdir().expect("tempdir");
        common::example_policies_with_routes(dir.path(), extra);
        let f = rt.block_on(common::fixture_with_policies(
            "sqlite::memory:",
            dir.path(),
            &["kitchen", "staff", "finance"],
            Some("acme"),
        ));
        for (case, url, with_cookie) in [
            (
                "rego_allow",
                "https://apps.example.com/restaurant/orders",
                true,
            ),
            ("public_route", "https://apps.example.com/healthz", false),
        ] {
            let headers = common::nginx_headers(url);
            let decide = || f.decide(&headers, with_cookie);
            assert_eq!(rt.block_on(decide()).status, 200, "{case} with {extra}");
            group.bench_function(format!("{case}_{extra}"), |b| b.to_async(&rt).iter(decide));
        }
    }
    group.finish();
}

/// The policy evaluation alone (input built per call, as verify does), to split the
/// decision's cost between the engines and the rest of the path.
fn bench_policy(c: &mut Criterion) {
    use gatehouse::policy::input::{RequestFacts, RouteFacts};
    let bundle = Bundle::load(&common::example_policies()).expect("bundle");
    let identity = gatehouse::policy::IdentityInput::anonymous();
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
        let headers = vec![("user-agent".into(), "bench".into())];
        let request = RequestFacts {
            method: "GET",
            scheme: "https",
            host: Some("apps.example.com"),
            path: &path,
            query: None,
            headers: &headers,
            source_ip: "127.0.0.1".parse().expect("ip"),
            transport: "http",
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

fn main() {
    let mut c = common::criterion(Duration::from_secs(2));
    bench_verify(&mut c);
    bench_policy(&mut c);
    bench_routes(&mut c);
    c.final_summary();
    // `cargo test --benches` runs each case once: no estimates, no summary.
    let Some(baseline) = common::mean_ns("verify", "public_route") else {
        return;
    };
    println!(
        "\nverify cost relative to public_route ({:.1} µs) in this run:",
        baseline / 1000.0
    );
    for (name, ..) in CASES {
        if let Some(ns) = common::mean_ns("verify", name) {
            println!(
                "  {name:<24} {:>8.1} µs  {:>5.2}x",
                ns / 1000.0,
                ns / baseline
            );
        }
    }
    println!(
        "\nthe same decisions with more routes, as throughput relative to the example's own table:"
    );
    for case in ["rego_allow", "public_route"] {
        let Some(base) = common::mean_ns("routes", &format!("{case}_0")) else {
            continue;
        };
        for extra in ROUTE_COUNTS {
            if let Some(ns) = common::mean_ns("routes", &format!("{case}_{extra}")) {
                println!(
                    "  {case:<14} +{extra:<5} routes {:>8.1} µs  {:>5.2}x",
                    ns / 1000.0,
                    base / ns
                );
            }
        }
    }
}
