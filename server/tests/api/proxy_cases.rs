//! The decision cases (tests/cases/*.yaml) through the built-in proxy, on both backends: the
//! example bundle's policies as shipped, its routes all forwarding to a recording echo
//! upstream.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cases::{Answer, Case, DecisionTarget, UserSpec, run_all};
use crate::helpers::{AppOptions, BACKENDS, TestApp, example_policies, spawn_app_with};
use crate::proxy::{header, split_answer, start_echo};

/// Copies the bundle in `from` (with its subdirectories) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The example bundle (policies/) in a temporary directory, unchanged but for routes.yaml:
/// every route with a `path` forwards to `upstream` (the shipped `upstream:` lines are
/// replaced, and routes without one get it). The policies are the shipped ones.
fn example_bundle_forwarding_to(upstream: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example_policies(), dir.path());
    let routes = std::fs::read_to_string(example_policies().join("routes.yaml")).unwrap();
    let mut rewritten = String::new();
    let (mut paths, mut upstreams) = (0, 0);
    for line in routes.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("upstream:") {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push('\n');
        if let Some(rest) = trimmed.strip_prefix("path:") {
            assert!(rest.trim().starts_with('/'), "{line}");
            let indent = &line[..line.len() - trimmed.len()];
            rewritten.push_str(&format!("{indent}upstream: {upstream}\n"));
            paths += 1;
        }
    }
    for line in rewritten.lines() {
        upstreams += usize::from(line.trim_start().starts_with("upstream:"));
    }
    assert!(paths >= 5, "routes.yaml changed shape:\n{routes}");
    assert_eq!(paths, upstreams);
    std::fs::write(dir.path().join("routes.yaml"), rewritten).unwrap();
    dir
}

/// The built-in proxy as a layer of the decision cases (tests/cases/runner.rs). The proxy
/// decides the request itself — its `Host` header and request target; forwarding headers are
/// never believed — so a case's `url` becomes that request, sent raw so that the target
/// reaches the proxy byte for byte (`/../x`, `\`, `%2f` as written). Its answer, as a case
/// reads it:
/// - allowed: the status the client got (the echo's 200) with the headers **the upstream
///   received** (that is what identity and policy headers are for a proxy), then the
///   proxy's own response headers;
/// - refused: the proxy's answer (403 with `X-Auth-Request-Reason`, 400, and — the request
///   sent without `Accept: text/html`, as a script would — 401 with
///   `X-Auth-Request-Redirect`).
struct BuiltInProxy {
    app: TestApp,
    proxy: String,
    cookies: BTreeMap<String, String>,
    _bundle: tempfile::TempDir,
}

impl BuiltInProxy {
    async fn start(backend: crate::helpers::Backend) -> BuiltInProxy {
        let echo = start_echo().await;
        let bundle = example_bundle_forwarding_to(&format!("http://127.0.0.1:{echo}"));
        let mut options = AppOptions::with_policies(backend, bundle.path());
        options.extra_yaml = "proxy:\n  listen: 127.0.0.1:0\n".into();
        let app = spawn_app_with(options).await;
        let proxy = app.proxy.clone().unwrap();
        BuiltInProxy {
            app,
            proxy,
            cookies: BTreeMap::new(),
            _bundle: bundle,
        }
    }
}

/// `https://host/target` as the host and the raw target, without any parsing that could
/// resolve dot segments or backslashes on the way.
fn host_and_target(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("case url must be https://host/target: {url}"));
    let slash = rest.find('/').unwrap_or(rest.len());
    let target = if slash == rest.len() {
        "/"
    } else {
        &rest[slash..]
    };
    (&rest[..slash], target)
}

/// A response body after its head: by `Content-Length`, chunked, or up to the close.
fn body_of(head: &str, rest: &[u8]) -> Vec<u8> {
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + rest[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = String::from_utf8_lossy(&rest[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|e| panic!("chunk size {size_text:?}: {e}"));
            at = line_end + 2;
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    match header(head, "content-length") {
        Some(n) => rest[..n.parse::<usize>().unwrap()].to_vec(),
        None => rest.to_vec(),
    }
}

impl DecisionTarget for BuiltInProxy {
    async fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) {
        self.cookies.extend(self.app.sign_in_all(users).await);
    }

    async fn ask(&mut self, case: &Case) -> Answer {
        let (host, target) = host_and_target(&case.url);
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(user) = &case.user {
            let cookie = self.app.cookie(&self.cookies[user]);
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        let addr = self.proxy.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut raw))
            .await
            .expect("the proxy answers")
            .unwrap();
        let (status, head, rest) = split_answer(&raw);
        let answered: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut headers = Vec::new();
        if header(&head, "x-upstream") == Some("echo") {
            // Forwarded: what the upstream received comes first.
            let echo: Value = serde_json::from_slice(&body_of(&head, &rest))
                .unwrap_or_else(|e| panic!("{}: the echo's body: {e}\n{head}", case.name));
            for pair in echo["all_headers"].as_array().unwrap() {
                let name = pair[0].as_str().unwrap().to_string();
                headers.push((name, pair[1].as_str().unwrap().to_string()));
            }
        } else {
            // Anything the proxy answered itself is never an allow: a 200 must be the echo's.
            assert_ne!(
                status, 200,
                "{}: a 200 not from the upstream\n{head}",
                case.name
            );
        }
        headers.extend(answered);
        Answer { status, headers }
    }

    /// The one known difference from an ingress's view: the proxy's listener is plain http,
    /// so the request it decided on is `http://host/target`, and the login redirect's `rd`
    /// names that (`rd=http%3A%2F%2F…`) where the cases, written for a TLS-terminating
    /// ingress, expect `rd=https%3A%2F%2F…`. The expectation is adjusted for that scheme
    /// alone; the rest of the URL (login URL, host, target, query) must match exactly.
    fn expected(&self, name: &str, value: &str) -> String {
        if name.eq_ignore_ascii_case("X-Auth-Request-Redirect") {
            let (login, rd) = value
                .split_once("?rd=")
                .unwrap_or_else(|| panic!("a login redirect without rd: {value}"));
            let rd = rd
                .strip_prefix("https%3A%2F%2F")
                .unwrap_or_else(|| panic!("the case's rd is not https://…: {value}"));
            return format!("{login}?rd=http%3A%2F%2F{rd}");
        }
        value.to_string()
    }
}

/// The decision cases that the pure core and HTTP verify pass, through the built-in proxy
/// with real sessions and devices on each backend, every allowed request forwarded to an
/// upstream that reports what it received.
#[tokio::test]
async fn decision_cases_hold_through_the_built_in_proxy() {
    for backend in BACKENDS {
        let mut target = BuiltInProxy::start(backend).await;
        let failures = run_all(&mut target).await;
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
    }
}
