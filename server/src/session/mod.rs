//! Sessions: tokens, signed cookies, and resolution with an in-memory cache.

pub mod token;
