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

use chrono::{Duration, Utc};
use gatehouse_core::decide::{
    self, Asking, Caller, HeaderNames, Identity, Settings, Step, Transport, UnauthenticatedMode,
};
use gatehouse_core::policy::input::{DeviceFacts, SessionFacts, UserFacts};
use gatehouse_core::policy::{Bundle, IdentityInput};
use gatehouse_core::request::trust::VerifyCall;
use runner::{Answer, Case, DecisionTarget, UserSpec};

/// A signed-in user as the service would have resolved it.
struct User {
    email: String,
    groups_joined: String,
    tenants_joined: String,
    input: IdentityInput,
}

struct Core {
    bundle: Bundle,
    settings: Settings,
    users: BTreeMap<String, User>,
}

impl Core {
    fn new() -> Core {
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        Core {
            bundle: Bundle::load(&policies).expect("the example bundle"),
            // As the API tests configure the service.
            settings: Settings::new(
                HeaderNames::default(),
                vec!["127.0.0.1/32".parse().unwrap()],
                "https://auth.example.com",
            ),
            users: BTreeMap::new(),
        }
    }

    fn answer(&self, case: &Case) -> Answer {
        let headers = [
            ("x-original-url", case.url.as_str()),
            ("x-original-method", "GET"),
        ];
        let call = VerifyCall {
            method: "GET",
            target: "/auth/verify",
            peer: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            forwarded: true,
        };
        let verdict = match decide::route(&self.bundle, &self.settings, call, &headers[..]) {
            Step::Done(v) => v,
            Step::NeedsCaller(routed) => {
                let identity = case.user.as_ref().map(|name| {
                    let u = &self.users[name];
                    Identity {
                        email: &u.email,
                        username: None,
                        groups_joined: &u.groups_joined,
                        tenants_joined: &u.tenants_joined,
                        input: &u.input,
                    }
                });
                let caller = match &identity {
                    Some(identity) => Caller::Session(identity),
                    None => Caller::Anonymous {
                        reason: "session_unknown",
                    },
                };
                let asking = Asking {
                    mode: UnauthenticatedMode::Status,
                    wants_html: false,
                    transport: Transport::Http,
                };
                decide::decide(
                    &self.bundle,
                    &self.settings,
                    *routed,
                    &headers[..],
                    caller,
                    asking,
                    Utc::now(),
                )
            }
        };
        Answer {
            status: verdict.status,
            headers: verdict.headers,
        }
    }
}

impl DecisionTarget for Core {
    fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) -> impl Future<Output = ()> {
        let now = Utc::now();
        for (name, spec) in users {
            let tenants: Vec<(String, String)> = spec
                .tenant
                .iter()
                .map(|t| (t.clone(), "member".to_string()))
                .collect();
            let claims = serde_json::json!({});
            let user = UserFacts {
                id: name,
                subject: None,
                email: &spec.email,
                name: None,
                username: None,
                groups: &spec.groups,
                roles: &[],
                tenants: &tenants,
                claims: &claims,
            };
            let amr = vec!["test".to_string()];
            let session = SessionFacts {
                id: name,
                created_at: now,
                expires_at: now + Duration::hours(1),
                auth_time: now,
                amr: &amr,
            };
            let posture = serde_json::json!({});
            let device = spec.device.as_deref().map(|kind| DeviceFacts {
                id: "device-1",
                registered: true,
                managed: kind == "managed",
                trust: "high",
                posture: &posture,
                cert_fingerprint: None,
            });
            let input = IdentityInput::build(&user, &session, device.as_ref());
            let groups_joined = spec.groups.join(",");
            let tenants_joined = spec.tenant.clone().unwrap_or_default();
            self.users.insert(
                name.clone(),
                User {
                    email: spec.email.clone(),
                    groups_joined,
                    tenants_joined,
                    input,
                },
            );
        }
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
