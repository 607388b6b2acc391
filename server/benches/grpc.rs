//! Envoy's gRPC check against HTTP verify, in one run on the same bundle and session
//! (docs/performance.md): the real application (both listeners, the audit writer on
//! SQLite) and a closed-loop load client in this process — 32 requests in flight, each
//! transport for the same time — so both pay the same client, audit and machine costs.
//!
//! `cargo bench -p gatehouse --bench grpc` (release build). `GRPC_BENCH_SECS` sets the
//! seconds per case (default 5).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use gatehouse::app::Application;
use gatehouse::config::Config;
use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionGrant, issue_session};
use gatehouse::store::Store;

/// Requests in flight per case.
const CONCURRENCY: usize = 32;

fn main() {
    let secs: u64 = std::env::var("GRPC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = common::runtime(2);
    runtime.block_on(run(Duration::from_secs(secs)));
}

async fn run(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\n\
         public_url: https://auth.example.com\ndatabase_url: '{db}'\npolicies_dir: {}\n\
         cookie:\n  secret: {}\naudit:\n  spool_dir: {}\n",
        common::example_policies().display(),
        common::SECRET,
        dir.path().join("spool").display(),
    );
    let config = Config::from_yaml_and_env(&yaml, Path::new("bench.yaml"), &[]).unwrap();
    let app = Application::build(config).await.unwrap();
    let http = format!("http://{}/auth/verify", app.public_addr());
    let grpc = format!("http://{}", app.grpc_addr().unwrap());
    tokio::spawn(app.run_until_stopped());
    let store = Store::connect(&db).await.unwrap();
    let grant = SessionGrant {
        email: "ann@example.com".into(),
        name: None,
        username: Some("ann".into()),
        store_groups: Some(vec!["kitchen".into()]),
        tenant: None,
        ttl: Duration::from_secs(3600),
        amr: vec!["pwd".into()],
        ip: None,
        user_agent: None,
    };
    let signer = CookieSigner::new(common::SECRET.as_bytes());
    let cookie = issue_session(&store, &signer, &grant, chrono::Utc::now())
        .await
        .unwrap()
        .cookie_value;

    println!(
        "\n{CONCURRENCY} in flight, {} s per case, one process (server + client) on this machine\n",
        duration.as_secs()
    );
    println!("| route | HTTP verify req/s | gRPC Check req/s | gRPC ÷ HTTP |");
    println!("| --- | --- | --- | --- |");
    for (label, url, with_cookie) in [
        (
            "public (`/healthz`)",
            "https://apps.example.com/healthz",
            false,
        ),
        (
            "Rego, allowed (`/restaurant`)",
            "https://apps.example.com/restaurant/orders",
            true,
        ),
        (
            "CEL, denied (`/marketing`)",
            "https://apps.example.com/marketing/x",
            true,
        ),
    ] {
        let cookie = with_cookie.then_some(cookie.as_str());
        let over_http = load_http(&http, url, cookie, duration).await;
        let over_grpc = load_grpc(&grpc, url, cookie, duration).await;
        println!(
            "| {label} | {over_http:.0} | {over_grpc:.0} | {:.2} |",
            over_grpc / over_http
        );
    }
    println!(
        "\naudit records dropped: {} (both transports audit every decision)",
        gatehouse::metrics::METRICS.audit_dropped.get()
    );
}

/// Requests/s of verify calls as NGINX makes them, on keep-alive connections.
async fn load_http(endpoint: &str, url: &str, cookie: Option<&str>, duration: Duration) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let mut request = client
        .get(endpoint)
        .header("X-Original-URL", url)
        .header("X-Original-Method", "GET");
    if let Some(c) = cookie {
        request = request.header("Cookie", format!("_gatehouse={c}"));
    }
    let request = request.build().unwrap();
    // The status every request must get, taken from a first one.
    let expected = client
        .execute(request.try_clone().unwrap())
        .await
        .unwrap()
        .status();
    closed_loop(duration, move || {
        let client = client.clone();
        let request = request.try_clone().unwrap();
        async move {
            let status = client.execute(request).await.unwrap().status();
            assert_eq!(status, expected);
        }
    })
    .await
}

/// Requests/s of Envoy checks over one HTTP/2 connection (as Envoy's gRPC client keeps one
/// per worker).
async fn load_grpc(endpoint: &str, url: &str, cookie: Option<&str>, duration: Duration) -> f64 {
    let client = AuthorizationClient::connect(endpoint.to_string())
        .await
        .unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut headers = HashMap::from([
        (":authority".to_string(), host.to_string()),
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        ("user-agent".to_string(), "bench".to_string()),
    ]);
    if let Some(c) = cookie {
        headers.insert("cookie".into(), format!("_gatehouse={c}"));
    }
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.7".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    headers,
                    path: path.into(),
                    host: host.into(),
                    scheme: scheme.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let expected = client
        .clone()
        .check(check.clone())
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .code;
    closed_loop(duration, move || {
        let mut client = client.clone();
        let check = check.clone();
        async move {
            let code = client
                .check(check)
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
                .code;
            assert_eq!(code, expected);
        }
    })
    .await
}

/// Runs `CONCURRENCY` loops of `one` for `duration`; returns completed requests per second.
async fn closed_loop<F, Fut>(duration: Duration, one: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..CONCURRENCY {
        let (one, done, stop) = (one.clone(), done.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                one().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
