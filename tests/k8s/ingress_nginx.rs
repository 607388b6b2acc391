//! The oauth2-proxy drop-in claim, proven: the NGINX configuration ingress-nginx generates
//! for `deploy/k8s/ingress-nginx/app-ingress.yaml`'s annotations, run by a real NGINX in
//! front of a real Gatehouse (with the test IdP) and a real upstream.
//!
//! [`render`] reproduces what ingress-nginx controller-v1.15.1's template and helpers
//! generate for one Ingress path with `auth-url`, `auth-signin`, `auth-response-headers` and
//! `auth-proxy-set-headers`, at the controller's default configuration — vendored, with the
//! line numbers each part mirrors, in `tests/k8s/ingress-nginx/nginx.tmpl.excerpt`. What is
//! left out is what the controller does in Lua (load balancing, which a plain `upstream`
//! replaces; the HTTPS redirect of TLS hosts; metrics) and TLS itself: this NGINX listens
//! on plain HTTP on loopback. Only addresses are rewritten: the auth-url's and the sign-in
//! host's (to the test Gatehouse) and the Service's (to the echo app).

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::harness::{
    Gatehouse, GatehouseOptions, client, free_port, repo_root, start_nginx_conf,
    start_recording_echo_app, wait_http,
};
use crate::oidc_provider::{Browser, OidcProvider};

const ANNOTATION: &str = "nginx.ingress.kubernetes.io/";

/// One path of an Ingress with ingress-nginx's external-auth annotations, parsed as
/// `internal/ingress/annotations/authreq/main.go` parses them.
#[derive(Debug, Clone)]
pub struct AuthIngress {
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub path: String,
    pub path_type: String,
    pub service: String,
    pub service_port: u16,
    /// `auth-url`, as written.
    pub auth_url: String,
    /// The auth-url's host name: the `Host` of the auth subrequest (`authURL.Hostname()`).
    pub auth_host: String,
    pub signin: String,
    pub response_headers: Vec<String>,
    /// The ConfigMap `auth-proxy-set-headers` names (its data).
    pub proxy_set_headers: BTreeMap<String, String>,
    /// The controller ConfigMap's `http-snippet` and `server-snippet` that
    /// `controller-configmap.example.yaml` recommends (empty: the controller's defaults).
    pub http_snippet: String,
    pub server_snippet: String,
}

fn yaml_docs(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(relative)).unwrap();
    text.split("\n---")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect()
}

impl AuthIngress {
    /// The shipped app Ingress and the ConfigMap its `auth-proxy-set-headers` names.
    pub fn shipped() -> AuthIngress {
        let ingress = yaml_docs("deploy/k8s/ingress-nginx/app-ingress.yaml").remove(0);
        let configmaps = yaml_docs("deploy/k8s/ingress-nginx/auth-proxy-headers.yaml");
        let annotation = |key: &str| {
            ingress["metadata"]["annotations"][format!("{ANNOTATION}{key}")]
                .as_str()
                .map(str::to_string)
        };
        let namespace = ingress["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let auth_url = annotation("auth-url").expect("auth-url");
        let parsed = url::Url::parse(&auth_url).unwrap();
        let response_headers = annotation("auth-response-headers")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        let proxy_set_headers = match annotation("auth-proxy-set-headers") {
            Some(reference) => {
                // `namespace/name` or `name`; only the Ingress's own namespace is allowed
                // (AllowCrossNamespaceResources is off by default).
                let (ns, name) = reference
                    .split_once('/')
                    .unwrap_or((namespace.as_str(), reference.as_str()));
                assert_eq!(
                    ns, namespace,
                    "ingress-nginx refuses another namespace's ConfigMap"
                );
                let cm = configmaps
                    .iter()
                    .find(|c| c["metadata"]["name"] == name && c["metadata"]["namespace"] == ns)
                    .unwrap_or_else(|| panic!("no ConfigMap {reference} shipped"));
                cm["data"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            }
            None => BTreeMap::new(),
        };
        let controller = yaml_docs("deploy/k8s/ingress-nginx/controller-configmap.example.yaml");
        let snippet = |key: &str| controller[0]["data"][key].as_str().unwrap().to_string();
        let rule = &ingress["spec"]["rules"][0];
        let path = &rule["http"]["paths"][0];
        AuthIngress {
            namespace,
            name: ingress["metadata"]["name"].as_str().unwrap().to_string(),
            host: rule["host"].as_str().unwrap().to_string(),
            path: path["path"].as_str().unwrap().to_string(),
            path_type: path["pathType"].as_str().unwrap().to_string(),
            service: path["backend"]["service"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
            service_port: path["backend"]["service"]["port"]["number"]
                .as_u64()
                .unwrap() as u16,
            auth_host: parsed.host_str().unwrap().to_string(),
            auth_url,
            signin: annotation("auth-signin").expect("auth-signin"),
            response_headers,
            proxy_set_headers,
            http_snippet: snippet("http-snippet"),
            server_snippet: snippet("server-snippet"),
        }
    }
}

/// `buildAuthLocation`: `/_external-auth-<base64url(path)>-<pathType>`.
fn auth_location(ing: &AuthIngress) -> String {
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ing.path.as_bytes());
    format!("/_external-auth-{encoded}-{}", ing.path_type)
}

/// `buildAuthSignURLLocation`: `@` + hex SHA-1 of the path and the sign-in URL.
fn signin_location(ing: &AuthIngress) -> String {
    let out = Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{}{}", ing.path, ing.signin).as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha1sum (coreutils)");
    format!(
        "@{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

/// `buildAuthSignURL`: the sign-in URL as written when it already has the `rd` parameter,
/// else with `rd=$pass_access_scheme://$http_host$escaped_request_uri` appended.
fn signin_url(signin: &str) -> String {
    let parsed = url::Url::parse(signin).unwrap();
    let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    if query.is_empty() {
        format!("{signin}?rd=$pass_access_scheme://$http_host$escaped_request_uri")
    } else if query.iter().any(|(k, v)| k == "rd" && !v.is_empty()) {
        signin.to_string()
    } else {
        format!("{signin}&rd=$pass_access_scheme://$http_host$escaped_request_uri")
    }
}

/// Where the test runs what the cluster names: each `(from, to)` is replaced in the
/// rendered text, and must occur.
pub struct Addresses {
    pub listen: String,
    pub rewrites: Vec<(String, String)>,
    pub upstream: String,
}

/// The `nginx.conf` ingress-nginx generates for `ing` (see the module comment), with
/// `addresses` applied.
pub fn render(ing: &AuthIngress, addresses: &Addresses) -> String {
    let auth_path = auth_location(ing);
    let signin_name = signin_location(ing);
    let upstream_name = format!("{}-{}-{}", ing.namespace, ing.service, ing.service_port);
    // buildAuthProxySetHeaders: Go's %q quoting, sorted.
    let mut auth_set: Vec<String> = ing
        .proxy_set_headers
        .iter()
        .map(|(k, v)| format!("proxy_set_header {k:?} {v:?};"))
        .collect();
    auth_set.sort();
    // buildAuthResponseHeaders (lua = false): one variable per header.
    let mut response = Vec::new();
    for (i, h) in ing.response_headers.iter().enumerate() {
        let var = h.to_lowercase().replace('-', "_");
        response.push(format!(
            "auth_request_set $authHeader{i} $upstream_http_{var};"
        ));
        response.push(format!("proxy_set_header '{h}' $authHeader{i};"));
    }
    let indent = |lines: &[String]| lines.join("\n            ");
    let location_path = if ing.path_type == "Exact" {
        format!("= \"{}\"", ing.path)
    } else {
        format!("\"{}\"", ing.path)
    };
    let conf = format!(
        r#"# Generated as ingress-nginx controller-v1.15.1 would for {namespace}/{name}
# (tests/k8s/ingress-nginx/nginx.tmpl.excerpt); addresses rewritten for the test.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_set_misc_module.so;
events {{}}
http {{
    # nginx.tmpl 302-303 (enable-underscores-in-headers: false, ignore-invalid-headers: true)
    underscores_in_headers          off;
    ignore_invalid_headers          on;

    # nginx.tmpl 379-398 (upstream-keepalive-connections: 320, generate-request-id: true)
    map $http_upgrade $connection_upgrade {{
        default          upgrade;
        ''               '';
    }}
    map $http_x_request_id $req_id {{
        default   $http_x_request_id;
        ""        $request_id;
    }}

    # nginx.tmpl 513-516: the controller ConfigMap's http-snippet
    {http_snippet}

    # The controller balances in Lua over the Service's endpoints; here, one address.
    upstream upstream_balancer {{
        server {upstream};
        keepalive 320;
    }}

    server {{
        server_name "{host}" ;
        listen {listen};

        # nginx.tmpl 1006-1127: the auth subrequest
        location = {auth_path} {{
            internal;

            access_log off;

            set $proxy_upstream_name "{upstream_name}";

            proxy_intercept_errors      off;
            proxy_pass_request_body     off;
            proxy_set_header            Content-Length          "";
            proxy_set_header            X-Forwarded-Proto       "";
            proxy_set_header            X-Request-ID            $req_id;

            proxy_set_header            Host                    {auth_host};
            proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
            proxy_set_header            X-Original-Method       $request_method;
            proxy_set_header            X-Sent-From             "nginx-ingress-controller";
            proxy_set_header            X-Real-IP               $remote_addr;
            proxy_set_header            X-Forwarded-For        $remote_addr;

            proxy_set_header            X-Auth-Request-Redirect $request_uri;

            proxy_buffering                         off;
            proxy_buffer_size                       4k;
            proxy_buffers                           4 4k;
            proxy_request_buffering                 on;

            proxy_ssl_server_name       on;
            proxy_pass_request_headers  on;
            client_max_body_size        1m;

            {auth_set}

            proxy_http_version 1.1;
            set $target "{auth_url}";
            proxy_pass $target;
        }}

        # nginx.tmpl 1129-1148: where a 401 sends the browser
        location {signin_name} {{
            internal;

            add_header Set-Cookie $auth_cookie;

            return 302 {signin_url};
        }}

        # nginx.tmpl 1150-1330: the app
        location {location_path} {{
            set $namespace      "{namespace}";
            set $ingress_name   "{name}";
            set $service_name   "{service}";
            set $service_port   "{service_port}";
            set $location_path  "{path}";

            port_in_redirect off;

            set $balancer_ewma_score -1;
            set $proxy_upstream_name "{upstream_name}";
            set $proxy_host          $proxy_upstream_name;
            set $pass_access_scheme  $scheme;
            set $pass_server_port    $server_port;
            set $best_http_host      $http_host;
            set $pass_port           $pass_server_port;

            set $proxy_alternative_upstream_name "";

            # this location requires authentication
            auth_request        {auth_path};
            auth_request_set    $auth_cookie $upstream_http_set_cookie;
            add_header          Set-Cookie $auth_cookie;
            {response}

            set_escape_uri $escaped_request_uri $request_uri;
            error_page 401 = {signin_name};

            client_max_body_size                    1m;

            proxy_set_header Host                   $best_http_host;

            # Allow websocket connections
            proxy_set_header                        Upgrade           $http_upgrade;
            proxy_set_header                        Connection        $connection_upgrade;

            proxy_set_header X-Request-ID           $req_id;
            proxy_set_header X-Real-IP              $remote_addr;
            proxy_set_header X-Forwarded-For        $remote_addr;
            proxy_set_header X-Forwarded-Host       $best_http_host;
            proxy_set_header X-Forwarded-Port       $pass_port;
            proxy_set_header X-Forwarded-Proto      $pass_access_scheme;
            proxy_set_header X-Forwarded-Scheme     $pass_access_scheme;
            proxy_set_header X-Scheme               $pass_access_scheme;

            # Pass the original X-Forwarded-For
            proxy_set_header X-Original-Forwarded-For  $http_x_forwarded_for;
            # Pass the original X-Forwarded-Host
            proxy_set_header X-Original-Forwarded-Host $http_x_forwarded_host;

            # mitigate HTTPoxy Vulnerability
            proxy_set_header Proxy                  "";

            proxy_connect_timeout                   5s;
            proxy_send_timeout                      60s;
            proxy_read_timeout                      60s;

            proxy_buffering                         off;
            proxy_buffer_size                       4k;
            proxy_buffers                           4 4k;
            proxy_request_buffering                 on;
            proxy_http_version                      1.1;

            proxy_cookie_domain                     off;
            proxy_cookie_path                       off;

            proxy_next_upstream                     error timeout;
            proxy_next_upstream_timeout             0;
            proxy_next_upstream_tries               3;

            proxy_pass http://upstream_balancer;

            proxy_redirect                          off;
        }}

        # nginx.tmpl 658-661: the controller ConfigMap's server-snippet
        {server_snippet}
    }}
}}
"#,
        namespace = ing.namespace,
        name = ing.name,
        host = ing.host,
        path = ing.path,
        service = ing.service,
        service_port = ing.service_port,
        auth_host = ing.auth_host,
        auth_url = ing.auth_url,
        auth_set = indent(&auth_set),
        response = indent(&response),
        signin_url = signin_url(&ing.signin),
        upstream = addresses.upstream,
        listen = addresses.listen,
        http_snippet = ing.http_snippet,
        server_snippet = ing.server_snippet,
    );
    let mut conf = conf;
    for (from, to) in &addresses.rewrites {
        assert!(
            conf.contains(from.as_str()),
            "the rendered config has no `{from}`"
        );
        conf = conf.replace(from.as_str(), to);
    }
    conf
}

const CLIENT_ID: &str = "gatehouse";
const CLIENT_SECRET: &str = "k8s-test-oidc-secret-0123456789abcdef";

/// The test's stand-ins for the cluster: an IdP, a Gatehouse (its public URL is the sign-in
/// host), the echo app as the `restaurant` Service.
struct Cluster {
    gh: Gatehouse,
    _idp: OidcProvider,
    echo: crate::harness::EchoLog,
    app_port: u16,
}

async fn cluster() -> Cluster {
    let _starting = crate::STARTING.lock().await;
    // Held until the provider has bound its own port.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    let idp = OidcProvider::start(serde_json::json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("http://127.0.0.1:{port}/oauth2/callback")],
        }],
        "accounts": {
            "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice",
                      "preferred_username": "alice", "groups": ["finance", "staff"]}
        }
    }));
    drop(reserved);
    let gh = Gatehouse::start_with(GatehouseOptions {
        port: Some(port),
        public_url: format!("http://127.0.0.1:{port}"),
        extra_yaml: format!(
            "oidc:\n  issuer: {}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
             scopes: [openid, email, profile, groups]\n",
            idp.issuer
        ),
    })
    .await;
    let (app_port, echo) = start_recording_echo_app().await;
    Cluster {
        gh,
        _idp: idp,
        echo,
        app_port,
    }
}

/// Runs the config ingress-nginx generates for `ing`; returns NGINX and its base URL.
async fn run_ingress_nginx(
    ing: &AuthIngress,
    cluster: &Cluster,
    dir: &std::path::Path,
) -> (crate::harness::Proc, String) {
    let _starting = crate::STARTING.lock().await;
    let port = free_port();
    let gh = cluster.gh.port;
    let conf = render(
        ing,
        &Addresses {
            listen: format!("127.0.0.1:{port}"),
            upstream: format!("127.0.0.1:{}", cluster.app_port),
            rewrites: vec![
                // The auth-url's Service address, and the sign-in host's ingress (both are
                // Gatehouse here).
                (
                    "gatehouse.gatehouse.svc.cluster.local:4180".into(),
                    format!("127.0.0.1:{gh}"),
                ),
                (
                    "https://auth.example.com".into(),
                    format!("http://127.0.0.1:{gh}"),
                ),
            ],
        },
    );
    crate::harness::nginx_t(&conf);
    let mut nginx = start_nginx_conf(&conf, dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/"), &mut nginx).await;
    (nginx, base)
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn ingress_nginx_annotations_put_gatehouse_in_front_of_the_app() {
    let ing = AuthIngress::shipped();
    assert!(
        ing.auth_url.ends_with(":4180/oauth2/auth"),
        "the oauth2-proxy path: {}",
        ing.auth_url
    );
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut nginx, base) = run_ingress_nginx(&ing, &cluster, dir.path()).await;
    let gh = cluster.gh.port;
    let c = client();
    let get = |path: &str| {
        c.get(format!("{base}{path}"))
            .header("Host", &ing.host)
            .header("Accept", "text/html")
    };

    // An anonymous browser is sent to auth-signin, `rd` naming the page it asked for
    // (set_escape_uri escapes `/` too).
    let anonymous = get("/restaurant/menu?day=mon").send().await.unwrap();
    assert_eq!(anonymous.status(), 302);
    let signin = header(&anonymous, "location").unwrap();
    assert_eq!(
        signin,
        format!(
            "http://127.0.0.1:{gh}/oauth2/start?rd=https://restaurant.example.com%2Frestaurant%2Fmenu%3Fday%3Dmon"
        )
    );
    assert!(cluster.echo.take().is_empty(), "the app was not reached");

    // The browser signs in there (/oauth2/start → IdP → /oauth2/callback) and is sent back
    // to that page.
    let browser = Browser::new();
    let app_host = |u: &url::Url| u.host_str() == Some("restaurant.example.com");
    let page = browser.follow_until(&signin, app_host).await;
    let back = browser
        .sign_in_at_idp_until(page, "alice", "any-password", app_host)
        .await;
    assert_eq!(back.status, 0, "chain {:?}: {}", back.chain, back.body);
    assert_eq!(
        back.url,
        "https://restaurant.example.com/restaurant/menu?day=mon"
    );
    let cookie = browser
        .cookie_header(&format!("http://127.0.0.1:{gh}/"))
        .expect("the session cookie");
    assert!(cookie.contains("_gatehouse="), "{cookie}");

    // Signed in: the app receives Gatehouse's identity headers; the client's own spellings
    // of them (and of the policy header) never arrive.
    let allowed = get("/restaurant/menu?day=mon")
        .header("Cookie", &cookie)
        .header("X-Auth-Request-User", "root@example.com")
        .header("X-Auth-Request-Groups", "gatehouse-admins")
        .header("X-Auth-Request-Tenant", "other-tenant")
        .header("X-Restaurant-Role", "kitchen")
        .header("X_Auth_Request_Email", "root@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let seen = cluster.echo.take();
    assert_eq!(seen.len(), 1);
    let h = &seen[0]["headers"];
    assert_eq!(seen[0]["path"], "/restaurant/menu?day=mon");
    assert_eq!(h["x-auth-request-user"], "alice@example.com", "{h}");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "finance,staff");
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    for absent in [
        "x-auth-request-tenant",
        "x-restaurant-role",
        "x_auth_request_email",
    ] {
        assert!(h.get(absent).is_none(), "{absent} reached the app: {h}");
    }

    // Denied by the policy: 403, the app is not reached.
    let denied = get("/marketing")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(cluster.echo.take().is_empty());

    // A client describing another request in forwarding headers changes nothing: ingress-nginx
    // sets X-Original-URL/-Method itself and the shipped ConfigMap clears the X-Forwarded
    // family, so the decision is about the request NGINX serves.
    let forged = get("/restaurant/menu")
        .header("X-Forwarded-Uri", "/healthz")
        .header("X-Forwarded-Host", "restaurant.example.com")
        .header("X-Forwarded-Method", "GET")
        .header("X-Original-URL", "http://restaurant.example.com/healthz")
        .header("X-Original-URI", "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 302, "still a login, never the app");
    let forged = get("/marketing")
        .header("Cookie", &cookie)
        .header("X-Forwarded-Uri", "/restaurant")
        .header("X-Original-URL", "http://restaurant.example.com/restaurant")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(cluster.echo.take().is_empty());
    nginx.assert_running();
}

/// Without `auth-proxy-set-headers` (ingress-nginx's defaults) a client's `X-Forwarded-*`
/// headers reach Gatehouse beside ingress-nginx's `X-Original-URL`. oauth2-proxy believed
/// them (CVE-2026-40575); Gatehouse refuses a request whose two descriptions disagree (400,
/// which auth_request turns into a 500), so the client gains nothing — but a proxy in front
/// of ingress-nginx that adds `X-Forwarded-Host` would make every request fail: the shipped
/// ConfigMap clears that family.
#[tokio::test]
async fn without_the_header_configmap_forged_forwarding_headers_are_refused_not_believed() {
    let mut ing = AuthIngress::shipped();
    ing.proxy_set_headers.clear();
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut nginx, base) = run_ingress_nginx(&ing, &cluster, dir.path()).await;
    let c = client();
    let forged = c
        .get(format!("{base}/restaurant/menu"))
        .header("Host", &ing.host)
        .header("X-Forwarded-Uri", "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        500,
        "Gatehouse answered 400, never an allow"
    );
    assert!(cluster.echo.take().is_empty(), "the app was not reached");
    nginx.assert_running();
}

/// Sends `request` (raw HTTP/1.1) to `port`; returns the status code.
async fn raw_status(port: u16, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// ingress-nginx builds `X-Original-URL` from `$http_host` (the client's `Host` header),
/// while NGINX serves an absolute-form request line (`GET http://a.example/x`) on the
/// request line's host (`$host`). Left alone, a client chooses the host Gatehouse decides on:
/// with host-specific routes, a member of tenant acme reaches restaurant.example.com's
/// /marketing by naming acme.apps.example.com in `Host`. The controller snippets of
/// `controller-configmap.example.yaml` refuse such requests.
#[tokio::test]
async fn absolute_form_request_lines_need_the_controller_snippets() {
    let shipped = AuthIngress::shipped();
    let mut defaults = shipped.clone();
    defaults.http_snippet.clear();
    defaults.server_snippet.clear();
    let cluster = cluster().await;
    let member = cluster.gh.cli(&[
        "session",
        "create",
        "--email",
        "tm@example.com",
        "--groups",
        "staff",
        "--tenant",
        "acme",
    ]);
    let ask = |line: &str, host: &str| {
        format!(
            "GET {line} HTTP/1.1\r\nHost: {host}\r\nCookie: _gatehouse={member}\r\nConnection: close\r\n\r\n"
        )
    };
    for (ing, snippets) in [(&defaults, false), (&shipped, true)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut nginx, base) = run_ingress_nginx(ing, &cluster, dir.path()).await;
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        // Honest requests, in any spelling of the served host, are decided as before.
        assert_eq!(
            raw_status(port, ask("/marketing", "restaurant.example.com")).await,
            403
        );
        assert_eq!(
            raw_status(port, ask("/marketing", "Restaurant.Example.com:80")).await,
            403
        );
        assert_eq!(
            raw_status(
                port,
                ask(
                    "http://restaurant.example.com/marketing",
                    "restaurant.example.com"
                )
            )
            .await,
            403
        );
        assert!(cluster.echo.take().is_empty());
        let smuggled = raw_status(
            port,
            ask(
                "http://restaurant.example.com/marketing",
                "acme.apps.example.com",
            ),
        )
        .await;
        let seen = cluster.echo.take();
        if snippets {
            assert_eq!(smuggled, 400, "refused before any decision");
            assert!(seen.is_empty());
        } else {
            // The weakness, as ingress-nginx ships: decided on acme.apps.example.com (a
            // tenant route this user may use), served restaurant.example.com/marketing.
            assert_eq!(smuggled, 200);
            assert_eq!(seen[0]["path"], "/marketing");
        }
        nginx.assert_running();
    }
}
