//! Decision cases (`tests/cases/*.yaml`, one scenario per file, found by glob), run at every
//! layer through one trait, [`DecisionTarget`] — as cedar runs its JSON cases against its
//! library and its CLI. Today: the pure core with no database (`core/tests/cases.rs`), HTTP
//! verify on Postgres and SQLite (`server/tests/api/verify.rs`), the built-in proxy on both
//! (`server/tests/api/proxy_cases.rs`) and Envoy's gRPC check on both
//! (`server/tests/api/grpc_cases.rs`). A new transport implements the trait and runs the
//! same files.
//!
//! This file is compiled into each of those test crates (`#[path]`), so it uses only std,
//! serde, serde-saphyr and gatehouse-core (which both crates depend on).

#![allow(dead_code)] // each test crate uses its own part of the API

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use gatehouse_core::dry_run::{DescribedDevice, DescribedUser};
use serde::Deserialize;

/// One scenario file: the users it signs in and the requests it asks about.
#[derive(Debug, Deserialize)]
pub struct Scenario {
    pub users: BTreeMap<String, UserSpec>,
    pub cases: Vec<Case>,
}

/// A signed-in user of a scenario: the `user` and `device` of an admin playground request
/// (`gatehouse_core::dry_run`), which the pure core decides directly and the service's
/// layers sign in through the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub user: DescribedUser,
    #[serde(default)]
    pub device: Option<DescribedDevice>,
}

/// One request as NGINX describes it: `X-Original-URL` (method GET) from a trusted peer.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub user: Option<String>,
    pub url: String,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent: Vec<String>,
}

/// What a layer answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A layer the cases run against.
pub trait DecisionTarget {
    /// Signs in the scenario's users (sessions, devices) before its cases are asked.
    fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) -> impl Future<Output = ()>;
    /// The answer to one case.
    fn ask(&mut self, case: &Case) -> impl Future<Output = Answer>;
    /// The value this layer must answer for header `name` where the case expects `value`.
    /// The case's own value, unless a layer has a known, documented difference from an
    /// ingress's view of the request (the built-in proxy's listener is plain http, so its
    /// login redirect names `http://`); such a layer changes the expectation here, for that
    /// header only, and the answer is still compared exactly.
    fn expected(&self, _name: &str, value: &str) -> String {
        value.to_string()
    }
}

/// The scenario files, sorted by name.
pub fn scenarios() -> Vec<(String, Scenario)> {
    let dir = cases_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let scenarios: Vec<(String, Scenario)> = files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let scenario =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, scenario)
        })
        .collect();
    assert!(
        scenarios.len() >= 4,
        "scenario files missing in {}",
        dir.display()
    );
    scenarios
}

fn cases_dir() -> PathBuf {
    // Both crates that include this file sit one level below the repository root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases")
}

/// Runs every scenario against `target`; returns the failures, one line each.
pub async fn run_all(target: &mut impl DecisionTarget) -> Vec<String> {
    let mut failures = Vec::new();
    let mut asked = 0;
    for (file, scenario) in scenarios() {
        target.sign_in(&scenario.users).await;
        for case in &scenario.cases {
            if let Some(user) = &case.user {
                assert!(
                    scenario.users.contains_key(user),
                    "{file}: case `{}` names unknown user {user}",
                    case.name
                );
            }
            let answer = target.ask(case).await;
            asked += 1;
            failures.extend(
                check_with(case, &answer, |name, value| target.expected(name, value))
                    .into_iter()
                    .map(|f| format!("{file}: {f}")),
            );
        }
    }
    assert!(asked >= 25, "only {asked} cases ran");
    failures
}

/// Compares one answer with its case.
pub fn check(case: &Case, answer: &Answer) -> Vec<String> {
    check_with(case, answer, |_, value| value.to_string())
}

/// Compares one answer with its case, each expected header value as `expected(name, value)`
/// states it for the layer that answered ([`DecisionTarget::expected`]).
pub fn check_with(
    case: &Case,
    answer: &Answer,
    expected: impl Fn(&str, &str) -> String,
) -> Vec<String> {
    if answer.status != case.status {
        return vec![format!(
            "{}: status {}, expected {}",
            case.name, answer.status, case.status
        )];
    }
    let mut failures = Vec::new();
    for (name, value) in &case.headers {
        let expected = expected(name, value);
        let got = answer.header(name);
        if got != Some(expected.as_str()) {
            failures.push(format!(
                "{}: header {name} = {got:?}, expected {expected:?}",
                case.name
            ));
        }
    }
    for name in &case.absent {
        if answer.header(name).is_some() {
            failures.push(format!("{}: header {name} must be absent", case.name));
        }
    }
    failures
}
