//! `gatehouse demo`, as a person would use it: open an app behind the built-in proxy, get
//! sent to the dev IdP, sign in, land on the app with identity headers (and without the
//! Gatehouse cookies or forged identity headers); a user without the group is refused.

use std::process::{Command, Stdio};

use crate::dev_idp::submit_dev_idp_login;
use crate::harness::spawn_reading_banner;
use crate::oidc_provider::Browser;

struct Demo {
    child: std::process::Child,
    proxy: String,
    gatehouse: String,
    /// The admin console's URL.
    admin: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let (child, banner) = spawn_reading_banner(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["demo", "--ephemeral-ports"])
            .env("GATEHOUSE_LOG", "warn")
            .stderr(Stdio::inherit()), // its errors show in the test output
        &["proxy: ", "gatehouse: ", "admin: "],
    );
    let [proxy, gatehouse, admin]: [String; 3] = banner.try_into().expect("three addresses");
    Demo {
        child,
        proxy,
        gatehouse,
        admin: admin
            .split_whitespace()
            .next()
            .expect("the admin URL")
            .to_string(),
    }
}

/// Opens `url` as a browser does (`Accept: text/html`): the proxy redirects to the login,
/// which goes on to the IdP's form.
async fn open_as_browser(browser: &Browser, url: &str, demo: &Demo) -> crate::oidc_provider::Page {
    let first = browser
        .client
        .get(url)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let login = first.headers()["location"].to_str().unwrap().to_string();
    assert!(
        login.starts_with(&format!("{}/auth/login?rd=", demo.gatehouse)),
        "{login}"
    );
    browser.follow(&login).await
}

#[tokio::test]
async fn demo_signs_in_through_the_built_in_proxy() {
    let demo = start_demo();
    let browser = Browser::new();
    let app = format!("{}/restaurant/menu?day=mon", demo.proxy);

    // A browser (Accept: text/html) is sent to the login; a script gets 401.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = anonymous.get(&app).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let form_page = open_as_browser(&browser, &app, &demo).await;
    let posted = submit_dev_idp_login(&browser, &form_page, "bob", "bob").await;
    assert_eq!(posted.status, 302, "{}", posted.body);
    let page = browser.follow(&posted.location().unwrap()).await;
    assert_eq!(page.url, app, "{:?}", page.chain);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Restaurant</h1>"), "{}", page.body);
    assert!(
        page.body
            .contains("<strong id=\"email\">bob@example.com</strong>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-groups=\"kitchen,marketing\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<code id=\"path\">/restaurant/menu?day=mon</code>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(
            "id=\"sign-out\" href=\"{}/auth/logout\"",
            demo.gatehouse
        )),
        "{}",
        page.body
    );
    // The app never sees Gatehouse's cookies.
    assert!(!page.body.contains("_gatehouse="), "{}", page.body);

    // A forged identity header is replaced, not passed on.
    let cookie = browser.cookie_header(&app).unwrap();
    let forged = anonymous
        .get(format!("{}/marketing", demo.proxy))
        .header("Cookie", &cookie)
        .header("X-Auth-Request-Email", "ceo@example.com")
        .header("X_Auth_Request_Groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let body = forged.text().await.unwrap();
    assert!(
        body.contains("<h1>Marketing</h1>") && body.contains("id=\"email\">bob@example.com<"),
        "{body}"
    );
    assert!(
        !body.contains("ceo@example.com") && !body.contains(">admins<"),
        "{body}"
    );

    // Alice is not in marketing: 403 from the proxy, the app is never asked.
    let other = Browser::new();
    let form_page = open_as_browser(&other, &format!("{}/marketing", demo.proxy), &demo).await;
    let posted = submit_dev_idp_login(&other, &form_page, "alice", "alice").await;
    let page = other.follow(&posted.location().unwrap()).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not_in_marketing"), "{}", page.body);
}

#[tokio::test]
async fn demo_prints_the_admin_console_and_its_administrator_signs_in() {
    let demo = start_demo();
    assert!(demo.admin.ends_with("/admin/"), "{}", demo.admin);
    let browser = Browser::new();
    let first = browser
        .client
        .get(&demo.admin)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let login = first.headers()["location"].to_str().unwrap().to_string();
    assert!(
        login.starts_with(&format!("{}/auth/login?rd=", demo.gatehouse)),
        "{login}"
    );
    let form_page = browser.follow(&login).await;
    let posted = submit_dev_idp_login(&browser, &form_page, "carol", "carol").await;
    let page = browser.follow(&posted.location().unwrap()).await;
    assert_eq!(page.url, demo.admin, "{:?}", page.chain);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("<script type=\"module\" src=\"/admin/app.js\"></script>"),
        "{}",
        page.body
    );
}
