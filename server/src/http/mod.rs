//! HTTP handlers: thin adapters from actix requests to the domain code.

pub mod admin;
pub mod admin_api;
pub mod admin_ui;
pub mod auth;
pub mod error;
pub mod proxy;
pub mod verify;

use std::net::{IpAddr, Ipv4Addr};

use actix_web::HttpRequest;

use crate::request::trust::VerifyCall;

/// The TCP peer's address, never a header: `connection_info().realip_remote_addr()` would
/// believe `Forwarded` from anyone.
pub fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The decision call for `req`. `forwarded`: whether it describes another request through
/// forwarding headers (verify) or is itself the request (the built-in proxy).
pub fn verify_call(req: &HttpRequest, forwarded: bool) -> VerifyCall<'_> {
    VerifyCall {
        method: req.method().as_str(),
        target: req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/"),
        peer: peer_ip(req),
        scheme: "http",
        forwarded,
    }
}
