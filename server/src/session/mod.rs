//! Sessions: tokens, signed cookies, issuing, and resolution with an in-memory cache.

pub mod device;
pub mod resolver;
pub mod revocation;
pub mod token;

use chrono::{DateTime, Utc};

use crate::store::{GroupSource, NewSession, Store, StoreError};
use token::{CookieSigner, SessionToken};

/// Who a new session is for and how long it lives.
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    /// Groups assigned in the store (source `store`); `None` leaves them unchanged.
    pub store_groups: Option<Vec<String>>,
    pub tenant: Option<(String, String)>,
    pub ttl: std::time::Duration,
    pub amr: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A freshly minted session. Its `Debug` hides the cookie value.
#[derive(Clone)]
pub struct IssuedSession {
    pub session_id: String,
    pub user_id: String,
    /// The signed cookie value; also accepted as `Authorization: Bearer`.
    pub cookie_value: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("cookie_value", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("invalid session request: {0}")]
    Invalid(String),
}

/// Upserts the user by email and creates a session for it (`session create`).
pub async fn issue_session(
    store: &Store,
    signer: &CookieSigner,
    grant: &SessionGrant,
    now: DateTime<Utc>,
) -> Result<IssuedSession, IssueError> {
    let email = grant.email.trim();
    if email.is_empty()
        || !email.contains('@')
        || email.len() > 320
        || email.chars().any(char::is_control)
    {
        return Err(IssueError::Invalid(format!(
            "`{email}` is not an email address"
        )));
    }
    let ttl = chrono::Duration::from_std(grant.ttl)
        .map_err(|_| IssueError::Invalid("ttl too large".into()))?;
    if ttl <= chrono::Duration::zero() {
        return Err(IssueError::Invalid("ttl must be positive".into()));
    }
    let user_id = store
        .upsert_user_by_email(email, grant.name.as_deref(), grant.username.as_deref(), now)
        .await?;
    if let Some(groups) = &grant.store_groups {
        store
            .set_user_groups(&user_id, GroupSource::Store, groups)
            .await?;
    }
    if let Some((tenant, role)) = &grant.tenant {
        store.add_tenant_member(tenant, &user_id, role, now).await?;
    }
    mint_session(
        store,
        signer,
        &SessionSpec {
            id: uuid::Uuid::new_v4().to_string(),
            user_id,
            ttl,
            amr: grant.amr.clone(),
            ip: grant.ip.clone(),
            user_agent: grant.user_agent.clone(),
            device_id: None,
            idp_sid: None,
            idp_claims: serde_json::json!({}),
            refresh_token_enc: None,
            id_token_enc: None,
            auth_time: None,
        },
        now,
    )
    .await
}

/// A session to create for an existing user.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// The session id, chosen by the caller (encrypted tokens are bound to it).
    pub id: String,
    pub user_id: String,
    pub ttl: chrono::Duration,
    pub amr: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
    pub idp_sid: Option<String>,
    pub idp_claims: serde_json::Value,
    pub refresh_token_enc: Option<Vec<u8>>,
    pub id_token_enc: Option<Vec<u8>>,
    /// When the user authenticated (the IdP's `auth_time`); `None` means now.
    pub auth_time: Option<DateTime<Utc>>,
}

/// Creates a session with a new random token (never a reused one: no session fixation).
/// Only the token's hash is stored.
pub async fn mint_session(
    store: &Store,
    signer: &CookieSigner,
    spec: &SessionSpec,
    now: DateTime<Utc>,
) -> Result<IssuedSession, IssueError> {
    let token = SessionToken::generate();
    let session_id = spec.id.clone();
    let expires_at = now + spec.ttl;
    store
        .create_session(&NewSession {
            id: session_id.clone(),
            token_hash: token.hash().0,
            user_id: spec.user_id.clone(),
            device_id: spec.device_id.clone(),
            created_at: now,
            expires_at,
            auth_time: spec.auth_time.unwrap_or(now),
            amr: spec.amr.clone(),
            ip: spec.ip.clone(),
            user_agent: spec.user_agent.clone(),
            idp_sid: spec.idp_sid.clone(),
            idp_claims: spec.idp_claims.clone(),
            refresh_token_enc: spec.refresh_token_enc.clone(),
            id_token_enc: spec.id_token_enc.clone(),
        })
        .await?;
    Ok(IssuedSession {
        session_id,
        user_id: spec.user_id.clone(),
        cookie_value: signer.sign(&token),
        expires_at,
    })
}
