//! End-to-end OIDC login tests against an independent provider (node oidc-provider).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

mod demo;
mod dev_idp;
#[path = "../ingress/harness.rs"]
#[allow(dead_code)]
mod harness;
mod hostile;
mod ingress;
mod login;
#[path = "../common/oidc_provider.rs"]
mod oidc_provider;
#[path = "../common/postgres.rs"]
mod postgres;
mod provider_harness;
