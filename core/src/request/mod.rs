//! The request being decided: which request a transport's call describes (the trust rules
//! of DESIGN §5.1, in one place), and its path and host in canonical form (§7).

pub mod headers;
pub mod normalize;
pub mod trust;

pub use headers::Headers;
