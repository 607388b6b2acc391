//! The decision cases (tests/cases/*.yaml) against the pure core: no database, no HTTP,
//! the example bundle and identities built in memory — milliseconds for every case. The
//! same files run against HTTP verify in server/tests/api/verify.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

#[path = "../../tests/cases/runner.rs"]
mod runner;

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::Utc;
use gatehouse_core::decide::{HeaderNames, Settings};
use gatehouse_core::dry_run::DryRun;
use gatehouse_core::policy::Bundle;
use runner::{Answer, Case, DecisionTarget, UserSpec};

/// The core decides each case as a `policy eval` input: the case's URL and its user's
/// `user` and `device`, through `route` and `decide` (gatehouse_core::dry_run).
struct Core {
    bundle: Bundle,
    settings: Settings,
    users: BTreeMap<String, UserSpec>,
}

impl Core {
    fn new() -> Core {
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        Core {
            bundle: Bundle::load(&policies).expect("the example bundle"),
            // As the API tests configure the service.
            settings: Settings::new(
                HeaderNames::default(),
                Vec::new(),
                "https://auth.example.com",
            ),
            users: BTreeMap::new(),
        }
    }

    fn answer(&self, case: &Case) -> Answer {
        let spec = case.user.as_ref().map(|name| &self.users[name]);
        let described = DryRun {
            url: case.url.clone(),
            user: spec.map(|s| s.user.clone()),
            device: spec.and_then(|s| s.device.clone()),
            ..DryRun::default()
        };
        let verdict = described
            .decide(&self.bundle, &self.settings, Utc::now())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        Answer {
            status: verdict.status,
            headers: verdict.headers,
        }
    }
}

impl DecisionTarget for Core {
    fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) -> impl Future<Output = ()> {
        self.users.extend(
            users
                .iter()
                .map(|(name, spec)| (name.clone(), spec.clone())),
        );
        ready(())
    }

    fn ask(&mut self, case: &Case) -> impl Future<Output = Answer> {
        ready(self.answer(case))
    }
}

/// Drives a future that is ready at once (the core's target never waits).
fn now_or_never<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the core's decision never waits"),
    }
}

#[test]
fn decision_cases_hold_in_the_pure_core() {
    let mut core = Core::new();
    let failures = now_or_never(runner::run_all(&mut core));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
