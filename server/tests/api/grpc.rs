//! Envoy ext_authz over gRPC (docs/ingress.md), asked by a real gRPC client built from
//! Envoy's own protos (`envoy-types`), as Envoy's `ext_authz` filter asks: every assertion
//! reads a field Envoy reads — `status.code`, `ok_response.headers` (with their append
//! action) and `headers_to_remove`, `denied_response.status`, `.headers` and `.body`.
//! No Envoy binary exists on the test machines; the shipped Envoy configuration is checked
//! by the deploy tests.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{AppOptions, Backend, Person, TestApp, spawn_app_with};

const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

const ANN: Person<'static> = Person {
    email: "ann@example.com",
    groups: &["kitchen"],
    tenant: None,
};

/// Options serving gRPC on an ephemeral port, with `extra` YAML.
pub fn grpc_options(backend: Backend, extra: &str) -> AppOptions {
    let mut options = AppOptions::new(backend);
    options.extra_yaml = format!("grpc_listen: 127.0.0.1:0\n{extra}");
    options
}

/// One request as Envoy describes it in a `CheckRequest`.
#[derive(Clone)]
pub struct Described {
    pub method: String,
    pub scheme: String,
    pub host: String,
    /// The request target as the client sent it (path and query, no decoding).
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// `attributes.source.address`: the downstream client as Envoy saw it.
    pub source: String,
    /// `attributes.request.http.id`: Envoy's request id.
    pub id: String,
    /// `attributes.source.certificate`: the client certificate's URL-encoded PEM.
    pub certificate: String,
}

impl Described {
    /// A GET of `url` (split by hand, as Envoy passes the target unparsed: `/../x`, `%2f`
    /// and `\` stay as written) from 203.0.113.7.
    pub fn get(url: &str) -> Described {
        let (scheme, rest) = url.split_once("://").unwrap();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(end);
        Described {
            method: "GET".into(),
            scheme: scheme.into(),
            host: host.into(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            headers: Vec::new(),
            source: "203.0.113.7".into(),
            id: uuid::Uuid::new_v4().to_string(),
            certificate: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Described {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn cookie(self, app: &TestApp, value: &str) -> Described {
        let cookie = app.cookie(value);
        self.header("cookie", &cookie)
    }

    /// The `CheckRequest` Envoy sends: lower-case header names with `:authority`, `:method`,
    /// `:path` and `:scheme` among them, repeated headers merged with `,`.
    pub fn check_request(&self) -> CheckRequest {
        let mut headers: HashMap<String, String> = HashMap::new();
        for (name, value) in [
            (":authority", &self.host),
            (":method", &self.method),
            (":path", &self.path),
            (":scheme", &self.scheme),
        ] {
            headers.insert(name.to_string(), value.clone());
        }
        for (name, value) in &self.headers {
            headers
                .entry(name.clone())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: self.source.clone(),
                            port_specifier: Some(socket_address::PortSpecifier::PortValue(51234)),
                            ..Default::default()
                        })),
                    }),
                    certificate: self.certificate.clone(),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        id: self.id.clone(),
                        method: self.method.clone(),
                        headers,
                        path: self.path.clone(),
                        host: self.host.clone(),
                        scheme: self.scheme.clone(),
                        protocol: "HTTP/1.1".into(),
                        size: -1,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

/// Envoy's side of the conversation: a gRPC client of `Authorization/Check`.
pub struct Envoy {
    client: AuthorizationClient<Channel>,
}

impl Envoy {
    pub async fn connect(app: &TestApp) -> Envoy {
        let endpoint = app.grpc.clone().expect("grpc_listen is configured");
        Envoy {
            client: AuthorizationClient::connect(endpoint).await.unwrap(),
        }
    }

    pub async fn check(&mut self, request: &Described) -> Checked {
        let response = self
            .client
            .check(request.check_request())
            .await
            .expect("Check answers (errors are denied responses, not gRPC errors)")
            .into_inner();
        Checked(response)
    }

    pub async fn check_raw(&mut self, request: CheckRequest) -> Checked {
        Checked(self.client.check(request).await.unwrap().into_inner())
    }
}

/// A `CheckResponse`, read the way Envoy reads it.
#[derive(Debug)]
pub struct Checked(pub CheckResponse);

impl Checked {
    pub fn code(&self) -> i32 {
        self.0.status.as_ref().map_or(0, |s| s.code)
    }

    /// The HTTP status the client gets: 200 when allowed, else the denied response's
    /// (Envoy's default 403 when none is given).
    pub fn http_status(&self) -> u16 {
        match &self.0.http_response {
            _ if self.code() == OK => 200,
            Some(HttpResponse::DeniedResponse(d)) => d
                .status
                .as_ref()
                .map_or(403, |s| u16::try_from(s.code).unwrap()),
            _ => 403,
        }
    }

    /// Headers Envoy sets: on the upstream request when allowed, on the answer to the
    /// client when denied. Each must overwrite: the deprecated `append` (read first by every
    /// Envoy) false and the newer action "overwrite".
    #[allow(deprecated, reason = "Envoy reads the deprecated `append` first")]
    pub fn headers(&self) -> Vec<(String, String)> {
        let options = match &self.0.http_response {
            Some(HttpResponse::OkResponse(ok)) => &ok.headers,
            Some(HttpResponse::DeniedResponse(d)) => &d.headers,
            other => panic!("unexpected http_response {other:?}"),
        };
        options
            .iter()
            .map(|o| {
                assert_eq!(o.append.as_ref().map(|b| b.value), Some(false), "{o:?}");
                assert_eq!(
                    o.append_action,
                    HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                    "{o:?}"
                );
                let h = o.header.as_ref().unwrap();
                (h.key.clone(), h.value.clone())
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn headers_to_remove(&self) -> Vec<String> {
        match &self.0.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok.headers_to_remove.clone(),
            _ => Vec::new(),
        }
    }

    pub fn body(&self) -> String {
        match &self.0.http_response {
            Some(HttpResponse::DeniedResponse(d)) => d.body.clone(),
            _ => String::new(),
        }
    }

    /// What the upstream would receive when Envoy applies this allow to a request with
    /// `client_headers`: set (overwrite), then remove — the order of Envoy's ext_authz filter.
    pub fn upstream_headers(&self, client_headers: &[(String, String)]) -> Vec<(String, String)> {
        assert_eq!(self.code(), OK);
        let mut headers: Vec<(String, String)> = client_headers.to_vec();
        for (name, value) in self.headers() {
            let lower = name.to_ascii_lowercase();
            headers.retain(|(n, _)| *n != lower);
            headers.push((lower, value));
        }
        for name in self.headers_to_remove() {
            headers.retain(|(n, _)| *n != name);
        }
        headers
    }
}

#[tokio::test]
async fn an_allowed_check_sets_the_identity_headers_and_removes_forged_ones() {
    let app = spawn_app_with(grpc_options(Backend::Sqlite, "")).await;
    let mut envoy = Envoy::connect(&app).await;
    let cookie = app.login(&ANN).await;
    let forged = [
        ("x-auth-request-user", "admin@example.com"),
        ("x-auth-request-groups", "admins"),
        ("x-auth-request-tenant", "globex"),
        ("x_auth_request_email", "admin@example.com"),
        ("x-tenant-id", "globex"),
        ("x-restaurant-role", "owner"),
    ];
    let mut request =
        Described::get("https://apps.example.com/restaurant/orders?page=2").cookie(&app, &cookie);
    for (name, value) in forged {
        request = request.header(name, value);
    }
    let answer = envoy.check(&request).await;
    assert_eq!(answer.code(), OK, "{answer:?}");
    assert_eq!(answer.http_status(), 200);
    assert_eq!(
        answer.header("X-Auth-Request-Email").unwrap(),
        "ann@example.com"
    );
    assert_eq!(
        answer.header("X-Auth-Request-User").unwrap(),
        "ann@example.com"
    );
    assert_eq!(answer.header("X-Auth-Request-Groups").unwrap(), "kitchen");
    // Envoy sets, then removes: a name it sets must never be listed for removal.
    let set: Vec<String> = answer
        .headers()
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    for name in answer.headers_to_remove() {
        assert!(!set.contains(&name), "{name} is both set and removed");
    }
    let upstream = answer.upstream_headers(&request.headers);
    let value = |name: &str| {
        upstream
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(value("x-auth-request-user"), ["ann@example.com"]);
    assert_eq!(value("x-auth-request-groups"), ["kitchen"]);
    for gone in [
        "x-auth-request-tenant",
        "x_auth_request_email",
        "x-tenant-id",
    ] {
        assert!(
            value(gone).is_empty(),
            "{gone} reached the upstream: {upstream:?}"
        );
    }
    // The restaurant policy's declared header is the policy's answer, not the client's.
    assert_ne!(value("x-restaurant-role"), ["owner"], "{upstream:?}");
}

#[tokio::test]
async fn unauthenticated_browsers_are_sent_to_login_and_scripts_get_401() {
    let app = spawn_app_with(grpc_options(Backend::Sqlite, "")).await;
    let mut envoy = Envoy::connect(&app).await;
    let url = "https://apps.example.com/restaurant/orders?page=2";
    let browser = envoy
        .check(&Described::get(url).header("accept", "text/html,application/xhtml+xml"))
        .await;
    assert_eq!(browser.code(), UNAUTHENTICATED);
    assert_eq!(browser.http_status(), 302);
    let rd: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    assert_eq!(
        browser.header("Location").unwrap(),
        format!("https://auth.example.com/auth/login?rd={rd}")
    );
    assert_eq!(browser.header("Cache-Control").unwrap(), "no-store");

    let script = envoy.check(&Described::get(url)).await;
    assert_eq!(script.code(), UNAUTHENTICATED);
    assert_eq!(script.http_status(), 401);
    assert!(script.header("Location").is_none());
    assert_eq!(
        script.header("X-Auth-Request-Redirect").unwrap(),
        format!("https://auth.example.com/auth/login?rd={rd}")
    );
    // A forged or unsigned cookie is no session either.
    let forged = envoy
        .check(&Described::get(url).header("cookie", "_gatehouse=forged.value"))
        .await;
    assert_eq!(forged.http_status(), 401);
}

#[tokio::test]
async fn denied_and_refused_checks_carry_status_reason_and_body_never_ok() {
    let app = spawn_app_with(grpc_options(Backend::Sqlite, "")).await;
    let mut envoy = Envoy::connect(&app).await;
    let sam = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let denied = envoy
        .check(&Described::get("https://apps.example.com/reports/q3").cookie(&app, &sam))
        .await;
    assert_eq!(denied.code(), PERMISSION_DENIED);
    assert_eq!(denied.http_status(), 403);
    assert!(denied.header("X-Auth-Request-Reason").is_some());
    assert!(denied.header("X-Auth-Request-User").is_none());

    let unmatched = envoy
        .check(&Described::get("https://elsewhere.example.org/").cookie(&app, &sam))
        .await;
    assert_eq!(unmatched.http_status(), 403);
    assert_eq!(
        unmatched.header("X-Auth-Request-Reason").unwrap(),
        "no_route"
    );

    // A dot segment is resolved before matching: the request is decided as /reports.
    let mut dotted = Described::get("https://apps.example.com/").cookie(&app, &sam);
    dotted.path = "/restaurant/%2e%2e/reports/q3".into();
    assert_eq!(envoy.check(&dotted).await.http_status(), 403);
    // Refused spellings: 400 with the reason, before any session is looked up.
    for (path, why) in [
        ("/restaurant%2f..%2freports", "encoded slash"),
        ("/restaurant/\\..\\reports", "backslash"),
        ("/restaurant%3b/x", "encoded semicolon"),
        ("/restaurant%3fx=1", "encoded question mark"),
    ] {
        let mut request = Described::get("https://apps.example.com/").cookie(&app, &sam);
        request.path = path.into();
        let refused = envoy.check(&request).await;
        assert_eq!(refused.code(), PERMISSION_DENIED, "{why}: {refused:?}");
        assert_eq!(refused.http_status(), 400, "{why}");
        assert!(refused.body().starts_with("bad request: "), "{why}");
        assert!(refused.header("X-Auth-Request-Reason").is_some(), "{why}");
    }
    // Nonsense that no Envoy sends is refused, never allowed.
    let mut bad_method = Described::get("https://apps.example.com/healthz");
    bad_method.method = "GET /x HTTP/1.1\r\n".into();
    assert_eq!(envoy.check(&bad_method).await.http_status(), 400);
    let mut bad_scheme = Described::get("https://apps.example.com/healthz");
    bad_scheme.scheme = "gopher".into();
    assert_eq!(envoy.check(&bad_scheme).await.http_status(), 400);
    let empty = envoy.check_raw(CheckRequest::default()).await;
    assert_eq!(empty.code(), PERMISSION_DENIED);
    assert_eq!(empty.http_status(), 400);
    // The public route is allowed without a session, and forged identity is still removed.
    let public = envoy
        .check(
            &Described::get("https://apps.example.com/healthz")
                .header("x-auth-request-user", "admin@example.com"),
        )
        .await;
    assert_eq!(public.code(), OK);
    assert!(
        public
            .headers_to_remove()
            .contains(&"x-auth-request-user".to_string())
    );
}

#[tokio::test]
async fn checks_are_audited_with_transport_grpc_envoys_request_id_and_the_client_address() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app_with(grpc_options(backend, "")).await;
        let mut envoy = Envoy::connect(&app).await;
        let cookie = app.login(&ANN).await;
        let allowed = Described::get("https://apps.example.com/restaurant").cookie(&app, &cookie);
        let anonymous = Described::get("https://apps.example.com/restaurant");
        assert_eq!(envoy.check(&allowed).await.http_status(), 200);
        assert_eq!(envoy.check(&anonymous).await.http_status(), 401);
        let rows = audit_rows(&app, 2).await;
        assert_eq!(
            rows,
            [
                (
                    allowed.id.clone(),
                    "allow".to_string(),
                    Some("ann@example.com".to_string()),
                    Some("203.0.113.7".to_string()),
                    Some("grpc".to_string())
                ),
                (
                    anonymous.id.clone(),
                    "unauthenticated".to_string(),
                    None,
                    Some("203.0.113.7".to_string()),
                    Some("grpc".to_string())
                ),
            ],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn an_untrusted_grpc_peer_is_not_believed_about_the_client_or_the_request_id() {
    // The tests' gRPC client connects from 127.0.0.1, outside these trusted proxies.
    let app = spawn_app_with(grpc_options(
        Backend::Sqlite,
        "trusted_proxies: [10.0.0.0/8]\n",
    ))
    .await;
    let mut envoy = Envoy::connect(&app).await;
    let request = Described::get("https://apps.example.com/healthz");
    assert_eq!(envoy.check(&request).await.http_status(), 200);
    let rows = audit_rows(&app, 1).await;
    assert_eq!(rows.len(), 1);
    assert_ne!(
        rows[0].0, request.id,
        "an untrusted caller's request id was kept"
    );
    assert_eq!(rows[0].3.as_deref(), Some("127.0.0.1"));
}

/// The client certificate Envoy verified (`include_peer_certificate`) is the device, from a
/// trusted Envoy only.
#[tokio::test]
async fn a_verified_peer_certificate_is_the_device_from_a_trusted_envoy_only() {
    const FINGERPRINT: &str = "B1:0B:0C:3B:B1:4C:04:0E:0B:98:09:66:19:94:12:95:A9:F1:3A:53:D8:F6:BD:E5:BD:CB:2B:39:17:F1:E1:F8";
    let pem = include_str!("../../../tests/fixtures/device-certificate.pem");
    let encoded =
        percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string();
    for (trusted_proxies, expected) in [("", 200), ("trusted_proxies: [10.0.0.0/8]\n", 403)] {
        let app = spawn_app_with(grpc_options(Backend::Sqlite, trusted_proxies)).await;
        let mut envoy = Envoy::connect(&app).await;
        let fin = app.fin_with_certificate_device(FINGERPRINT).await;
        // The example `reports` route: finance, from a managed device.
        let reports = Described::get("https://apps.example.com/reports").cookie(&app, &fin);
        assert_eq!(envoy.check(&reports).await.http_status(), 403);
        let mut with_certificate = reports.clone();
        with_certificate.certificate = encoded.clone();
        assert_eq!(
            envoy.check(&with_certificate).await.http_status(),
            expected,
            "{trusted_proxies:?}"
        );
        // A fingerprint header is the client's own word over gRPC: never read.
        let header = reports
            .clone()
            .header("x-client-cert-fingerprint", FINGERPRINT);
        assert_eq!(envoy.check(&header).await.http_status(), 403);
    }
}

#[tokio::test]
async fn a_revoked_session_is_turned_away_over_grpc() {
    let app = spawn_app_with(grpc_options(
        Backend::Postgres,
        "session:\n  cache_ttl: 300ms\n",
    ))
    .await;
    let mut envoy = Envoy::connect(&app).await;
    let cookie = app.login(&ANN).await;
    let request = Described::get("https://apps.example.com/restaurant").cookie(&app, &cookie);
    assert_eq!(envoy.check(&request).await.http_status(), 200);
    app.store
        .revoke_sessions_by_email("ann@example.com", "test", chrono::Utc::now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = envoy.check(&request).await;
    assert_eq!(after.code(), UNAUTHENTICATED);
    assert_eq!(after.http_status(), 401);
}

#[tokio::test]
async fn a_store_failure_is_a_denied_500_never_ok() {
    let app = spawn_app_with(grpc_options(
        Backend::Postgres,
        "session:\n  cache_ttl: 1ms\n",
    ))
    .await;
    let mut envoy = Envoy::connect(&app).await;
    let cookie = app.login(&ANN).await;
    app.store.close().await;
    crate::helpers::drop_database(&app.db.url).await;
    let answer = envoy
        .check(&Described::get("https://apps.example.com/restaurant").cookie(&app, &cookie))
        .await;
    assert_eq!(answer.code(), PERMISSION_DENIED, "{answer:?}");
    assert_eq!(answer.http_status(), 500);
    assert_eq!(answer.body(), "internal error\n");
    assert!(answer.header("X-Auth-Request-User").is_none());
}

#[tokio::test]
async fn grpc_health_serves_both_names_and_follows_readiness() {
    let app = spawn_app_with(grpc_options(Backend::Postgres, "")).await;
    let endpoint = app.grpc.clone().unwrap();
    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |service: &str| {
        let mut health = health.clone();
        let service = service.to_string();
        async move {
            health
                .check(HealthCheckRequest { service })
                .await
                .map(|r| r.into_inner().status)
        }
    };
    // Serving once the tasks that gate readiness are up (a moment after the start).
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let started = std::time::Instant::now();
        loop {
            let now = status(service).await.unwrap();
            if now == ServingStatus::Serving as i32 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{service:?} stayed {now}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        status("no.such.Service").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // The database goes away: /readyz fails, and so does the health Envoy checks.
    app.store.close().await;
    crate::helpers::drop_database(&app.db.url).await;
    let started = std::time::Instant::now();
    loop {
        let now = health
            .check(HealthCheckRequest {
                service: "envoy.service.auth.v3.Authorization".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if now == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health stayed {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (request_id, decision, email, client_ip, transport) of every audit row, once `n` exist.
async fn audit_rows(
    app: &TestApp,
    n: usize,
) -> Vec<(
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    app.wait_for_audit_rows(n, Duration::from_secs(10)).await;
    let sql =
        "SELECT request_id, decision, email, client_ip, transport FROM audit_events ORDER BY id";
    if app.db.url.starts_with("postgres") {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.db.url)
            .await
            .unwrap();
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    }
}
