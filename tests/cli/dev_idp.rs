//! `gatehouse dev-idp`: the real binary on a free loopback port, driven by a cookie-keeping
//! HTTP client as the browser and by the openidconnect crate as the relying party.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IdToken, IssuerUrl,
    JsonWebKey, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "dev-idp-test-secret";
const CALLBACK: &str = "http://127.0.0.1:4180/auth/callback";
const AFTER_LOGOUT: &str = "http://127.0.0.1:4180/";

fn idp_yaml(backchannel: Option<&str>, alice_groups: &str) -> String {
    let backchannel = backchannel
        .map(|u| format!("    backchannel_logout_uri: {u}\n"))
        .unwrap_or_default();
    format!(
        "clients:
  - client_id: gatehouse
    client_secret: {SECRET}
    redirect_uris: [{CALLBACK}]
    post_logout_redirect_uris: [{AFTER_LOGOUT}]
{backchannel}users:
  - username: alice
    password: alice-pw
    email: alice@example.com
    name: Alice Example
    groups: {alice_groups}
  - username: bob
    password: bob-pw
    email: bob@example.com
"
    )
}

/// A running `gatehouse dev-idp`, killed on drop.
struct DevIdp {
    child: Child,
    issuer: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevIdp {
    fn start(yaml: &str) -> DevIdp {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("idp.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["dev-idp", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run gatehouse dev-idp");
        // The banner, printed once the socket is bound, names the issuer (port 0 → a free port).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("issuer: ") {
                    let _ = tx.send(issuer.to_string());
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("dev-idp printed its issuer");
        DevIdp {
            child,
            issuer,
            config,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

fn http_client() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser: keeps cookies, does not follow redirects (the test reads each Location).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
}

/// The `groups` and `sid` claims, for reading them from a verified ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraClaims {
    sid: String,
    #[serde(default)]
    groups: Vec<String>,
}
impl AdditionalClaims for ExtraClaims {}
type GroupsIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Gatehouse's side of the flow, done with the openidconnect crate.
struct RelyingParty {
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    http: openidconnect::reqwest::Client,
}

struct Login {
    auth_url: String,
    csrf: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

struct Tokens {
    id_token: String,
    access_token: String,
    refresh_token: String,
    sid: String,
    groups: Vec<String>,
    email: String,
}

impl RelyingParty {
    async fn discover(idp: &DevIdp) -> RelyingParty {
        let http = http_client();
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(idp.issuer.clone()).unwrap(),
            &http,
        )
        .await
        .expect("discovery");
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new("gatehouse".into()),
            Some(ClientSecret::new(SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
        RelyingParty { client, http }
    }

    fn start_login(&self) -> Login {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("groups".into()))
            .set_pkce_challenge(challenge)
            .url();
        Login {
            auth_url: url.to_string(),
            csrf,
            nonce,
            verifier,
        }
    }

    async fn exchange(&self, code: &str, login: Login) -> Tokens {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.into()))
            .unwrap()
            .set_pkce_verifier(login.verifier)
            .request_async(&self.http)
            .await
            .expect("code exchange");
        let id_token = response.id_token().expect("an ID token");
        let claims = id_token
            .claims(&self.client.id_token_verifier(), &login.nonce)
            .expect("a valid ID token");
        let email = claims.email().unwrap().to_string();
        let raw = id_token.to_string();
        let (sid, groups) = self.extra_claims(&raw, Some(&login.nonce));
        Tokens {
            id_token: raw,
            access_token: response.access_token().secret().clone(),
            refresh_token: response
                .refresh_token()
                .expect("a refresh token")
                .secret()
                .clone(),
            sid,
            groups,
            email,
        }
    }

    fn extra_claims(&self, id_token: &str, nonce: Option<&Nonce>) -> (String, Vec<String>) {
        let token: GroupsIdToken = id_token.parse().unwrap();
        let verifier = self.client.id_token_verifier();
        let claims = match nonce {
            Some(n) => token.claims(&verifier, n),
            None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .expect("a valid ID token");
        let extra = claims.additional_claims();
        (extra.sid.clone(), extra.groups.clone())
    }
}

/// The browser goes to the authorization URL, gets the form, and signs in.
async fn sign_in(
    browser: &reqwest::Client,
    idp: &DevIdp,
    auth_url: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let form = browser.get(auth_url).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    let request = hidden_request(&html);
    browser
        .post(idp.url("/login"))
        .form(&[
            ("request", request.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

fn hidden_request(html: &str) -> String {
    let marker = r#"name="request" value=""#;
    let start = html.find(marker).expect("the login form") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_string()
}

/// Signs alice in and returns the callback's code.
async fn code_for_alice(browser: &reqwest::Client, idp: &DevIdp, login: &Login) -> String {
    let response = sign_in(browser, idp, &login.auth_url, "alice", "alice-pw").await;
    assert_eq!(response.status(), 302);
    let location = location(&response).unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    let params = query(&location);
    assert_eq!(params["state"], *login.csrf.secret());
    assert_eq!(params["iss"], idp.issuer);
    params["code"].clone()
}

async fn token_request(idp: &DevIdp, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(idp.url("/token"))
        .basic_auth("gatehouse", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[test]
fn dev_idp_refuses_a_non_loopback_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idp.yaml");
    std::fs::write(&config, idp_yaml(None, "[staff]")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["dev-idp", "--listen", "0.0.0.0:5556", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loopback") && err.contains("NOT for production"),
        "{err}"
    );
}

#[test]
fn dev_idp_refuses_an_unknown_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idp.yaml");
    let yaml = idp_yaml(None, "[staff]").replace("password: bob-pw", "passwd: bob-pw");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["dev-idp", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("users[1]") && err.contains("passwd"), "{err}");
}

#[tokio::test]
async fn dev_idp_serves_discovery_and_jwks() {
    let idp = DevIdp::start(&idp_yaml(None, "[staff]"));
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(idp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], idp.issuer);
    assert_eq!(doc["authorization_endpoint"], idp.url("/authorize"));
    assert_eq!(doc["end_session_endpoint"], idp.url("/end_session"));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    let jwks: serde_json::Value = http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(
        jwks["keys"][0]["kid"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
}

#[tokio::test]
async fn code_flow_with_pkce_gives_verified_claims_and_the_session_skips_the_form() {
    let idp = DevIdp::start(&idp_yaml(None, "[finance, staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let browser = browser();
    let login = rp.start_login();
    let code = code_for_alice(&browser, &idp, &login).await;
    let tokens = rp.exchange(&code, login).await;
    assert_eq!(tokens.email, "alice@example.com");
    assert_eq!(tokens.groups, ["finance", "staff"]);
    assert!(!tokens.sid.is_empty());

    let info: serde_json::Value = reqwest::Client::new()
        .get(idp.url("/userinfo"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["groups"], serde_json::json!(["finance", "staff"]));

    // The IdP session cookie: a second login is a redirect with a code, no form.
    let again = rp.start_login();
    let response = browser.get(&again.auth_url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let params = query(&location(&response).unwrap());
    assert_eq!(params["state"], *again.csrf.secret());
    let second = rp.exchange(&params["code"], again).await;
    assert_eq!(second.sid, tokens.sid, "same IdP session");
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_gives_no_code() {
    let idp = DevIdp::start(&idp_yaml(None, "[staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let browser = browser();
    let login = rp.start_login();
    let response = sign_in(&browser, &idp, &login.auth_url, "alice", "wrong").await;
    assert_eq!(response.status(), 401);
    assert!(location(&response).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("Wrong username or password"), "{html}");
    assert!(!hidden_request(&html).is_empty(), "the form again");
    let response = sign_in(&browser, &idp, &login.auth_url, "nobody", "alice-pw").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn unregistered_redirect_uris_get_an_error_page_never_a_redirect() {
    let idp = DevIdp::start(&idp_yaml(None, "[staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let login = rp.start_login();
    let evil = login
        .auth_url
        .replace(&*urlencode(CALLBACK), &urlencode("https://evil.example/cb"));
    assert_ne!(evil, login.auth_url);
    let response = browser().get(&evil).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(location(&response).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("not registered"), "{html}");
    assert!(!html.contains("<script"), "{html}");

    // A registered redirect URI without PKCE: the error goes back to the client.
    let no_pkce = login.auth_url.replace("code_challenge_method=S256", "");
    let response = browser().get(&no_pkce).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let params = query(&location(&response).unwrap());
    assert_eq!(params["error"], "invalid_request");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_replayed_code_or_a_wrong_verifier_is_invalid_grant() {
    let idp = DevIdp::start(&idp_yaml(None, "[staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let first_browser = browser();

    let login = rp.start_login();
    let verifier = login.verifier.secret().clone();
    let code = code_for_alice(&first_browser, &idp, &login).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, first) = token_request(&idp, &exchange).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    let (status, replay) = token_request(&idp, &exchange).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The replay revoked what the code gave.
    let (_, refresh) = token_request(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refresh["error"], "invalid_grant");

    let login = rp.start_login();
    let code = code_for_alice(&browser(), &idp, &login).await;
    let wrong = PkceCodeChallenge::new_random_sha256().1;
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", wrong.secret().as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (status, body) = token_request(&idp, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let response = reqwest::Client::new()
        .post(idp.url("/token"))
        .basic_auth("gatehouse", Some("wrong secret"))
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn refresh_reads_the_edited_file_and_rotates_the_refresh_token() {
    let idp = DevIdp::start(&idp_yaml(None, "[finance, staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let login = rp.start_login();
    let code = code_for_alice(&browser(), &idp, &login).await;
    let tokens = rp.exchange(&code, login).await;
    assert_eq!(tokens.groups, ["finance", "staff"]);

    // An operator removes alice from finance.
    std::fs::write(&idp.config, idp_yaml(None, "[staff]")).unwrap();
    let old = RefreshToken::new(tokens.refresh_token.clone());
    let response = rp
        .client
        .exchange_refresh_token(&old)
        .unwrap()
        .request_async(&rp.http)
        .await
        .expect("refresh");
    let id_token = response
        .id_token()
        .expect("an ID token on refresh")
        .to_string();
    let (sid, groups) = rp.extra_claims(&id_token, None);
    assert_eq!(groups, ["staff"]);
    assert_eq!(sid, tokens.sid);
    let new_refresh = response.refresh_token().unwrap().secret().clone();
    assert_ne!(new_refresh, tokens.refresh_token);

    let info: serde_json::Value = reqwest::Client::new()
        .get(idp.url("/userinfo"))
        .bearer_auth(response.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["groups"], serde_json::json!(["staff"]));

    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = token_request(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &new_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn end_session_redirects_only_to_registered_uris_and_ends_the_session() {
    let idp = DevIdp::start(&idp_yaml(None, "[staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let browser = browser();
    let login = rp.start_login();
    let code = code_for_alice(&browser, &idp, &login).await;
    let tokens = rp.exchange(&code, login).await;

    let unregistered = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", tokens.id_token.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unregistered.status(), 200);
    assert!(location(&unregistered).is_none());
    assert!(
        unregistered
            .text()
            .await
            .unwrap()
            .contains("not registered")
    );

    // Signed out: the next authorization shows the form again, and tokens are revoked.
    let next = rp.start_login();
    let response = browser.get(&next.auth_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, body) = token_request(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    let code = code_for_alice(&browser, &idp, &next).await;
    let tokens = rp.exchange(&code, next).await;
    let registered = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", tokens.id_token.as_str()),
            ("post_logout_redirect_uri", AFTER_LOGOUT),
            ("state", "s-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 302);
    assert_eq!(
        location(&registered).unwrap(),
        format!("{AFTER_LOGOUT}?state=s-1")
    );

    // A forged id_token_hint never earns a redirect.
    let forged = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", "e30.e30.c2ln"),
            ("post_logout_redirect_uri", AFTER_LOGOUT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
}

/// Accepts one HTTP request and returns its body.
async fn receive_one_post(listener: tokio::net::TcpListener) -> String {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                assert!(text.starts_with("POST /bc "), "{text}");
                assert!(
                    text.to_ascii_lowercase()
                        .contains("content-type: application/x-www-form-urlencoded"),
                    "{text}"
                );
                return text[end + 4..].to_string();
            }
        }
    }
}

#[tokio::test]
async fn end_session_posts_a_signed_backchannel_logout_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bc = format!("http://{}/bc", listener.local_addr().unwrap());
    let received = tokio::spawn(receive_one_post(listener));

    let idp = DevIdp::start(&idp_yaml(Some(&bc), "[staff]"));
    let rp = RelyingParty::discover(&idp).await;
    let browser = browser();
    let login = rp.start_login();
    let code = code_for_alice(&browser, &idp, &login).await;
    let tokens = rp.exchange(&code, login).await;

    let response = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("client_id", "gatehouse"),
            ("post_logout_redirect_uri", AFTER_LOGOUT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let body = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("a back-channel POST")
        .unwrap();
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let jwt = &form["logout_token"];

    // Signed by the key the JWKS publishes.
    let jwks: CoreJsonWebKeySet = reqwest::get(idp.url("/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (message, signature) = jwt.rsplit_once('.').unwrap();
    let (header, payload) = message.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|id| id.as_str()) == header["kid"].as_str())
        .expect("the token's kid is in the JWKS");
    key.verify_signature(
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        message.as_bytes(),
        &b64.decode(signature).unwrap(),
    )
    .expect("a valid signature");

    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["iss"], idp.issuer);
    assert_eq!(claims["aud"], "gatehouse");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], tokens.sid);
    assert_eq!(
        claims["events"],
        serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(claims.get("nonce").is_none());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
}
