//! `routes.yaml` and route matching (docs/architecture.md, docs/policies.md).
//!
//! Matching works as Kubernetes Ingress does: the host picks a tier of routes (exact host,
//! else `{param}` host patterns, else host-less routes), then the longest whole-segment path
//! prefix in that tier wins. A path the chosen tier does not match is unmatched; it never
//! falls through to a broader tier.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::error::{PolicyError, locate};
use crate::request::normalize::NormalizedPath;

/// What happens to a request that no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultAction {
    Deny,
    AllowAuthenticated,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default = "default_action")]
    default: DefaultAction,
    /// Fold ASCII case in paths before matching, for upstreams that treat `/ADMIN` as
    /// `/admin` (IIS, some Java servers). Off by default.
    #[serde(default)]
    case_insensitive_paths: bool,
    #[serde(default)]
    routes: Vec<RouteSpec>,
}

fn default_action() -> DefaultAction {
    DefaultAction::Deny
}

/// One entry of `routes.yaml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub public: bool,
    /// A Rego package in this bundle, e.g. `routes.restaurant`.
    #[serde(default)]
    pub policy: Option<String>,
    /// A CEL boolean expression.
    #[serde(default)]
    pub cel: Option<String>,
    /// Used only by the built-in proxy.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A fixed tenant for this route (when neither host nor path carries `{tenant}`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Answer unauthenticated browser requests with a 302 to the login page instead of 401,
    /// as `?mode=redirect` does.
    #[serde(default)]
    pub login_redirect: bool,
    /// The headers this route's policy answers (`X-…`), e.g. `[X-Restaurant-Role]`. When
    /// given, a policy answer with any other header is an evaluation error (500). Every
    /// name declared by any route is removed from every client request by the built-in
    /// proxy, so apps behind it see these headers only from Gatehouse.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
}

/// How a route decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRule {
    Public,
    /// Index into the bundle's compiled Rego entry points.
    Rego {
        package: String,
    },
    /// Index into the bundle's compiled CEL programs.
    Cel {
        expression: String,
    },
}

/// A pattern segment: a literal or a `{name}` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Why a host or path pattern is refused; `what` is "host" or "path".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PatternError {
    #[error("{what} segment `{segment}` has an unclosed `{{`")]
    Unclosed { what: &'static str, segment: String },
    #[error("{what} parameter `{segment}` must be `{{name}}` with letters, digits or `_`")]
    ParamName { what: &'static str, segment: String },
    #[error(
        "{what} segment `{segment}` mixes text and a parameter; a parameter must be a whole segment"
    )]
    Mixed { what: &'static str, segment: String },
}

fn parse_segments(
    text: &str,
    separator: char,
    what: &'static str,
) -> Result<Vec<Segment>, PatternError> {
    let mut out = Vec::new();
    for part in text.split(separator).filter(|s| !s.is_empty()) {
        let segment = || part.to_string();
        if let Some(inner) = part.strip_prefix('{') {
            let name = inner
                .strip_suffix('}')
                .ok_or_else(|| PatternError::Unclosed {
                    what,
                    segment: segment(),
                })?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PatternError::ParamName {
                    what,
                    segment: segment(),
                });
            }
            out.push(Segment::Param(name.to_string()));
        } else if part.contains(['{', '}']) {
            return Err(PatternError::Mixed {
                what,
                segment: segment(),
            });
        } else {
            out.push(Segment::Literal(part.to_string()));
        }
    }
    Ok(out)
}

/// Segments joined back into their pattern text (`{name}` for parameters).
fn join_segments(segments: &[Segment], separator: &str) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Literal(l) => l.clone(),
            Segment::Param(p) => format!("{{{p}}}"),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub rule: RouteRule,
    pub upstream: Option<String>,
    pub tenant: Option<String>,
    pub login_redirect: bool,
    /// The declared policy headers, folded (`fold_header_name`); `None` when the route
    /// declares none (its policy may then answer any `X-` header).
    pub headers: Option<Vec<String>>,
    host: Option<Vec<Segment>>,
    path: Option<Vec<Segment>>,
    /// Position in `routes.yaml`, the last tie-breaker.
    order: usize,
}

impl Route {
    /// The host pattern as written (normalized), e.g. `{tenant}.apps.example.com`; `None`
    /// for a host-less route. For display (the admin UI's routes page).
    pub fn host_pattern(&self) -> Option<String> {
        self.host.as_deref().map(|s| join_segments(s, "."))
    }

    /// The path prefix as written (normalized), e.g. `/restaurant`; `None` for a route
    /// matched by name only.
    pub fn path_prefix(&self) -> Option<String> {
        self.path
            .as_deref()
            .map(|s| format!("/{}", join_segments(s, "/")))
    }

    fn literal_count(segments: &[Segment]) -> usize {
        segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The sort key within a tier: more path segments first, then more literal segments,
    /// then more literal host labels, then file order.
    fn specificity(
        &self,
    ) -> (
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
        usize,
    ) {
        let path = self.path.as_deref().unwrap_or(&[]);
        let host = self.host.as_deref().unwrap_or(&[]);
        (
            std::cmp::Reverse(path.len()),
            std::cmp::Reverse(Self::literal_count(path)),
            std::cmp::Reverse(Self::literal_count(host)),
            self.order,
        )
    }
}

/// The result of matching a request to a route.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// `{param}` values from the host and path, in pattern order.
    pub params: Vec<(String, String)>,
    /// The route's tenant: the `tenant` parameter, else the route's fixed tenant.
    pub tenant: Option<String>,
}

/// One tier's routes, indexed by the first segment of their path, so that a request is
/// tried against the routes that can match it rather than against all of them: with a
/// thousand routes on one host, a lookup still tries a handful (docs/performance.md).
#[derive(Debug, Clone, Default)]
struct Candidates {
    /// Routes whose path starts with this literal segment, most specific first.
    by_first_segment: HashMap<String, Vec<usize>>,
    /// Routes whose path is `/` or starts with a `{param}`: they may match any path.
    any_first_segment: Vec<usize>,
}

impl Candidates {
    fn push(&mut self, index: usize, route: &Route) {
        match route.path.as_deref().and_then(<[Segment]>::first) {
            Some(Segment::Literal(first)) => self
                .by_first_segment
                .entry(first.clone())
                .or_default()
                .push(index),
            _ => self.any_first_segment.push(index),
        }
    }

    fn sort(&mut self, rank: &[usize]) {
        self.by_first_segment
            .values_mut()
            .for_each(|v| v.sort_by_key(|&i| rank[i]));
        self.any_first_segment.sort_by_key(|&i| rank[i]);
    }

    /// The routes that may match a path whose first segment is `first`, most specific
    /// first: the two sorted lists merged by rank.
    fn for_path<'a>(
        &'a self,
        first: Option<&str>,
        rank: &'a [usize],
    ) -> impl Iterator<Item = usize> + 'a {
        let named: &[usize] = first
            .and_then(|f| self.by_first_segment.get(f))
            .map_or(&[], Vec::as_slice);
        let mut named = named.iter().copied().peekable();
        let mut any = self.any_first_segment.iter().copied().peekable();
        std::iter::from_fn(move || match (named.peek(), any.peek()) {
            (Some(&a), Some(&b)) if rank[a] < rank[b] => named.next(),
            (Some(_), Some(_)) => any.next(),
            (Some(_), None) => named.next(),
            (None, _) => any.next(),
        })
    }
}

/// All routes of a bundle, indexed for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub default: DefaultAction,
    pub case_insensitive_paths: bool,
    routes: Vec<Route>,
    /// Exact host → its routes.
    by_host: HashMap<String, Candidates>,
    /// Routes with a `{param}` host pattern, most specific first.
    patterned: Vec<usize>,
    /// Routes without a host.
    hostless: Candidates,
    /// Each route's place in the order of specificity (`Route::specificity`): candidate
    /// lists are sorted by it, and merged by it.
    rank: Vec<usize>,
    /// Every policy header any route declares, folded, sorted and without repeats: the
    /// names a client must never send to an app (computed once per bundle).
    declared_headers: Vec<String>,
}

/// The line and column of `header` in the `headers:` list of the route whose `name:` is at
/// `route_line` (1-based); the route itself when it cannot be found.
fn locate_header(text: &str, route_at: (usize, usize), header: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .skip(route_at.0)
        .take_while(|(_, line)| !line.trim_start().starts_with("- name:"))
        .find_map(|(n, line)| line.find(header).map(|col| (n + 1, col + 1)))
        .unwrap_or(route_at)
}

/// Checks a route's `headers:` list and folds its names.
fn declared_headers(
    names: &[String],
    here: impl Fn(&str, String) -> PolicyError,
) -> Result<Vec<String>, PolicyError> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        // `decide::fold_header_name`'s folding (policy does not depend on decide).
        let folded = name.to_ascii_lowercase().replace('_', "-");
        if !folded.starts_with("x-") || !crate::request::headers::is_header_name(name) {
            return Err(here(
                name,
                format!("header `{name}` must be a valid header name starting with `X-`"),
            ));
        }
        if folded.starts_with("x-auth-request-") {
            return Err(here(
                name,
                format!("header `{name}` is an identity header; only Gatehouse sets those"),
            ));
        }
        if folded.starts_with("x-forwarded-")
            || folded.starts_with("x-original-")
            || folded == "x-real-ip"
            || folded == "x-request-id"
        {
            return Err(here(
                name,
                format!("header `{name}` is a forwarding header set by the ingress or proxy"),
            ));
        }
        if out.contains(&folded) {
            return Err(here(name, format!("header `{name}` is declared twice")));
        }
        out.push(folded);
    }
    Ok(out)
}

impl RouteTable {
    /// Parses `routes.yaml` text. `file` names it in errors (`file:line:col: message`).
    pub fn parse(text: &str, file: &str) -> Result<RouteTable, PolicyError> {
        let parsed: RoutesFile = serde_saphyr::from_str(text).map_err(|e| {
            let (line, col) = crate::yaml::error_location(&e);
            PolicyError::at(file, line, col, crate::yaml::error_message(&e))
        })?;
        let mut names = HashSet::new();
        let mut seen_patterns = HashSet::new();
        let mut routes = Vec::with_capacity(parsed.routes.len());
        for (order, spec) in parsed.routes.into_iter().enumerate() {
            let here = |message: String| {
                let (line, col) = locate(text, &spec.name);
                PolicyError::at(file, line, col, format!("route `{}`: {message}", spec.name))
            };
            if spec.name.is_empty()
                || !spec
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(here("name must be letters, digits, `-`, `_` or `.`".into()));
            }
            if !names.insert(spec.name.clone()) {
                return Err(here("the name is used by another route".into()));
            }
            let rule = match (spec.public, &spec.policy, &spec.cel) {
                (true, None, None) => RouteRule::Public,
                (false, Some(p), None) => {
                    let valid = !p.is_empty()
                        && p.split('.').all(|part| {
                            !part.is_empty()
                                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                                && !part.as_bytes()[0].is_ascii_digit()
                        });
                    if !valid {
                        return Err(here(format!(
                            "policy `{p}` is not a Rego package name such as `routes.app`"
                        )));
                    }
                    RouteRule::Rego { package: p.clone() }
                }
                (false, None, Some(c)) => RouteRule::Cel {
                    expression: c.clone(),
                },
                _ => {
                    return Err(here(
                        "needs exactly one of `public: true`, `policy: <package>` or `cel: <expression>`".into(),
                    ));
                }
            };
            let host = match &spec.host {
                Some(h) => {
                    let lower = h.trim().trim_end_matches('.').to_ascii_lowercase();
                    if lower.is_empty() || lower.contains(['/', ':', '@', ' ']) {
                        return Err(here(format!(
                            "host `{h}` is not a host name or `{{param}}` pattern"
                        )));
                    }
                    Some(parse_segments(&lower, '.', "host").map_err(|e| here(e.to_string()))?)
                }
                None => None,
            };
            let path = match &spec.path {
                Some(p) => {
                    if !p.starts_with('/') {
                        return Err(here(format!("path `{p}` must start with `/`")));
                    }
                    let normalized =
                        crate::request::normalize::normalize_path(p, parsed.case_insensitive_paths)
                            .map_err(|e| here(format!("path `{p}`: {e}")))?;
                    Some(
                        parse_segments(normalized.as_str(), '/', "path")
                            .map_err(|e| here(e.to_string()))?,
                    )
                }
                None => None,
            };
            if path.is_some() && !seen_patterns.insert((host.clone(), path.clone())) {
                return Err(here("another route has the same host and path".into()));
            }
            let headers = match &spec.headers {
                Some(list) => Some(declared_headers(list, |header, message| {
                    let (line, col) = locate_header(text, locate(text, &spec.name), header);
                    PolicyError::at(file, line, col, format!("route `{}`: {message}", spec.name))
                })?),
                None => None,
            };
            routes.push(Route {
                name: spec.name,
                rule,
                upstream: spec.upstream,
                tenant: spec.tenant,
                login_redirect: spec.login_redirect,
                headers,
                host,
                path,
                order,
            });
        }
        Ok(Self::index(
            parsed.default,
            parsed.case_insensitive_paths,
            routes,
        ))
    }

    fn index(
        default: DefaultAction,
        case_insensitive_paths: bool,
        routes: Vec<Route>,
    ) -> RouteTable {
        let mut by_host: HashMap<String, Candidates> = HashMap::new();
        let mut patterned = Vec::new();
        let mut hostless = Candidates::default();
        for (i, route) in routes.iter().enumerate() {
            // Routes without a path are addressed by name only (e.g. `gatehouse-admin`).
            if route.path.is_none() {
                continue;
            }
            match &route.host {
                None => hostless.push(i, route),
                Some(segments) if segments.iter().all(|s| matches!(s, Segment::Literal(_))) => {
                    let host = segments
                        .iter()
                        .map(|s| match s {
                            Segment::Literal(l) => l.as_str(),
                            Segment::Param(_) => "",
                        })
                        .collect::<Vec<_>>()
                        .join(".");
                    by_host.entry(host).or_default().push(i, route);
                }
                Some(_) => patterned.push(i),
            }
        }
        let mut by_specificity: Vec<usize> = (0..routes.len()).collect();
        by_specificity.sort_by_key(|&i| routes[i].specificity());
        let mut rank = vec![0; routes.len()];
        for (place, &i) in by_specificity.iter().enumerate() {
            rank[i] = place;
        }
        by_host.values_mut().for_each(|c| c.sort(&rank));
        patterned.sort_by_key(|&i| rank[i]);
        hostless.sort(&rank);
        let mut declared_headers: Vec<String> = routes
            .iter()
            .filter_map(|r| r.headers.as_deref())
            .flatten()
            .cloned()
            .collect();
        declared_headers.sort();
        declared_headers.dedup();
        RouteTable {
            default,
            case_insensitive_paths,
            routes,
            by_host,
            patterned,
            hostless,
            rank,
            declared_headers,
        }
    }

    /// Every policy header declared by any route, folded (`fold_header_name`): the built-in
    /// proxy removes these from every client request.
    pub fn declared_headers(&self) -> &[String] {
        &self.declared_headers
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Matches a normalized host and path. `None` means unmatched (the default applies).
    pub fn matches(&self, host: Option<&str>, path: &NormalizedPath) -> Option<RouteMatch<'_>> {
        let host_labels: Vec<&str> = host.map(|h| h.split('.').collect()).unwrap_or_default();
        // Tier 1: routes naming exactly this host.
        let first_segment = path.segments().next();
        if let Some(candidates) = host.and_then(|h| self.by_host.get(h)) {
            let candidates = candidates.for_path(first_segment, &self.rank);
            return self.best(candidates, &host_labels, path);
        }
        // Tier 2: routes whose host pattern matches.
        let pattern_tier: Vec<usize> = if host.is_some() {
            self.patterned
                .iter()
                .copied()
                .filter(|&i| {
                    let pattern = self.routes[i].host.as_deref().unwrap_or(&[]);
                    match_segments(pattern, &host_labels, true).is_some()
                })
                .collect()
        } else {
            Vec::new()
        };
        if !pattern_tier.is_empty() {
            return self.best(pattern_tier.into_iter(), &host_labels, path);
        }
        // Tier 3: host-less routes.
        let candidates = self.hostless.for_path(first_segment, &self.rank);
        self.best(candidates, &host_labels, path)
    }

    fn best(
        &self,
        candidates: impl Iterator<Item = usize>,
        host_labels: &[&str],
        path: &NormalizedPath,
    ) -> Option<RouteMatch<'_>> {
        let path_segments: Vec<&str> = path.segments().collect();
        for i in candidates {
            let route = &self.routes[i];
            let pattern = route.path.as_deref().unwrap_or(&[]);
            if let Some(mut params) = match_segments(pattern, &path_segments, false) {
                if let Some(host_pattern) = &route.host
                    && let Some(host_params) = match_segments(host_pattern, host_labels, true)
                {
                    let mut all = host_params;
                    all.append(&mut params);
                    params = all;
                }
                let tenant = params
                    .iter()
                    .find(|(k, _)| k == "tenant")
                    .map(|(_, v)| v.clone())
                    .or_else(|| route.tenant.clone());
                return Some(RouteMatch {
                    route,
                    params,
                    tenant,
                });
            }
        }
        None
    }
}

/// Matches `pattern` against `input` segments. `whole` demands equal length (hosts);
/// otherwise the pattern is a prefix of whole segments (paths).
fn match_segments(
    pattern: &[Segment],
    input: &[&str],
    whole: bool,
) -> Option<Vec<(String, String)>> {
    if input.len() < pattern.len() || (whole && input.len() != pattern.len()) {
        return None;
    }
    let mut params = Vec::new();
    for (segment, value) in pattern.iter().zip(input) {
        match segment {
            Segment::Literal(l) if l == value => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((name.clone(), (*value).to_string())),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::normalize::normalize_path;

    const ROUTES: &str = r#"
default: deny
routes:
  - name: public-health
    path: /healthz
    public: true
  - name: restaurant
    host: apps.example.com
    path: /restaurant
    policy: routes.restaurant
  - name: restaurant-admin
    host: apps.example.com
    path: /restaurant/admin
    policy: routes.restaurant_admin
  - name: reports
    path: /reports
    cel: "'finance' in user.groups"
  - name: tenant-apps
    host: "{tenant}.apps.example.com"
    path: /
    policy: routes.tenant_apps
  - name: tenant-path
    host: tenants.example.com
    path: /t/{tenant}/app
    policy: routes.tenant_apps
  - name: gatehouse-admin
    policy: gatehouse.admin
"#;

    fn table() -> RouteTable {
        RouteTable::parse(ROUTES, "routes.yaml").unwrap()
    }

    fn matched(host: Option<&str>, path: &str) -> Option<String> {
        let t = table();
        let p = normalize_path(path, false).unwrap();
        t.matches(host, &p).map(|m| m.route.name.clone())
    }

    #[test]
    fn routes_show_their_host_and_path_as_written() {
        let t = table();
        let shown = |name: &str| {
            let r = t.get(name).unwrap();
            (r.host_pattern(), r.path_prefix())
        };
        assert_eq!(
            shown("tenant-apps"),
            (Some("{tenant}.apps.example.com".into()), Some("/".into()))
        );
        assert_eq!(
            shown("tenant-path"),
            (
                Some("tenants.example.com".into()),
                Some("/t/{tenant}/app".into())
            )
        );
        assert_eq!(shown("reports"), (None, Some("/reports".into())));
        assert_eq!(shown("gatehouse-admin"), (None, None));
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        assert_eq!(
            matched(Some("apps.example.com"), "/restaurant").as_deref(),
            Some("restaurant")
        );
        assert_eq!(
            matched(Some("apps.example.com"), "/restaurant/orders").as_deref(),
            Some("restaurant")
        );
        assert_eq!(
            matched(Some("apps.example.com"), "/restaurant/admin/x").as_deref(),
            Some("restaurant-admin")
        );
        assert_eq!(matched(Some("apps.example.com"), "/restaurantx"), None);
        assert_eq!(matched(Some("apps.example.com"), "/restaurant-admin"), None);
    }

    #[test]
    fn the_first_segment_index_keeps_the_order_of_specificity() {
        // `/{app}/admin` may match any first segment, `/reports` only `reports`: the
        // index keeps them in two lists, and the longer pattern must still win.
        let text = "routes:\n  - name: reports\n    path: /reports\n    public: true\n  - name: any-admin\n    path: /{app}/admin\n    public: true\n  - name: root\n    path: /\n    public: true\n";
        let t = RouteTable::parse(text, "routes.yaml").unwrap();
        let name = |path: &str| {
            let p = normalize_path(path, false).unwrap();
            t.matches(None, &p).map(|m| m.route.name.clone())
        };
        assert_eq!(name("/reports/admin").as_deref(), Some("any-admin"));
        assert_eq!(name("/reports/x").as_deref(), Some("reports"));
        assert_eq!(name("/other/admin").as_deref(), Some("any-admin"));
        assert_eq!(name("/other").as_deref(), Some("root"));
        assert_eq!(name("/").as_deref(), Some("root"));
    }

    #[test]
    fn a_thousand_routes_on_one_host_each_find_their_own() {
        let mut text = String::from("routes:\n");
        for n in 0..1000 {
            text.push_str(&format!(
                "  - name: app-{n}\n    host: apps.example.com\n    path: /app-{n}\n    public: true\n"
            ));
        }
        let t = RouteTable::parse(&text, "routes.yaml").unwrap();
        for n in [0, 1, 499, 999] {
            let p = normalize_path(&format!("/app-{n}/page"), false).unwrap();
            let m = t
                .matches(Some("apps.example.com"), &p)
                .map(|m| m.route.name.clone());
            assert_eq!(m, Some(format!("app-{n}")));
        }
        let p = normalize_path("/app-1000", false).unwrap();
        assert!(t.matches(Some("apps.example.com"), &p).is_none());
    }

    #[test]
    fn exact_host_tier_never_falls_through_to_hostless_routes() {
        // /healthz is host-less; apps.example.com has its own routes, so it is unmatched there.
        assert_eq!(matched(Some("apps.example.com"), "/healthz"), None);
        assert_eq!(
            matched(Some("other.example.com"), "/healthz").as_deref(),
            Some("public-health")
        );
        assert_eq!(matched(None, "/reports/q3").as_deref(), Some("reports"));
    }

    #[test]
    fn host_patterns_capture_the_tenant() {
        let t = table();
        let p = normalize_path("/orders", false).unwrap();
        let m = t.matches(Some("acme.apps.example.com"), &p).unwrap();
        assert_eq!(m.route.name, "tenant-apps");
        assert_eq!(m.tenant.as_deref(), Some("acme"));
        assert_eq!(m.params, vec![("tenant".to_string(), "acme".to_string())]);
        // One label only: `a.b.apps.example.com` is not a tenant host.
        assert!(t.matches(Some("a.b.apps.example.com"), &p).is_none());
    }

    #[test]
    fn path_parameters_capture_the_tenant() {
        let t = table();
        let p = normalize_path("/t/globex/app/page", false).unwrap();
        let m = t.matches(Some("tenants.example.com"), &p).unwrap();
        assert_eq!(m.route.name, "tenant-path");
        assert_eq!(m.tenant.as_deref(), Some("globex"));
    }

    #[test]
    fn routes_without_path_are_only_addressed_by_name() {
        let t = table();
        assert!(t.get("gatehouse-admin").is_some());
        assert_eq!(matched(None, "/"), None);
    }

    #[test]
    fn bad_route_files_point_at_the_problem() {
        let err = RouteTable::parse(
            "routes:\n  - name: a\n    path: /a\n    polcy: x\n",
            "routes.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("routes.yaml:"), "{err}");
        assert!(err.contains("polcy"), "{err}");

        let dup = "routes:\n  - name: a\n    path: /a\n    public: true\n  - name: a\n    path: /b\n    public: true\n";
        let err = RouteTable::parse(dup, "routes.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route `a`") && err.contains("another route"),
            "{err}"
        );

        let both = "routes:\n  - name: a\n    path: /a\n    public: true\n    cel: 'true'\n";
        let err = RouteTable::parse(both, "routes.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("routes.yaml:2:"), "{err}");
    }

    #[test]
    fn declared_headers_are_folded_and_collected_for_the_bundle() {
        let text = "routes:\n  - name: a\n    path: /a\n    policy: routes.a\n    headers: [X-Restaurant-Role]\n  \
                    - name: b\n    path: /b\n    policy: routes.b\n    headers: [X_Tenant_Id, X-Tenant-Role, x-restaurant-role]\n  \
                    - name: c\n    path: /c\n    public: true\n";
        let t = RouteTable::parse(text, "routes.yaml").unwrap();
        assert_eq!(
            t.get("a").unwrap().headers.as_deref(),
            Some(&["x-restaurant-role".to_string()][..])
        );
        assert_eq!(t.get("c").unwrap().headers, None);
        assert_eq!(
            t.declared_headers(),
            ["x-restaurant-role", "x-tenant-id", "x-tenant-role"]
        );
        assert!(table().declared_headers().is_empty());
    }

    #[test]
    fn bad_declared_headers_point_at_the_name() {
        let with = |list: &str| {
            let text = format!(
                "routes:\n  - name: a\n    path: /a\n    public: true\n  - name: b\n    path: /b\n    policy: routes.b\n    headers: {list}\n"
            );
            RouteTable::parse(&text, "routes.yaml")
                .unwrap_err()
                .to_string()
        };
        for (list, col, says) in [
            ("[Tenant-Id]", 15, "starting with `X-`"),
            ("[X-Ok, \"X Bad\"]", 22, "valid header name"),
            ("[X-Ok, X-Auth-Request-User]", 21, "identity header"),
            ("[X_Auth_Request_Email]", 15, "identity header"),
            ("[X-Forwarded-Host]", 15, "forwarding header"),
            ("[X-Real-IP]", 15, "forwarding header"),
            ("[X-Role, x_role]", 23, "declared twice"),
        ] {
            let err = with(list);
            assert!(
                err.starts_with(&format!("routes.yaml:8:{col}: route `b`: ")) && err.contains(says),
                "{list}: {err}"
            );
        }
        // Not a list of strings: serde's own error, located.
        let err = with("X-One");
        assert!(err.starts_with("routes.yaml:8:"), "{err}");
    }
}
