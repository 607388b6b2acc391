//! An independent, OpenID-Certified OpenID Provider (node `oidc-provider`, run from
//! `tests/oidc-provider/provider.mjs`) for end-to-end login tests, and a small cookie-jar
//! "browser" that drives its login, consent and logout pages over plain HTTP.
//!
//! Include with `#[path = "../common/oidc_provider.rs"] mod oidc_provider;`. Needs `node`
//! and `npm ci --prefix tests/oidc-provider`; a missing one fails the test, it never skips.
//! docs/testing.md describes the config, the interaction sequence and where claims land.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use serde_json::Value;
use url::Url;

/// The folder with `provider.mjs`, `package.json` and (after `npm ci`) `node_modules`.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc-provider")
}

/// A running provider; killed when dropped.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, exactly as the provider puts it in `iss`.
    pub issuer: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    tempdir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts `node provider.mjs` with `config` (see docs/testing.md; `"port": 0` is added
    /// unless given) and waits up to 20 s for its `READY <issuer>` line.
    pub fn start(mut config: Value) -> OidcProvider {
        let dir = provider_dir();
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            panic!(
                "the test OpenID Provider's packages are not installed: run \
                 `npm ci --prefix tests/oidc-provider` (needs Node.js and npm: \
                 `apt-get install nodejs npm`)"
            );
        }
        let obj = config
            .as_object_mut()
            .expect("the provider config must be a JSON object");
        obj.entry("port").or_insert(Value::from(0));
        obj.entry("host").or_insert(Value::from("127.0.0.1"));

        let tempdir = tempfile::tempdir().expect("temp dir for the provider config");
        let config_path = tempdir.path().join("provider.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .expect("write the provider config");

        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `node` for the test OpenID Provider ({e}): install Node.js \
                     (`apt-get install nodejs npm`), then `npm ci --prefix tests/oidc-provider`"
                )
            });

        // stderr: kept for panic messages and echoed through eprintln!, which the test
        // harness captures (shown only for failing tests).
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut kept = keep.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });

        let (tx, rx) = mpsc::channel();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(pipe).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    let _ = tx.send(issuer.trim().to_string());
                    break;
                }
                eprintln!("[oidc-provider stdout] {line}");
            }
            lines.for_each(drop); // keep draining
        });

        let issuer = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(issuer) => issuer,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the test OpenID Provider did not print READY within 20 s (exit: {status:?}); \
                     its stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        OidcProvider {
            issuer,
            child,
            stderr,
            tempdir,
        }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// What the provider printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Merges `claims` into the account `login` (creating it if needed): top-level keys
    /// replace, a `null` value removes the claim. Later userinfo calls, code exchanges and
    /// refreshes see the new claims.
    pub async fn set_claims(&self, login: &str, claims: Value) {
        let response = control_client()
            .post(format!("{}/__test/accounts/{login}", self.issuer))
            .json(&claims)
            .send()
            .await
            .expect("provider control endpoint");
        assert_eq!(response.status(), 204, "set_claims({login})");
    }

    /// Deletes the account: later refreshes fail with `invalid_grant`, and the login form
    /// comes back when someone signs in as it.
    pub async fn remove_account(&self, login: &str) {
        let response = control_client()
            .delete(format!("{}/__test/accounts/{login}", self.issuer))
            .send()
            .await
            .expect("provider control endpoint");
        assert_eq!(response.status(), 204, "remove_account({login})");
    }

    /// Back-channel logout deliveries so far:
    /// `[{"client_id", "sub", "sid", "ok": bool, "error"?}]`.
    pub async fn backchannel_deliveries(&self) -> Value {
        control_client()
            .get(format!("{}/__test/backchannel", self.issuer))
            .send()
            .await
            .expect("provider control endpoint")
            .json()
            .await
            .expect("backchannel JSON")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn control_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// One HTTP answer as the browser saw it.
#[derive(Debug, Clone)]
pub struct Page {
    /// 0 when `follow_until` stopped before requesting `url`.
    pub status: u16,
    pub url: String,
    pub headers: HeaderMap,
    pub body: String,
    /// Every URL requested (and, last, the one stopped at), in order.
    pub chain: Vec<String>,
}

impl Page {
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status) && self.headers.contains_key(LOCATION)
    }

    /// The `Location` header resolved against `url`.
    pub fn location(&self) -> Option<String> {
        let raw = self.headers.get(LOCATION)?.to_str().ok()?;
        Some(
            Url::parse(&self.url)
                .and_then(|base| base.join(raw))
                .map(String::from)
                .unwrap_or_else(|_| raw.to_string()),
        )
    }

    /// A query parameter of `url` (e.g. `code` and `state` of a captured callback).
    pub fn query(&self, name: &str) -> Option<String> {
        Url::parse(&self.url)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The HTML forms on the page.
    pub fn forms(&self) -> Vec<Form> {
        parse_forms(&self.body)
    }
}

/// An HTML form: its attributes and the named `<input>`s (with their `value`, possibly
/// empty), entities decoded.
#[derive(Debug, Clone, Default)]
pub struct Form {
    pub id: Option<String>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub inputs: Vec<(String, String)>,
}

impl Form {
    pub fn input(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.inputs.iter_mut().find(|(n, _)| n == name) {
            Some(input) => input.1 = value.to_string(),
            None => self.inputs.push((name.to_string(), value.to_string())),
        }
    }
}

/// A cookie-keeping HTTP client that never follows redirects by itself.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("browser client");
        Browser { client, jar }
    }

    /// One GET, no following.
    pub async fn get(&self, url: &str) -> Page {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        page_of(url, response).await
    }

    /// One form POST (`application/x-www-form-urlencoded`), no following.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(url)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        page_of(url, response).await
    }

    /// GETs `url` and follows redirects (any host, at most 20) to the first non-redirect.
    pub async fn follow(&self, url: &str) -> Page {
        self.follow_until(url, |_| false).await
    }

    /// Like `follow`, but does not request a URL for which `stop` is true: returns
    /// `Page { status: 0, url: that URL, .. }` instead (`url` itself is checked too).
    pub async fn follow_until(&self, url: &str, stop: impl Fn(&Url) -> bool) -> Page {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
        if stop(&parsed) {
            return stopped(url.to_string(), Vec::new());
        }
        let page = self.get(url).await;
        self.continue_redirects(page, &stop).await
    }

    /// Given the login page that oidc-provider's devInteractions rendered, signs in (any
    /// password is accepted), confirms consent if asked, and follows redirects to the end.
    pub async fn sign_in_at_idp(&self, page: Page, login: &str, password: &str) -> Page {
        self.sign_in_at_idp_until(page, login, password, |_| false)
            .await
    }

    /// `sign_in_at_idp`, stopping (status 0) before requesting a URL for which `stop` is
    /// true, e.g. the relying party's callback.
    pub async fn sign_in_at_idp_until(
        &self,
        page: Page,
        login: &str,
        password: &str,
        stop: impl Fn(&Url) -> bool,
    ) -> Page {
        let mut form = find_form(&page, |f| f.input("prompt") == Some("login"))
            .unwrap_or_else(|| panic!("no oidc-provider login form on {}", describe(&page)));
        form.set("login", login);
        form.set("password", password);
        let mut chain = page.chain.clone();
        let mut page = self.submit(&page, &form, &stop).await;
        chain.append(&mut page.chain);

        if page.status != 0
            && let Some(consent) = find_form(&page, |f| f.input("prompt") == Some("consent"))
        {
            let mut next = self.submit(&page, &consent, &stop).await;
            chain.append(&mut next.chain);
            page = next;
        }
        page.chain = chain;
        page
    }

    /// Submits oidc-provider's RP-initiated logout confirmation ("Yes, sign me out":
    /// `op.logoutForm` with `xsrf` plus `logout=yes`) — or the auto-submitting form it
    /// shows when the OP has no session — and follows redirects.
    pub async fn confirm_idp_logout(&self, page: Page) -> Page {
        self.confirm_idp_logout_until(page, |_| false).await
    }

    /// `confirm_idp_logout`, stopping (status 0) before requesting a URL for which `stop`
    /// is true, e.g. the `post_logout_redirect_uri`.
    pub async fn confirm_idp_logout_until(&self, page: Page, stop: impl Fn(&Url) -> bool) -> Page {
        let mut form = find_form(&page, |f| f.id.as_deref() == Some("op.logoutForm"))
            .or_else(|| find_form(&page, |f| f.input("xsrf").is_some()))
            .unwrap_or_else(|| panic!("no oidc-provider logout form on {}", describe(&page)));
        form.set("logout", "yes");
        let mut chain = page.chain.clone();
        let mut end = self.submit(&page, &form, &stop).await;
        chain.append(&mut end.chain);
        end.chain = chain;
        end
    }

    /// The `Cookie` header the browser would send to `url`.
    pub fn cookie_header(&self, url: &str) -> Option<String> {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// Stores a cookie as if `url` had answered with `Set-Cookie: set_cookie_line`.
    pub fn set_cookie(&self, url: &str, set_cookie_line: &str) {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
        let value = HeaderValue::from_str(set_cookie_line).expect("cookie header value");
        self.jar.set_cookies(&mut std::iter::once(&value), &url);
    }

    /// POSTs `form` (action resolved against the page) and follows the redirects.
    async fn submit(&self, page: &Page, form: &Form, stop: &impl Fn(&Url) -> bool) -> Page {
        let action = resolve(&page.url, form.action.as_deref().unwrap_or(""));
        let fields: Vec<(&str, &str)> = form
            .inputs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let posted = if form
            .method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("get"))
        {
            let mut url = Url::parse(&action).expect("form action URL");
            url.query_pairs_mut().extend_pairs(fields.iter());
            self.get(url.as_str()).await
        } else {
            self.post_form(&action, &fields).await
        };
        self.continue_redirects(posted, stop).await
    }

    async fn continue_redirects(&self, mut page: Page, stop: &impl Fn(&Url) -> bool) -> Page {
        let mut chain = page.chain.clone();
        for _ in 0..20 {
            if !page.is_redirect() {
                page.chain = chain;
                return page;
            }
            let next = page.location().unwrap();
            let parsed = Url::parse(&next).unwrap_or_else(|e| panic!("bad Location {next:?}: {e}"));
            if stop(&parsed) {
                return stopped(next, chain);
            }
            page = self.get(&next).await;
            chain.push(next);
        }
        panic!("more than 20 redirects: {chain:#?}");
    }
}

fn stopped(url: String, mut chain: Vec<String>) -> Page {
    chain.push(url.clone());
    Page {
        status: 0,
        url,
        headers: HeaderMap::new(),
        body: String::new(),
        chain,
    }
}

async fn page_of(url: &str, response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Page {
        status,
        url: url.to_string(),
        headers,
        body,
        chain: vec![url.to_string()],
    }
}

fn resolve(base: &str, reference: &str) -> String {
    Url::parse(base)
        .and_then(|b| b.join(reference))
        .map(String::from)
        .unwrap_or_else(|e| panic!("cannot resolve {reference:?} against {base}: {e}"))
}

fn find_form(page: &Page, pick: impl Fn(&Form) -> bool) -> Option<Form> {
    page.forms().into_iter().find(|f| pick(f))
}

fn describe(page: &Page) -> String {
    let body: String = page.body.chars().take(2000).collect();
    format!(
        "{} (status {}, chain {:?}):\n{body}",
        page.url, page.status, page.chain
    )
}

/// Forms and their inputs, by plain string scanning (enough for oidc-provider's pages).
fn parse_forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut at = 0;
    while let Some(start) = find_tag(&lower, "form", at) {
        let (attrs, after) = tag_attributes(html, start);
        let end = lower[after..]
            .find("</form")
            .map_or(html.len(), |i| after + i);
        let mut form = Form {
            id: attr(&attrs, "id"),
            action: attr(&attrs, "action"),
            method: attr(&attrs, "method"),
            inputs: Vec::new(),
        };
        let mut i = after;
        while let Some(input) = find_tag(&lower[..end], "input", i) {
            let (attrs, next) = tag_attributes(html, input);
            if let Some(name) = attr(&attrs, "name") {
                form.inputs
                    .push((name, attr(&attrs, "value").unwrap_or_default()));
            }
            i = next;
        }
        forms.push(form);
        at = end.max(after);
    }
    forms
}

/// The byte index of the next `<name` tag (followed by whitespace, `>` or `/`) from `from`.
fn find_tag(lower: &str, name: &str, from: usize) -> Option<usize> {
    let needle = format!("<{name}");
    let mut at = from;
    while let Some(i) = lower.get(at..)?.find(&needle) {
        let start = at + i;
        let next = lower[start + needle.len()..].chars().next();
        if matches!(next, Some(c) if c.is_ascii_whitespace() || c == '>' || c == '/') {
            return Some(start);
        }
        at = start + needle.len();
    }
    None
}

/// Attributes (lower-cased names, decoded values) of the tag at `start`, and the index
/// just after its `>`.
fn tag_attributes(html: &str, start: usize) -> (Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
        i += 1; // the tag name
    }
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (attrs, i);
        }
        if bytes[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let value_start = i + 1;
                i = value_start;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                value = decode_entities(&html[value_start..i.min(html.len())]);
                i += 1;
            } else {
                let value_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&html[value_start..i]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        }
    }
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
