//! The input document policies see (docs/policies.md), built directly in each engine's value type.
//!
//! Converting a `serde_json::Value` costs microseconds per request, so the document is
//! written once, generically over [`Doc`], and instantiated for regorus and for CEL. The
//! per-session parts (`user`, `session`, `device`) are built once when a session is resolved
//! and cached with it; only `request`, `route` and `time` are built per request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use cel::common::types;
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
    /// A map whose keys are the request's own data (header names, query and route
    /// parameters), not the document's names: they are never in a key table, so they are
    /// not looked up in one.
    fn data_map(entries: Vec<(&str, Self)>) -> Self {
        Self::map(entries)
    }

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
        let entries = entries
            .into_iter()
            .map(|(k, v)| (input_key(k), v))
            .collect();
        regorus::Value::from(regorus::value::Object::from_entries(entries))
    }
    fn data_map(entries: Vec<(&str, Self)>) -> Self {
        let entries = entries
            .into_iter()
            .map(|(k, v)| (regorus::Value::from(k), v))
            .collect();
        regorus::Value::from(regorus::value::Object::from_entries(entries))
    }
    fn cached_map(entries: Vec<(&str, Self)>) -> Self {
        let entries = entries
            .into_iter()
            .map(|(k, v)| {
                let key = match shared_key(k) {
                    Some(i) => REGO_KEYS[i].clone(),
                    None => regorus::Value::from(k),
                };
                (key, v)
            })
            .collect();
        regorus::Value::from(regorus::value::Object::from_entries(entries))
    }
}

/// The input document's own key names (sorted, for binary search; a test checks it). Every
/// request's document has them, so each thread keeps one copy of each instead of allocating
/// them per request; per thread, so requests on different cores do not contend on the
/// reference counts.
const INPUT_KEYS: &[&str] = &[
    "device",
    "headers",
    "host",
    "hour",
    "method",
    "name",
    "now",
    "params",
    "parsed_path",
    "path",
    "query",
    "request",
    "route",
    "scheme",
    "session",
    "source_ip",
    "tenant",
    "time",
    "transport",
    "user",
    "weekday",
];

thread_local! {
    static THREAD_INPUT_KEYS: Vec<regorus::Value> =
        INPUT_KEYS.iter().map(|k| regorus::Value::from(*k)).collect();
}

/// A per-request map's key: this thread's copy for an [`INPUT_KEYS`] name, else a new one.
fn input_key(name: &str) -> regorus::Value {
    match INPUT_KEYS.binary_search(&name) {
        Ok(i) => THREAD_INPUT_KEYS
            .try_with(|keys| keys[i].clone())
            .unwrap_or_else(|_| regorus::Value::from(name)),
        Err(_) => regorus::Value::from(name),
    }
}

/// CEL's own value representation, built directly: `cel::Value` is converted into it
/// (every map rebuilt) each time a variable is bound, which cost more than evaluating the
/// expression, so the documents are written in this form and lent to each evaluation.
pub type CelVal = Box<dyn cel::common::value::Val>;

/// A cached CEL document, shared by every request of its session.
pub type SharedCelVal = Arc<dyn cel::common::value::Val>;

impl Doc for CelVal {
    fn null() -> Self {
        Box::new(types::CelNull)
    }
    fn bool(b: bool) -> Self {
        Box::new(types::CelBool::from(b))
    }
    fn int(i: i64) -> Self {
        Box::new(types::CelInt::from(i))
    }
    fn float(f: f64) -> Self {
        Box::new(types::CelDouble::from(f))
    }
    fn str(s: &str) -> Self {
        Box::new(types::CelString::from(s.to_string()))
    }
    fn list(items: Vec<Self>) -> Self {
        Box::new(types::CelList::from(items))
    }
    fn map(entries: Vec<(&str, Self)>) -> Self {
        let map: HashMap<types::CelMapKey<'static>, CelVal> = entries
            .into_iter()
            .map(|(k, v)| (types::CelMapKey::from(k.to_string()), v))
            .collect();
        Box::new(types::CelMap::from(map))
    }
    fn cached_map(entries: Vec<(&str, Self)>) -> Self {
        let map: HashMap<types::CelMapKey<'static>, CelVal> =
            entries.into_iter().map(|(k, v)| (cel_key(k), v)).collect();
        Box::new(types::CelMap::from(map))
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
fn shared_key(name: &str) -> Option<usize> {
    SHARED_KEYS.binary_search(&name).ok()
}

/// A cached map's key: a name in [`SHARED_KEYS`] borrows the static name (no allocation).
fn cel_key(name: &str) -> types::CelMapKey<'static> {
    match shared_key(name) {
        Some(i) => types::CelMapKey::from(SHARED_KEYS[i]),
        None => types::CelMapKey::from(name.to_string()),
    }
}

/// A regorus document in another value type, as [`Doc`] would have built it there directly:
/// a session's CEL documents are made from its Rego ones on first use by a CEL route, so
/// sessions that only meet Rego routes never hold them. Documents only have string keys
/// (they come from JSON or from [`Doc`]); any other key keeps its JSON text.
pub fn rego_to<D: Doc>(v: &regorus::Value) -> D {
    match v {
        regorus::Value::Null | regorus::Value::Undefined => D::null(),
        regorus::Value::Bool(b) => D::bool(*b),
        regorus::Value::Number(n) => match (n.is_float(), n.as_i64()) {
            (false, Some(i)) => D::int(i),
            _ => D::float(n.as_f64().unwrap_or(f64::NAN)),
        },
        regorus::Value::String(s) => D::str(s),
        regorus::Value::Array(items) => D::list(items.iter().map(rego_to).collect()),
        regorus::Value::Set(items) => D::list(items.iter().map(rego_to).collect()),
        regorus::Value::Object(fields) => {
            let keys: Vec<Cow<'_, str>> = fields
                .keys()
                .map(|k| match k {
                    regorus::Value::String(name) => Cow::Borrowed(&**name),
                    other => Cow::Owned(other.to_json_str().unwrap_or_default()),
                })
                .collect();
            D::cached_map(
                keys.iter()
                    .zip(fields.values())
                    .map(|(k, v)| (&**k, rego_to(v)))
                    .collect(),
            )
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
    /// The same documents for CEL ([`rego_to`]), shared: a request on a client
    /// certificate's device replaces `device` without copying the others.
    pub fn to_cel(&self) -> IdentityDocs<SharedCelVal> {
        IdentityDocs {
            user: rego_to::<CelVal>(&self.user).into(),
            session: rego_to::<CelVal>(&self.session).into(),
            device: rego_to::<CelVal>(&self.device).into(),
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
    pub headers: &'a [(Cow<'a, str>, Cow<'a, str>)],
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
                D::data_map(
                    query
                        .iter()
                        .map(|(k, vs)| (k.as_str(), D::strs(vs.iter().map(String::as_str))))
                        .collect(),
                ),
            ),
            (
                "headers",
                D::data_map(
                    self.headers
                        .iter()
                        .map(|(k, v)| (&**k, D::str(v)))
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
                D::data_map(
                    self.params
                        .iter()
                        .map(|(k, v)| (k.as_str(), D::str(v)))
                        .collect(),
                ),
            ),
        ])
    }
}

/// `input.time` for Rego: the document changes once a second, so each thread keeps the
/// last one it built and reuses it within that second.
pub fn rego_time_doc(now: DateTime<Utc>) -> regorus::Value {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, regorus::Value)>> =
            const { std::cell::RefCell::new(None) };
    }
    let second = now.timestamp();
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        match &*last {
            Some((s, doc)) if *s == second => Some(doc.clone()),
            _ => {
                let doc: regorus::Value = time_doc(now);
                *last = Some((second, doc.clone()));
                Some(doc)
            }
        }
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| time_doc(now))
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
        let c: CelVal = from_json(&j);
        assert!(c.downcast_ref::<types::CelMap>().is_some());
    }

    #[test]
    fn shared_keys_are_sorted_and_unique() {
        assert!(
            SHARED_KEYS.windows(2).all(|w| w[0] < w[1]),
            "{SHARED_KEYS:?}"
        );
        assert!(INPUT_KEYS.windows(2).all(|w| w[0] < w[1]), "{INPUT_KEYS:?}");
    }

    #[test]
    fn maps_equal_those_collected_through_a_btree_map() {
        // Unsorted, with a repeated key (the later value wins) and keys from both tables.
        let entries = [
            ("path", 1),
            ("zeta", 2),
            ("email", 3),
            ("path", 4),
            ("a", 5),
        ];
        let expected = regorus::Value::from(
            entries
                .iter()
                .map(|(k, v)| (regorus::Value::from(*k), regorus::Value::from(*v as i64)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        let built = |cached: bool| {
            let e = entries
                .iter()
                .map(|(k, v)| (*k, regorus::Value::from(*v as i64)))
                .collect();
            if cached {
                <regorus::Value as Doc>::cached_map(e)
            } else {
                <regorus::Value as Doc>::map(e)
            }
        };
        for cached in [false, true] {
            let v = built(cached);
            assert_eq!(v, expected);
            assert_eq!(v["path"], regorus::Value::from(4i64));
            assert_eq!(v.to_json_str().unwrap(), expected.to_json_str().unwrap());
        }
        let data = <regorus::Value as Doc>::data_map(
            entries
                .iter()
                .map(|(k, v)| (*k, regorus::Value::from(*v as i64)))
                .collect(),
        );
        assert_eq!(data, expected);
        assert_eq!(
            <regorus::Value as Doc>::map(vec![]),
            regorus::Value::new_object()
        );
    }

    #[test]
    fn rego_time_doc_is_the_time_doc_of_that_second() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = t + chrono::Duration::milliseconds(999);
        let next = t + chrono::Duration::seconds(1);
        for at in [t, later, next, t] {
            assert_eq!(rego_time_doc(at), time_doc::<regorus::Value>(at));
        }
        assert_ne!(rego_time_doc(next), rego_time_doc(t));
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

    /// A CEL map's field.
    fn field<'a>(map: &'a (dyn cel::common::value::Val + 'static), name: &str) -> &'a CelVal {
        map.downcast_ref::<types::CelMap>()
            .expect("a map")
            .inner()
            .get(&types::CelMapKey::from(name.to_string()))
            .expect("the field")
    }

    #[test]
    fn cel_documents_made_from_rego_equal_cel_built_directly() {
        let rego: IdentityDocs<regorus::Value> = facts_docs();
        let direct: IdentityDocs<CelVal> = facts_docs();
        let converted = rego.to_cel();
        assert!(*converted.user == *direct.user);
        assert!(*converted.session == *direct.session);
        assert!(*converted.device == *direct.device);
        // 2.0 stays a double and 3 an int: CEL tells them apart in overloads.
        let claims = field(&*converted.user, "claims");
        assert!(
            field(&**claims, "score")
                .downcast_ref::<types::CelDouble>()
                .is_some()
        );
        assert!(
            field(&**claims, "level")
                .downcast_ref::<types::CelInt>()
                .is_some()
        );
        // Equal is not a vacuous answer: another user's documents differ.
        let other: IdentityDocs<CelVal> = IdentityDocs::anonymous();
        assert!(*converted.user != *other.user);
        let anonymous = IdentityDocs::<regorus::Value>::anonymous().to_cel();
        assert!(anonymous.user.downcast_ref::<types::CelNull>().is_some());
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
        let cel_direct: IdentityDocs<CelVal> = facts_docs();
        assert!(*rego_to::<CelVal>(&from_json::<regorus::Value>(&back[0])) == *cel_direct.user);
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
