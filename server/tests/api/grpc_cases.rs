//! The decision cases (tests/cases/*.yaml) over Envoy ext_authz gRPC, on both backends.

use std::collections::BTreeMap;

use crate::cases::{Answer, Case, DecisionTarget, UserSpec, run_all};
use crate::grpc::{Described, Envoy, grpc_options};
use crate::helpers::{BACKENDS, TestApp, spawn_app_with};

/// Envoy's check as a layer of the decision cases (tests/cases/runner.rs). A case's `url`
/// becomes the request Envoy describes (method GET, its scheme, authority and target as
/// written, no `Accept: text/html` — a script, so unauthenticated is 401). The answer as a
/// case reads it: allowed → 200 with the headers Envoy sets on the upstream request;
/// refused → the denied response's status and headers.
struct GrpcCheck {
    app: TestApp,
    envoy: Envoy,
    cookies: BTreeMap<String, String>,
}

impl DecisionTarget for GrpcCheck {
    async fn sign_in(&mut self, users: &BTreeMap<String, UserSpec>) {
        self.cookies.extend(self.app.sign_in_all(users).await);
    }

    async fn ask(&mut self, case: &Case) -> Answer {
        let mut request = Described::get(&case.url);
        if let Some(user) = &case.user {
            request = request.cookie(&self.app, &self.cookies[user]);
        }
        let checked = self.envoy.check(&request).await;
        Answer {
            status: checked.http_status(),
            headers: checked.headers(),
        }
    }
}

#[tokio::test]
async fn decision_cases_hold_over_grpc_on_every_backend() {
    for backend in BACKENDS {
        let app = spawn_app_with(grpc_options(backend, "")).await;
        let envoy = Envoy::connect(&app).await;
        let mut target = GrpcCheck {
            app,
            envoy,
            cookies: BTreeMap::new(),
        };
        let failures = run_all(&mut target).await;
        assert!(failures.is_empty(), "{backend:?}:\n{}", failures.join("\n"));
    }
}
