//! Sessions at scale (issue 14 item 4): memory with many live cached sessions, the cost of a
//! session-cache miss against Postgres, and whether a large cache slows verify down.
//!
//! Makes its own Postgres database (dropped at the end), creates `--sessions` users and
//! sessions (100,000 by default) shaped like an OIDC login's — a dozen IdP claims, five
//! groups, one tenant — and then, through the real `Authorizer::decide` on a Rego route:
//! 1. decides once with each session: every decision is a cache miss that loads the session
//!    from Postgres (p50 / p99 of those decisions, against a hit's time measured alongside);
//! 2. reads the process's RSS before and after, so the growth per cached session is printed;
//! 3. decides again for one session over and over, for sessions spread over as many as keep
//!    their policy documents built (`session.built_documents`; the ratio should be ~1), and
//!    for sessions spread over the whole cache (most rebuild their documents from the compact
//!    copy each session keeps: the price of the memory bound).
//!
//! ```sh
//! cargo bench --bench sessions                          # 100,000 sessions
//! cargo bench --bench sessions -- --sessions 10000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "common/mod.rs"]
mod common;
#[path = "../../tests/common/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use gatehouse::session::token::CookieSigner;
use gatehouse::session::{SessionSpec, mint_session};
use gatehouse::store::IdpUser;

/// The issue's bound on the whole process with 100k cached sessions.
const RSS_BUDGET_MIB: f64 = 200.0;
/// The issue's bound on a session-cache miss against Postgres.
const MISS_BUDGET_MS: f64 = 1.0;
const ROUTE: &str = "https://apps.example.com/restaurant/orders?page=2";

fn sessions_arg() -> usize {
    let mut it = std::env::args().skip(1);
    let mut n = 100_000;
    while let Some(arg) = it.next() {
        if arg == "--sessions" {
            n = it
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--sessions needs a number");
        }
    }
    n
}

/// The process's resident set, from /proc (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// Claims as `oidc::claims::map_claims` keeps them from a typical IdP's ID token and userinfo.
fn claims(i: usize) -> serde_json::Value {
    serde_json::json!({
        "iss": "https://idp.example.com/realms/corp",
        "sub": format!("f3a1c2d4-{i:08}-4e5f-9a8b-7c6d5e4f3a2b"),
        "email": format!("user{i}@example.com"),
        "email_verified": true,
        "name": format!("User Number {i}"),
        "given_name": "User",
        "family_name": format!("Number {i}"),
        "preferred_username": format!("user{i}"),
        "locale": "en-GB",
        "auth_time": 1_764_000_000 + i as i64,
        "groups": groups(i),
        "department": "Engineering",
    })
}

fn groups(i: usize) -> Vec<String> {
    let mut g = vec![
        "kitchen".to_string(),
        "staff".to_string(),
        "vpn-users".to_string(),
        format!("team-{}", i % 40),
        format!("site-{}", i % 7),
    ];
    g.sort();
    g
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let n = sessions_arg();
    let rt = common::runtime(2);
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let db = postgres::PgDatabase::create("gatehouse_bench_sessions").await;
    let fx = common::fixture(&db.url, &["kitchen"], None).await;
    let signer = CookieSigner::new(common::SECRET.as_bytes());
    let headers = common::nginx_headers(ROUTE);
    // Warm the engine and the process's allocator with the fixture's own session.
    for _ in 0..1_000 {
        assert_eq!(fx.decide(&headers, true).await.status, 200);
    }

    println!("creating {n} users and sessions in Postgres…");
    let started = Instant::now();
    let store = fx.store.clone();
    let now = chrono::Utc::now();
    // 16 writers at a time, each taking every 16th session.
    const WRITERS: usize = 16;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (store, signer) = (store.clone(), signer.clone());
        writers.spawn(async move {
            let mut made = Vec::new();
            for i in (w..n).step_by(WRITERS) {
                made.push((i, create_session(&store, &signer, i, now).await));
            }
            made
        });
    }
    let mut made: Vec<(usize, String)> = writers.join_all().await.into_iter().flatten().collect();
    made.sort_by_key(|(i, _)| *i);
    let cookies: Vec<String> = made.into_iter().map(|(_, cookie)| cookie).collect();
    println!("  {:.1} s", started.elapsed().as_secs_f64());

    let rss_before = rss_mib();
    // 1. The first decision of each session: a cache miss loading it from Postgres, one at a
    //    time so each time is one miss's latency.
    let mut miss_ms = Vec::with_capacity(n);
    for cookie in &cookies {
        let started = Instant::now();
        let decision = fx.decide_with(&headers, Some(cookie)).await;
        miss_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            decision.status, 200,
            "a session of the kitchen group is allowed on {ROUTE}"
        );
    }
    let rss_after = rss_mib();
    miss_ms.sort_by(f64::total_cmp);

    // 2. Hits: the same decision for one session; for sessions spread over as many as keep
    //    their documents built (`session.built_documents`); and spread over the whole cache,
    //    where most sessions rebuild their documents from the compact copy.
    let built = gatehouse::config::SessionConfig::default().built_documents as usize;
    let hot = built.min(n) / 2;
    let rebuilt = || gatehouse::metrics::METRICS.session_documents_rebuilt.get();
    let one = time_decisions(&fx, &headers, std::iter::repeat_n(&cookies[0], n)).await;
    // Twice over the hot set first, so moka's admission has seen each of them.
    let hot_cookies = || (0..n).map(|i| &cookies[(i * 7_919) % hot.max(1)]);
    time_decisions(&fx, &headers, hot_cookies()).await;
    let rebuilt_before_hot = rebuilt();
    let spread_hot = time_decisions(&fx, &headers, hot_cookies()).await;
    let rebuilt_in_hot = rebuilt() - rebuilt_before_hot;
    let rss_hot = rss_mib();
    let rebuilt_before = rebuilt();
    let spread = time_decisions(
        &fx,
        &headers,
        (0..n).map(|i| &cookies[(i * 7_919) % cookies.len()]),
    )
    .await;
    let rebuilt_in_spread = rebuilt() - rebuilt_before;
    let hit_us = one.as_secs_f64() * 1e6 / n as f64;
    let hot_us = spread_hot.as_secs_f64() * 1e6 / n as f64;
    let spread_us = spread.as_secs_f64() * 1e6 / n as f64;
    let rss_end = rss_mib();

    let per_session = (rss_after - rss_before) * 1024.0 * 1024.0 / n as f64;
    println!();
    println!("| case | figure |");
    println!("| --- | --- |");
    println!("| sessions cached | {n} |");
    println!("| RSS before the sessions were cached | {rss_before:.0} MiB |");
    println!(
        "| RSS with {n} cached sessions | {rss_after:.0} MiB (budget {RSS_BUDGET_MIB:.0} MiB for 100k); {rss_hot:.0} MiB once {hot} keep their documents built; {rss_end:.0} MiB after the whole-cache run |"
    );
    println!("| growth per cached session | {per_session:.0} bytes |");
    println!(
        "| decision with a cache miss (Postgres): p50 / p99 | {:.3} / {:.3} ms (budget {MISS_BUDGET_MS} ms) |",
        percentile(&miss_ms, 0.5),
        percentile(&miss_ms, 0.99)
    );
    println!("| sessions keeping their documents built (`session.built_documents`) | {built} |");
    println!("| decision with a hit, one session | {hit_us:.1} µs |");
    println!(
        "| decision with a hit, {hot} sessions spread (documents built) | {hot_us:.1} µs ({:.2}× one session; {rebuilt_in_hot} of {n} rebuilt their documents) |",
        hot_us / hit_us
    );
    println!(
        "| decision with a hit, sessions spread over the whole cache | {spread_us:.1} µs ({:.2}× one session; {rebuilt_in_spread} of {n} rebuilt their documents) |",
        spread_us / hit_us
    );
    drop(fx);
    drop(db);
}

/// User `i` written as an OIDC login writes them (`Store::upsert_idp_user`: subject, claims
/// and IdP groups in one transaction) and a session carrying the same claims; returns the
/// session's cookie.
async fn create_session(
    store: &gatehouse::store::Store,
    signer: &CookieSigner,
    i: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let claims = claims(i);
    // The user's columns are the claims' values, as `map_claims` takes them.
    let claim = |key: &str| claims[key].as_str().expect("a string claim");
    let user_id = store
        .upsert_idp_user(
            IdpUser {
                subject: claim("sub"),
                email: claim("email"),
                email_verified: Some(true),
                name: Some(claim("name")),
                username: Some(claim("preferred_username")),
                groups: &groups(i),
                claims: &claims,
            },
            now,
        )
        .await
        .expect("user");
    let spec = SessionSpec {
        id: uuid::Uuid::new_v4().to_string(),
        user_id,
        ttl: chrono::Duration::hours(8),
        amr: vec!["pwd".into(), "otp".into()],
        ip: Some(format!("10.{}.{}.{}", i % 200, (i / 200) % 250, i % 250)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        device_id: None,
        idp_sid: Some(format!("sid-{i}")),
        idp_claims: claims,
        refresh_token_enc: None,
        id_token_enc: None,
        auth_time: None,
    };
    mint_session(store, signer, &spec, now)
        .await
        .expect("session")
        .cookie_value
}

async fn time_decisions<'a>(
    fx: &common::Fixture,
    headers: &actix_web::http::header::HeaderMap,
    cookies: impl Iterator<Item = &'a String>,
) -> Duration {
    let started = Instant::now();
    for cookie in cookies {
        let decision = fx.decide_with(headers, Some(cookie)).await;
        assert_eq!(decision.status, 200, "cached session allowed");
    }
    started.elapsed()
}
