//! A request described instead of received (docs/policies.md "Trying a decision"):
//! `gatehouse policy eval` and the admin playground (`POST /admin/api/decide`) decide it
//! through the very steps `/auth/verify` takes — [`route`](crate::decide::route), then
//! [`decide`](crate::decide::decide) for the described caller — so what they print is the
//! answer verify would give, not a second evaluation beside it.
//!
//! The description is what an operator knows: the URL and method, perhaps some request
//! headers, who is signed in (`user`) on which device (`device`), and when (`time`). It is
//! put to the core as NGINX puts a request (`X-Original-URL` and `X-Original-Method` from a
//! trusted peer), so trust rules, normalization and route matching all apply. The decision
//! cases (`tests/cases/`) describe their users with the same types.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::decide::{
    self, Asking, Caller, Identity, Settings, Step, Transport, UnauthenticatedMode, Verdict,
};
use crate::policy::input::{DeviceFacts, SessionFacts, UserFacts};
use crate::policy::{Bundle, IdentityInput};
use crate::request::trust::VerifyCall;

/// The ingress a description is put to the core by: a loopback peer, trusted for this call
/// only, so the description's `X-Original-URL` is believed as NGINX's would be.
const DESCRIBED_PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The headers the description's `url` and `method` become; given again in `headers` they
/// would be a second description of the request (which verify refuses with a 400).
const RESERVED_HEADERS: [&str; 2] = ["x-original-url", "x-original-method"];

/// A request to decide, as the admin playground's JSON body and `policy eval`'s input give it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// The original request's absolute URL, e.g. `https://apps.example.com/restaurant/orders`.
    pub url: String,
    /// `GET` when not given.
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers the policy may read (`input.request.headers`); `Accept: text/html`
    /// asks for the login redirect as a browser would, `X-Forwarded-For` names the client.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The signed-in user; none for an anonymous request.
    #[serde(default)]
    pub user: Option<DescribedUser>,
    /// The user's device (only with a user: a device is known through its session).
    #[serde(default)]
    pub device: Option<DescribedDevice>,
    /// RFC 3339; the current time when not given.
    #[serde(default)]
    pub time: Option<String>,
}

/// A signed-in user as policies see it (`input.user`), without a store.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedUser {
    pub email: String,
    /// The user's id; the email when not given.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenant id → the user's role in it, e.g. `{"acme": "admin"}`.
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
    /// The IdP's claims (`input.user.claims`).
    #[serde(default)]
    pub claims: Option<serde_json::Value>,
    /// How the user signed in (`input.session.amr`).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// A registered device as policies see it (`input.device`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedDevice {
    #[serde(default)]
    pub managed: bool,
    /// `low`, `medium` or `high`; `low` (the store's default) when not given.
    #[serde(default)]
    pub trust: Option<String>,
    #[serde(default)]
    pub posture: Option<serde_json::Value>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub cert_fingerprint: Option<String>,
}

/// Why a description cannot be decided. A description that verify would refuse (a bad URL,
/// a refused spelling) is not an error: it is decided, as a 400.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("time `{value}` is not an RFC 3339 timestamp such as 2026-11-22T18:00:00Z: {source}")]
    Time {
        value: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error(
        "header {0} comes from the description's url and method; give the request in `url` and `method` instead"
    )]
    ReservedHeader(String),
    #[error("a device is known only through a session: describe the user too")]
    DeviceWithoutUser,
}

/// The session identity a description stands for, owned (the core's [`Identity`] borrows).
struct Described {
    input: IdentityInput,
    groups_joined: String,
    tenants_joined: String,
}

impl DescribedUser {
    fn resolve(&self, device: Option<&DescribedDevice>, now: DateTime<Utc>) -> Described {
        let tenants: Vec<(String, String)> = self
            .tenants
            .iter()
            .map(|(t, role)| (t.clone(), role.clone()))
            .collect();
        let no_claims = serde_json::json!({});
        let user = UserFacts {
            id: self.id.as_deref().unwrap_or(&self.email),
            subject: self.subject.as_deref(),
            email: &self.email,
            name: self.name.as_deref(),
            username: self.username.as_deref(),
            groups: &self.groups,
            roles: &self.roles,
            tenants: &tenants,
            claims: self.claims.as_ref().unwrap_or(&no_claims),
        };
        // A session that has just begun and lasts the hour: a description names who, not when
        // they signed in.
        let session = SessionFacts {
            id: "described",
            created_at: now,
            expires_at: now + Duration::hours(1),
            auth_time: now,
            amr: &self.amr,
        };
        let no_posture = serde_json::json!({});
        let device = device.map(|d| DeviceFacts {
            id: d.id.as_deref().unwrap_or("described"),
            registered: true,
            managed: d.managed,
            trust: d.trust.as_deref().unwrap_or("low"),
            posture: d.posture.as_ref().unwrap_or(&no_posture),
            cert_fingerprint: d.cert_fingerprint.as_deref(),
        });
        Described {
            input: IdentityInput::build(&user, &session, device.as_ref()),
            groups_joined: self.groups.join(","),
            tenants_joined: self
                .tenants
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl DryRun {
    /// The time the request is decided at: `time`, else `now`.
    pub fn time(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, DryRunError> {
        match &self.time {
            None => Ok(now),
            Some(value) => DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|source| DryRunError::Time {
                    value: value.clone(),
                    source,
                }),
        }
    }

    /// Decides the described request against `bundle` with the service's `settings` (header
    /// names, trusted proxies, login URL), as verify would answer it; `now` is used when the
    /// description gives no time. Nothing is audited or counted: this is no request.
    pub fn decide(
        &self,
        bundle: &Bundle,
        settings: &Settings,
        now: DateTime<Utc>,
    ) -> Result<Verdict, DryRunError> {
        let now = self.time(now)?;
        if let Some(name) = self
            .headers
            .keys()
            .find(|n| RESERVED_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        {
            return Err(DryRunError::ReservedHeader(name.clone()));
        }
        if self.device.is_some() && self.user.is_none() {
            return Err(DryRunError::DeviceWithoutUser);
        }
        let method = self.method.as_deref().unwrap_or("GET");
        let mut headers: Vec<(&str, &str)> = vec![
            ("x-original-url", self.url.as_str()),
            ("x-original-method", method),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut settings = settings.clone();
        settings
            .trusted_proxies
            .push(ipnet::IpNet::from(DESCRIBED_PEER));
        let call = VerifyCall {
            method: "GET",
            target: "/auth/verify",
            peer: DESCRIBED_PEER,
            scheme: "http",
            forwarded: true,
        };
        let routed = match decide::route(bundle, &settings, call, &headers) {
            Step::Done(verdict) => return Ok(verdict),
            Step::NeedsCaller(routed) => routed,
        };
        let described = self
            .user
            .as_ref()
            .map(|u| (u, u.resolve(self.device.as_ref(), now)));
        let identity = described.as_ref().map(|(user, d)| Identity {
            email: &user.email,
            username: user.username.as_deref(),
            groups_joined: &d.groups_joined,
            tenants_joined: &d.tenants_joined,
            input: &d.input,
        });
        let caller = match &identity {
            Some(identity) => Caller::Session(identity),
            // What verify answers a request without a session cookie.
            None => Caller::Anonymous {
                reason: "session_unknown",
            },
        };
        let asking = Asking {
            mode: UnauthenticatedMode::Status,
            wants_html: self
                .headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("accept") && v.contains("text/html")),
            transport: Transport::Http,
        };
        Ok(decide::decide(
            bundle, &settings, *routed, &headers, caller, asking, now,
        ))
    }

    /// [`DryRun::decide`], as the JSON answer `policy eval` prints and the playground sends.
    pub fn answer(
        &self,
        bundle: &Bundle,
        settings: &Settings,
        now: DateTime<Utc>,
    ) -> Result<DryRunAnswer, DryRunError> {
        let verdict = self.decide(bundle, settings, now)?;
        Ok(DryRunAnswer::new(verdict, &bundle.version))
    }
}

/// A verdict as JSON for people and the admin UI: what was decided and the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunAnswer {
    pub route: String,
    /// `allow`, `public`, `deny`, `unauthenticated`, `bad_request` or `error`.
    pub outcome: &'static str,
    pub status: u16,
    pub reason: Option<String>,
    /// The answer's headers by name, in the order they would be sent.
    #[serde(serialize_with = "as_object")]
    pub headers: Vec<(String, String)>,
    pub tenant: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    /// The bundle that decided.
    pub bundle_version: String,
}

impl DryRunAnswer {
    fn new(v: Verdict, bundle_version: &str) -> DryRunAnswer {
        DryRunAnswer {
            route: v.route,
            outcome: v.outcome.as_str(),
            status: v.status,
            reason: v.reason,
            headers: v.headers,
            tenant: v.tenant,
            method: v.method,
            host: v.host,
            path: v.path,
            bundle_version: bundle_version.to_string(),
        }
    }
}

fn as_object<S: Serializer>(headers: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(headers.iter().map(|(n, v)| (n, v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{HeaderNames, Outcome};
    use std::path::Path;

    fn bundle() -> Bundle {
        Bundle::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap()
    }

    fn settings() -> Settings {
        Settings::new(
            HeaderNames::default(),
            Vec::new(),
            "https://auth.example.com",
        )
    }

    fn described(json: serde_json::Value) -> DryRun {
        serde_json::from_value(json).unwrap()
    }

    fn header<'v>(v: &'v Verdict, name: &str) -> Option<&'v str> {
        v.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_described_admin_of_a_tenant_gets_the_policy_headers() {
        let d = described(serde_json::json!({
            "url": "https://acme.apps.example.com/",
            "user": {"email": "ann@example.com", "tenants": {"acme": "admin"}}
        }));
        let v = d.decide(&bundle(), &settings(), Utc::now()).unwrap();
        assert_eq!((v.outcome, v.status), (Outcome::Allow, 200), "{v:?}");
        assert_eq!(v.route, "tenant-apps");
        assert_eq!(header(&v, "X-Tenant-Id"), Some("acme"));
        assert_eq!(header(&v, "X-Tenant-Role"), Some("admin"));
        assert_eq!(header(&v, "X-Auth-Request-Email"), Some("ann@example.com"));
    }

    #[test]
    fn no_user_is_an_anonymous_request_with_the_login_redirect() {
        let d = described(serde_json::json!({"url": "https://apps.example.com/restaurant"}));
        let v = d.decide(&bundle(), &settings(), Utc::now()).unwrap();
        assert_eq!((v.outcome, v.status), (Outcome::Unauthenticated, 401));
        assert_eq!(
            header(&v, "X-Auth-Request-Redirect"),
            Some(
                "https://auth.example.com/auth/login?rd=https%3A%2F%2Fapps.example.com%2Frestaurant"
            )
        );
    }

    #[test]
    fn the_device_and_the_time_reach_the_policies() {
        let finance = serde_json::json!({"email": "fin@example.com", "groups": ["finance"]});
        let on = |device: serde_json::Value| {
            described(serde_json::json!({
                "url": "https://apps.example.com/reports", "user": finance, "device": device
            }))
            .decide(&bundle(), &settings(), Utc::now())
            .unwrap()
        };
        assert_eq!(
            on(serde_json::json!({"managed": true})).outcome,
            Outcome::Allow
        );
        let unmanaged = on(serde_json::json!({"managed": false}));
        assert_eq!(unmanaged.reason.as_deref(), Some("cel_rule_false"));
        let d = described(serde_json::json!({"url": "https://x/", "time": "yesterday"}));
        let e = d.decide(&bundle(), &settings(), Utc::now()).unwrap_err();
        assert!(
            e.to_string().contains("`yesterday` is not an RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn the_trust_rules_and_normalization_apply_to_a_description() {
        let d = described(serde_json::json!({
            "url": "https://apps.example.com/restaurant/secret",
            "headers": {"X-Forwarded-Uri": "/healthz"}
        }));
        let v = d.decide(&bundle(), &settings(), Utc::now()).unwrap();
        assert_eq!(
            (v.status, v.reason.as_deref()),
            (400, Some("conflicting_forwarded_headers"))
        );
        let d = described(serde_json::json!({"url": "https://apps.example.com/healthz/..;/x"}));
        assert_eq!(
            d.decide(&bundle(), &settings(), Utc::now()).unwrap().status,
            400
        );
        let d = described(serde_json::json!({
            "url": "https://apps.example.com/", "headers": {"X-Original-URL": "https://a/"}
        }));
        assert!(matches!(
            d.decide(&bundle(), &settings(), Utc::now()),
            Err(DryRunError::ReservedHeader(_))
        ));
    }

    #[test]
    fn an_answer_is_json_with_headers_by_name() {
        let d = described(serde_json::json!({
            "url": "https://acme.apps.example.com/",
            "user": {"email": "ann@example.com", "tenants": {"acme": "member"}}
        }));
        let bundle = bundle();
        let answer = d.answer(&bundle, &settings(), Utc::now()).unwrap();
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["bundle_version"], bundle.version.as_str());
        assert_eq!(json["outcome"], "allow");
        assert_eq!(json["route"], "tenant-apps");
        assert_eq!(json["headers"]["X-Tenant-Role"], "member");
    }

    #[test]
    fn an_unknown_field_is_refused_not_ignored() {
        let typo =
            serde_json::json!({"url": "https://x/", "user": {"email": "a@b", "group": ["x"]}});
        let e = serde_json::from_value::<DryRun>(typo).unwrap_err();
        assert!(e.to_string().contains("unknown field `group`"), "{e}");
    }
}
