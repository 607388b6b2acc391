//! The input document policies see (docs/policies.md), built directly in each engine's value type.
//!
//! Converting a `serde_json::Value` costs microseconds per request, so the document is
//! written once, generically over [`Doc`], and instantiated for regorus and for CEL. The
//! per-session parts (`user`, `session`, `device`) are built once when a session is resolved
//! and cached with it; only `request`, `route` and `time` are built per request.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

use crate::request::normalize::NormalizedPath;

/// A value type an input document can be written in.
pub trait Doc: Sized + Clone {
    fn null() -> Self;
    fn bool(b: bool) -> Self;
    fn int(i: i64) -> Self;
    fn float(f: f64) -> Self;
    fn str(s: &str) -> Self;
    fn list(items: Vec<Self>) -> Self;
    fn map(entries: Vec<(&str, Self)>) -> Self;
    /// A map kept with a cached session: keys in [`SHARED_KEYS`] are the one shared copy of
    /// that name instead of a fresh allocation each, which is most of a session's maps.
    fn cached_map(entries: Vec<(&str, Self)>) -> Self;

    fn opt_str(s: Option<&str>) -> Self {
        s.map_or_else(Self::null, Self::str)
    }
    fn strs<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        Self::list(items.into_iter().map(Self::str).collect())
    }
}

impl Doc for regorus::Value {
    fn null() -> Self {
        regorus::Value::Null
    }
    fn bool(b: bool) -> Self {
        regorus::Value::Bool(b)
    }
    fn int(i: i64) -> Self {
        regorus::Value::from(i)
    }
    fn float(f: f64) -> Self {
        regorus::Value::from(f)
    }
    fn str(s: &str) -> Self {
        regorus::Value::from(s)
    }
    fn list(items: Vec<Self>) -> Self {
        regorus::Value::from(items)
    }
    fn map(entries: Vec<(&str, Self)>) -> Self {
        let map: std::collections::BTreeMap<regorus::Value, regorus::Value> = entries
            .into_iter()
            .map(|(k, v)| (regorus::Value::from(k), v))
            .collect();
        regorus::Value::from(map)
    }
    fn cached_map(entries: Vec<(&str, Self)>) -> Self {
        let map: std::collections::BTreeMap<regorus::Value, regorus::Value> = entries
            .into_iter()
            .map(|(k, v)| {
                let key = match shared_key(k) {
                    Some(i) => REGO_KEYS[i].clone(),
                    None => regorus::Value::from(k),
                };
                (key, v)
            })
            .collect();
        regorus::Value::from(map)
    }
}

impl Doc for cel::Value {
    fn null() -> Self {
        cel::Value::Null
    }
    fn bool(b: bool) -> Self {
        cel::Value::Bool(b)
    }
    fn int(i: i64) -> Self {
        cel::Value::Int(i)
    }
    fn float(f: f64) -> Self {
        cel::Value::Float(f)
    }
    fn str(s: &str) -> Self {
        cel::Value::String(Arc::new(s.to_string()))
    }
    fn list(items: Vec<Self>) -> Self {
        cel::Value::List(Arc::new(items))
    }
    fn map(entries: Vec<(&str, Self)>) -> Self {
        let map: std::collections::HashMap<cel::objects::Key, cel::Value> = entries
            .into_iter()
            .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.to_string())), v))
            .collect();
        cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
    }
    fn cached_map(entries: Vec<(&str, Self)>) -> Self {
        let map: std::collections::HashMap<cel::objects::Key, cel::Value> =
            entries.into_iter().map(|(k, v)| (cel_key(k), v)).collect();
        cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
    }
}

/// JSON: a session's documents kept as compact text when they are not kept built (the
/// service's session cache), and read back with [`from_json`] to the same values.
impl Doc for serde_json::Value {
    fn null() -> Self {
        serde_json::Value::Null
    }
    fn bool(b: bool) -> Self {
        serde_json::Value::Bool(b)
    }
    fn int(i: i64) -> Self {
        serde_json::Value::from(i)
    }
    fn float(f: f64) -> Self {
        serde_json::Value::from(f)
    }
    fn str(s: &str) -> Self {
        serde_json::Value::from(s)
    }
    fn list(items: Vec<Self>) -> Self {
        serde_json::Value::Array(items)
    }
    fn map(entries: Vec<(&str, Self)>) -> Self {
        serde_json::Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
    fn cached_map(entries: Vec<(&str, Self)>) -> Self {
        Self::map(entries)
    }
}

/// Map keys that every cached session repeats: the input document's own names and the claim
/// names common IdPs send. Sorted, for binary search (a test checks it). A cached session
/// holds a few dozen keys per engine; sharing them is a large part of a session's memory.
/// Only cached documents share them: per-request documents keep their own keys, so requests
/// on different cores do not contend on these reference counts.
pub const SHARED_KEYS: &[&str] = &[
    "acr",
    "amr",
    "auth_time",
    "birthdate",
    "cert_fingerprint",
    "claims",
    "created_at",
    "department",
    "email",
    "email_verified",
    "expires_at",
    "family_name",
    "gender",
    "given_name",
    "groups",
    "hd",
    "id",
    "iss",
    "locale",
    "managed",
    "middle_name",
    "name",
    "nickname",
    "oid",
    "phone_number",
    "phone_number_verified",
    "picture",
    "posture",
    "preferred_username",
    "profile",
    "registered",
    "roles",
    "sid",
    "sub",
    "subject",
    "tenants",
    "tid",
    "trust",
    "updated_at",
    "username",
    "website",
    "zoneinfo",
];

static REGO_KEYS: LazyLock<Vec<regorus::Value>> = LazyLock::new(|| {
    SHARED_KEYS
        .iter()
        .map(|k| regorus::Value::from(*k))
        .collect()
});
static CEL_KEYS: LazyLock<Vec<Arc<String>>> = LazyLock::new(|| {
    SHARED_KEYS
        .iter()
        .map(|k| Arc::new(k.to_string()))
        .collect()
});

fn shared_key(name: &str) -> Option<usize> {
    SHARED_KEYS.binary_search(&name).ok()
}

fn cel_key(name: &str) -> cel::objects::Key {
    cel::objects::Key::String(match shared_key(name) {
        Some(i) => CEL_KEYS[i].clone(),
        None => Arc::new(name.to_string()),
    })
}

/// The CEL twin of a regorus document, as [`Doc`] would have built it for CEL directly: a
/// session's CEL documents are made from its Rego ones on first use by a CEL route, so
/// sessions that only meet Rego routes never hold them.
pub fn rego_to_cel(v: &regorus::Value) -> cel::Value {
    match v {
        regorus::Value::Null | regorus::Value::Undefined => cel::Value::Null,
        regorus::Value::Bool(b) => cel::Value::Bool(*b),
        regorus::Value::Number(n) => match (n.is_float(), n.as_i64()) {
            (false, Some(i)) => cel::Value::Int(i),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        regorus::Value::String(s) => cel::Value::String(Arc::new(s.to_string())),
        regorus::Value::Array(items) => {
            cel::Value::List(Arc::new(items.iter().map(rego_to_cel).collect()))
        }
        regorus::Value::Set(items) => {
            cel::Value::List(Arc::new(items.iter().map(rego_to_cel).collect()))
        }
        regorus::Value::Object(fields) => {
            let map: std::collections::HashMap<cel::objects::Key, cel::Value> = fields
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        regorus::Value::String(name) => cel_key(name),
                        regorus::Value::Bool(b) => cel::objects::Key::Bool(*b),
                        regorus::Value::Number(n) if !n.is_float() && n.as_i64().is_some() => {
                            cel::objects::Key::Int(n.as_i64().unwrap_or_default())
                        }
                        // Documents built by `Doc` only have string keys; anything else keeps
                        // its JSON text rather than being dropped.
                        other => cel::objects::Key::String(Arc::new(
                            other.to_json_str().unwrap_or_default(),
                        )),
                    };
                    (key, rego_to_cel(v))
                })
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// Converts JSON (claims, posture, `policy eval` inputs) into a document value. Object keys
/// are shared ([`Doc::cached_map`]): this JSON is a session's or a device's, kept in cache.
pub fn from_json<D: Doc>(v: &serde_json::Value) -> D {
    match v {
        serde_json::Value::Null => D::null(),
        serde_json::Value::Bool(b) => D::bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => D::int(i),
            None => D::float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => D::str(s),
        serde_json::Value::Array(a) => D::list(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            D::cached_map(o.iter().map(|(k, v)| (k.as_str(), from_json(v))).collect())
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What a policy may know about the signed-in user (`input.user`, docs/policies.md), borrowed from
/// wherever the service keeps it. The core defines the facts it reads; the store's rows are
/// the service's business.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub id: &'a str,
    pub subject: Option<&'a str>,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub username: Option<&'a str>,
    /// Union of the IdP's and the store's groups.
    pub groups: &'a [String],
    pub roles: &'a [String],
    /// (tenant id, role) pairs.
    pub tenants: &'a [(String, String)],
    /// The IdP's claims for this session.
    pub claims: &'a serde_json::Value,
}

/// `input.session`.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts<'a> {
    pub id: &'a str,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub auth_time: DateTime<Utc>,
    pub amr: &'a [String],
}

/// `input.device`: a registered client certificate or browser.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts<'a> {
    pub id: &'a str,
    pub registered: bool,
    pub managed: bool,
    pub trust: &'a str,
    pub posture: &'a serde_json::Value,
    pub cert_fingerprint: Option<&'a str>,
}

/// `input.device` for a known device.
pub fn device_doc<D: Doc>(d: &DeviceFacts<'_>) -> D {
    D::cached_map(vec![
        ("id", D::str(d.id)),
        ("registered", D::bool(d.registered)),
        ("managed", D::bool(d.managed)),
        ("trust", D::str(d.trust)),
        ("posture", from_json(d.posture)),
        ("cert_fingerprint", D::opt_str(d.cert_fingerprint)),
    ])
}

/// `input.user`, `input.session` and `input.device` of one session, in one value type.
#[derive(Clone, Debug)]
pub struct IdentityDocs<D> {
    pub user: D,
    pub session: D,
    pub device: D,
}

impl<D: Doc> IdentityDocs<D> {
    pub fn build(
        u: &UserFacts<'_>,
        s: &SessionFacts<'_>,
        device: Option<&DeviceFacts<'_>>,
    ) -> Self {
        let user = D::cached_map(vec![
            ("id", D::str(u.id)),
            ("subject", D::opt_str(u.subject)),
            ("email", D::str(u.email)),
            ("name", D::opt_str(u.name)),
            ("username", D::opt_str(u.username)),
            ("groups", D::strs(u.groups.iter().map(String::as_str))),
            ("roles", D::strs(u.roles.iter().map(String::as_str))),
            (
                "tenants",
                D::cached_map(
                    u.tenants
                        .iter()
                        .map(|(t, role)| (t.as_str(), D::str(role)))
                        .collect(),
                ),
            ),
            ("claims", from_json(u.claims)),
        ]);
        let session = D::cached_map(vec![
            ("id", D::str(s.id)),
            ("created_at", D::str(&rfc3339(s.created_at))),
            ("expires_at", D::str(&rfc3339(s.expires_at))),
            ("auth_time", D::str(&rfc3339(s.auth_time))),
            ("amr", D::strs(s.amr.iter().map(String::as_str))),
        ]);
        let device = device.map_or_else(D::null, device_doc);
        IdentityDocs {
            user,
            session,
            device,
        }
    }

    /// The parts for a request without a session: `user` and `device` are null.
    pub fn anonymous() -> Self {
        IdentityDocs {
            user: D::null(),
            session: D::null(),
            device: D::null(),
        }
    }
}

impl IdentityDocs<regorus::Value> {
    /// The same documents for CEL ([`rego_to_cel`]).
    pub fn to_cel(&self) -> IdentityDocs<cel::Value> {
        IdentityDocs {
            user: rego_to_cel(&self.user),
            session: rego_to_cel(&self.session),
            device: rego_to_cel(&self.device),
        }
    }
}

/// The original request as the policy sees it.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a NormalizedPath,
    pub query: Option<&'a str>,
    /// Lower-case names; identity, cookie and authorization headers are already removed.
    pub headers: &'a [(String, String)],
    pub source_ip: IpAddr,
    /// `http` (verify), `proxy` or `grpc`.
    pub transport: &'a str,
}

/// The matched route as the policy sees it.
#[derive(Debug, Clone)]
pub struct RouteFacts<'a> {
    pub name: &'a str,
    pub tenant: Option<&'a str>,
    pub params: &'a [(String, String)],
}

impl RequestFacts<'_> {
    pub fn build<D: Doc>(&self) -> D {
        let mut query: Vec<(String, Vec<String>)> = Vec::new();
        if let Some(q) = self.query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                match query.iter_mut().find(|(name, _)| *name == k) {
                    Some((_, values)) => values.push(v.into_owned()),
                    None => query.push((k.into_owned(), vec![v.into_owned()])),
                }
            }
        }
        let source_ip = self.source_ip.to_string();
        D::map(vec![
            ("method", D::str(self.method)),
            ("scheme", D::str(self.scheme)),
            ("host", D::opt_str(self.host)),
            ("path", D::str(self.path.as_str())),
            ("parsed_path", D::strs(self.path.segments())),
            (
                "query",
                D::map(
                    query
                        .iter()
                        .map(|(k, vs)| (k.as_str(), D::strs(vs.iter().map(String::as_str))))
                        .collect(),
                ),
            ),
            (
                "headers",
                D::map(
                    self.headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), D::str(v)))
                        .collect(),
                ),
            ),
            ("source_ip", D::str(&source_ip)),
            ("transport", D::str(self.transport)),
        ])
    }
}

impl RouteFacts<'_> {
    pub fn build<D: Doc>(&self) -> D {
        D::map(vec![
            ("name", D::str(self.name)),
            ("tenant", D::opt_str(self.tenant)),
            (
                "params",
                D::map(
                    self.params
                        .iter()
                        .map(|(k, v)| (k.as_str(), D::str(v)))
                        .collect(),
                ),
            ),
        ])
    }
}

/// `input.time`.
pub fn time_doc<D: Doc>(now: DateTime<Utc>) -> D {
    D::map(vec![
        ("now", D::str(&rfc3339(now))),
        ("weekday", D::str(&now.weekday().to_string())),
        ("hour", D::int(i64::from(now.hour()))),
    ])
}

/// The whole input document in one value type.
pub struct InputDocument<D> {
    pub request: D,
    pub route: D,
    pub identity: IdentityDocs<D>,
    pub time: D,
}

impl<D: Doc> InputDocument<D> {
    /// The single `input` object, for Rego.
    pub fn into_object(self) -> D {
        D::map(vec![
            ("request", self.request),
            ("route", self.route),
            ("user", self.identity.user),
            ("session", self.identity.session),
            ("device", self.identity.device),
            ("time", self.time),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_converts_to_both_engines() {
        let j = serde_json::json!({"a": [1, 2.5, "x", true, null], "b": {"c": "d"}});
        let r: regorus::Value = from_json(&j);
        assert_eq!(r, regorus::Value::from(j.clone()));
        let c: cel::Value = from_json(&j);
        assert!(matches!(c, cel::Value::Map(_)));
    }

    #[test]
    fn shared_keys_are_sorted_and_unique() {
        assert!(
            SHARED_KEYS.windows(2).all(|w| w[0] < w[1]),
            "{SHARED_KEYS:?}"
        );
    }

    fn facts_docs<D: Doc>() -> IdentityDocs<D> {
        let claims = serde_json::json!({
            "email": "ann@example.com", "email_verified": true, "score": 2.0, "level": 3,
            "big": 18446744073709551615u64, "nested": {"groups": ["a", "b"], "x-custom": null},
        });
        let groups = vec!["admins".to_string(), "staff".to_string()];
        let tenants = vec![("acme".to_string(), "owner".to_string())];
        let amr = vec!["pwd".to_string()];
        let posture = serde_json::json!({"disk_encrypted": true, "os": "linux"});
        let t = DateTime::parse_from_rfc3339("2026-11-22T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        IdentityDocs::build(
            &UserFacts {
                id: "u1",
                subject: Some("sub-1"),
                email: "ann@example.com",
                name: None,
                username: Some("ann"),
                groups: &groups,
                roles: &[],
                tenants: &tenants,
                claims: &claims,
            },
            &SessionFacts {
                id: "s1",
                created_at: t,
                expires_at: t,
                auth_time: t,
                amr: &amr,
            },
            Some(&DeviceFacts {
                id: "d1",
                registered: true,
                managed: false,
                trust: "high",
                posture: &posture,
                cert_fingerprint: None,
            }),
        )
    }

    #[test]
    fn cached_documents_share_their_key_names() {
        let a: IdentityDocs<regorus::Value> = facts_docs();
        let b: IdentityDocs<regorus::Value> = facts_docs();
        let key = |docs: &IdentityDocs<regorus::Value>| -> regorus::Rc<str> {
            let regorus::Value::Object(fields) = &docs.user else {
                panic!("user is an object")
            };
            let (k, _) = fields
                .iter()
                .find(|(k, _)| **k == regorus::Value::from("email"))
                .unwrap();
            k.as_string().unwrap().clone()
        };
        assert!(regorus::Rc::ptr_eq(&key(&a), &key(&b)));
        // A name outside the table is the session's own.
        let regorus::Value::Object(tenants) = &a.user["tenants"] else {
            panic!("tenants is an object")
        };
        assert!(tenants.contains_key(&regorus::Value::from("acme")));
    }

    #[test]
    fn cel_documents_made_from_rego_equal_cel_built_directly() {
        let rego: IdentityDocs<regorus::Value> = facts_docs();
        let direct: IdentityDocs<cel::Value> = facts_docs();
        let converted = rego.to_cel();
        assert_eq!(converted.user, direct.user);
        assert_eq!(converted.session, direct.session);
        assert_eq!(converted.device, direct.device);
        // 2.0 stays a double and 3 an int: CEL tells them apart (`2.0 == 2` is a type error).
        let cel::Value::Map(user) = &converted.user else {
            panic!("user is a map")
        };
        let claims = user
            .map
            .get(&cel::objects::Key::from("claims".to_string()))
            .unwrap();
        let cel::Value::Map(claims) = claims else {
            panic!("claims is a map")
        };
        assert_eq!(
            claims
                .map
                .get(&cel::objects::Key::from("score".to_string())),
            Some(&cel::Value::Float(2.0))
        );
        assert_eq!(
            claims
                .map
                .get(&cel::objects::Key::from("level".to_string())),
            Some(&cel::Value::Int(3))
        );
        let anonymous = IdentityDocs::<regorus::Value>::anonymous().to_cel();
        assert_eq!(anonymous.user, cel::Value::Null);
    }

    #[test]
    fn documents_read_back_from_json_text_equal_the_direct_build() {
        let json: IdentityDocs<serde_json::Value> = facts_docs();
        let text = serde_json::to_string(&[&json.user, &json.session, &json.device]).unwrap();
        let back: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let direct: IdentityDocs<regorus::Value> = facts_docs();
        assert_eq!(from_json::<regorus::Value>(&back[0]), direct.user);
        assert_eq!(from_json::<regorus::Value>(&back[1]), direct.session);
        assert_eq!(from_json::<regorus::Value>(&back[2]), direct.device);
        // And the CEL made from them keeps 2.0 a double.
        let cel_direct: IdentityDocs<cel::Value> = facts_docs();
        assert_eq!(
            rego_to_cel(&from_json::<regorus::Value>(&back[0])),
            cel_direct.user
        );
    }

    #[test]
    fn time_doc_has_weekday_and_hour() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let v: regorus::Value = time_doc(t);
        let expected = regorus::Value::from(serde_json::json!({
            "now": "2026-11-22T18:00:00Z", "weekday": "Sun", "hour": 18
        }));
        assert_eq!(v, expected);
    }
}
