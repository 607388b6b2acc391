//! The original request behind a verify call (DESIGN §5).
//!
//! An ingress describes the request it is asking about in headers: Traefik and Caddy send
//! `X-Forwarded-Method/-Proto/-Host/-Uri`, NGINX sends `X-Original-Method` and
//! `X-Original-URL`/`X-Original-URI`. Those headers are believed **only** from a peer in
//! `trusted_proxies`; from anyone else the verify request's own line is the request. A
//! client-supplied `X-Forwarded-Uri` once let users skip oauth2-proxy's rules
//! (CVE-2026-40575); here it is never read from an untrusted peer.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// Why the original request could not be read. Every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginalError {
    #[error("header {0} appears more than once")]
    Repeated(&'static str),
    #[error("header {0} is not valid text")]
    NotText(&'static str),
    #[error("header {0} has an invalid value")]
    Invalid(&'static str),
}

/// The request the ingress is asking about, before normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// As received (normalized later); `None` if absent.
    pub host: Option<String>,
    /// Path and query as received, e.g. `/restaurant/orders?page=2`.
    pub target: String,
    pub source_ip: IpAddr,
    /// Whether the forwarding headers were believed.
    pub from_trusted_proxy: bool,
}

/// The verify call as actix saw it.
#[derive(Debug, Clone, Copy)]
pub struct VerifyCall<'a> {
    pub method: &'a str,
    /// Path and query of the verify request itself.
    pub target: &'a str,
    pub peer: IpAddr,
    /// `https` when the verify listener is TLS-terminated (it is plain HTTP today).
    pub scheme: &'a str,
    /// Whether the request describes another one through forwarding headers (a verify call
    /// from an ingress). `false` for the built-in proxy, where the request itself is the
    /// original: its forwarding headers are never believed, whoever sent them.
    pub forwarded: bool,
}

/// Whether `ip` is in one of `trusted`.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`, seen on dual-stack sockets) are compared as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The one value of `name`, refusing duplicates: two `X-Forwarded-Host` headers mean that
/// someone appended one, and we cannot know which to believe.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, OriginalError> {
    let mut values = headers.get_all(name);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OriginalError::Repeated(name));
    }
    let text = first
        .to_str()
        .map_err(|_| OriginalError::NotText(name))?
        .trim();
    Ok(if text.is_empty() { None } else { Some(text) })
}

fn valid_method(m: &str) -> bool {
    !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Splits an absolute URL (`https://host:port/path?q`) into scheme, authority and target
/// without normalizing anything: the `url` crate would resolve `..` and turn `\` into `/`,
/// hiding exactly the spellings our normalizer must see.
fn split_absolute(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    Some((scheme, authority, target))
}

impl OriginalRequest {
    /// Reads the original request from `headers` of a verify `call`.
    pub fn from_verify(
        call: VerifyCall<'_>,
        headers: &HeaderMap,
        trusted: &[IpNet],
    ) -> Result<OriginalRequest, OriginalError> {
        let host_header = single(headers, "host")?.map(str::to_string);
        if !call.forwarded || !is_trusted(call.peer, trusted) {
            return Ok(OriginalRequest {
                method: call.method.to_ascii_uppercase(),
                scheme: call.scheme.to_string(),
                host: host_header,
                target: call.target.to_string(),
                source_ip: canonical_ip(call.peer),
                from_trusted_proxy: false,
            });
        }

        let mut method = call.method.to_ascii_uppercase();
        let mut scheme = call.scheme.to_string();
        let mut host = host_header;
        let mut target = call.target.to_string();

        // NGINX: X-Original-URL (full) or X-Original-URI (path + query).
        if let Some(url) = single(headers, "x-original-url")? {
            let (s, authority, t) =
                split_absolute(url).ok_or(OriginalError::Invalid("X-Original-URL"))?;
            scheme = s.to_ascii_lowercase();
            host = Some(authority.to_string());
            target = if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            };
        } else if let Some(uri) = single(headers, "x-original-uri")? {
            target = uri.to_string();
        }
        if let Some(m) = single(headers, "x-original-method")? {
            method = m.to_ascii_uppercase();
        }
        // Traefik / Caddy: X-Forwarded-*. They take precedence where both are present.
        if let Some(m) = single(headers, "x-forwarded-method")? {
            method = m.to_ascii_uppercase();
        }
        if let Some(p) = single(headers, "x-forwarded-proto")? {
            scheme = p.to_ascii_lowercase();
        }
        if let Some(h) = single(headers, "x-forwarded-host")? {
            host = Some(h.to_string());
        }
        if let Some(u) = single(headers, "x-forwarded-uri")? {
            target = u.to_string();
        }

        if !valid_method(&method) {
            return Err(OriginalError::Invalid("X-Forwarded-Method"));
        }
        if scheme != "http" && scheme != "https" {
            return Err(OriginalError::Invalid("X-Forwarded-Proto"));
        }
        let source_ip = client_ip(headers, call.peer, trusted)?;
        Ok(OriginalRequest {
            method,
            scheme,
            host,
            target,
            source_ip,
            from_trusted_proxy: true,
        })
    }

    /// The original URL, for `rd=` on the login redirect.
    pub fn url(&self, host: Option<&str>) -> String {
        match host {
            Some(h) => format!("{}://{}{}", self.scheme, h, self.target),
            None => self.target.clone(),
        }
    }
}

/// The browser's address for logs and audit of non-verify endpoints (login, logout): the
/// forwarded client address when the peer is a trusted proxy, else the peer.
pub fn browser_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if is_trusted(peer, trusted) {
        client_ip(headers, peer, trusted).unwrap_or(peer)
    } else {
        canonical_ip(peer)
    }
}

/// The client address: walk `X-Forwarded-For` from the right, skipping trusted proxies;
/// the first untrusted hop is the client. `X-Real-IP` is used when there is no XFF.
fn client_ip(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Result<IpAddr, OriginalError> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value
            .to_str()
            .map_err(|_| OriginalError::NotText("X-Forwarded-For"))?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let ip: IpAddr = part
                .parse()
                .map_err(|_| OriginalError::Invalid("X-Forwarded-For"))?;
            hops.push(canonical_ip(ip));
        }
    }
    if hops.is_empty() {
        if let Some(real) = single(headers, "x-real-ip")? {
            let ip: IpAddr = real
                .parse()
                .map_err(|_| OriginalError::Invalid("X-Real-IP"))?;
            return Ok(canonical_ip(ip));
        }
        return Ok(canonical_ip(peer));
    }
    for ip in hops.iter().rev() {
        if !is_trusted(*ip, trusted) {
            return Ok(*ip);
        }
    }
    // Every hop is a proxy of ours: the leftmost is the closest we know to the client.
    Ok(hops[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn trusted() -> Vec<IpNet> {
        vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn call(peer: &str) -> VerifyCall<'static> {
        VerifyCall {
            method: "GET",
            target: "/auth/verify",
            peer: peer.parse().unwrap(),
            scheme: "http",
            forwarded: true,
        }
    }

    #[test]
    fn nginx_headers_from_a_trusted_peer_are_believed() {
        let h = headers(&[
            ("host", "gatehouse"),
            (
                "x-original-url",
                "https://App.example.com/restaurant/orders?page=2",
            ),
            ("x-original-method", "post"),
            ("x-forwarded-for", "203.0.113.7, 10.1.2.3"),
        ]);
        let o = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap();
        assert_eq!(o.method, "POST");
        assert_eq!(o.scheme, "https");
        assert_eq!(o.host.as_deref(), Some("App.example.com"));
        assert_eq!(o.target, "/restaurant/orders?page=2");
        assert_eq!(o.source_ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert!(o.from_trusted_proxy);
    }

    #[test]
    fn traefik_headers_from_a_trusted_peer_are_believed() {
        let h = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "apps.example.com"),
            ("x-forwarded-uri", "/marketing/x"),
        ]);
        let o = OriginalRequest::from_verify(call("10.9.9.9"), &h, &trusted()).unwrap();
        assert_eq!(o.host.as_deref(), Some("apps.example.com"));
        assert_eq!(o.target, "/marketing/x");
        assert_eq!(o.source_ip, "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[
            ("host", "auth.example.com"),
            ("x-forwarded-uri", "/healthz"),
            ("x-original-url", "https://apps.example.com/healthz"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        let o = OriginalRequest::from_verify(call("198.51.100.9"), &h, &trusted()).unwrap();
        assert_eq!(o.target, "/auth/verify");
        assert_eq!(o.host.as_deref(), Some("auth.example.com"));
        assert_eq!(o.source_ip, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert!(!o.from_trusted_proxy);
    }

    #[test]
    fn ipv4_mapped_peers_are_matched_as_ipv4() {
        let h = headers(&[("x-forwarded-uri", "/x")]);
        let o = OriginalRequest::from_verify(call("::ffff:127.0.0.1"), &h, &trusted()).unwrap();
        assert!(o.from_trusted_proxy);
    }

    #[test]
    fn hostile_forwarding_headers_are_refused() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("x-forwarded-host", "a.example.com"),
                ("x-forwarded-host", "b.example.com"),
            ],
            &[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")],
            &[("x-original-url", "https://user@evil.com/x")],
            &[("x-original-url", "not a url")],
            &[("x-forwarded-proto", "javascript")],
            &[("x-forwarded-method", "GET /x")],
            &[("x-forwarded-for", "not-an-ip")],
        ];
        for case in cases {
            let h = headers(case);
            assert!(
                OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).is_err(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn client_ip_skips_trusted_hops_from_the_right() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        let o = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap();
        assert_eq!(o.source_ip, "203.0.113.7".parse::<IpAddr>().unwrap());
    }
}
