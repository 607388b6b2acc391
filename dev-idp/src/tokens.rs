//! What relying parties verify, built with openidconnect's own types: the discovery
//! document, the ID token (with `at_hash` / `c_hash`), the userinfo answer and the
//! back-channel logout token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGenderClaim,
    CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AdditionalProviderMetadata, Audience, AuthUrl,
    AuthorizationCode, EndUserEmail, EndUserName, EndUserUsername, IdToken, IdTokenClaims,
    IssuerUrl, JsonWebKeySetUrl, LocalizedClaim, Nonce, ProviderMetadata, ResponseTypes, Scope,
    StandardClaims, SubjectIdentifier, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use super::config::UserConfig;
use super::keys::{ALG, KeyError, SigningKey};

pub const ID_TOKEN_TTL: Duration = Duration::from_secs(300);
pub const LOGOUT_TOKEN_TTL: Duration = Duration::from_secs(120);
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

pub const SCOPES: [&str; 5] = ["openid", "email", "profile", "groups", "offline_access"];

/// Discovery fields the openidconnect core types leave out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtraMetadata {
    pub end_session_endpoint: String,
    pub code_challenge_methods_supported: Vec<String>,
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The ID token claims beyond the standard ones.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtraClaims {
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}
impl AdditionalClaims for ExtraClaims {}

pub type DevIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Why a document or token could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("bad endpoint URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("the ID token lifetime is out of range: {0}")]
    Lifetime(#[from] chrono::OutOfRangeError),
    #[error("cannot sign the ID token: {0}")]
    SignIdToken(#[source] openidconnect::JsonWebTokenError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The discovery document for `issuer` (endpoints at its root).
pub fn metadata(issuer: &str) -> Result<Metadata, TokenError> {
    let base = issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    let extra = ExtraMetadata {
        end_session_endpoint: at("/end_session"),
        code_challenge_methods_supported: vec!["S256".into()],
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
    };
    let metadata = Metadata::new(
        IssuerUrl::new(issuer.to_string())?,
        AuthUrl::new(at("/authorize"))?,
        JsonWebKeySetUrl::new(at("/jwks"))?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![ALG],
        extra,
    )
    .set_token_endpoint(Some(TokenUrl::new(at("/token"))?))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(at("/userinfo"))?))
    .set_scopes_supported(Some(
        SCOPES.iter().map(|s| Scope::new(s.to_string())).collect(),
    ))
    .set_token_endpoint_auth_methods_supported(Some(vec![
        CoreClientAuthMethod::ClientSecretBasic,
        CoreClientAuthMethod::ClientSecretPost,
    ]))
    .set_grant_types_supported(Some(vec![
        CoreGrantType::AuthorizationCode,
        CoreGrantType::RefreshToken,
    ]))
    .set_claims_supported(Some(
        [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "at_hash",
            "c_hash",
            "email",
            "email_verified",
            "name",
            "preferred_username",
            "groups",
        ]
        .iter()
        .map(|c| CoreClaimName::new(c.to_string()))
        .collect(),
    ));
    Ok(metadata)
}

/// Everything an ID token is about besides the user.
pub struct IdTokenRequest<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    pub sid: &'a str,
    pub auth_time: DateTime<Utc>,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    /// The authorization code, on the code grant (for `c_hash`).
    pub code: Option<&'a str>,
}

fn has_scope(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
}

/// The standard claims the scopes allow: `email` gives email and email_verified,
/// `profile` gives name and preferred_username. (`groups` is an extra claim.)
fn standard_claims(user: &UserConfig, scopes: &[String]) -> StandardClaims<CoreGenderClaim> {
    let mut claims = StandardClaims::new(SubjectIdentifier::new(user.subject().to_string()));
    if has_scope(scopes, "email") {
        claims = claims
            .set_email(Some(EndUserEmail::new(user.email.clone())))
            .set_email_verified(Some(user.email_verified));
    }
    if has_scope(scopes, "profile") {
        claims = claims
            .set_name(
                user.name
                    .clone()
                    .map(|n| LocalizedClaim::from(EndUserName::new(n))),
            )
            .set_preferred_username(Some(EndUserUsername::new(user.username.clone())));
    }
    claims
}

fn groups(user: &UserConfig, scopes: &[String]) -> Option<Vec<String>> {
    has_scope(scopes, "groups").then(|| user.groups.clone())
}

pub fn id_token(
    key: &SigningKey,
    user: &UserConfig,
    request: &IdTokenRequest<'_>,
) -> Result<String, TokenError> {
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(ID_TOKEN_TTL)?;
    let claims = IdTokenClaims::new(
        IssuerUrl::new(request.issuer.to_string())?,
        vec![Audience::new(request.client_id.to_string())],
        expires,
        now,
        standard_claims(user, request.scopes),
        ExtraClaims {
            sid: request.sid.to_string(),
            groups: groups(user, request.scopes),
        },
    )
    .set_auth_time(Some(request.auth_time))
    .set_nonce(request.nonce.map(|n| Nonce::new(n.to_string())));
    let access_token = AccessToken::new(request.access_token.to_string());
    let code = request.code.map(|c| AuthorizationCode::new(c.to_string()));
    let token = DevIdToken::new(claims, &key.key, ALG, Some(&access_token), code.as_ref())
        .map_err(TokenError::SignIdToken)?;
    Ok(token.to_string())
}

/// The userinfo answer: the same claims as the ID token's user part.
pub fn userinfo(user: &UserConfig, scopes: &[String]) -> serde_json::Value {
    let mut out = serde_json::to_value(standard_claims(user, scopes))
        .unwrap_or_else(|_| serde_json::json!({"sub": user.subject()}));
    if let (Some(groups), Some(map)) = (groups(user, scopes), out.as_object_mut()) {
        map.insert("groups".into(), groups.into());
    }
    out
}

/// A back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.4): no nonce,
/// the logout event, `sid` and `sub`.
pub fn logout_token(
    key: &SigningKey,
    issuer: &str,
    client_id: &str,
    sid: &str,
    sub: Option<&str>,
) -> Result<String, TokenError> {
    let now = Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL.as_secs() as i64,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sid": sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    });
    if let (Some(sub), Some(map)) = (sub, claims.as_object_mut()) {
        map.insert("sub".into(), sub.into());
    }
    Ok(key.sign_jwt("logout+jwt", &claims)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::ClientId;
    use openidconnect::core::CoreIdTokenVerifier;

    fn alice() -> UserConfig {
        UserConfig {
            username: "alice".into(),
            password: "alice".into(),
            email: "alice@example.com".into(),
            sub: None,
            name: Some("Alice Example".into()),
            email_verified: true,
            groups: vec!["finance".into(), "staff".into()],
        }
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn id_tokens_verify_with_openidconnect_and_carry_groups_and_sid() {
        let key = SigningKey::generate().unwrap();
        let issuer = "http://127.0.0.1:5556";
        let all = scopes(&SCOPES);
        let token = id_token(
            &key,
            &alice(),
            &IdTokenRequest {
                issuer,
                client_id: "gatehouse",
                scopes: &all,
                sid: "sid-1",
                auth_time: Utc::now(),
                nonce: Some("n-1"),
                access_token: "at",
                code: Some("code"),
            },
        )
        .unwrap();
        let parsed: DevIdToken = token.parse().unwrap();
        let verifier = CoreIdTokenVerifier::new_confidential_client(
            ClientId::new("gatehouse".into()),
            openidconnect::ClientSecret::new("unused".into()),
            IssuerUrl::new(issuer.into()).unwrap(),
            key.jwks(),
        );
        let claims = parsed.claims(&verifier, &Nonce::new("n-1".into())).unwrap();
        assert_eq!(claims.subject().as_str(), "alice");
        assert_eq!(claims.email().unwrap().as_str(), "alice@example.com");
        assert_eq!(claims.additional_claims().sid, "sid-1");
        assert_eq!(
            claims.additional_claims().groups.as_deref(),
            Some(&["finance".to_string(), "staff".to_string()][..])
        );
        assert!(claims.access_token_hash().is_some());
        assert!(
            parsed
                .claims(&verifier, &Nonce::new("other".into()))
                .is_err()
        );
    }

    #[test]
    fn claims_follow_the_scopes() {
        let info = userinfo(&alice(), &scopes(&["openid"]));
        assert_eq!(info, serde_json::json!({"sub": "alice"}));
        let info = userinfo(&alice(), &scopes(&["openid", "email", "profile", "groups"]));
        assert_eq!(info["email"], "alice@example.com");
        assert_eq!(info["email_verified"], true);
        assert_eq!(info["name"], "Alice Example");
        assert_eq!(info["preferred_username"], "alice");
        assert_eq!(info["groups"], serde_json::json!(["finance", "staff"]));
    }

    #[test]
    fn logout_tokens_have_the_event_and_no_nonce() {
        let key = SigningKey::generate().unwrap();
        let jwt = logout_token(
            &key,
            "http://127.0.0.1:5556",
            "gatehouse",
            "s1",
            Some("alice"),
        )
        .unwrap();
        let claims = key.verify_jwt(&jwt).unwrap();
        assert_eq!(
            claims["events"][BACKCHANNEL_LOGOUT_EVENT],
            serde_json::json!({})
        );
        assert_eq!(claims["sid"], "s1");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "gatehouse");
        assert!(claims.get("nonce").is_none());
    }

    #[test]
    fn discovery_has_the_logout_and_pkce_fields() {
        let doc = serde_json::to_value(metadata("http://127.0.0.1:5556").unwrap()).unwrap();
        assert_eq!(doc["issuer"], "http://127.0.0.1:5556");
        assert_eq!(doc["token_endpoint"], "http://127.0.0.1:5556/token");
        assert_eq!(
            doc["end_session_endpoint"],
            "http://127.0.0.1:5556/end_session"
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["backchannel_logout_supported"], true);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    }
}
