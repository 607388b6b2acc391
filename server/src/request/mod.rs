//! Reading the original request out of a verify call: trusted-proxy headers and
//! normalization.

pub mod normalize;
pub mod original;
