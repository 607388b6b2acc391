//! Each transport's header map, readable by the core's decision ([`Headers`]).
//!
//! The core names no transport's types (actix-web speaks `http` 0.2, tonic `http` 1.x), so
//! each map gets a newtype here; the orphan rule keeps the impls on our side.

use std::collections::HashMap;

use actix_web::http::header::{HeaderMap, HeaderName};
use gatehouse_core::request::Headers;

/// actix-web's header map (the verify endpoint, the built-in proxy, the admin API).
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        // A `&str` name would be parsed into a `HeaderName` on every lookup, copying every
        // non-standard name (`x-forwarded-uri`) to the heap; a static one is borrowed. The
        // check keeps `from_static` (which panics on a name it refuses) to the names it takes.
        let static_name = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let values = if static_name && !name.is_empty() {
            self.0.get_all(HeaderName::from_static(name))
        } else {
            self.0.get_all(name)
        };
        values.map(|v| v.as_bytes())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

/// The headers of an Envoy `CheckRequest` (`attributes.request.http`): a map with lower-case
/// names and repeated headers already merged by Envoy. Pseudo-headers (`:authority`,
/// `:path`, …) are not headers of the request and are hidden; `host` is the request's
/// `host` attribute (Envoy's `:authority`), so every transport reads `Host` the same way.
pub struct EnvoyHeaders<'a> {
    pub host: Option<&'a str>,
    pub map: &'a HashMap<String, String>,
}

impl<'m> EnvoyHeaders<'m> {
    pub fn new(host: &'m str, map: &'m HashMap<String, String>) -> EnvoyHeaders<'m> {
        EnvoyHeaders {
            host: Some(host).filter(|h| !h.is_empty()),
            map,
        }
    }
}

impl Headers for EnvoyHeaders<'_> {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        let value = match name {
            "host" => self.host,
            n if n.starts_with(':') => None,
            n => self.map.get(n).map(String::as_str),
        };
        value.map(str::as_bytes).into_iter()
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let host = self.host.map(|h| ("host", h.as_bytes()));
        let rest = self
            .map
            .iter()
            .filter(|(n, _)| !n.starts_with(':') && n.as_str() != "host")
            .map(|(n, v)| (n.as_str(), v.as_bytes()));
        host.into_iter().chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_pseudo_headers_are_hidden_and_host_is_the_authority() {
        let map: HashMap<String, String> = [
            (":authority", "apps.example.com"),
            (":path", "/admin"),
            ("host", "forged.example.com"),
            ("cookie", "_gatehouse=a.b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let h = EnvoyHeaders::new("apps.example.com", &map);
        assert_eq!(h.single_text("host"), Some("apps.example.com"));
        assert_eq!(h.single_text(":path"), None);
        assert_eq!(h.single_text("cookie"), Some("_gatehouse=a.b"));
        let mut names: Vec<&str> = h.pairs().map(|(n, _)| n).collect();
        names.sort_unstable();
        assert_eq!(names, ["cookie", "host"]);
        let no_host = EnvoyHeaders::new("", &map);
        assert_eq!(no_host.single_text("host"), None);
    }
}
