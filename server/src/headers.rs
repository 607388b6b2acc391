//! Each transport's header map, readable by the core's decision ([`Headers`]).
//!
//! The core names no transport's types (actix-web speaks `http` 0.2, tonic `http` 1.x), so
//! each map gets a newtype here; the orphan rule keeps the impls on our side.

use actix_web::http::header::HeaderMap;
use gatehouse_core::request::Headers;

/// actix-web's header map (the verify endpoint, the built-in proxy, the admin API).
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.0.get_all(name).map(|v| v.as_bytes())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}
