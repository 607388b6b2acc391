//! The original request behind a verify call (docs/security.md): which request is decided.
//!
//! An ingress describes the request it is asking about in headers. NGINX sends
//! `X-Original-URL` (or `X-Original-URI`) and `X-Original-Method`; Traefik and Caddy send
//! `X-Forwarded-Method/-Proto/-Host/-Uri`. The rules, all in this one place:
//!
//! - From a peer **outside** `trusted_proxies` only the request line and `Host` count; every
//!   forwarding header is ignored.
//! - From a **trusted** peer exactly one description is believed, never a mix of the two
//!   families. NGINX hands the client's own headers to its auth subrequest, so a client can
//!   add `X-Forwarded-Uri: /healthz` beside the `X-Original-URL` NGINX set: oauth2-proxy
//!   believed the client's header (CVE-2026-40575). When both families are present they must
//!   describe the same method, scheme, host and target (a part one family leaves out is the
//!   verify request's own), or the answer is 400 `conflicting_forwarded_headers` — never
//!   either one. (ingress-nginx clears `X-Forwarded-Proto` in its auth subrequest and sets
//!   no other `X-Forwarded-*` header, so honest requests through it never carry both.)
//! - A repeated forwarding header is a 400: someone appended one, and we cannot know which
//!   to believe.
//! - `Forwarded` (RFC 7239) is never read.

use std::net::IpAddr;

use ipnet::IpNet;

use super::headers::{Headers, header_text};
use super::normalize::normalize_host;

/// Why the original request could not be read. Every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginalError {
    #[error("header {0} appears more than once")]
    Repeated(&'static str),
    #[error("header {0} is not valid text")]
    NotText(&'static str),
    #[error("header {0} has an invalid value")]
    Invalid(&'static str),
    /// The call's own method or scheme is not one we decide on (a transport that does not
    /// parse HTTP itself, such as an Envoy check, passes them as it received them).
    #[error("invalid request {0}")]
    InvalidRequest(&'static str),
    /// Both header families are present and describe different requests (the `part` names
    /// which: method, scheme, host or target).
    #[error("conflicting_forwarded_headers")]
    Conflicting { part: &'static str },
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

/// The call as its transport saw it (the HTTP verify request, a proxied request).
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
/// someone appended one, and we cannot know which to believe. An empty value counts as
/// absent (NGINX's `proxy_set_header X ""` removes a header; others may send it empty).
fn single<'a>(
    headers: &'a (impl Headers + ?Sized),
    name: &'static str,
) -> Result<Option<&'a str>, OriginalError> {
    let mut values = headers.get_all(name);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OriginalError::Repeated(name));
    }
    let text = header_text(first)
        .ok_or(OriginalError::NotText(name))?
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
    Some((
        scheme,
        authority,
        if target.is_empty() { "/" } else { target },
    ))
}

/// What one header family says about the original request; a part it does not state is
/// `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Description<'a> {
    method: Option<&'a str>,
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    target: Option<&'a str>,
}

impl<'a> Description<'a> {
    fn is_empty(&self) -> bool {
        *self == Description::default()
    }

    /// NGINX: `X-Original-URL` (absolute) or `X-Original-URI` (path and query), and
    /// `X-Original-Method`. Both URL and URI present must name the same target.
    fn nginx(headers: &'a (impl Headers + ?Sized)) -> Result<Description<'a>, OriginalError> {
        let mut d = Description {
            method: single(headers, "x-original-method")?,
            ..Description::default()
        };
        let uri = single(headers, "x-original-uri")?;
        if let Some(url) = single(headers, "x-original-url")? {
            let (scheme, authority, target) =
                split_absolute(url).ok_or(OriginalError::Invalid("X-Original-URL"))?;
            if uri.is_some_and(|u| u != target) {
                return Err(OriginalError::Conflicting { part: "target" });
            }
            d.scheme = Some(scheme);
            d.host = Some(authority);
            d.target = Some(target);
        } else {
            d.target = uri;
        }
        Ok(d)
    }

    /// Traefik and Caddy: `X-Forwarded-Method/-Proto/-Host/-Uri`.
    fn forwarded(headers: &'a (impl Headers + ?Sized)) -> Result<Description<'a>, OriginalError> {
        Ok(Description {
            method: single(headers, "x-forwarded-method")?,
            scheme: single(headers, "x-forwarded-proto")?,
            host: single(headers, "x-forwarded-host")?,
            target: single(headers, "x-forwarded-uri")?,
        })
    }

    /// The parts this description leaves open, taken from `fallback`.
    fn or(self, fallback: Description<'a>) -> Description<'a> {
        Description {
            method: self.method.or(fallback.method),
            scheme: self.scheme.or(fallback.scheme),
            host: self.host.or(fallback.host),
            target: self.target.or(fallback.target),
        }
    }

    /// Checks that two complete descriptions name the same request. Methods and schemes
    /// compare without case, hosts in their normalized form (so `App.example.com:443` and
    /// `app.example.com` agree), targets byte for byte.
    fn same_request(&self, other: &Description<'_>) -> Result<(), OriginalError> {
        let same_text = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        if !same_text(self.method, other.method) {
            return Err(OriginalError::Conflicting { part: "method" });
        }
        if !same_text(self.scheme, other.scheme) {
            return Err(OriginalError::Conflicting { part: "scheme" });
        }
        let host = |h: Option<&str>| h.map(normalize_host).transpose().map(Option::flatten);
        match (host(self.host), host(other.host)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => return Err(OriginalError::Conflicting { part: "host" }),
            _ => return Err(OriginalError::Invalid("X-Forwarded-Host")),
        }
        if self.target != other.target {
            return Err(OriginalError::Conflicting { part: "target" });
        }
        Ok(())
    }
}

impl OriginalRequest {
    /// Reads the original request from `headers` of a verify `call` (the rules are in this
    /// module's documentation).
    pub fn from_verify(
        call: VerifyCall<'_>,
        headers: &(impl Headers + ?Sized),
        trusted: &[IpNet],
    ) -> Result<OriginalRequest, OriginalError> {
        let host_header = single(headers, "host")?;
        if !call.forwarded || !is_trusted(call.peer, trusted) {
            let method = call.method.to_ascii_uppercase();
            if !valid_method(&method) {
                return Err(OriginalError::InvalidRequest("method"));
            }
            let scheme = call.scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(OriginalError::InvalidRequest("scheme"));
            }
            return Ok(OriginalRequest {
                method,
                scheme,
                host: host_header.map(str::to_string),
                target: call.target.to_string(),
                source_ip: canonical_ip(call.peer),
                from_trusted_proxy: false,
            });
        }

        // The verify request itself fills in what the believed description leaves open.
        let own = Description {
            method: Some(call.method),
            scheme: Some(call.scheme),
            host: host_header,
            target: Some(call.target),
        };
        let nginx = Description::nginx(headers)?;
        let forwarded = Description::forwarded(headers)?;
        let believed = match (nginx.is_empty(), forwarded.is_empty()) {
            (_, true) => nginx.or(own),
            (true, false) => forwarded.or(own),
            // Both families: we cannot tell which one the ingress set and which one a client
            // added, so they must describe the same request in full — a part only one family
            // states must equal the verify call's own — or nothing is believed.
            (false, false) => {
                let (nginx, forwarded) = (nginx.or(own), forwarded.or(own));
                nginx.same_request(&forwarded)?;
                nginx
            }
        };

        let method = believed.method.unwrap_or(call.method).to_ascii_uppercase();
        if !valid_method(&method) {
            return Err(OriginalError::Invalid("X-Forwarded-Method"));
        }
        let scheme = believed.scheme.unwrap_or(call.scheme).to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(OriginalError::Invalid("X-Forwarded-Proto"));
        }
        let source_ip = client_ip(headers, call.peer, trusted)?;
        Ok(OriginalRequest {
            method,
            scheme,
            host: believed.host.map(str::to_string),
            target: believed.target.unwrap_or(call.target).to_string(),
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
pub fn browser_ip(headers: &(impl Headers + ?Sized), peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if is_trusted(peer, trusted) {
        client_ip(headers, peer, trusted).unwrap_or(peer)
    } else {
        canonical_ip(peer)
    }
}

/// The client address: walk `X-Forwarded-For` from the right, skipping trusted proxies;
/// the first untrusted hop is the client. `X-Real-IP` is used when there is no XFF.
fn client_ip(
    headers: &(impl Headers + ?Sized),
    peer: IpAddr,
    trusted: &[IpNet],
) -> Result<IpAddr, OriginalError> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = header_text(value).ok_or(OriginalError::NotText("X-Forwarded-For"))?;
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
    use std::collections::BTreeSet;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
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
    fn a_request_decided_as_itself_needs_a_sane_method_and_scheme() {
        // An Envoy check passes method and scheme as Envoy received them; nothing parsed
        // them as HTTP on our side.
        let own = |method, scheme| VerifyCall {
            method,
            target: "/x",
            peer: "10.1.1.1".parse().unwrap(),
            scheme,
            forwarded: false,
        };
        let h = headers(&[("host", "apps.example.com")]);
        let o = OriginalRequest::from_verify(own("get", "HTTPS"), &h, &trusted()).unwrap();
        assert_eq!((o.method.as_str(), o.scheme.as_str()), ("GET", "https"));
        for (method, scheme, part) in [
            ("", "http", "method"),
            ("GE T", "http", "method"),
            ("GET\r\n", "http", "method"),
            ("GET", "ftp", "scheme"),
            ("GET", "", "scheme"),
        ] {
            assert_eq!(
                OriginalRequest::from_verify(own(method, scheme), &h, &trusted()),
                Err(OriginalError::InvalidRequest(part)),
                "{method:?} {scheme:?}"
            );
        }
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

    /// The request an ingress honestly describes in the tests below.
    const HONEST: (&str, &str, &str, &str) = (
        "POST",
        "https",
        "beta.apps.example.com",
        "/restaurant/secret?x=1",
    );

    /// One forwarding header, with the honest value and a forged one that differs from both
    /// the honest request and the verify call's own line (`GET http <host> /auth/verify`).
    struct Forwarding {
        name: &'static str,
        honest: &'static str,
        forged: &'static str,
        nginx: bool,
        /// The parts of the request this header states.
        parts: &'static [&'static str],
    }

    const FORWARDING: [Forwarding; 7] = [
        Forwarding {
            name: "x-original-url",
            honest: "https://beta.apps.example.com/restaurant/secret?x=1",
            forged: "http://acme.apps.example.com/healthz",
            nginx: true,
            parts: &["scheme", "host", "target"],
        },
        Forwarding {
            name: "x-original-uri",
            honest: "/restaurant/secret?x=1",
            forged: "/healthz",
            nginx: true,
            parts: &["target"],
        },
        Forwarding {
            name: "x-original-method",
            honest: "POST",
            forged: "DELETE",
            nginx: true,
            parts: &["method"],
        },
        Forwarding {
            name: "x-forwarded-method",
            honest: "POST",
            forged: "DELETE",
            nginx: false,
            parts: &["method"],
        },
        Forwarding {
            name: "x-forwarded-proto",
            honest: "https",
            forged: "http",
            nginx: false,
            parts: &["scheme"],
        },
        Forwarding {
            name: "x-forwarded-host",
            honest: "beta.apps.example.com",
            forged: "acme.apps.example.com",
            nginx: false,
            parts: &["host"],
        },
        Forwarding {
            name: "x-forwarded-uri",
            honest: "/restaurant/secret?x=1",
            forged: "/healthz",
            nginx: false,
            parts: &["target"],
        },
    ];

    /// Whether the header `name: value` says the same as `o` about the part(s) it names.
    fn header_agrees(name: &str, value: &str, o: &OriginalRequest) -> bool {
        let host = || normalize_host(o.host.as_deref().unwrap_or("")).unwrap();
        match name {
            "x-original-url" => {
                let (scheme, authority, target) = split_absolute(value).unwrap();
                scheme == o.scheme
                    && normalize_host(authority).unwrap() == host()
                    && target == o.target
            }
            "x-original-uri" | "x-forwarded-uri" => value == o.target,
            "x-original-method" | "x-forwarded-method" => value == o.method,
            "x-forwarded-proto" => value == o.scheme,
            "x-forwarded-host" => normalize_host(value).unwrap() == host(),
            other => panic!("unknown header {other}"),
        }
    }

    /// Every combination of the seven forwarding headers, each absent, honest or forged
    /// (3^7 cases). A believed request agrees with every header that was sent: one
    /// description, never a mix, so a forged header and an honest one naming the same part
    /// can never both be believed — the request is refused. And an ingress that describes
    /// the whole request in one family is believed when nothing contradicts it.
    #[test]
    fn every_combination_of_forwarding_headers_is_one_description_or_refused() {
        let mut refused = 0;
        for mut code in 0..3usize.pow(7) {
            let mut pairs: Vec<(&str, &str)> = vec![("host", "gatehouse.internal")];
            let mut honest = Vec::new();
            let mut forged = 0;
            for header in &FORWARDING {
                let choice = code % 3;
                code /= 3;
                match choice {
                    0 => {}
                    1 => {
                        pairs.push((header.name, header.honest));
                        honest.push(header.name);
                    }
                    _ => {
                        pairs.push((header.name, header.forged));
                        forged += 1;
                    }
                }
            }
            let h = headers(&pairs);
            let result = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted());
            match &result {
                Ok(o) => {
                    for (name, value) in pairs.iter().skip(1) {
                        assert!(
                            header_agrees(name, value, o),
                            "{pairs:?} believed {o:?}, which {name} contradicts"
                        );
                    }
                }
                Err(_) => refused += 1,
            }
            // Honest headers are believed when one family is complete and the other, if
            // present, states nothing the complete one does not repeat.
            let states = |nginx: bool| -> BTreeSet<&str> {
                FORWARDING
                    .iter()
                    .filter(|f| f.nginx == nginx && honest.contains(&f.name))
                    .flat_map(|f| f.parts.iter().copied())
                    .collect()
            };
            let (by_nginx, by_forwarded) = (states(true), states(false));
            let complete = |parts: &BTreeSet<&str>| parts.len() == 4;
            let agree = by_nginx.is_empty() || by_forwarded.is_empty() || by_nginx == by_forwarded;
            if forged == 0 && (complete(&by_nginx) || complete(&by_forwarded)) {
                if agree {
                    let o = result.unwrap_or_else(|e| panic!("honest {pairs:?} refused: {e}"));
                    let got = (
                        o.method.as_str(),
                        o.scheme.as_str(),
                        o.host.as_deref(),
                        o.target.as_str(),
                    );
                    assert_eq!(
                        got,
                        (HONEST.0, HONEST.1, Some(HONEST.2), HONEST.3),
                        "{pairs:?}"
                    );
                } else {
                    // A part only one family states differs from the verify call's own.
                    assert!(result.is_err(), "{pairs:?} believed {result:?}");
                }
            }
        }
        assert!(refused > 1000, "only {refused} of 2187 refused");
    }

    #[test]
    fn a_client_forwarded_uri_never_beats_nginx_original_url() {
        // CVE-2026-40575: NGINX passes the client's own X-Forwarded-Uri to the subrequest.
        let h = headers(&[
            (
                "x-original-url",
                "https://apps.example.com/restaurant/secret",
            ),
            ("x-original-method", "GET"),
            ("x-forwarded-uri", "/healthz"),
        ]);
        assert!(matches!(
            OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()),
            Err(OriginalError::Conflicting { .. })
        ));
    }

    #[test]
    fn a_client_cannot_move_tenants_or_methods_beside_nginx_headers() {
        let url = ("x-original-url", "https://beta.apps.example.com/");
        for extra in [
            ("x-forwarded-host", "acme.apps.example.com"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-proto", "http"),
        ] {
            let h = headers(&[url, ("x-original-method", "GET"), extra]);
            let err = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap_err();
            assert!(
                matches!(err, OriginalError::Conflicting { .. }),
                "{extra:?}"
            );
            assert_eq!(err.to_string(), "conflicting_forwarded_headers");
        }
    }

    #[test]
    fn a_client_original_url_never_beats_traefik_forwarded_headers() {
        let h = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "apps.example.com"),
            ("x-forwarded-uri", "/restaurant/secret"),
            ("x-original-url", "https://apps.example.com/healthz"),
        ]);
        assert!(OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).is_err());
    }

    #[test]
    fn both_families_describing_the_same_request_are_believed() {
        // An ingress (or one behind another) may send both; spelled differently but the same.
        let h = headers(&[
            (
                "x-original-url",
                "https://App.Example.com:443/restaurant/x?y=1",
            ),
            ("x-original-method", "get"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/restaurant/x?y=1"),
        ]);
        let o = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap();
        assert_eq!((o.method.as_str(), o.scheme.as_str()), ("GET", "https"));
        assert_eq!(o.target, "/restaurant/x?y=1");
    }

    #[test]
    fn original_url_and_uri_must_name_the_same_target() {
        let h = headers(&[
            ("x-original-url", "https://apps.example.com/restaurant"),
            ("x-original-uri", "/healthz"),
        ]);
        assert!(OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).is_err());
        let h = headers(&[
            ("x-original-url", "https://apps.example.com/restaurant"),
            ("x-original-uri", "/restaurant"),
        ]);
        assert!(OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).is_ok());
    }

    #[test]
    fn every_forwarding_header_sent_twice_is_refused() {
        for header in &FORWARDING {
            let h = headers(&[(header.name, header.honest), (header.name, header.honest)]);
            assert!(
                matches!(
                    OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()),
                    Err(OriginalError::Repeated(_))
                ),
                "{}",
                header.name
            );
        }
    }

    #[test]
    fn forwarded_rfc7239_is_never_read() {
        let h = headers(&[
            ("x-original-url", "https://apps.example.com/restaurant"),
            (
                "forwarded",
                "for=1.2.3.4;host=acme.apps.example.com;proto=http",
            ),
        ]);
        let o = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap();
        assert_eq!(o.host.as_deref(), Some("apps.example.com"));
        assert_eq!(o.scheme, "https");
        assert_eq!(o.source_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn client_ip_skips_trusted_hops_from_the_right() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        let o = OriginalRequest::from_verify(call("127.0.0.1"), &h, &trusted()).unwrap();
        assert_eq!(o.source_ip, "203.0.113.7".parse::<IpAddr>().unwrap());
    }
}
