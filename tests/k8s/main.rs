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
