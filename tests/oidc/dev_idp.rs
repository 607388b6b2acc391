//! The README's quick start, for real: `gatehouse dev-idp` with `examples/dev-idp.yaml` and
//! `gatehouse serve` with `gatehouse.example.yaml` (SQLite, the example policies), moved to
//! free ports by environment overrides. A browser signs in through the dev IdP's form,
//! verify answers with the user's identity, logout ends the session at both.

use std::process::{Command, Stdio};

use crate::harness::{Proc, free_port, repo_root, spawn_reading_banner, wait_http};
use crate::login::{STARTING, verify};
use crate::oidc_provider::{Browser, Page};

/// `gatehouse dev-idp` on a free port; returns the process and its issuer.
fn start_dev_idp(dir: &std::path::Path, gatehouse_port: u16) -> (std::process::Child, String) {
    let example = std::fs::read_to_string(repo_root().join("examples/dev-idp.yaml"))
        .expect("examples/dev-idp.yaml");
    assert!(example.contains("issuer: http://127.0.0.1:5556"));
    let yaml = example
        .replace("issuer: http://127.0.0.1:5556", "")
        .replace("127.0.0.1:4180", &format!("127.0.0.1:{gatehouse_port}"));
    let config = dir.join("dev-idp.yaml");
    std::fs::write(&config, yaml).unwrap();
    let (child, mut banner) = spawn_reading_banner(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["dev-idp", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .stderr(Stdio::null()),
        &["issuer: "],
    );
    (child, banner.remove(0))
}

#[tokio::test]
async fn quick_start_with_the_dev_idp_and_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let starting = STARTING.lock().await;
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    let (mut idp, issuer) = start_dev_idp(dir.path(), port);
    drop(reserved);
    let admin_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .arg("serve")
        .arg("--config")
        .arg(repo_root().join("gatehouse.example.yaml"))
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("GATEHOUSE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "GATEHOUSE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gatehouse.db").display()),
        )
        .env("GATEHOUSE_AUDIT__SPOOL_DIR", dir.path().join("spool"))
        .env("GATEHOUSE_OIDC__ISSUER", &issuer);
    let mut gh = Proc::spawn("gatehouse", command, dir.path().join("gatehouse.log"));
    wait_http(&format!("http://127.0.0.1:{admin_port}/healthz"), &mut gh).await;
    drop(starting);

    let browser = Browser::new();
    let start = format!("http://127.0.0.1:{port}/auth/login?rd=http%3A%2F%2Flocalhost%3A3000%2F");
    let form_page = browser.follow(&start).await;
    assert!(form_page.url.starts_with(&issuer), "{form_page:?}");
    let posted = submit_dev_idp_login(&browser, &form_page, "bob", "bob").await;
    assert_eq!(posted.status, 302, "{}", posted.body);
    let end = browser
        .follow_until(&posted.location().unwrap(), |u| {
            u.host_str() == Some("localhost")
        })
        .await;
    assert_eq!(
        end.url,
        "http://localhost:3000/",
        "chain {:?}\n{}",
        end.chain,
        gh.logs()
    );
    let cookie = browser
        .cookie_header(&format!("http://127.0.0.1:{port}/"))
        .expect("session cookie");
    let r = verify(port, "apps.example.com", "/marketing", Some(&cookie)).await;
    assert_eq!(r.status(), 200, "{}", gh.logs());
    assert_eq!(
        r.headers()["x-auth-request-email"].to_str().unwrap(),
        "bob@example.com"
    );
    assert_eq!(
        r.headers()["x-auth-request-groups"].to_str().unwrap(),
        "kitchen,marketing"
    );

    // Logout: RP-initiated at the dev IdP, which comes back to our root.
    let out = browser
        .follow(&format!("http://127.0.0.1:{port}/auth/logout"))
        .await;
    assert_eq!(
        out.url,
        format!("http://127.0.0.1:{port}/"),
        "{:?}",
        out.chain
    );
    assert!(
        out.chain.iter().any(|u| u.starts_with(&issuer)),
        "{:?}",
        out.chain
    );
    let r = verify(port, "apps.example.com", "/marketing", Some(&cookie)).await;
    assert_eq!(r.status(), 401);
    let _ = idp.kill();
    let _ = idp.wait();
}

/// Fills and posts the dev IdP's login form on `form_page` (no redirect followed).
pub async fn submit_dev_idp_login(
    browser: &Browser,
    form_page: &Page,
    user: &str,
    password: &str,
) -> Page {
    let form = form_page
        .forms()
        .into_iter()
        .find(|f| f.input("username").is_some())
        .unwrap_or_else(|| panic!("the dev IdP's login form: {}", form_page.body));
    let action = url::Url::parse(&form_page.url)
        .unwrap()
        .join(form.action.as_deref().unwrap_or(""))
        .unwrap();
    let mut fields: Vec<(&str, &str)> = form
        .inputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| *k != "username" && *k != "password")
        .collect();
    fields.push(("username", user));
    fields.push(("password", password));
    browser.post_form(action.as_str(), &fields).await
}
