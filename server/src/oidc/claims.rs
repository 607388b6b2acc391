//! From the IdP's claims to a Gatehouse user: subject, email, name, username and groups.
//!
//! Claims come from the verified ID token and, when the IdP has a userinfo endpoint, from
//! userinfo (many IdPs, `oidc-provider` among them, put profile and email claims only
//! there). Userinfo is trusted only when its `sub` equals the ID token's (OIDC Core 5.3.2).

use serde_json::{Map, Value};

use crate::store::IdpUser;

/// Who the IdP says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpIdentity {
    pub subject: String,
    pub email: String,
    /// The IdP's `email_verified`, when it says.
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    /// The IdP session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
    /// How the user authenticated at the IdP (`amr`, e.g. `["pwd", "mfa"]`), for policies
    /// that demand a second factor; empty when the IdP does not say.
    pub amr: Vec<String>,
    /// When the user authenticated at the IdP (`auth_time`), if it says.
    pub auth_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The merged claims, kept with the session (no tokens in here).
    pub claims: Value,
}

impl IdpIdentity {
    /// The facts the store keeps about this user (the session-only ones, `sid`, `amr` and
    /// `auth_time`, go with the session instead).
    pub fn store_user(&self) -> IdpUser<'_> {
        IdpUser {
            subject: &self.subject,
            email: &self.email,
            email_verified: self.email_verified,
            name: self.name.as_deref(),
            username: self.username.as_deref(),
            groups: &self.groups,
            claims: &self.claims,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the identity provider sent no `{0}` claim")]
    Missing(&'static str),
    #[error("userinfo `sub` does not match the ID token's")]
    SubjectMismatch,
    #[error("the identity provider says the email address `{0}` is not verified")]
    UnverifiedEmail(String),
    #[error("claim `{0}` has an unusable value")]
    Invalid(&'static str),
    /// Groups travel comma-joined in `X-Auth-Request-Groups`, so a name with a comma would
    /// reach the app as two groups (docs/architecture.md). The email is kept for the audit.
    #[error(
        "the identity provider sent a group name containing a comma, which Gatehouse cannot pass on; ask an administrator to rename the group"
    )]
    GroupWithComma { email: String },
}

/// Upper bounds on what one user's claims may bring in.
const MAX_GROUPS: usize = 1000;
const MAX_GROUP_LEN: usize = 256;

/// Merges ID token and userinfo claims (userinfo wins for the same name, as it is the
/// fresher read) and maps them.
pub fn map_claims(
    id_token: &Map<String, Value>,
    userinfo: Option<&Map<String, Value>>,
    groups_claim: &str,
) -> Result<IdpIdentity, ClaimsError> {
    let subject = string(id_token, "sub").ok_or(ClaimsError::Missing("sub"))?;
    let mut merged = id_token.clone();
    if let Some(info) = userinfo {
        if string(info, "sub").as_deref() != Some(subject.as_str()) {
            return Err(ClaimsError::SubjectMismatch);
        }
        for (k, v) in info {
            merged.insert(k.clone(), v.clone());
        }
    }
    // Token plumbing is not identity; keep the stored claims to what policies may want.
    for k in [
        "aud", "azp", "nonce", "at_hash", "c_hash", "exp", "iat", "nbf", "jti",
    ] {
        merged.remove(k);
    }
    let email = string(&merged, "email")
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .ok_or(ClaimsError::Missing("email"))?;
    if email.len() > 320 || !email.contains('@') || email.chars().any(char::is_control) {
        return Err(ClaimsError::Invalid("email"));
    }
    // Absent means the IdP does not say; an explicit `false` is refused (an attacker could
    // otherwise register someone else's address at a permissive IdP).
    if matches!(merged.get("email_verified"), Some(Value::Bool(false)))
        || matches!(merged.get("email_verified"), Some(Value::String(s)) if s == "false")
    {
        return Err(ClaimsError::UnverifiedEmail(email));
    }
    let email_verified = match merged.get("email_verified") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let groups = groups(&merged, groups_claim)?;
    if groups.iter().any(|g| g.contains(',')) {
        return Err(ClaimsError::GroupWithComma { email });
    }
    Ok(IdpIdentity {
        email,
        email_verified,
        name: string(&merged, "name"),
        username: string(&merged, "preferred_username"),
        groups,
        sid: string(&merged, "sid"),
        amr: match merged.get("amr") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control))
                .take(16)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        },
        auth_time: merged
            .get("auth_time")
            .and_then(Value::as_i64)
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
        subject,
        claims: Value::Object(merged),
    })
}

/// Why `name` cannot be a group name, if it cannot. Groups travel comma-joined in the
/// groups header (docs/architecture.md), so a comma would split one group into two. Used for the
/// store's groups (`session create`); the IdP's groups are checked in [`map_claims`].
pub fn group_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_GROUP_LEN {
        Some("is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.contains(',') {
        Some("contains a comma (groups are comma-joined in the groups header)")
    } else {
        None
    }
}

fn string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => Some(s.clone()),
        _ => None,
    }
}

/// The groups claim: an array of strings, or one string (some IdPs send a single group
/// that way). A missing claim is no groups. `groups_claim` may be a dotted path
/// (`realm_access.roles`, Keycloak).
fn groups(claims: &Map<String, Value>, groups_claim: &str) -> Result<Vec<String>, ClaimsError> {
    let mut value = None;
    let mut scope = Some(claims);
    for (i, part) in groups_claim.split('.').enumerate() {
        let Some(map) = scope else { break };
        // A literal claim name with dots (`https://example.com/groups`) wins over a path.
        if i == 0 && claims.contains_key(groups_claim) {
            value = claims.get(groups_claim);
            break;
        }
        value = map.get(part);
        scope = value.and_then(Value::as_object);
    }
    let mut out: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(ClaimsError::Invalid("groups")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ClaimsError::Invalid("groups")),
    };
    if out.len() > MAX_GROUPS
        || out
            .iter()
            .any(|g| g.is_empty() || g.len() > MAX_GROUP_LEN || g.chars().any(char::is_control))
    {
        return Err(ClaimsError::Invalid("groups"));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn id_token_and_userinfo_are_merged() {
        let id = obj(json!({"sub": "u1", "sid": "s-1", "nonce": "n", "aud": "gatehouse"}));
        let info = obj(
            json!({"sub": "u1", "email": "Alice@Example.COM", "email_verified": true,
                              "name": "Alice", "preferred_username": "alice",
                              "groups": ["staff", "finance", "staff"]}),
        );
        let who = map_claims(&id, Some(&info), "groups").unwrap();
        assert_eq!(who.subject, "u1");
        assert_eq!(who.email, "alice@example.com");
        assert_eq!(who.name.as_deref(), Some("Alice"));
        assert_eq!(who.username.as_deref(), Some("alice"));
        assert_eq!(who.groups, vec!["finance", "staff"]);
        assert_eq!(who.sid.as_deref(), Some("s-1"));
        assert!(who.amr.is_empty());
        let id = obj(
            json!({"sub": "u1", "email": "a@x.com", "amr": ["pwd", "mfa", 3], "auth_time": 1700000000}),
        );
        let who = map_claims(&id, None, "groups").unwrap();
        assert_eq!(who.amr, vec!["pwd", "mfa"]);
        assert_eq!(who.auth_time.unwrap().timestamp(), 1_700_000_000);
        assert!(who.claims.get("nonce").is_none());
        assert!(who.claims.get("aud").is_none());
    }

    #[test]
    fn userinfo_for_another_subject_is_refused() {
        let id = obj(json!({"sub": "u1", "email": "a@x.com"}));
        let info = obj(json!({"sub": "u2", "email": "b@x.com"}));
        assert_eq!(
            map_claims(&id, Some(&info), "groups"),
            Err(ClaimsError::SubjectMismatch)
        );
    }

    #[test]
    fn missing_or_unverified_email_is_refused() {
        let id = obj(json!({"sub": "u1"}));
        assert_eq!(
            map_claims(&id, None, "groups"),
            Err(ClaimsError::Missing("email"))
        );
        let id = obj(json!({"sub": "u1", "email": "a@x.com", "email_verified": false}));
        assert!(matches!(
            map_claims(&id, None, "groups"),
            Err(ClaimsError::UnverifiedEmail(_))
        ));
        let id = obj(json!({"email": "a@x.com"}));
        assert_eq!(
            map_claims(&id, None, "groups"),
            Err(ClaimsError::Missing("sub"))
        );
    }

    #[test]
    fn groups_claim_shapes() {
        let id = obj(json!({"sub": "u", "email": "a@x.com", "grp": "solo",
                            "realm_access": {"roles": ["r1", "r2"]},
                            "https://x.io/groups": ["g"], "bad": [{"a": 1}]}));
        assert_eq!(map_claims(&id, None, "grp").unwrap().groups, vec!["solo"]);
        assert_eq!(
            map_claims(&id, None, "realm_access.roles").unwrap().groups,
            vec!["r1", "r2"]
        );
        assert_eq!(
            map_claims(&id, None, "https://x.io/groups").unwrap().groups,
            vec!["g"]
        );
        assert!(map_claims(&id, None, "missing").unwrap().groups.is_empty());
        assert_eq!(
            map_claims(&id, None, "bad"),
            Err(ClaimsError::Invalid("groups"))
        );
    }

    #[test]
    fn group_name_problems() {
        assert_eq!(group_name_problem("staff"), None);
        assert_eq!(group_name_problem("Team A/ops"), None);
        for bad in ["", "a,b", ",", "a\nb", "a\u{7f}"] {
            assert!(group_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(group_name_problem(&"g".repeat(257)).is_some());
    }

    #[test]
    fn a_group_name_with_a_comma_is_refused() {
        // Joined with commas in X-Auth-Request-Groups, "a,b" would reach the app as a and b.
        for groups in [json!(["staff", "a,b"]), json!("a,b"), json!([","])] {
            let id = obj(json!({"sub": "u", "email": "A@x.com", "groups": groups}));
            assert_eq!(
                map_claims(&id, None, "groups"),
                Err(ClaimsError::GroupWithComma {
                    email: "a@x.com".into()
                }),
                "{groups}"
            );
        }
    }
}
