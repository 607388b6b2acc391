//! The request being decided: which request a transport's call describes (the trust rules
//! of docs/security.md, in one place), and its path and host in canonical form.

pub mod credentials;
pub mod headers;
pub mod normalize;
pub mod trust;

pub use headers::Headers;
