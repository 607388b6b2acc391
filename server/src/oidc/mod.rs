//! OIDC relying party: login, callback, logout, back-channel logout, server-side refresh
//! (DESIGN §4, §7).
//!
//! [`provider`] talks to the IdP, [`claims`] maps what it says to a user, [`redirect`]
//! decides where `rd=` may go, [`crypto`] keeps IdP tokens encrypted at rest, [`login`] is
//! the flow itself, [`refresh`] re-reads claims in the background.

pub mod claims;
pub mod crypto;
pub mod login;
pub mod provider;
pub mod redirect;
pub mod refresh;

pub use login::{AuthService, CallbackParams, ClientFacts, LoginFailure, LoginSuccess};
