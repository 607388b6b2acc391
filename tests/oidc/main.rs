//! End-to-end OIDC login tests against an independent provider (node oidc-provider).

#[path = "../common/oidc_provider.rs"]
mod oidc_provider;
mod provider_harness;
