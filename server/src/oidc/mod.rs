//! OIDC relying party: login, callback, logout, back-channel logout, server-side refresh
//! (README.md, docs/security.md).
//!
//! [`provider`] talks to the IdP, [`jwt`] verifies its tokens against its keys, [`claims`]
//! maps what it says to a user, [`redirect`] decides where `rd=` may go, [`crypto`] keeps
//! IdP tokens encrypted at rest, [`login`] is the flow itself, [`refresh`] re-reads claims
//! in the background.

pub mod claims;
pub mod crypto;
pub mod jwt;
pub mod login;
pub mod provider;
pub mod redirect;
pub mod refresh;

pub use login::{AuthService, CallbackParams, ClientFacts, LoginFailure, LoginSuccess};

/// An error with its causes, for messages that say what actually failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
