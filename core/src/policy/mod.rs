//! Policy bundles: `routes.yaml` plus `.rego` files, compiled and tested as one unit.
//!
//! A [`Bundle`] is immutable once built; the live one sits behind an `ArcSwap`, so a reload
//! swaps it atomically and requests in flight finish on the bundle they started with.

pub mod builtins;
pub mod cel;
pub mod data;
pub mod error;
pub mod input;
pub mod metadata;
pub mod rego;
pub mod routes;
pub mod testing;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use error::{DecisionError, Engine, EvalError, PolicyError};
use input::{IdentityDocs, InputDocument, RequestFacts, RouteFacts, time_doc};
use rego::{RegoPolicies, RegoSource};
pub use routes::{DefaultAction, Route, RouteMatch, RouteRule, RouteTable};

use self::cel::CelRule;

pub const ROUTES_FILE: &str = "routes.yaml";

/// What a route's policy said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyOutcome {
    pub allow: bool,
    /// A short code such as `not_in_group`, for `X-Auth-Request-Reason` and the audit.
    pub reason: Option<String>,
    /// Extra response headers (names start with `X-`), e.g. `X-Tenant-Id`.
    pub headers: Vec<(String, String)>,
    /// 401 or 403 when the policy chose the denial status.
    pub status: Option<u16>,
}

/// A session's identity documents, built once per session and cached with it: Rego's always,
/// CEL's made from them the first time a CEL route needs them, so a session that only meets
/// Rego routes never holds a second copy.
#[derive(Clone, Debug)]
pub struct IdentityInput {
    pub rego: IdentityDocs<regorus::Value>,
    cel: OnceLock<IdentityDocs<input::SharedCelVal>>,
}

impl IdentityInput {
    pub fn new(rego: IdentityDocs<regorus::Value>) -> IdentityInput {
        IdentityInput {
            rego,
            cel: OnceLock::new(),
        }
    }

    pub fn build(
        user: &input::UserFacts<'_>,
        session: &input::SessionFacts<'_>,
        device: Option<&input::DeviceFacts<'_>>,
    ) -> IdentityInput {
        IdentityInput::new(IdentityDocs::build(user, session, device))
    }

    /// A request without a session.
    pub fn anonymous() -> IdentityInput {
        IdentityInput::new(IdentityDocs::anonymous())
    }

    /// The CEL documents, converted on first use.
    pub fn cel(&self) -> &IdentityDocs<input::SharedCelVal> {
        self.cel.get_or_init(|| self.rego.to_cel())
    }

    /// These documents with `input.device` replaced (a registered client certificate's
    /// device, per request). The CEL half comes from this session's cached CEL documents, so
    /// a CEL route does not convert the session again on every such request.
    pub fn with_device(&self, rego: &regorus::Value, cel: &input::SharedCelVal) -> IdentityInput {
        let mut docs = self.rego.clone();
        docs.device = rego.clone();
        let mut cel_docs = self.cel().clone();
        cel_docs.device = cel.clone();
        IdentityInput {
            rego: docs,
            cel: OnceLock::from(cel_docs),
        }
    }
}

/// The files of a bundle as read from disk.
#[derive(Debug, Clone, Default)]
pub struct BundleFiles {
    /// (path relative to the bundle root with `/` separators, text), sorted by path.
    pub files: Vec<(String, String)>,
    /// How paths are shown in errors: the directory as the operator named it.
    pub display_root: String,
}

impl BundleFiles {
    /// Reads `routes.yaml`, every `.rego` and every data file below `dir`. Hidden entries (names starting
    /// with `.`) are skipped: Kubernetes ConfigMap volumes keep their real files in
    /// `..data/`, reached through the top-level symlinks.
    pub fn read(dir: &Path) -> Result<BundleFiles, PolicyError> {
        let display_root = dir.display().to_string();
        let mut files = Vec::new();
        // Symlinks are followed (ConfigMaps are made of them), so a link back up the tree
        // would loop: the depth is bounded.
        const MAX_DEPTH: usize = 16;
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, rel)) = stack.pop() {
            if rel.matches('/').count() >= MAX_DEPTH {
                return Err(PolicyError::at(
                    &path.display().to_string(),
                    1,
                    1,
                    format!("directories nested deeper than {MAX_DEPTH} (a symlink loop?)"),
                ));
            }
            let entries = std::fs::read_dir(&path).map_err(|e| {
                PolicyError::at(
                    &path.display().to_string(),
                    1,
                    1,
                    format!("cannot read directory: {e}"),
                )
            })?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| PolicyError::at(&display_root, 1, 1, e.to_string()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let full = entry.path();
                let rel_name = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                // `metadata` follows symlinks; a dangling one (mid-swap) is skipped.
                let Ok(meta) = std::fs::metadata(&full) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push((full, rel_name));
                } else if name.ends_with(".rego")
                    || data::is_data_file(&name)
                    || (rel.is_empty() && name == ROUTES_FILE)
                {
                    let text = std::fs::read_to_string(&full).map_err(|e| {
                        PolicyError::at(
                            &full.display().to_string(),
                            1,
                            1,
                            format!("cannot read: {e}"),
                        )
                    })?;
                    files.push((rel_name, text));
                }
            }
        }
        files.sort();
        Ok(BundleFiles {
            files,
            display_root,
        })
    }

    fn display(&self, rel: &str) -> String {
        if self.display_root.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.display_root.trim_end_matches('/'))
        }
    }

    /// The bundle version: a hash of every file's path and contents.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, text) in &self.files {
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    }

    /// The bundle's `data` document, merged from its data files.
    pub fn data(&self) -> Result<regorus::Value, PolicyError> {
        data::load(self.files.iter().filter_map(|(rel, text)| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            data::is_data_file(name).then(|| (rel.as_str(), self.display(rel), text.as_str()))
        }))
    }

    /// Policy modules and test modules, with display paths.
    pub fn rego_sources(&self) -> (Vec<RegoSource>, Vec<RegoSource>) {
        let mut policies = Vec::new();
        let mut tests = Vec::new();
        for (rel, text) in &self.files {
            if !rel.ends_with(".rego") {
                continue;
            }
            let source = RegoSource {
                path: self.display(rel),
                text: text.clone(),
            };
            if rel.ends_with("_test.rego") {
                tests.push(source);
            } else {
                policies.push(source);
            }
        }
        (policies, tests)
    }
}

/// A compiled, tested policy bundle.
pub struct Bundle {
    pub version: String,
    pub files: Vec<String>,
    pub loaded_at: DateTime<Utc>,
    pub routes: RouteTable,
    rego: Option<RegoPolicies>,
    /// Route name → compiled CEL rule.
    cel: HashMap<String, CelRule>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("version", &self.version)
            .field("files", &self.files)
            .finish()
    }
}

impl Bundle {
    /// Reads, compiles and tests the bundle in `dir`.
    pub fn load(dir: &Path) -> Result<Bundle, PolicyError> {
        Self::build(&BundleFiles::read(dir)?)
    }

    /// Compiles `files` and runs the bundle's own tests; any failure refuses the bundle.
    pub fn build(files: &BundleFiles) -> Result<Bundle, PolicyError> {
        let routes_display = files.display(ROUTES_FILE);
        let routes_text = files
            .files
            .iter()
            .find(|(p, _)| p == ROUTES_FILE)
            .map(|(_, t)| t.as_str())
            .ok_or_else(|| {
                PolicyError::at(&routes_display, 1, 1, "the bundle has no routes.yaml")
            })?;
        let routes = RouteTable::parse(routes_text, &routes_display)?;

        let mut required: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
        let mut cel = HashMap::new();
        for route in routes.routes() {
            let (line, col) = error::locate(routes_text, &route.name);
            match &route.rule {
                RouteRule::Rego { package } => {
                    required
                        .entry(package.clone())
                        .or_insert_with(|| (routes_display.clone(), line, col));
                }
                RouteRule::Cel { expression } => {
                    let (line, col) = error::locate(routes_text, expression);
                    cel.insert(
                        route.name.clone(),
                        CelRule::compile(expression, &routes_display, line, col)?,
                    );
                }
                RouteRule::Public => {}
            }
        }
        let (policies, tests) = files.rego_sources();
        let data = files.data()?;
        let rego = RegoPolicies::compile(&policies, &data, &required)?;
        let all: Vec<RegoSource> = policies.iter().chain(&tests).cloned().collect();
        let (results, inputs) = testing::run_tests_with_inputs(&all, &data)?;
        if let Some(failure) = testing::first_failure(&results) {
            return Err(failure);
        }
        if let Some(rego) = &rego {
            engines_agree(rego, &inputs)?;
        }
        let bundle = Bundle {
            version: files.version(),
            files: files.files.iter().map(|(p, _)| p.clone()).collect(),
            loaded_at: Utc::now(),
            routes,
            rego,
            cel,
        };
        bundle.smoke_test()?;
        Ok(bundle)
    }

    /// Evaluates every policy route once with an anonymous request. regorus reports an
    /// unknown builtin only when it runs, so this catches it before the bundle goes live.
    fn smoke_test(&self) -> Result<(), PolicyError> {
        let path = crate::request::normalize::normalize_path("/", false)
            .map_err(|e| PolicyError::at("<gatehouse>", 1, 1, e.to_string()))?;
        let request = RequestFacts {
            method: "GET",
            scheme: "https",
            host: None,
            path: &path,
            query: None,
            headers: &[],
            source_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            transport: "http",
        };
        for route in self.routes.routes() {
            let facts = RouteFacts {
                name: &route.name,
                tenant: route.tenant.as_deref(),
                params: &[],
            };
            let identity = IdentityInput::anonymous();
            if let Err(PolicyError::Eval { error, .. }) =
                self.evaluate(route, &request, &facts, &identity, Utc::now())
                && error.is_unknown_name()
            {
                return Err(PolicyError::at(
                    "<gatehouse>",
                    1,
                    1,
                    format!("route `{}`: {error}", route.name),
                ));
            }
        }
        Ok(())
    }

    /// Evaluates `route`'s policy. Public routes allow without evaluation.
    pub fn evaluate(
        &self,
        route: &Route,
        request: &RequestFacts<'_>,
        route_facts: &RouteFacts<'_>,
        identity: &IdentityInput,
        now: DateTime<Utc>,
    ) -> Result<PolicyOutcome, PolicyError> {
        self.evaluate_with(
            route,
            || {
                InputDocument {
                    request: request.build(),
                    route: route_facts.build(),
                    identity: identity.rego.clone(),
                    time: input::rego_time_doc(now),
                }
                .into_object()
            },
            |uses| cel::CelInput {
                request: uses.request.then(|| request.build()),
                route: uses.route.then(|| route_facts.build()),
                time: uses.time.then(|| time_doc(now)),
                identity: identity.cel(),
            },
        )
    }

    /// Runs the route's engine; the closures build the input only for the engine in use.
    fn evaluate_with<'i>(
        &self,
        route: &Route,
        rego_input: impl FnOnce() -> regorus::Value,
        cel_input: impl FnOnce(&cel::CelUses) -> cel::CelInput<'i>,
    ) -> Result<PolicyOutcome, PolicyError> {
        match &route.rule {
            RouteRule::Public => Ok(PolicyOutcome {
                allow: true,
                ..Default::default()
            }),
            RouteRule::Rego { package } => {
                let rego = self.rego.as_ref().ok_or_else(|| {
                    PolicyError::eval(&route.name, EvalError::NotCompiled("Rego".into()))
                })?;
                let value = rego
                    .evaluate(package, rego_input())
                    .map_err(|e| PolicyError::eval(&route.name, e))?;
                parse_decision(&value).map_err(|e| PolicyError::eval(&route.name, e))
            }
            RouteRule::Cel { .. } => {
                let rule = self.cel.get(&route.name).ok_or_else(|| {
                    PolicyError::eval(&route.name, EvalError::NotCompiled("CEL rule".into()))
                })?;
                let allow = rule
                    .evaluate(cel_input(&rule.uses))
                    .map_err(|e| PolicyError::eval(&route.name, e))?;
                Ok(PolicyOutcome {
                    allow,
                    reason: (!allow).then(|| "cel_rule_false".to_string()),
                    ..Default::default()
                })
            }
        }
    }
}

/// The tests run on regorus's interpreter; most routes are served by its bytecode VM. Each
/// input document a test gives a route's policy is decided by both, and any difference
/// refuses the bundle (docs/policies.md, "Testing"), so passing tests vouch for the engine
/// that answers requests.
fn engines_agree(rego: &RegoPolicies, inputs: &[testing::TestInput]) -> Result<(), PolicyError> {
    let related = |package: &str, reference: &str| {
        package == reference
            || package
                .strip_prefix(reference)
                .is_some_and(|t| t.starts_with('.'))
            || reference
                .strip_prefix(package)
                .is_some_and(|t| t.starts_with('.'))
    };
    for input in inputs {
        for package in rego.packages_on_vm() {
            if !input.references.iter().any(|r| related(package, r)) {
                continue;
            }
            rego.engines_agree(package, &input.value).map_err(|why| {
                PolicyError::at(
                    &input.file,
                    input.line,
                    1,
                    format!(
                        "policy `{package}` with the input of test {}: {why}",
                        input.test
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// Reads the wrapper's `{"allow", "reason", "headers", "status"}` object. Anything but a
/// well-formed object is an error, and errors deny.
fn parse_decision(value: &regorus::Value) -> Result<PolicyOutcome, DecisionError> {
    let object = value
        .as_object()
        .map_err(|_| DecisionError::NotAnObject(value.to_string()))?;
    let field = |name: &str| {
        object
            .get(&regorus::Value::from(name))
            .cloned()
            .unwrap_or(regorus::Value::Undefined)
    };
    let allow = matches!(field("allow"), regorus::Value::Bool(true));
    let reason = match field("reason") {
        regorus::Value::String(s) if s.is_empty() => None,
        regorus::Value::String(s) => Some(s.to_string()),
        regorus::Value::Undefined | regorus::Value::Null => None,
        other => return Err(DecisionError::Reason(other.to_string())),
    };
    let mut headers = Vec::new();
    match field("headers") {
        regorus::Value::Object(map) => {
            for (k, v) in map.iter() {
                let (regorus::Value::String(name), regorus::Value::String(val)) = (k, v) else {
                    return Err(DecisionError::HeaderNotAString {
                        name: k.to_string(),
                        value: v.to_string(),
                    });
                };
                if !name.to_ascii_lowercase().starts_with("x-")
                    || !crate::request::headers::is_header_name(name)
                {
                    return Err(DecisionError::HeaderName(name.to_string()));
                }
                if !crate::request::headers::is_header_value(val) {
                    return Err(DecisionError::HeaderValue(name.to_string()));
                }
                headers.push((name.to_string(), val.to_string()));
            }
        }
        regorus::Value::Undefined | regorus::Value::Null => {}
        other => return Err(DecisionError::HeadersNotAnObject(other.to_string())),
    }
    let status = match field("status") {
        regorus::Value::Number(_) => match field("status").as_u64() {
            Ok(0) => None,
            Ok(401) => Some(401),
            Ok(403) => Some(403),
            _ => return Err(DecisionError::Status),
        },
        regorus::Value::Undefined | regorus::Value::Null => None,
        other => return Err(DecisionError::StatusNotANumber(other.to_string())),
    };
    Ok(PolicyOutcome {
        allow,
        reason,
        headers,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::normalize::normalize_path;

    fn example_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    fn identity(groups: &[&str], tenants: &[(&str, &str)], managed: Option<bool>) -> IdentityInput {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let tenants: serde_json::Map<String, serde_json::Value> = tenants
            .iter()
            .map(|(t, r)| (t.to_string(), serde_json::Value::from(*r)))
            .collect();
        let device = managed.map_or(
            serde_json::Value::Null,
            |m| serde_json::json!({"managed": m}),
        );
        let user =
            serde_json::json!({"email": "ann@example.com", "groups": groups, "tenants": tenants});
        IdentityInput::new(IdentityDocs {
            user: input::from_json(&user),
            session: regorus::Value::Null,
            device: input::from_json(&device),
        })
    }

    fn decide(
        bundle: &Bundle,
        host: Option<&str>,
        path: &str,
        who: &IdentityInput,
    ) -> Option<PolicyOutcome> {
        let path = normalize_path(path, false).unwrap();
        let m = bundle.routes.matches(host, &path)?;
        let request = RequestFacts {
            method: "GET",
            scheme: "https",
            host,
            path: &path,
            query: Some("page=2&page=3"),
            headers: &[],
            source_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            transport: "http",
        };
        let facts = RouteFacts {
            name: &m.route.name,
            tenant: m.tenant.as_deref(),
            params: &m.params,
        };
        Some(
            bundle
                .evaluate(m.route, &request, &facts, who, Utc::now())
                .unwrap(),
        )
    }

    #[test]
    fn example_bundle_loads_and_decides() {
        let bundle = Bundle::load(&example_dir()).unwrap();
        assert_eq!(bundle.version.len(), 16);
        let kitchen = identity(&["kitchen"], &[], None);
        let out = decide(&bundle, Some("localhost"), "/restaurant/orders", &kitchen).unwrap();
        assert!(out.allow);
        assert_eq!(
            out.headers,
            vec![("X-Restaurant-Role".to_string(), "kitchen".to_string())]
        );

        let marketing = identity(&["marketing"], &[], None);
        let out = decide(&bundle, Some("localhost"), "/restaurant", &marketing).unwrap();
        assert!(!out.allow);
        assert_eq!(out.reason.as_deref(), Some("not_in_group"));
        assert!(
            decide(&bundle, None, "/marketing", &marketing)
                .unwrap()
                .allow
        );

        let acme = identity(&[], &[("acme", "admin")], None);
        let out = decide(&bundle, Some("acme.apps.example.com"), "/x", &acme).unwrap();
        assert!(out.allow);
        assert!(
            out.headers
                .contains(&("X-Tenant-Id".to_string(), "acme".to_string()))
        );
        let out = decide(&bundle, Some("globex.apps.example.com"), "/x", &acme).unwrap();
        assert!(!out.allow);

        let finance_managed = identity(&["finance"], &[], Some(true));
        let finance_unmanaged = identity(&["finance"], &[], Some(false));
        let finance_no_device = identity(&["finance"], &[], None);
        assert!(
            decide(&bundle, None, "/reports", &finance_managed)
                .unwrap()
                .allow
        );
        assert!(
            !decide(&bundle, None, "/reports", &finance_unmanaged)
                .unwrap()
                .allow
        );
        assert!(
            !decide(&bundle, None, "/reports", &finance_no_device)
                .unwrap()
                .allow
        );
        assert!(decide(&bundle, None, "/healthz", &kitchen).unwrap().allow);
        assert!(decide(&bundle, None, "/nowhere", &kitchen).is_none());
    }

    fn files(entries: &[(&str, &str)]) -> BundleFiles {
        BundleFiles {
            files: entries
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            display_root: "bundle".into(),
        }
    }

    const ONE_ROUTE: &str = "routes:\n  - name: app\n    path: /app\n    policy: routes.app\n";

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_in_the_bundle_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), "routes: []\n").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let err = BundleFiles::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("symlink loop"), "{err}");
    }

    #[test]
    fn rego_syntax_error_reports_file_line_col() {
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            (
                "app.rego",
                "package routes.app\n\nallow if {\n  input.x ==\n}\n",
            ),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bundle/app.rego:"), "{text}");
        let mut parts = text.splitn(4, ':');
        parts.next();
        let line: usize = parts.next().unwrap().parse().unwrap();
        let col: usize = parts.next().unwrap().parse().unwrap();
        assert!((3..=5).contains(&line) && col >= 1, "{text}");
    }

    #[test]
    fn route_policies_and_tests_read_their_annotations() {
        // The custom text is long enough that the resolved chain is wider than regorus's
        // default 1,024-column limit.
        let long = "x".repeat(1_100);
        let policy = format!(
            "# METADATA\n# custom:\n#   note: {long}\npackage routes.app\n\ndefault allow := false\n\n# METADATA\n# title: kitchen\n# custom:\n#   reason: cooks only\nallow if {{\n\t\"kitchen\" in input.user.groups\n\tcount(rego.metadata.chain()[1].annotations.custom.note) > 1000\n}}\n\nreason := rego.metadata.chain()[1].annotations.scope if not allow\n"
        );
        let test = "package routes.app_test\n\n# METADATA\n# title: the kitchen may enter\ntest_kitchen if {\n\trego.metadata.rule().title == \"the kitchen may enter\"\n\tdata.routes.app.allow with input as {\"user\": {\"groups\": [\"kitchen\"]}}\n}\n";
        let bundle = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", &policy),
            ("app_test.rego", test),
        ]))
        .unwrap();
        let kitchen = identity(&["kitchen"], &[], None);
        assert!(decide(&bundle, None, "/app", &kitchen).unwrap().allow);
        let out = decide(&bundle, None, "/app", &identity(&["x"], &[], None)).unwrap();
        assert!(!out.allow);
        assert_eq!(out.reason.as_deref(), Some("package"));

        let broken = policy.replace("#   reason: cooks only", "#   reason: [cooks");
        let err = Bundle::build(&files(&[("routes.yaml", ONE_ROUTE), ("app.rego", &broken)]))
            .unwrap_err()
            .to_string();
        // The flow sequence never closes: YAML stops at its line or at the block's end.
        assert!(
            (err.starts_with("bundle/app.rego:11:") || err.starts_with("bundle/app.rego:12:"))
                && err.contains("invalid METADATA YAML"),
            "{err}"
        );
    }

    #[test]
    fn missing_package_or_allow_is_refused() {
        let err = Bundle::build(&files(&[("routes.yaml", ONE_ROUTE)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bundle/routes.yaml:2:5:") && err.contains("routes.app"),
            "{err}"
        );
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", "package routes.app\nreason := \"x\"\n"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("must define `allow`"), "{err}");
    }

    #[test]
    fn failing_bundle_test_refuses_the_bundle() {
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", "package routes.app\ndefault allow := false\n"),
            (
                "app_test.rego",
                "package routes.app_test\ntest_open if data.routes.app.allow\n",
            ),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("bundle/app_test.rego:2:1:") && err.contains("failed"),
            "{err}"
        );
    }

    fn evaluate_app(bundle: &Bundle, groups: &[&str]) -> Result<PolicyOutcome, PolicyError> {
        let who = identity(groups, &[], None);
        let path = normalize_path("/app", false).unwrap();
        let m = bundle.routes.matches(None, &path).unwrap();
        let request = RequestFacts {
            method: "GET",
            scheme: "https",
            host: None,
            path: &path,
            query: None,
            headers: &[],
            source_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            transport: "http",
        };
        let facts = RouteFacts {
            name: "app",
            tenant: None,
            params: &[],
        };
        bundle.evaluate(m.route, &request, &facts, &who, Utc::now())
    }

    #[test]
    fn data_files_reach_routes_and_tests_at_their_directory_path() {
        let policy = "package routes.app\nimport rego.v1\ndefault allow := false\nallow if some g in input.user.groups; g in data.teams.allowed\nheaders := {\"X-Team\": data.teams.label} if allow\n";
        let policy = policy.replace(
            "allow if some g in input.user.groups; g in data.teams.allowed",
            "allow if {\n\tsome g in input.user.groups\n\tg in data.teams.allowed\n}",
        );
        let bundle = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", &policy),
            (
                "app_test.rego",
                "package routes.app_test\nimport rego.v1\ntest_cooks if data.routes.app.allow with input as {\"user\": {\"groups\": [\"cooks\"]}}\n",
            ),
            ("teams/data.yaml", "allowed: [cooks]\nlabel: kitchen\n"),
        ]))
        .unwrap();
        assert!(bundle.files.contains(&"teams/data.yaml".to_string()));
        let out = evaluate_app(&bundle, &["cooks"]).unwrap();
        assert!(out.allow);
        assert_eq!(
            out.headers,
            vec![("X-Team".to_string(), "kitchen".to_string())]
        );
        assert!(!evaluate_app(&bundle, &["waiters"]).unwrap().allow);
        // Reading data keeps a route on the bytecode VM.
        assert_eq!(
            bundle
                .rego
                .as_ref()
                .unwrap()
                .interpreter_reason("routes.app"),
            None
        );
    }

    #[test]
    fn a_data_file_that_does_not_parse_refuses_the_bundle_with_its_position() {
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", "package routes.app\ndefault allow := false\n"),
            ("teams/data.json", "{\"a\": 1,,}"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("bundle/teams/data.json:1:"), "{err}");
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            ("app.rego", "package routes.app\ndefault allow := false\n"),
            ("routes/app/data.json", "{\"allow\": true}"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("conflict"), "{err}");
    }

    #[test]
    fn constructs_the_bytecode_compiler_lacks_run_on_the_interpreter() {
        // Constant-key partial objects and `with` inside a route policy are valid OPA Rego.
        let bundle = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            (
                "app.rego",
                "package routes.app\nimport rego.v1\ndefault allow := false\nallow if is_cook with input.user.groups as [\"cooks\"]\nis_cook if \"cooks\" in input.user.groups\nheaders[\"X-Team\"] := \"a\" if allow\n",
            ),
        ]))
        .unwrap();
        let out = evaluate_app(&bundle, &[]).unwrap();
        assert!(out.allow);
        assert_eq!(out.headers, vec![("X-Team".to_string(), "a".to_string())]);
        let why = bundle
            .rego
            .as_ref()
            .unwrap()
            .interpreter_reason("routes.app");
        assert!(
            why.is_some_and(|w| w.contains("bytecode compiler")),
            "{why:?}"
        );
    }

    #[test]
    fn an_unknown_function_is_still_refused_at_load() {
        let err = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            (
                "app.rego",
                "package routes.app\ndefault allow := false\nallow if {\n  input.user.x\n  no_such.fn(1)\n}\n",
            ),
        ]))
        .unwrap_err()
        .to_string();
        // Pointed at the call, not at the top of the file.
        assert!(err.contains("app.rego:5:"), "{err}");
        assert!(err.contains("Unknown function: 'no_such.fn'"), "{err}");
    }

    #[test]
    fn bad_cel_is_refused_with_position() {
        let routes =
            "routes:\n  - name: r\n    path: /r\n    cel: \"user.groups.exists(g, g == \"\n";
        let err = Bundle::build(&files(&[("routes.yaml", routes)]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bundle/routes.yaml:4:"), "{err}");
    }

    #[test]
    fn malformed_policy_outputs_fail_closed() {
        let bundle = Bundle::build(&files(&[
            ("routes.yaml", ONE_ROUTE),
            (
                "app.rego",
                "package routes.app\nallow := true\nheaders := {\"Location\": \"https://evil\"}\n",
            ),
        ]))
        .unwrap();
        let err = evaluate_app(&bundle, &[]).unwrap_err();
        assert!(matches!(err, PolicyError::Eval { .. }), "{err}");
    }
}
