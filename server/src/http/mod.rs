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
use actix_web::http::header::HeaderMap;

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

/// Values of every cookie named `name` in the request's `Cookie` headers. Malformed pairs
/// are skipped rather than failing the whole header, so one broken cookie from another app
/// on the domain cannot lock a user out.
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for header in headers.get_all("cookie") {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                out.push(v.trim().trim_matches('"'));
            }
        }
    }
    out
}

/// The token of an `Authorization: Bearer <token>` header, if there is exactly one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all("authorization");
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = first.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn cookies_are_found_among_others_and_broken_pairs() {
        let m = map(&[
            ("cookie", "a=1; broken; _gatehouse=abc.def; b=2"),
            ("cookie", "_gatehouse=\"x.y\""),
        ]);
        assert_eq!(cookie_values(&m, "_gatehouse"), vec!["abc.def", "x.y"]);
        assert!(cookie_values(&m, "missing").is_empty());
    }

    #[test]
    fn bearer_tokens_need_the_scheme_and_a_single_header() {
        assert_eq!(
            bearer_token(&map(&[("authorization", "Bearer tok")])),
            Some("tok")
        );
        assert_eq!(
            bearer_token(&map(&[("authorization", "bearer  tok ")])),
            Some("tok")
        );
        assert_eq!(
            bearer_token(&map(&[("authorization", "Basic dXNlcg==")])),
            None
        );
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer ")])), None);
        assert_eq!(
            bearer_token(&map(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ])),
            None
        );
    }
}
