//! Hostile clients through the shipped ingress configurations, run as shipped (issue 9,
//! docs/security.md): a table of requests carrying forwarding headers of both families,
//! `Forwarded`, certificate fingerprints, identity and policy headers in odd spellings, and
//! absolute-form request lines with another `Host`, sent as raw bytes to a real NGINX and a
//! real Caddy in front of the real Gatehouse and a recording echo app.
//!
//! For every case: the status is the one the *real* request deserves (the host and path the
//! ingress serves), never a 5xx; a refused request never reaches the app; an allowed one
//! reaches it with exactly the identity and policy headers Gatehouse answers for the real
//! request (asked directly, as the oracle), never the client's; and the audit trail shows
//! that Gatehouse decided the host, path, method and device the ingress served.
//!
//! `INGRESS_TEST_DEPLOY_DIR=<dir>` runs the table against other copies of the deploy files
//! (e.g. an older commit's).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    EchoLog, Gatehouse, Proc, client, free_port, start_caddy, start_nginx,
    start_recording_echo_app, wait_http,
};

/// A fingerprint registered as a managed, high-trust device; fay's `reports` route needs it.
const DEVICE_FINGERPRINT: &str = "abababababababababababababababababababababababababababababababab";
/// A request id a client offers; Gatehouse believes request ids from trusted proxies.
const FORGED_REQUEST_ID: &str = "forged-request-id";

/// Headers an app is told to trust: Gatehouse's identity headers and the headers the
/// example policies answer. The app must see Gatehouse's value or nothing.
const TRUSTED_BY_APPS: [&str; 8] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-tenant",
    "x-auth-request-preferred-username",
    "x-tenant-id",
    "x-tenant-role",
    "x-restaurant-role",
];
/// Headers that describe the request to Gatehouse; a client's must never reach an app.
const NEVER_AT_APPS: [&str; 8] = [
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-uri",
    "forwarded",
    "x-ssl-client-fingerprint",
    "x-client-cert-fingerprint",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// kitchen; member (admin) of tenant acme.
    Ann,
    /// staff; member of tenant beta.
    Bob,
    /// finance; presents no client certificate (the registered device is not hers).
    Fay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 401 or a 302 to the login page.
    Login,
    /// 403.
    Denied,
    /// 403 (decided and denied) or 404 (the ingress serves no app there).
    NotServed,
    /// 200 from the app.
    App,
    /// Gatehouse refuses to read the request (400): NGINX passes it on as 403, Caddy as 400.
    Refused,
}

struct Case {
    name: &'static str,
    who: Who,
    /// The request line's target: origin-form, or absolute-form (`http://host/path`).
    target: &'static str,
    /// The `Host` header.
    host: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// What the ingress serves, so what Gatehouse must decide.
    real_host: &'static str,
    real_path: &'static str,
    expect: Expect,
}

const LOCAL: &str = "localhost";
const ACME: &str = "acme.apps.example.com";
const BETA: &str = "beta.apps.example.com";

#[allow(clippy::too_many_arguments)]
fn c(
    name: &'static str,
    who: Who,
    target: &'static str,
    host: &'static str,
    headers: &'static [(&'static str, &'static str)],
    real_host: &'static str,
    real_path: &'static str,
    expect: Expect,
) -> Case {
    Case {
        name,
        who,
        target,
        host,
        headers,
        real_host,
        real_path,
        expect,
    }
}

/// The data-driven table: add a row for every new hostile spelling.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Expect::*;
    use Who::*;
    vec![
        // Anonymous: a forwarding header naming a public path (CVE-2026-40575).
        c("x-forwarded-uri names a public path", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Forwarded-Uri", "/healthz")], LOCAL, "/restaurant/secret", Login),
        c("the whole x-forwarded family names a public path", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Forwarded-Method", "GET"), ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", LOCAL), ("X-Forwarded-Uri", "/healthz")],
          LOCAL, "/restaurant/secret", Login),
        c("x-original-url names a public path", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Original-URL", "http://localhost/healthz"), ("X-Original-Method", "GET")],
          LOCAL, "/restaurant/secret", Login),
        c("x-original-uri names a public path", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Original-URI", "/healthz")], LOCAL, "/restaurant/secret", Login),
        c("both families name a public path", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Original-URL", "http://localhost/healthz"), ("X-Forwarded-Uri", "/healthz"),
            ("X-Forwarded-Host", LOCAL)],
          LOCAL, "/restaurant/secret", Login),
        c("repeated x-forwarded-uri", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Forwarded-Uri", "/healthz"), ("X-Forwarded-Uri", "/healthz")],
          LOCAL, "/restaurant/secret", Login),
        c("rfc 7239 forwarded", Anonymous, "/restaurant/secret", LOCAL,
          &[("Forwarded", "for=203.0.113.9;host=localhost;proto=https"),
            ("X-Forwarded-Uri", "/healthz")],
          LOCAL, "/restaurant/secret", Login),
        c("forged identity in odd spellings", Anonymous, "/restaurant/secret", LOCAL,
          &[("X-Auth-Request-User", "root@example.com"), ("X_Auth_Request_Email", "root@example.com"),
            ("x-auth-request-email", "root@example.com"), ("X-AUTH-REQUEST-GROUPS", "kitchen"),
            ("X-Auth_Request-User", "root@example.com"), ("X-Request-Id", FORGED_REQUEST_ID)],
          LOCAL, "/restaurant/secret", Login),
        c("absolute-form with a forwarding header", Anonymous,
          "http://localhost/restaurant/secret", "beta.apps.example.com",
          &[("X-Forwarded-Uri", "/healthz")], LOCAL, "/restaurant/secret", Login),
        // Policy and identity headers: only Gatehouse's reach the app.
        c("ann forges policy and identity headers", Ann, "/restaurant/menu", LOCAL,
          &[("X-Restaurant-Role", "manager"), ("X-Tenant-Id", "globex"), ("X-Tenant-Role", "owner"),
            ("X-Auth-Request-Tenant", "globex"), ("X_Auth_Request_Email", "root@example.com"),
            ("X-Auth-Request-Preferred-Username", "root"), ("X-Request-Id", FORGED_REQUEST_ID)],
          LOCAL, "/restaurant/menu", App),
        c("bob forges the kitchen role and ann's identity", Bob, "/restaurant/menu", LOCAL,
          &[("X-Restaurant-Role", "kitchen"), ("X_Auth_Request_Email", "ann@example.com"),
            ("x-auth-request-email", "ann@example.com"), ("X-AUTH-REQUEST-GROUPS", "kitchen"),
            ("X-Auth_Request-Groups", "kitchen"), ("x_auth_request_user", "ann@example.com")],
          LOCAL, "/restaurant/menu", App),
        c("ann on her tenant forges another tenant's headers", Ann, "/restaurant/x", ACME,
          &[("X-Tenant-Id", "beta"), ("X-Tenant-Role", "owner"), ("X-Auth-Request-Tenant", "beta")],
          ACME, "/restaurant/x", App),
        c("bob on his tenant forges another tenant's headers", Bob, "/restaurant/x", BETA,
          &[("X-Tenant-Id", "acme"), ("X-Tenant-Role", "admin"), ("X-Auth-Request-Tenant", "acme")],
          BETA, "/restaurant/x", App),
        // Moving to another tenant's host.
        c("x-forwarded-host names ann's tenant", Ann, "/restaurant/x", BETA,
          &[("X-Forwarded-Host", ACME)], BETA, "/restaurant/x", Denied),
        c("x-original-url names ann's tenant", Ann, "/restaurant/x", BETA,
          &[("X-Original-URL", "http://acme.apps.example.com/restaurant/x")],
          BETA, "/restaurant/x", Denied),
        c("forwarded names ann's tenant", Ann, "/restaurant/x", BETA,
          &[("Forwarded", "for=203.0.113.9;host=acme.apps.example.com;proto=http")],
          BETA, "/restaurant/x", Denied),
        c("absolute-form on another tenant, host of ann's", Ann,
          "http://beta.apps.example.com/restaurant/x", ACME, &[], BETA, "/restaurant/x", Denied),
        c("absolute-form on another tenant, host of bob's", Bob,
          "http://acme.apps.example.com/restaurant/x", BETA, &[], ACME, "/restaurant/x", Denied),
        c("absolute-form and x-forwarded-host agree on a lie", Bob,
          "http://acme.apps.example.com/restaurant/x", BETA,
          &[("X-Forwarded-Host", BETA), ("X-Original-URL", "http://beta.apps.example.com/restaurant/x")],
          ACME, "/restaurant/x", Denied),
        // Methods and paths.
        c("x-forwarded-method", Ann, "/restaurant/x", ACME,
          &[("X-Forwarded-Method", "DELETE")], ACME, "/restaurant/x", App),
        c("x-original-method", Bob, "/restaurant/x", BETA,
          &[("X-Original-Method", "DELETE")], BETA, "/restaurant/x", App),
        c("x-forwarded-uri names a path bob may see", Bob, "/marketing/plans", LOCAL,
          &[("X-Forwarded-Uri", "/restaurant/menu"), ("X-Original-URI", "/restaurant/menu")],
          LOCAL, "/marketing/plans", Denied),
        // Path spellings that servers behind the ingress read differently (docs/security.md).
        c("..; routes to marketing in NGINX, to restaurant in Tomcat", Bob,
          "/marketing/..;/restaurant/x", LOCAL, &[], LOCAL, "/marketing/..;/restaurant/x", Refused),
        c(".;x segment", Ann, "/restaurant/.;x/menu", LOCAL, &[], LOCAL, "/restaurant/.;x/menu", Refused),
        c("encoded ; after a dot segment", Bob, "/restaurant/..%3Bx/marketing", LOCAL, &[],
          LOCAL, "/restaurant/..%3Bx/marketing", Refused),
        c("encoded ? in the path", Ann, "/restaurant/admin%3F", LOCAL, &[], LOCAL,
          "/restaurant/admin%3F", Refused),
        // Client-certificate fingerprints of a registered managed device.
        c("fingerprints of a managed device on reports", Fay, "/reports/q3", LOCAL,
          &[("X-SSL-Client-Fingerprint", DEVICE_FINGERPRINT),
            ("X-Client-Cert-Fingerprint", DEVICE_FINGERPRINT)],
          LOCAL, "/reports/q3", NotServed),
        c("fingerprints of a managed device elsewhere", Fay, "/restaurant/menu", LOCAL,
          &[("X-SSL-Client-Fingerprint", DEVICE_FINGERPRINT),
            ("X-Client-Cert-Fingerprint", DEVICE_FINGERPRINT)],
          LOCAL, "/restaurant/menu", Denied),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Ingress {
    Nginx,
    Caddy,
}

#[tokio::test]
async fn nginx_as_shipped_lets_no_hostile_request_through() {
    hostile_table(Ingress::Nginx).await;
}

#[tokio::test]
async fn caddy_as_shipped_lets_no_hostile_request_through() {
    hostile_table(Ingress::Caddy).await;
}

struct Sessions {
    ann: String,
    bob: String,
    fay: String,
}

impl Sessions {
    fn cookie(&self, who: Who) -> Option<String> {
        let value = match who {
            Who::Anonymous => return None,
            Who::Ann => &self.ann,
            Who::Bob => &self.bob,
            Who::Fay => &self.fay,
        };
        Some(format!("_gatehouse={value}"))
    }
}

async fn hostile_table(ingress: Ingress) {
    let (app_port, echo) = start_recording_echo_app().await;
    let port = free_port();
    let gh = Gatehouse::start(&format!("http://localhost:{port}")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut proc: Proc = match ingress {
        Ingress::Nginx => start_nginx(gh.port, app_port, dir.path(), port),
        Ingress::Caddy => start_caddy(gh.port, app_port, dir.path(), port),
    };
    wait_http(&format!("http://127.0.0.1:{port}/"), &mut proc).await;

    let sessions = Sessions {
        ann: gh.cli(&[
            "session",
            "create",
            "--email",
            "ann@example.com",
            "--groups",
            "kitchen",
            "--tenant",
            "acme",
            "--tenant-role",
            "admin",
        ]),
        bob: gh.cli(&[
            "session",
            "create",
            "--email",
            "bob@example.com",
            "--groups",
            "staff",
            "--tenant",
            "beta",
        ]),
        fay: gh.create_session("fay@example.com", "finance"),
    };
    gh.cli(&[
        "device",
        "register",
        "--cert-fingerprint",
        DEVICE_FINGERPRINT,
        "--managed",
        "--trust",
        "high",
    ]);

    // The control: from a trusted peer the fingerprint is believed, so fay is let into
    // `reports` — only the ingress stands between a client's fingerprint and Gatehouse.
    let control = oracle(
        &gh,
        &sessions,
        Who::Fay,
        LOCAL,
        "/reports/q3",
        "control",
        &[("X-SSL-Client-Fingerprint", DEVICE_FINGERPRINT)],
    )
    .await;
    assert_eq!(control.0, 200, "a registered managed device opens reports");

    let mut failures = Vec::new();
    let table = cases();
    for (i, case) in table.iter().enumerate() {
        if let Err(e) = run_case(&gh, &sessions, &echo, port, i, case).await {
            failures.push(format!("{ingress:?} case `{}`: {e}", case.name));
        }
    }
    proc.assert_running();

    // The audit trail: what Gatehouse decided for the requests the ingress asked about.
    failures.extend(audit_failures(&gh, &table).await);
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn run_case(
    gh: &Gatehouse,
    sessions: &Sessions,
    echo: &EchoLog,
    port: u16,
    i: usize,
    case: &Case,
) -> Result<(), String> {
    let (want_status, want_headers) = oracle(
        gh,
        sessions,
        case.who,
        case.real_host,
        case.real_path,
        &i.to_string(),
        &[],
    )
    .await;
    let oracle_agrees = match case.expect {
        Expect::Login => want_status == 401,
        Expect::Denied | Expect::NotServed => want_status == 403,
        Expect::App => want_status == 200,
        Expect::Refused => want_status == 400,
    };
    if !oracle_agrees {
        return Err(format!(
            "the table expects {:?} but Gatehouse answers {want_status} for the real request",
            case.expect
        ));
    }

    echo.take();
    let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
    let cookie = sessions.cookie(case.who);
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie));
    }
    let (status, location) = raw_get(port, case.target, case.host, &headers).await?;
    let seen = echo.take();

    let status_ok = match case.expect {
        Expect::Login => status == 401 || status == 302,
        Expect::Denied => status == 403,
        Expect::NotServed => status == 403 || status == 404,
        Expect::App => status == 200,
        Expect::Refused => status == 400 || status == 403,
    };
    if !status_ok {
        return Err(format!(
            "status {status}, expected {:?}; the app saw {seen:?}",
            case.expect
        ));
    }
    if let Some(location) = &location
        && (location.contains("healthz") || !location.contains(&urlencoding(case.real_path)))
    {
        return Err(format!(
            "the login redirect names another URL than {}: {location}",
            case.real_path
        ));
    }
    if case.expect != Expect::App {
        return match seen.is_empty() {
            true => Ok(()),
            false => Err(format!("status {status} but the app was reached: {seen:?}")),
        };
    }
    let [request] = seen.as_slice() else {
        return Err(format!("the app saw {} requests: {seen:?}", seen.len()));
    };
    check_app_view(request, case, &want_headers)
}

/// What the app saw for an allowed case: the real host and path, Gatehouse's identity and
/// policy headers for the real request and nothing the client made up.
fn check_app_view(
    request: &Value,
    case: &Case,
    want: &BTreeMap<String, String>,
) -> Result<(), String> {
    let headers = request["headers"].as_object().expect("echo headers");
    let get = |name: &str| headers.get(name).and_then(Value::as_str);
    let mut problems = Vec::new();
    if request["path"] != case.real_path {
        problems.push(format!("path {}", request["path"]));
    }
    if get("host").map(without_port) != Some(case.real_host) {
        problems.push(format!("Host {:?}", get("host")));
    }
    if let Some(h) = get("x-forwarded-host")
        && without_port(h) != case.real_host
    {
        problems.push(format!("X-Forwarded-Host {h}"));
    }
    if let Some(p) = get("x-forwarded-proto")
        && p != "http"
    {
        problems.push(format!("X-Forwarded-Proto {p}"));
    }
    if get("x-request-id") == Some(FORGED_REQUEST_ID) {
        problems.push("the client's X-Request-Id".into());
    }
    for name in TRUSTED_BY_APPS {
        let seen = get(name);
        if seen != want.get(name).map(String::as_str) {
            problems.push(format!(
                "{name}: {seen:?}, Gatehouse answered {:?}",
                want.get(name)
            ));
        }
    }
    for name in NEVER_AT_APPS {
        if let Some(v) = get(name) {
            problems.push(format!("{name}: {v}"));
        }
    }
    for name in headers.keys().filter(|n| n.contains('_')) {
        problems.push(format!("underscore spelling {name}"));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!("the app saw {}: {request}", problems.join("; "))),
    }
}

/// Gatehouse's own answer for the real request, asked directly (from a trusted peer, with
/// NGINX's description): the status and the answer's app-trusted headers.
async fn oracle(
    gh: &Gatehouse,
    sessions: &Sessions,
    who: Who,
    host: &str,
    path: &str,
    id: &str,
    extra: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>) {
    let mut request = client()
        .get(format!("http://127.0.0.1:{}/auth/verify", gh.port))
        .header("X-Original-URL", format!("http://{host}{path}"))
        .header("X-Original-Method", "GET")
        .header("X-Request-Id", format!("oracle-{id}"));
    if let Some(cookie) = sessions.cookie(who) {
        request = request.header("Cookie", cookie);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.expect("verify");
    let headers = TRUSTED_BY_APPS
        .iter()
        .filter_map(|name| {
            let value = answer.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    (answer.status().as_u16(), headers)
}

/// One GET written as raw bytes (so absolute-form targets, repeated headers and odd
/// spellings go out exactly as written): the status and the `Location` header.
async fn raw_get(
    port: u16,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Option<String>), String> {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| format!("connection: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text}"))?;
    let location = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    });
    Ok((status, location))
}

/// request_id, host, method, path, device_id
type AuditRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Every decision Gatehouse made for the ingress (the oracle's and control's left out) is
/// about a host and path the table sent, with method GET, no device and never the client's
/// request id.
async fn audit_failures(gh: &Gatehouse, table: &[Case]) -> Vec<String> {
    // Records are written within `audit.flush_interval` (200 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut conn = sqlx::PgConnection::connect(&gh.db_url).await.unwrap();
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT request_id, host, method, path, device_id FROM audit_events \
             WHERE kind = 'verify' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let control = rows.iter().find(|r| r.0 == "oracle-control");
    let mut failures = Vec::new();
    if control.is_none_or(|r| r.4.is_none()) {
        failures.push(format!(
            "the control's audit record has no device: {control:?}"
        ));
    }
    let mut served: BTreeSet<(&str, &str)> =
        table.iter().map(|c| (c.real_host, c.real_path)).collect();
    served.insert(("127.0.0.1", "/")); // wait_http's probe (Caddy asks Gatehouse about it)
    let mut asked = 0;
    for (request_id, host, method, path, device) in &rows {
        if request_id.starts_with("oracle-") {
            continue;
        }
        asked += 1;
        let host = host.as_deref().map(without_port).unwrap_or_default();
        let path = path.as_deref().unwrap_or_default();
        if !served.contains(&(host, path))
            || method.as_deref() != Some("GET")
            || device.is_some()
            || request_id == FORGED_REQUEST_ID
        {
            failures.push(format!(
                "Gatehouse decided another request than the ingress served: \
                 {request_id} {method:?} {host} {path} device {device:?}"
            ));
        }
    }
    if asked == 0 {
        failures.push("no decision for the ingress in audit_events".into());
    }
    failures
}

fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    }
}

/// `/` as `%2F`, as it appears in the login redirect's `rd`.
fn urlencoding(path: &str) -> String {
    path.replace('/', "%2F")
}
