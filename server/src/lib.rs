//! Gatehouse: an identity-aware authorization service for the forward-auth pattern.
//!
//! An ingress asks `/auth/verify` (or Envoy asks over gRPC) before every request; Gatehouse
//! resolves the session, evaluates the route's Rego or CEL policy, and answers 200 with
//! identity headers, 401 or 403. The decision itself is the pure `gatehouse-core` crate
//! ([`request`], [`policy`]); here [`authorizer`] does the I/O around it ([`session`],
//! [`audit`], [`metrics`]), [`http`] and [`grpc`] are the thin transports, [`store`] the
//! database (docs/architecture.md).
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod authorizer;
pub mod cli;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod headers;
pub mod http;
pub mod metrics;
pub mod oidc;
pub mod replay;
/// Policy bundles: compiled and evaluated by the pure core.
pub use gatehouse_core::policy;
pub mod reload;
/// The request model, trust rules and normalization live in the pure core.
pub use gatehouse_core::request;
pub mod session;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub use gatehouse_core::yaml;
