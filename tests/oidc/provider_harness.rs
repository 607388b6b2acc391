//! The test OpenID Provider and the browser driver on their own, without Gatehouse: a
//! hand-made authorization code flow with PKCE, userinfo, a claim change seen through a
//! refresh, single sign-on, RP-initiated logout and back-channel logout delivery.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use crate::oidc_provider::{Browser, OidcProvider};

const CLIENT_ID: &str = "harness";
const CLIENT_SECRET: &str = "harness-secret-0123456789abcdef0123456789";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const POST_LOGOUT_URI: &str = "http://127.0.0.1:9/signed-out";

fn random_b64(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(data)
}

fn jwt_payload(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// Accepts one HTTP request on a loopback port, answers 200 and hands the request text over.
fn one_shot_http_server() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
    });
    (port, rx)
}

async fn token_request(http: &reqwest::Client, endpoint: &str, form: &[(&str, &str)]) -> Value {
    let response = http
        .post(endpoint)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .expect("token endpoint");
    let status = response.status();
    let body: Value = response.json().await.expect("token JSON");
    assert_eq!(status, 200, "token endpoint: {body}");
    body
}

async fn userinfo(http: &reqwest::Client, endpoint: &str, access_token: &str) -> Value {
    let response = http
        .get(endpoint)
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo endpoint");
    assert_eq!(response.status(), 200, "userinfo");
    response.json().await.expect("userinfo JSON")
}

#[tokio::test]
async fn provider_and_browser_drive_a_full_code_flow() {
    let (backchannel_port, backchannel_rx) = one_shot_http_server();
    let op = OidcProvider::start(json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [REDIRECT_URI],
            "post_logout_redirect_uris": [POST_LOGOUT_URI],
            "backchannel_logout_uri": format!("http://127.0.0.1:{backchannel_port}/backchannel"),
            "backchannel_logout_session_required": true,
        }],
        "accounts": {
            "ann": {
                "email": "ann@example.com",
                "email_verified": true,
                "name": "Ann Example",
                "preferred_username": "ann",
                "groups": ["staff", "kitchen"],
            }
        },
    }));
    assert!(op.issuer.starts_with("http://127.0.0.1:"), "{}", op.issuer);
    let http = reqwest::Client::new();

    // Discovery.
    let discovery: Value = http
        .get(op.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], op.issuer.as_str());
    let endpoint = |name: &str| {
        discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery lacks {name}: {discovery}"))
            .to_string()
    };
    let (authorization, token, userinfo_url, end_session) = (
        endpoint("authorization_endpoint"),
        endpoint("token_endpoint"),
        endpoint("userinfo_endpoint"),
        endpoint("end_session_endpoint"),
    );
    assert!(
        discovery["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("S256")),
        "{discovery}"
    );

    // Authorization request with PKCE S256.
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let (state, nonce) = (random_b64(16), random_b64(16));
    let mut auth_url = Url::parse(&authorization).unwrap();
    auth_url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid email profile groups"),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let at_callback = |u: &Url| u.as_str().starts_with(REDIRECT_URI);

    // PKCE is required: without a challenge the OP refuses (back to the RP with an error).
    let mut no_pkce = auth_url.clone();
    no_pkce.query_pairs_mut().clear().extend_pairs(
        auth_url
            .query_pairs()
            .filter(|(k, _)| !k.starts_with("code_challenge")),
    );
    let refused = Browser::new()
        .follow_until(no_pkce.as_str(), at_callback)
        .await;
    assert_eq!(refused.status, 0, "{refused:?}");
    assert_eq!(refused.query("error").as_deref(), Some("invalid_request"));

    let browser = Browser::new();
    let login_page = browser.follow(auth_url.as_str()).await;
    assert_eq!(login_page.status, 200, "{login_page:?}");
    assert!(login_page.url.contains("/interaction/"), "{login_page:?}");
    let callback = browser
        .sign_in_at_idp_until(login_page, "ann", "any password", at_callback)
        .await;
    assert_eq!(callback.status, 0, "stopped at the callback: {callback:?}");
    assert_eq!(callback.query("state").as_deref(), Some(state.as_str()));
    assert_eq!(callback.query("iss").as_deref(), Some(op.issuer.as_str()));
    let code = callback.query("code").expect("code");
    assert!(
        browser.cookie_header(&op.issuer).is_some(),
        "the OP session cookie is kept"
    );

    // Code exchange (client_secret_basic + code_verifier).
    let tokens = token_request(
        &http,
        &token,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    let access_token = tokens["access_token"].as_str().expect("access_token");
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("a refresh_token without offline_access");
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let claims = jwt_payload(id_token);
    assert_eq!(claims["iss"], op.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "ann");
    assert_eq!(claims["nonce"], nonce.as_str());
    assert!(claims["sid"].is_string(), "{claims}");
    // conformIdTokenClaims: scope-requested claims are in userinfo, not the ID token.
    assert!(claims.get("email").is_none(), "{claims}");
    assert!(claims.get("groups").is_none(), "{claims}");

    let info = userinfo(&http, &userinfo_url, access_token).await;
    assert_eq!(info["sub"], "ann");
    assert_eq!(info["email"], "ann@example.com");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["name"], "Ann Example");
    assert_eq!(info["preferred_username"], "ann");
    assert_eq!(info["groups"], json!(["staff", "kitchen"]));

    // Remove ann from "staff"; a refresh and a new userinfo see it.
    op.set_claims("ann", json!({ "groups": ["kitchen"] })).await;
    let refreshed = token_request(
        &http,
        &token,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await;
    let new_access = refreshed["access_token"].as_str().expect("access_token");
    assert_ne!(new_access, access_token);
    let info = userinfo(&http, &userinfo_url, new_access).await;
    assert_eq!(info["groups"], json!(["kitchen"]));
    let refresh_token = refreshed["refresh_token"]
        .as_str()
        .unwrap_or(refresh_token)
        .to_string();

    // Single sign-on: a second authorization goes straight back (no login, no consent).
    let again = browser.follow_until(auth_url.as_str(), at_callback).await;
    assert_eq!(again.status, 0, "{again:?}");
    assert!(again.query("code").is_some());

    // RP-initiated logout, with back-channel logout to the client.
    let mut logout_url = Url::parse(&end_session).unwrap();
    logout_url.query_pairs_mut().extend_pairs([
        ("id_token_hint", id_token),
        ("post_logout_redirect_uri", POST_LOGOUT_URI),
        ("state", "bye"),
    ]);
    let confirm = browser.follow(logout_url.as_str()).await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    let signed_out = browser
        .confirm_idp_logout_until(confirm, |u| u.as_str().starts_with(POST_LOGOUT_URI))
        .await;
    assert_eq!(signed_out.status, 0, "{signed_out:?}");
    assert_eq!(signed_out.query("state").as_deref(), Some("bye"));

    let request = backchannel_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a back-channel logout request");
    assert!(request.starts_with("POST /backchannel "), "{request}");
    let logout_token = request
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|body| {
            url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "logout_token")
                .map(|(_, v)| v.into_owned())
        })
        .expect("logout_token");
    let logout_claims = jwt_payload(&logout_token);
    assert_eq!(logout_claims["sub"], "ann");
    assert_eq!(logout_claims["sid"], claims["sid"]);
    let deliveries = op.backchannel_deliveries().await;
    assert_eq!(deliveries[0]["ok"], true, "{deliveries}");

    // The refresh token ended with the OP session.
    let response = http
        .post(&token)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant", "{error}");

    // After logout the OP asks for a login again.
    let login_again = browser.follow(auth_url.as_str()).await;
    assert_eq!(login_again.status, 200);
    assert!(
        login_again
            .forms()
            .iter()
            .any(|f| f.input("prompt") == Some("login")),
        "{login_again:?}"
    );
}

#[tokio::test]
async fn unknown_logins_and_wrong_passwords_get_the_login_form_again() {
    let op = OidcProvider::start(json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [REDIRECT_URI],
        }],
        "accounts": {
            "ann": { "groups": [] },
            "bob": { "password": "hunter2", "groups": ["ops"] },
        },
    }));
    let mut auth_url = Url::parse(&format!("{}/auth", op.issuer)).unwrap();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(random_b64(32).as_bytes()));
    auth_url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let at_callback = |u: &Url| u.as_str().starts_with(REDIRECT_URI);
    let is_login_form = |p: &crate::oidc_provider::Page| {
        p.status == 200 && p.forms().iter().any(|f| f.input("prompt") == Some("login"))
    };

    let browser = Browser::new();
    let page = browser.follow(auth_url.as_str()).await;
    let page = browser
        .sign_in_at_idp_until(page, "mallory", "x", at_callback)
        .await;
    assert!(is_login_form(&page), "unknown login: {page:?}");
    let page = browser
        .sign_in_at_idp_until(page, "bob", "wrong", at_callback)
        .await;
    assert!(is_login_form(&page), "wrong password: {page:?}");
    let page = browser
        .sign_in_at_idp_until(page, "bob", "hunter2", at_callback)
        .await;
    assert_eq!(page.status, 0, "{page:?}");
    assert!(page.query("code").is_some());

    // Accounts without a password take any password; the password is never a claim.
    let other = Browser::new();
    let page = other.follow(auth_url.as_str()).await;
    let page = other
        .sign_in_at_idp_until(page, "ann", "anything", at_callback)
        .await;
    assert_eq!(page.status, 0, "{page:?}");
}
