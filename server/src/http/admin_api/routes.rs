//! `GET /admin/api/routes`: every route of the live bundle with its host, path and engine,
//! the policy source it runs (with the file it is in, so the UI can number its lines), and
//! the results of the bundle's tests for that policy (docs/admin.md).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use super::authorize;
use crate::http::error::ApiError;
use crate::policy::testing::{self, TestOutcome, TestResult};
use crate::policy::{BundleFiles, Route, RouteRule};
use crate::state::AppState;

/// One file of the bundle, by its path inside the bundle.
#[derive(Debug, Serialize)]
struct SourceFile {
    path: String,
    text: String,
}

/// One test's result as the UI shows it.
#[derive(Debug, Serialize)]
struct TestView {
    /// `data.<package>.<rule>`.
    name: String,
    /// The test's package, without `data.`.
    #[serde(skip)]
    package: String,
    file: String,
    line: usize,
    /// `pass`, `fail`, `error` or `skipped` (`todo_test_`).
    outcome: &'static str,
    error: Option<String>,
    duration_us: u128,
}

#[derive(Debug, Serialize)]
struct RouteView {
    name: String,
    host: Option<String>,
    path: Option<String>,
    /// `rego`, `cel` or `public`.
    engine: &'static str,
    package: Option<String>,
    expression: Option<String>,
    tenant: Option<String>,
    upstream: Option<String>,
    login_redirect: bool,
    headers: Option<Vec<String>>,
    /// The files declaring the route's Rego package.
    sources: Vec<SourceFile>,
    /// The bundle's tests of the route's package.
    tests: Vec<TestView>,
}

pub async fn routes(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let bundle = state.bundle.load_full();
    let files = state.reloader.sources();
    // The tests were run when the bundle loaded; running them again (off the async
    // workers) shows their results without keeping them for every bundle.
    let run_on = files.clone();
    let results = web::block(move || {
        let (policies, tests) = run_on.rego_sources();
        let data = run_on.data()?;
        let all: Vec<_> = policies.into_iter().chain(tests).collect();
        testing::run_tests(&all, &data)
    })
    .await
    .map_err(|_| ApiError::Internal("policy_error"))?
    .map_err(|e| {
        tracing::error!(error = %e, "admin API: the live bundle's tests did not run");
        ApiError::Internal("policy_error")
    })?;
    let tests: Vec<TestView> = results.iter().map(|r| test_view(r, &files)).collect();
    let routes: Vec<RouteView> = bundle
        .routes
        .routes()
        .iter()
        .map(|r| route_view(r, &files, &tests))
        .collect();
    let routes_yaml = files
        .files
        .iter()
        .find(|(p, _)| p == crate::policy::ROUTES_FILE)
        .map(|(p, t)| SourceFile {
            path: p.clone(),
            text: t.clone(),
        });
    let count = |outcomes: &[&str]| {
        tests
            .iter()
            .filter(|t| outcomes.contains(&t.outcome))
            .count()
    };
    let (passed, failed, skipped) = (
        count(&["pass"]),
        count(&["fail", "error"]),
        count(&["skipped"]),
    );
    Ok(HttpResponse::Ok().json(json!({
        "version": bundle.version,
        "default": match bundle.routes.default {
            crate::policy::DefaultAction::Deny => "deny",
            crate::policy::DefaultAction::AllowAuthenticated => "allow-authenticated",
        },
        "case_insensitive_paths": bundle.routes.case_insensitive_paths,
        "routes": routes,
        "routes_yaml": routes_yaml,
        "tests": {"passed": passed, "failed": failed, "skipped": skipped, "results": tests},
    })))
}

fn route_view(route: &Route, files: &BundleFiles, tests: &[TestView]) -> RouteView {
    let (engine, package, expression) = match &route.rule {
        RouteRule::Public => ("public", None, None),
        RouteRule::Rego { package } => ("rego", Some(package.clone()), None),
        RouteRule::Cel { expression } => ("cel", None, Some(expression.clone())),
    };
    let (sources, route_tests) = match &package {
        Some(package) => (
            package_files(files, package),
            tests
                .iter()
                .filter(|t| tests_package(t, files, package))
                .map(|t| TestView {
                    name: t.name.clone(),
                    package: t.package.clone(),
                    file: t.file.clone(),
                    line: t.line,
                    outcome: t.outcome,
                    error: t.error.clone(),
                    duration_us: t.duration_us,
                })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    RouteView {
        name: route.name.clone(),
        host: route.host_pattern(),
        path: route.path_prefix(),
        engine,
        package,
        expression,
        tenant: route.tenant.clone(),
        upstream: route.upstream.clone(),
        login_redirect: route.login_redirect,
        headers: route.headers.clone(),
        sources,
        tests: route_tests,
    }
}

/// The non-test `.rego` files declaring `package <package>`.
fn package_files(files: &BundleFiles, package: &str) -> Vec<SourceFile> {
    files
        .files
        .iter()
        .filter(|(p, t)| p.ends_with(".rego") && !p.ends_with("_test.rego") && declares(t, package))
        .map(|(p, t)| SourceFile {
            path: p.clone(),
            text: t.clone(),
        })
        .collect()
}

/// Whether a module's `package` line names `package`.
fn declares(text: &str, package: &str) -> bool {
    text.lines().any(|l| {
        l.trim()
            .strip_prefix("package ")
            .is_some_and(|p| p.trim() == package)
    })
}

/// Whether a test belongs to `package`'s policy: it is in `<package>_test` (the `opa test`
/// convention), or its file refers to `data.<package>`.
fn tests_package(test: &TestView, files: &BundleFiles, package: &str) -> bool {
    if test.package == format!("{package}_test") {
        return true;
    }
    let reference = format!("data.{package}");
    files.files.iter().any(|(p, t)| {
        *p == test.file
            && t.match_indices(&reference).any(|(at, _)| {
                // `data.routes.x` must not count as a reference to `data.routes.x_y`.
                !t[at + reference.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    })
}

fn test_view(r: &TestResult, files: &BundleFiles) -> TestView {
    let (outcome, error) = match &r.outcome {
        TestOutcome::Pass => ("pass", None),
        TestOutcome::Fail => ("fail", None),
        TestOutcome::Error(e) => ("error", Some(e.clone())),
        TestOutcome::Skipped => ("skipped", None),
    };
    TestView {
        name: r.full_name(),
        package: r
            .package
            .strip_prefix("data.")
            .unwrap_or(&r.package)
            .to_string(),
        file: bundle_path(&r.file, files),
        line: r.line,
        outcome,
        error,
        duration_us: r.duration.as_micros(),
    }
}

/// A test's display path (the directory as configured, then the file) as a path inside the
/// bundle.
fn bundle_path(display: &str, files: &BundleFiles) -> String {
    let root = files.display_root.trim_end_matches('/');
    display
        .strip_prefix(root)
        .map(|p| p.trim_start_matches('/').to_string())
        .filter(|_| !root.is_empty())
        .unwrap_or_else(|| display.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BundleFiles {
        BundleFiles {
            files: vec![
                ("a.rego".into(), "package routes.a\nallow if true\n".into()),
                (
                    "a_b.rego".into(),
                    "package routes.a_b\nallow if true\n".into(),
                ),
                (
                    "checks_test.rego".into(),
                    "package checks\nimport data.routes.a_b\ntest_x if a_b.allow\n".into(),
                ),
            ],
            display_root: "/srv/policies/".into(),
        }
    }

    fn test(name: &str, file: &str) -> TestView {
        let package = name
            .strip_prefix("data.")
            .and_then(|n| n.rsplit_once('.'))
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        TestView {
            name: name.into(),
            package,
            file: file.into(),
            line: 1,
            outcome: "pass",
            error: None,
            duration_us: 0,
        }
    }

    #[test]
    fn tests_belong_to_the_package_they_test() {
        let f = files();
        assert!(tests_package(
            &test("data.routes.a_test.test_x", "a_test.rego"),
            &f,
            "routes.a"
        ));
        // Refers to data.routes.a_b only: not a test of routes.a.
        let t = test("data.checks.test_x", "checks_test.rego");
        assert!(!tests_package(&t, &f, "routes.a"));
        assert!(tests_package(&t, &f, "routes.a_b"));
    }

    #[test]
    fn sources_are_the_files_declaring_the_package() {
        let found = package_files(&files(), "routes.a");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "a.rego");
        assert_eq!(
            bundle_path("/srv/policies/x/y_test.rego", &files()),
            "x/y_test.rego"
        );
    }
}
