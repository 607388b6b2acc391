//! The browser login against an independent OpenID Provider (node `oidc-provider`), with
//! the real `gatehouse serve` on Postgres: login → IdP → callback → cookie → verify →
//! logout; back-channel logout; server-side refresh; devices; two replicas; and the hostile
//! cases (tampered state, replayed callback, injected code, wrong nonce, IdP errors,
//! open-redirect `rd`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use url::Url;

use crate::harness::{Gatehouse, GatehouseOptions, client, metric_value};
use crate::oidc_provider::{Browser, OidcProvider, Page};

const CLIENT_ID: &str = "gatehouse";
const CLIENT_SECRET: &str = "e2e-oidc-client-secret-0123456789";

/// An IdP and a Gatehouse that trust each other.
pub struct Stack {
    pub idp: OidcProvider,
    pub gh: Gatehouse,
    pub port: u16,
    /// Every registered Gatehouse port; `port` is the first.
    pub ports: Vec<u16>,
    /// Replicas on the same database, on `ports[1..]`.
    pub replicas: Vec<Gatehouse>,
    /// The port reserved for an ingress in front (see [`start_stack_with`]).
    pub ingress_port: Option<u16>,
    /// Held until the ingress listens; drop it then.
    pub starting: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops before the browser requests anything on Gatehouse but the callback: where the
    /// login ends (`rd`, or the root when `rd` was refused).
    pub fn after_callback(&self) -> impl Fn(&Url) -> bool + Copy + use<> {
        let port = self.port;
        move |u: &Url| {
            let passing = [
                "/auth/callback",
                "/oauth2/callback",
                "/auth/login",
                "/oauth2/start",
            ];
            (u.port() == Some(port) && !passing.contains(&u.path()))
                || u.host_str() == Some("localhost")
        }
    }

    /// Stops before the browser delivers the IdP's answer to the callback.
    pub fn at_callback(&self) -> impl Fn(&Url) -> bool + Copy + use<> {
        let port = self.port;
        move |u: &Url| u.port() == Some(port) && u.path() == "/auth/callback"
    }
}

pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
                  "preferred_username": "alice", "groups": ["finance", "staff"]},
        "bob": {"email": "bob@example.com", "email_verified": true, "name": "Bob",
                "preferred_username": "bob", "groups": ["marketing"]},
        "mallory": {"email": "mallory@example.com", "email_verified": false,
                    "groups": ["staff"]}
    })
}

/// Starts the IdP (registering the callbacks of `replicas` Gatehouse ports) and a
/// Gatehouse on the first port; the others are in `Stack::ports` for replicas.
pub async fn start_stack(refresh_interval: &str, replicas: usize) -> Stack {
    start_stack_with(refresh_interval, replicas, false, json!({})).await
}

/// Ports are picked, released and bound again; stacks start one at a time so another
/// test's provider (which binds port 0) cannot be handed a port in between.
pub static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// [`start_stack`] with `provider_extra` merged into the provider's config; with
/// `behind_ingress`, one more port is reserved for an ingress that
/// serves `/auth/*` (the public URL and the registered callback name it), and the start
/// lock is kept in `Stack::starting` until the test has bound that port.
pub async fn start_stack_with(
    refresh_interval: &str,
    replicas: usize,
    behind_ingress: bool,
    provider_extra: Value,
) -> Stack {
    let starting = STARTING.lock().await;
    // The ports stay bound until the provider has its own.
    let reserved: Vec<std::net::TcpListener> = (0..replicas + usize::from(behind_ingress))
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port"))
        .collect();
    let mut ports: Vec<u16> = reserved
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let ingress_port = behind_ingress.then(|| ports.pop().unwrap());
    let public_ports: Vec<u16> = match ingress_port {
        Some(p) => vec![p],
        None => ports.clone(),
    };
    let port = ports[0];
    let mut provider_config = json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": public_ports
                .iter()
                .flat_map(|p| [format!("http://127.0.0.1:{p}/auth/callback"), format!("http://127.0.0.1:{p}/oauth2/callback")])
                .collect::<Vec<_>>(),
            "post_logout_redirect_uris": public_ports.iter().map(|p| format!("http://127.0.0.1:{p}/")).collect::<Vec<_>>(),
            "backchannel_logout_uri": format!("http://127.0.0.1:{port}/auth/backchannel-logout"),
            "backchannel_logout_session_required": true
        }],
        "accounts": accounts()
    });
    for (k, v) in provider_extra.as_object().into_iter().flatten() {
        provider_config[k] = v.clone();
    }
    let idp = OidcProvider::start(provider_config);
    drop(reserved);
    let public_port = ingress_port.unwrap_or(port);
    let gh = Gatehouse::start_with(options(&idp, port, public_port, refresh_interval)).await;
    let mut others = Vec::new();
    for p in &ports[1..] {
        others.push(Gatehouse::replica_with(&gh, options(&idp, *p, *p, refresh_interval)).await);
    }
    Stack {
        idp,
        gh,
        port,
        ports,
        replicas: others,
        ingress_port,
        starting: ingress_port.map(|_| starting),
    }
}

pub fn options(
    idp: &OidcProvider,
    port: u16,
    public_port: u16,
    refresh_interval: &str,
) -> GatehouseOptions {
    GatehouseOptions {
        port: Some(port),
        public_url: format!("http://127.0.0.1:{public_port}"),
        extra_yaml: format!(
            "oidc:\n  issuer: {}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
             scopes: [openid, email, profile, groups]\n\
             session:\n  refresh_interval: {refresh_interval}\n  cache_ttl: 1s\n",
            idp.issuer
        ),
    }
}

/// Starts a login at `start` and signs in at the IdP as `user` if it asks; stops at `stop`.
pub async fn sign_in(
    browser: &Browser,
    start: &str,
    user: &str,
    stop: impl Fn(&Url) -> bool + Copy,
) -> Page {
    let page = browser.follow_until(start, stop).await;
    // Already signed in at the IdP: no form, the login went straight through.
    let asks_login = page
        .forms()
        .iter()
        .any(|f| f.input("prompt") == Some("login"));
    if page.status == 0 || !asks_login {
        return page;
    }
    browser
        .sign_in_at_idp_until(page, user, "any-password", stop)
        .await
}

/// Asks `port`'s verify about `path` on `host`, as an ingress would, with `cookie`.
pub async fn verify(port: u16, host: &str, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .get(format!("http://127.0.0.1:{port}/auth/verify"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Uri", path);
    if let Some(c) = cookie {
        request = request.header("Cookie", c);
    }
    request.send().await.expect("verify")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The counter `name{label="value"}` on the admin `/metrics`.
pub async fn metric(admin_port: u16, series: &str) -> f64 {
    let text = client()
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metric_value(&text, series).unwrap_or(0.0)
}

fn session_cookie(browser: &Browser, stack: &Stack) -> String {
    browser
        .cookie_header(&stack.url("/"))
        .filter(|c| c.contains("_gatehouse="))
        .unwrap_or_else(|| {
            panic!(
                "no session cookie after login; gatehouse log:\n{}",
                stack.gh.proc.logs()
            )
        })
}

/// Polls `check` for up to `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn browser_login_verify_logout_against_oidc_provider() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    let rd = "http://localhost:8000/restaurant?table=4";
    let start = stack.url(&format!("/auth/login?rd={}", urlencode(rd)));
    let end = sign_in(&browser, &start, "alice", stack.after_callback()).await;
    assert_eq!(end.status, 0, "login did not come back: {end:?}");
    assert_eq!(end.url, rd, "the login must end at the validated rd");
    // The callback set a session cookie: HttpOnly, SameSite=Lax, Path=/ (checked on the
    // raw Set-Cookie in the hostile test); the jar now has it.
    let cookie = session_cookie(&browser, &stack);
    assert!(
        cookie.contains("_gatehouse_device="),
        "device cookie: {cookie}"
    );

    let r = verify(stack.port, "app.example.com", "/restaurant", Some(&cookie)).await;
    assert_eq!(r.status(), 200, "{}", stack.gh.proc.logs());
    assert_eq!(
        header(&r, "X-Auth-Request-Email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        header(&r, "X-Auth-Request-User").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        header(&r, "X-Auth-Request-Groups").as_deref(),
        Some("finance,staff")
    );
    assert_eq!(
        header(&r, "X-Auth-Request-Preferred-Username").as_deref(),
        Some("alice")
    );
    // Marketing is not alice's group.
    let r = verify(stack.port, "app.example.com", "/marketing", Some(&cookie)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        metric(
            stack.gh.admin_port,
            "gatehouse_logins_total{result=\"success\"}"
        )
        .await,
        1.0
    );

    // The device cookie's device: unmanaged, so /reports (finance + managed) is denied,
    // until an admin marks it managed.
    let r = verify(stack.port, "app.example.com", "/reports", Some(&cookie)).await;
    assert_eq!(r.status(), 403);
    let devices = stack.gh.cli(&[
        "device",
        "list",
        "--email",
        "alice@example.com",
        "--format",
        "json",
    ]);
    let device: Value = serde_json::from_str(devices.lines().next().expect("one device")).unwrap();
    assert_eq!(device["browser"], true);
    assert_eq!(device["managed"], false);
    let id = device["id"].as_str().unwrap();
    stack
        .gh
        .cli(&["device", "set", id, "--managed", "true", "--trust", "high"]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            verify(stack.port, "app.example.com", "/reports", Some(&cookie))
                .await
                .status()
                == 200
        })
        .await,
        "a managed device must reach /reports"
    );

    // A second login from the same browser: a new session token (no fixation), same device.
    let again = sign_in(&browser, &start, "alice", stack.after_callback()).await;
    assert_eq!(again.url, rd);
    let cookie2 = session_cookie(&browser, &stack);
    assert_ne!(cookie, cookie2, "every login mints a new session token");
    let devices = stack.gh.cli(&[
        "device",
        "list",
        "--email",
        "alice@example.com",
        "--format",
        "json",
    ]);
    assert_eq!(
        devices.lines().count(),
        1,
        "the device cookie names the same device: {devices}"
    );

    // Logout: the session ends, the cookie is cleared, the IdP's end_session is next.
    let out = browser
        .get(&stack.url(&format!("/auth/logout?rd={}", urlencode(&stack.url("/")))))
        .await;
    assert_eq!(out.status, 302);
    let location = out.location().unwrap();
    assert!(
        location.starts_with(&stack.idp.issuer),
        "RP-initiated logout goes to the IdP: {location}"
    );
    assert!(location.contains("id_token_hint="), "{location}");
    assert!(location.contains("post_logout_redirect_uri="), "{location}");
    let set_cookie = out
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("_gatehouse=;") && c.contains("Max-Age=0")),
        "{set_cookie:?}"
    );
    let r = verify(stack.port, "app.example.com", "/restaurant", Some(&cookie2)).await;
    assert_eq!(r.status(), 401, "a logged-out session is refused at once");
    // The IdP's logout confirmation ends at our root.
    let idp_page = browser.follow(&location).await;
    let done = browser.confirm_idp_logout(idp_page).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.url.starts_with(&stack.url("/")), "{}", done.url);
    assert!(done.body.contains("Not signed in"), "{}", done.body);

    // Audit: one login and one logout row for alice.
    let audit = stack.gh.cli(&[
        "audit",
        "query",
        "--user",
        "alice@example.com",
        "--format",
        "json",
    ]);
    let kinds: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(3), || async {
            let a = stack.gh.cli(&[
                "audit",
                "query",
                "--user",
                "alice@example.com",
                "--format",
                "json",
            ]);
            a.contains("\"kind\":\"login\"") && a.contains("\"kind\":\"logout\"")
        })
        .await,
        "login and logout are audited: {kinds:?}"
    );
}

#[tokio::test]
async fn backchannel_logout_from_the_idp_revokes_the_session() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    let end = sign_in(
        &browser,
        &stack.url("/auth/login"),
        "bob",
        stack.after_callback(),
    )
    .await;
    assert_eq!(end.url, stack.url("/"), "no rd: the login ends at the root");
    let cookie = session_cookie(&browser, &stack);
    assert_eq!(
        verify(stack.port, "a.example.com", "/marketing", Some(&cookie))
            .await
            .status(),
        200
    );

    // The user signs out at the IdP directly (not through Gatehouse): the IdP calls our
    // back-channel endpoint with a signed logout token naming the session's `sid`.
    let page = browser
        .follow(&format!("{}/session/end", stack.idp.issuer))
        .await;
    browser.confirm_idp_logout(page).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            verify(stack.port, "a.example.com", "/marketing", Some(&cookie))
                .await
                .status()
                == 401
        })
        .await,
        "the back-channel logout must end the session; deliveries: {}; log:\n{}",
        stack.idp.backchannel_deliveries().await,
        stack.gh.proc.logs()
    );
    let deliveries = stack.idp.backchannel_deliveries().await;
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["ok"] == true),
        "the IdP saw our endpoint accept the token: {deliveries}"
    );

    // Forged and malformed logout tokens are refused with 400 and revoke nothing.
    let forged = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"nope"}"#),
        b64(r#"{"iss":"x","sub":"bob"}"#),
        b64("sig")
    );
    for token in [forged.as_str(), "not-a-jwt", ""] {
        let r = client()
            .post(stack.url("/auth/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{token}");
    }
    let r = client()
        .post(stack.url("/auth/backchannel-logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn server_side_refresh_picks_up_group_changes_and_removals() {
    let stack = start_stack("2s", 1).await;
    let browser = Browser::new();
    sign_in(
        &browser,
        &stack.url("/auth/login"),
        "alice",
        stack.after_callback(),
    )
    .await;
    let cookie = session_cookie(&browser, &stack);
    let groups = |r: &reqwest::Response| header(r, "X-Auth-Request-Groups");
    let r = verify(stack.port, "a.example.com", "/restaurant", Some(&cookie)).await;
    assert_eq!(groups(&r).as_deref(), Some("finance,staff"));

    // Removed from `staff` at the IdP: within the refresh interval (+ a tick + cache_ttl)
    // /restaurant is denied — without any new cookie.
    stack
        .idp
        .set_claims("alice", json!({"groups": ["finance"]}))
        .await;
    let removed = eventually(Duration::from_secs(8), || async {
        verify(stack.port, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status()
            == 403
    })
    .await;
    assert!(
        removed,
        "stale claims after the refresh interval; log:\n{}",
        stack.gh.proc.logs()
    );
    let r = verify(stack.port, "a.example.com", "/reports", Some(&cookie)).await;
    assert_eq!(
        r.status(),
        403,
        "finance is kept, but the device is unmanaged"
    );

    // The account is deleted at the IdP: the refresh is refused and the session ends.
    stack.idp.remove_account("alice").await;
    let ended = eventually(Duration::from_secs(8), || async {
        verify(stack.port, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status()
            == 401
    })
    .await;
    assert!(
        ended,
        "a refused refresh must end the session; log:\n{}",
        stack.gh.proc.logs()
    );
}

#[tokio::test]
async fn a_login_on_one_replica_is_valid_on_the_other_and_logout_reaches_both() {
    let stack = start_stack("15m", 2).await;
    let port_b = stack.ports[1];
    let b = &stack.replicas[0];
    let browser = Browser::new();
    sign_in(
        &browser,
        &stack.url("/auth/login"),
        "alice",
        stack.after_callback(),
    )
    .await;
    let cookie = session_cookie(&browser, &stack);
    assert_eq!(
        verify(port_b, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status(),
        200
    );
    let started = Instant::now();
    let out = browser.get(&stack.url("/auth/logout")).await;
    assert_eq!(out.status, 302);
    let gone = eventually(Duration::from_secs(1), || async {
        verify(port_b, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status()
            == 401
    })
    .await;
    assert!(
        gone,
        "replica B still accepts the session {:?} after logout on A:\n{}",
        started.elapsed(),
        b.proc.logs()
    );
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// oauth2-proxy's paths: `/oauth2/start` uses `/oauth2/callback` as the redirect URI (an IdP
/// client registered for oauth2-proxy works unchanged), `/oauth2/auth` verifies and
/// `/oauth2/sign_out` logs out; `X-Auth-Request-Redirect` names the target when `rd` is
/// absent.
#[tokio::test]
async fn oauth2_proxy_paths_and_redirect_header_work() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    let first = browser
        .client
        .get(stack.url("/oauth2/start"))
        .header(
            "X-Auth-Request-Redirect",
            "http://localhost:7000/from-header",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let to_idp = first.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to_idp.contains(&urlencode(&stack.url("/oauth2/callback"))),
        "the oauth2 alias asks for /oauth2/callback: {to_idp}"
    );
    let end = sign_in(&browser, &to_idp, "alice", stack.after_callback()).await;
    assert_eq!(
        end.url, "http://localhost:7000/from-header",
        "{:?}",
        end.chain
    );
    assert!(
        end.chain.iter().any(|u| u.contains("/oauth2/callback?")),
        "{:?}",
        end.chain
    );
    let cookie = session_cookie(&browser, &stack);
    let r = client()
        .get(stack.url("/oauth2/auth"))
        .header("X-Original-URL", "http://a.example.com/restaurant")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = browser.get(&stack.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, 302);
    assert_eq!(
        verify(stack.port, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status(),
        401
    );
}
