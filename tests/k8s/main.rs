//! Gatehouse on Kubernetes (`deploy/k8s/`) and the ingress recipes, checked without a
//! cluster: every manifest against the Kubernetes schemas and its CRD's published schema,
//! the kustomizations, the wiring between them, the shipped configuration run natively with
//! its ConfigMap hot reload, the Envoy configuration, and ingress-nginx's generated NGINX
//! configuration for the oauth2-proxy annotations run against Gatehouse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

mod cel_rules;
mod config;
mod envoy;
#[path = "../ingress/harness.rs"]
#[allow(dead_code)]
mod harness;
mod ingress_nginx;
mod manifests;
#[path = "../common/oidc_provider.rs"]
mod oidc_provider;
#[path = "../common/postgres.rs"]
mod postgres;

/// Tests that pick ports and then start processes on them start one at a time: a process
/// binding port 0 (the IdP) could otherwise be handed a port another test just picked.
pub static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
