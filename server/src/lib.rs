//! Gatehouse: an identity-aware authorization service for the forward-auth pattern.
//!
//! An ingress asks `/auth/verify` before every request; Gatehouse resolves the session,
//! evaluates the route's Rego or CEL policy, and answers 200 with identity headers, 401 or
//! 403. The modules follow the request: [`request`] reads and normalizes it, [`policy`]
//! matches the route and evaluates, [`session`] resolves who is asking, [`decision`] puts
//! them together, [`http`] is the thin actix layer, [`store`] the database.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod authorizer;
pub mod cli;
pub mod config;
pub mod demo;
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
