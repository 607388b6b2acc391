//! In-process API tests: the real application on port 0, against real Postgres and SQLite
//! databases created per test and dropped afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

mod admin;
mod audit;
mod audit_at_scale;
mod audit_cookbook;
#[path = "../../../tests/common/audit_scale.rs"]
mod audit_scale;
#[path = "../../../tests/cases/runner.rs"]
mod cases;
mod devices;
mod grpc;
mod grpc_cases;
mod helpers;
mod hostile;
#[path = "../../../tests/common/postgres.rs"]
mod postgres;
mod proxy;
mod proxy_cases;
mod reload;
mod sessions;
mod tasks;
mod verify;
