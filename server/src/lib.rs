//! Gatehouse: an identity-aware authorization service for the forward-auth pattern.
//!
//! An ingress asks `/auth/verify` before every request; Gatehouse resolves the session,
//! evaluates the route's Rego or CEL policy, and answers 200 with identity headers, 401 or
//! 403. See `DESIGN.md` in the shared folder and the README for the contract.
#![forbid(unsafe_code)]

pub mod config;
pub mod policy;
pub mod request;
pub mod session;
pub mod store;
