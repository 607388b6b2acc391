//! In-memory state: login sessions, authorization codes, access and refresh tokens. Plain
//! maps behind one mutex (a development tool; nothing survives a restart). Expired entries
//! are pruned whenever something is added.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const CODE_TTL: Duration = Duration::from_secs(60);
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier)) == challenge`, with the verifier's syntax
/// (43 to 128 unreserved characters) checked too.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A browser's login at the IdP.
#[derive(Debug, Clone)]
pub struct Session {
    pub sid: String,
    pub username: String,
    pub auth_time: DateTime<Utc>,
    /// Clients that received tokens in this session: they get back-channel logouts.
    pub clients: BTreeSet<String>,
    expires: Instant,
}

/// What an authorization code was issued for.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub username: String,
    pub sid: String,
    pub auth_time: DateTime<Utc>,
}

/// What an access or refresh token stands for.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub username: String,
    pub sid: String,
    pub auth_time: DateTime<Utc>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CodeError {
    /// Unknown, expired or already used; a replay also revokes what the code gave.
    Invalid,
}

struct Code {
    grant: CodeGrant,
    expires: Instant,
    used: bool,
    /// The tokens it gave, revoked if the code is replayed.
    tokens: Option<(String, String)>,
}

#[derive(Default)]
pub struct Store {
    sessions: HashMap<String, Session>,
    codes: HashMap<String, Code>,
    access_tokens: HashMap<String, (TokenGrant, Instant)>,
    refresh_tokens: HashMap<String, (TokenGrant, Instant)>,
}

impl Store {
    fn prune(&mut self, now: Instant) {
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.access_tokens.retain(|_, (_, e)| *e > now);
        self.refresh_tokens.retain(|_, (_, e)| *e > now);
    }

    /// A new session; returns its cookie token (which is not the `sid` that relying
    /// parties see, so an RP cannot turn a `sid` into the user's IdP cookie).
    pub fn create_session(&mut self, username: &str, now: Instant) -> (String, Session) {
        self.prune(now);
        let session = Session {
            sid: random_token(),
            username: username.to_string(),
            auth_time: Utc::now(),
            clients: BTreeSet::new(),
            expires: now + SESSION_TTL,
        };
        let token = random_token();
        self.sessions.insert(token.clone(), session.clone());
        (token, session)
    }

    pub fn session(&self, cookie_token: &str, now: Instant) -> Option<&Session> {
        self.sessions.get(cookie_token).filter(|s| s.expires > now)
    }

    /// Ends the session with this cookie token or `sid`, and revokes the tokens issued in
    /// it. Returns the ended session.
    pub fn end_session(
        &mut self,
        cookie_token: Option<&str>,
        sid: Option<&str>,
    ) -> Option<Session> {
        let key = cookie_token
            .filter(|t| self.sessions.contains_key(*t))
            .map(str::to_string)
            .or_else(|| {
                let sid = sid?;
                self.sessions
                    .iter()
                    .find(|(_, s)| s.sid == sid)
                    .map(|(k, _)| k.clone())
            })?;
        let session = self.sessions.remove(&key)?;
        self.access_tokens.retain(|_, (g, _)| g.sid != session.sid);
        self.refresh_tokens.retain(|_, (g, _)| g.sid != session.sid);
        Some(session)
    }

    pub fn issue_code(&mut self, grant: CodeGrant, now: Instant) -> String {
        self.prune(now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.sid == grant.sid) {
            s.clients.insert(grant.client_id.clone());
        }
        let code = random_token();
        self.codes.insert(
            code.clone(),
            Code {
                grant,
                expires: now + CODE_TTL,
                used: false,
                tokens: None,
            },
        );
        code
    }

    /// Redeems a code once. A second use fails and revokes the tokens the first use gave
    /// (RFC 6749 §4.1.2).
    pub fn redeem_code(&mut self, code: &str, now: Instant) -> Result<CodeGrant, CodeError> {
        let entry = self.codes.get_mut(code).ok_or(CodeError::Invalid)?;
        if entry.expires <= now {
            return Err(CodeError::Invalid);
        }
        if entry.used {
            if let Some((access, refresh)) = entry.tokens.take() {
                self.access_tokens.remove(&access);
                self.refresh_tokens.remove(&refresh);
            }
            return Err(CodeError::Invalid);
        }
        // Used now, even if a later check (client, PKCE) fails: one try per code.
        entry.used = true;
        Ok(entry.grant.clone())
    }

    /// Issues an access token and a refresh token; `code` links them to the code that gave
    /// them, for replay revocation.
    pub fn issue_tokens(
        &mut self,
        grant: TokenGrant,
        code: Option<&str>,
        now: Instant,
    ) -> (String, String) {
        self.prune(now);
        let access = random_token();
        let refresh = random_token();
        self.access_tokens
            .insert(access.clone(), (grant.clone(), now + ACCESS_TOKEN_TTL));
        self.refresh_tokens
            .insert(refresh.clone(), (grant, now + REFRESH_TOKEN_TTL));
        if let Some(c) = code.and_then(|c| self.codes.get_mut(c)) {
            c.tokens = Some((access.clone(), refresh.clone()));
        }
        (access, refresh)
    }

    /// Takes a refresh token out (rotation: it never works again).
    pub fn take_refresh_token(&mut self, token: &str, now: Instant) -> Option<TokenGrant> {
        let (grant, expires) = self.refresh_tokens.remove(token)?;
        (expires > now).then_some(grant)
    }

    pub fn access_token(&self, token: &str, now: Instant) -> Option<&TokenGrant> {
        self.access_tokens
            .get(token)
            .filter(|(_, e)| *e > now)
            .map(|(g, _)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(sid: &str) -> CodeGrant {
        CodeGrant {
            client_id: "gatehouse".into(),
            redirect_uri: "http://127.0.0.1:4180/auth/callback".into(),
            code_challenge: "c".into(),
            nonce: Some("n".into()),
            scopes: vec!["openid".into()],
            username: "alice".into(),
            sid: sid.into(),
            auth_time: Utc::now(),
        }
    }

    fn token_grant(sid: &str) -> TokenGrant {
        TokenGrant {
            client_id: "gatehouse".into(),
            scopes: vec!["openid".into()],
            username: "alice".into(),
            sid: sid.into(),
            auth_time: Utc::now(),
        }
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cX"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        // The plain method is not S256: the verifier itself is never accepted as challenge.
        assert!(!pkce_s256_matches(verifier, verifier));
        // Too short to be a verifier, even if the hash matched.
        let short = "abc";
        let short_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(short));
        assert!(!pkce_s256_matches(short, &short_challenge));
    }

    #[test]
    fn a_code_is_redeemed_once_and_a_replay_revokes_its_tokens() {
        let mut store = Store::default();
        let now = Instant::now();
        let code = store.issue_code(grant("s1"), now);
        assert_eq!(store.redeem_code(&code, now).unwrap().username, "alice");
        let (access, refresh) = store.issue_tokens(token_grant("s1"), Some(&code), now);
        assert!(store.access_token(&access, now).is_some());

        assert_eq!(
            store.redeem_code(&code, now).unwrap_err(),
            CodeError::Invalid
        );
        assert!(store.access_token(&access, now).is_none());
        assert!(store.take_refresh_token(&refresh, now).is_none());
        assert_eq!(
            store.redeem_code(&code, now).unwrap_err(),
            CodeError::Invalid
        );
    }

    #[test]
    fn codes_expire_after_a_minute() {
        let mut store = Store::default();
        let now = Instant::now();
        let code = store.issue_code(grant("s1"), now);
        let later = now + CODE_TTL + Duration::from_secs(1);
        assert_eq!(
            store.redeem_code(&code, later).unwrap_err(),
            CodeError::Invalid
        );
        assert_eq!(
            store.redeem_code("unknown", now).unwrap_err(),
            CodeError::Invalid
        );
    }

    #[test]
    fn refresh_tokens_rotate() {
        let mut store = Store::default();
        let now = Instant::now();
        let (_, refresh) = store.issue_tokens(token_grant("s1"), None, now);
        assert!(store.take_refresh_token(&refresh, now).is_some());
        assert!(store.take_refresh_token(&refresh, now).is_none());
    }

    #[test]
    fn ending_a_session_revokes_its_tokens_and_remembers_its_clients() {
        let mut store = Store::default();
        let now = Instant::now();
        let (cookie, session) = store.create_session("alice", now);
        assert_ne!(cookie, session.sid);
        store.issue_code(grant(&session.sid), now);
        let (access, refresh) = store.issue_tokens(token_grant(&session.sid), None, now);
        let (other_access, _) = store.issue_tokens(token_grant("other"), None, now);

        let ended = store.end_session(None, Some(&session.sid)).unwrap();
        assert!(ended.clients.contains("gatehouse"));
        assert!(store.session(&cookie, now).is_none());
        assert!(store.access_token(&access, now).is_none());
        assert!(store.take_refresh_token(&refresh, now).is_none());
        assert!(store.access_token(&other_access, now).is_some());
        assert!(store.end_session(Some(&cookie), None).is_none());
    }
}
