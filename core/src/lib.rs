//! `gatehouse-core`: the decision Gatehouse makes for every request, with no I/O.
//!
//! A transport (HTTP verify, the built-in proxy, gRPC ext_authz, the admin playground)
//! describes the request it was asked about; this crate reads it under the trust rules
//! (`request::trust`), normalizes its path and host (`request::normalize`), and decides
//! it against a policy bundle. Sessions, devices, audit and metrics are the service's
//! business (`gatehouse` crate), around this one: see `docs/architecture.md`.

#![forbid(unsafe_code)]

pub mod decide;
pub mod dry_run;
pub mod policy;
pub mod request;
pub mod yaml;
