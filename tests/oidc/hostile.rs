//! Hostile logins against the independent OpenID Provider: each must end on an error page
//! (never a session), be counted in `gatehouse_logins_total{result}`, and leave nothing
//! behind; hostile `rd` values must land on the fallback, never elsewhere.

use url::Url;

use crate::login::{Stack, metric, sign_in, start_stack, start_stack_with, urlencode, verify};
use crate::oidc_provider::{Browser, Page};

fn has_session_cookie(browser: &Browser, stack: &Stack) -> bool {
    browser
        .cookie_header(&stack.url("/"))
        .is_some_and(|c| c.contains("_gatehouse="))
}

/// Drives a login up to (not including) the callback: returns the callback URL the IdP
/// sent the browser to.
async fn callback_url(browser: &Browser, stack: &Stack, user: &str, rd: Option<&str>) -> Page {
    let start = match rd {
        Some(rd) => stack.url(&format!("/auth/login?rd={}", urlencode(rd))),
        None => stack.url("/auth/login"),
    };
    let page = sign_in(browser, &start, user, stack.at_callback()).await;
    assert_eq!(page.status, 0, "expected to stop at the callback: {page:?}");
    page
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// The first audit row for `email`, once the writer has flushed it (within 5 s).
async fn first_audit_row(stack: &Stack, email: &str) -> serde_json::Value {
    let query = ["audit", "query", "--user", email, "--format", "json"];
    for _ in 0..50 {
        let audited = stack.gh.cli(&query);
        if let Some(line) = audited.lines().next() {
            return serde_json::from_str(line).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no audit row for {email} within 5 s");
}

async fn logins(stack: &Stack, result: &str) -> f64 {
    metric(
        stack.gh.admin_port,
        &format!("gatehouse_logins_total{{result=\"{result}\"}}"),
    )
    .await
}

#[tokio::test]
async fn tampered_replayed_and_injected_callbacks_create_nothing() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();

    // Tampered state: refused, and the real state still works once.
    let cb = callback_url(&browser, &stack, "alice", None).await;
    let tampered = with_param(&cb.url, "state", "forged-state-value");
    let page = browser.get(&tampered).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("Sign-in failed") && page.body.contains("Try again"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("/auth/login"),
        "a retry link: {}",
        page.body
    );
    assert!(!has_session_cookie(&browser, &stack));
    assert_eq!(logins(&stack, "invalid_state").await, 1.0);

    let ok = browser.get(&cb.url).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let set_cookie: Vec<String> = ok
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("_gatehouse="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(
            session.contains(attribute),
            "{attribute} missing: {session}"
        );
    }
    let device = set_cookie
        .iter()
        .find(|c| c.starts_with("_gatehouse_device="))
        .expect("device cookie");
    assert!(device.contains("HttpOnly"), "{device}");

    // Replayed callback (same state and code): the state was used up.
    let fresh = Browser::new();
    let replay = fresh.get(&cb.url).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(!has_session_cookie(&fresh, &stack));
    assert_eq!(logins(&stack, "invalid_state").await, 2.0);

    // Code injection: a code issued for login B presented with login A's state. The PKCE
    // verifier (and nonce) of A do not fit B's code: the IdP refuses it.
    let attacker = Browser::new();
    let a = callback_url(&attacker, &stack, "bob", None).await;
    let b = callback_url(&attacker, &stack, "bob", None).await;
    let injected = with_param(&a.url, "code", &b.query("code").unwrap());
    let page = attacker.get(&injected).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(!has_session_cookie(&attacker, &stack));
    assert_eq!(logins(&stack, "token_error").await, 1.0);

    // An IdP error answer (the user pressed "deny"): a clear page naming the error.
    let c = callback_url(&attacker, &stack, "bob", None).await;
    let mut denied = Url::parse(&c.url).unwrap();
    let state = c.query("state").unwrap();
    denied
        .query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("error", "access_denied")
        .append_pair("error_description", "<script>alert(1)</script>");
    let page = attacker.get(denied.as_str()).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("access_denied"), "{}", page.body);
    assert!(
        !page.body.contains("<script>"),
        "the IdP's text is escaped: {}",
        page.body
    );
    assert_eq!(logins(&stack, "idp_error").await, 1.0);

    // No state, no code, garbage: all refused.
    for query in [
        "",
        "?code=abc",
        "?state=&code=",
        "?state=%00&code=x",
        "?state=x&state=y",
    ] {
        let page = attacker
            .get(&stack.url(&format!("/auth/callback{query}")))
            .await;
        assert_eq!(page.status, 400, "{query}: {}", page.body);
    }
    assert!(!has_session_cookie(&attacker, &stack));
}

#[tokio::test]
async fn a_wrong_nonce_or_unverified_email_is_refused() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    // Rewrite the nonce in the authorization request on its way to the IdP: the ID token
    // then carries a nonce this login did not make.
    let to_idp = browser.get(&stack.url("/auth/login")).await;
    assert_eq!(to_idp.status, 302);
    let authorize = to_idp.location().unwrap();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "PKCE S256: {authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let forged = with_param(&authorize, "nonce", "attacker-chosen-nonce");
    let page = browser.follow_until(&forged, stack.at_callback()).await;
    let cb = browser
        .sign_in_at_idp_until(page, "alice", "pw", stack.at_callback())
        .await;
    let page = browser.get(&cb.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.to_lowercase().contains("nonce"), "{}", page.body);
    assert!(!has_session_cookie(&browser, &stack));

    // An IdP that says the email is not verified: no session.
    let other = Browser::new();
    let cb = callback_url(&other, &stack, "mallory", None).await;
    let page = other.get(&cb.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("not verified"), "{}", page.body);
    assert!(!has_session_cookie(&other, &stack));
    assert_eq!(logins(&stack, "claims_error").await, 1.0);
    assert_eq!(logins(&stack, "success").await, 0.0);
    // The failed login is audited under the address the IdP named (the cookbook's
    // "failed logins per user per hour" finds it).
    let row = first_audit_row(&stack, "mallory@example.com").await;
    assert_eq!(row["kind"], "login");
    assert_eq!(row["decision"], "deny");
    assert!(
        row["reason"].as_str().unwrap().contains("claims_error"),
        "{row}"
    );
}

/// Open-redirect spellings (CVE-2021-21291's look-alike suffix, GHSA-j7px-6hwj-hpjg's
/// whitespace between slashes, and more) through the whole login: each must land on the
/// fallback (Gatehouse's root), never on another host.
#[tokio::test]
async fn hostile_rd_values_land_on_the_fallback() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    let hostile = [
        "//evil.com/",
        "///evil.com/",
        "/\\evil.com",
        "\\/evil.com",
        "/\t/evil.com",
        "/ /evil.com",
        "https://evil.com/",
        "http://localhost.evil.com/",
        "http://evillocalhost/",
        "http://127.0.0.1.evil.com/",
        "http://localhost@evil.com/",
        "http://user:pw@localhost/",
        "http://evil.com#@localhost/",
        "http://evil.com?@localhost/",
        "http:evil.com",
        "http:/\\evil.com",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "http://localhost\u{3002}evil.com/",
        // `.example.com` is allowed: look-alikes of it are not (CVE-2021-21291).
        "https://evilexample.com/",
        "https://example.com.evil.com/",
        "https://app.example.com@evil.com/",
        "https://evil.com/.example.com",
        "https://app.example.com./",
    ];
    let fallback = stack.url("/");
    for rd in hostile {
        let end = sign_in(
            &browser,
            &stack.url(&format!("/auth/login?rd={}", urlencode(rd))),
            "alice",
            |u| {
                u.path() != "/auth/callback"
                    && u.path() != "/auth/login"
                    && !u.as_str().starts_with("http://127.0.0.1")
            },
        )
        .await;
        // The last hop before leaving the IdP and Gatehouse must be our root, fetched fine.
        let last = end.chain.last().cloned().unwrap_or_default();
        assert!(
            end.status != 0,
            "rd {rd:?} sent the browser off-site to {} (chain {:?})",
            end.url,
            end.chain
        );
        assert_eq!(
            end.url, fallback,
            "rd {rd:?} must fall back (last {last}, status {}: {})",
            end.status, end.body
        );
    }
    // Allowed targets still work (the same browser, now signed in at the IdP): a subdomain
    // of `.example.com` and a loopback app.
    let ok = sign_in(
        &browser,
        &stack.url(&format!(
            "/auth/login?rd={}",
            urlencode("https://app.example.com/x")
        )),
        "alice",
        |u| u.host_str() == Some("app.example.com"),
    )
    .await;
    assert_eq!(ok.url, "https://app.example.com/x", "{:?}", ok.chain);
    let ok = sign_in(
        &browser,
        &stack.url(&format!(
            "/auth/login?rd={}",
            urlencode("http://localhost:3000/x")
        )),
        "alice",
        stack.after_callback(),
    )
    .await;
    assert_eq!(ok.url, "http://localhost:3000/x");
    let cookie = browser.cookie_header(&stack.url("/")).unwrap();
    assert_eq!(
        verify(stack.port, "a.example.com", "/restaurant", Some(&cookie))
            .await
            .status(),
        200
    );
}

/// An ID token that expired before it reached us (the IdP's clock runs 30 minutes behind
/// and its ID tokens live 10 minutes) is refused.
#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let stack = start_stack_with(
        "15m",
        1,
        false,
        serde_json::json!({"clockOffsetSeconds": -1800, "ttl": {"IdToken": 600}}),
    )
    .await;
    let browser = Browser::new();
    let cb = callback_url(&browser, &stack, "alice", None).await;
    let page = browser.get(&cb.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.to_lowercase().contains("expired"),
        "{}",
        page.body
    );
    assert!(!has_session_cookie(&browser, &stack));
    assert_eq!(logins(&stack, "token_error").await, 1.0);
}

/// Login CSRF (RFC 6749 §10.12): an attacker signs in with their own account, stops before
/// the callback and sends the victim's browser there. The callback must refuse a browser
/// other than the one that started the login, or the victim would be signed in as the
/// attacker on every app.
#[tokio::test]
async fn a_callback_in_another_browser_is_refused() {
    let stack = start_stack("15m", 1).await;
    let attacker = Browser::new();
    let cb = callback_url(&attacker, &stack, "bob", None).await;
    let victim = Browser::new();
    // The victim may even have started a login of their own (and so hold a binding cookie).
    let _ = victim.get(&stack.url("/auth/login")).await;
    let page = victim.get(&cb.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("another browser"), "{}", page.body);
    assert!(!has_session_cookie(&victim, &stack));
    assert_eq!(logins(&stack, "invalid_state").await, 1.0);
}

/// A browser's device cookie belongs to the user who first signed in with it: another
/// account signing in on that browser gets a device of its own, not the first one's
/// managed flag and trust.
#[tokio::test]
async fn another_users_device_is_not_inherited() {
    let stack = start_stack("15m", 1).await;
    let browser = Browser::new();
    sign_in(
        &browser,
        &stack.url("/auth/login"),
        "alice",
        stack.after_callback(),
    )
    .await;
    let alice = stack.gh.cli(&[
        "device",
        "list",
        "--email",
        "alice@example.com",
        "--format",
        "json",
    ]);
    let alice_device: serde_json::Value =
        serde_json::from_str(alice.lines().next().unwrap()).unwrap();
    stack.gh.cli(&[
        "device",
        "set",
        alice_device["id"].as_str().unwrap(),
        "--managed",
        "true",
    ]);
    // Bob signs in on the same browser (the IdP asks again after a logout there).
    let out = browser.follow(&stack.url("/auth/logout")).await;
    browser.confirm_idp_logout(out).await;
    let end = sign_in(
        &browser,
        &stack.url("/auth/login"),
        "bob",
        stack.after_callback(),
    )
    .await;
    assert_eq!(end.url, stack.url("/"), "{:?}", end.chain);
    let bob = stack.gh.cli(&[
        "device",
        "list",
        "--email",
        "bob@example.com",
        "--format",
        "json",
    ]);
    let bob_device: serde_json::Value =
        serde_json::from_str(bob.lines().next().expect("bob's device")).unwrap();
    assert_ne!(bob_device["id"], alice_device["id"]);
    assert_eq!(bob_device["managed"], false);
}

/// A group name with a comma would split in `X-Auth-Request-Groups` (joined with commas):
/// the login is refused with an error page, no session, and an audited failed login.
#[tokio::test]
async fn a_group_name_with_a_comma_refuses_the_login() {
    let stack = start_stack("15m", 1).await;
    stack
        .idp
        .set_claims("bob", serde_json::json!({"groups": ["marketing", "a,b"]}))
        .await;
    let browser = Browser::new();
    let cb = callback_url(&browser, &stack, "bob", None).await;
    let page = browser.get(&cb.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("comma"), "{}", page.body);
    assert!(!page.body.contains("a,b"), "{}", page.body);
    assert!(!has_session_cookie(&browser, &stack));
    assert_eq!(logins(&stack, "claims_error").await, 1.0);
    assert_eq!(logins(&stack, "success").await, 0.0);
    let row = first_audit_row(&stack, "bob@example.com").await;
    assert_eq!(row["kind"], "login");
    assert_eq!(row["decision"], "deny");
    assert!(row["reason"].as_str().unwrap().contains("comma"), "{row}");

    // Without the comma the same account signs in.
    stack
        .idp
        .set_claims(
            "bob",
            serde_json::json!({"groups": ["marketing", "a", "b"]}),
        )
        .await;
    let other = Browser::new();
    let cb = callback_url(&other, &stack, "bob", None).await;
    let page = other.get(&cb.url).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(has_session_cookie(&other, &stack));
}
