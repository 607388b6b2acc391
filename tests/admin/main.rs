//! The admin console in a real browser (docs/admin.md): Debian's headless Chromium, driven
//! by node's `playwright-core` (`tests/admin/browser/console.mjs`), signs in as an
//! administrator through the real login (the `gatehouse dev-idp` form), uses every page,
//! revokes a session and sees `/auth/verify` refuse it, marks a device managed, previews
//! the impact of an uploaded bundle, replays an audit record, and checks that a
//! non-administrator gets 403 — with no console error and no CSP violation on any admin
//! page. Screenshots of each page (1280×800) are saved under `target/admin-screenshots/`.
//!
//! Gatehouse runs as the real binary on Postgres, the policies are a copy of `policies/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test reports failure by panicking"
)]

#[path = "../ingress/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../common/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::{
    PgDatabase, Proc, free_port, repo_root, require_binary, spawn_reading_banner, wait_http,
};

/// The browser driver's package (`npm ci --prefix tests/admin/browser`).
fn browser_dir() -> PathBuf {
    repo_root().join("tests/admin/browser")
}

/// Chromium and the driver, or a failure saying how to install them.
fn require_browser() -> PathBuf {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "Debian's Chromium is needed by this test: install it with `apt-get install -y chromium chromium-driver`"
    );
    require_binary("node", "nodejs");
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is needed by this test: run `npm ci --prefix tests/admin/browser`"
    );
    chromium.to_path_buf()
}

/// `gatehouse dev-idp` with the example users (carol is an administrator, bob is not).
fn start_dev_idp(dir: &Path, gatehouse_port: u16) -> (std::process::Child, String) {
    let example = std::fs::read_to_string(repo_root().join("examples/dev-idp.yaml")).unwrap();
    let yaml = example
        .replace("issuer: http://127.0.0.1:5556", "")
        .replace("127.0.0.1:4180", &format!("127.0.0.1:{gatehouse_port}"));
    assert!(
        yaml.contains("gatehouse-admins"),
        "carol is an admin in the example"
    );
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs a `gatehouse` CLI command against `config`; returns stdout.
fn cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gatehouse {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn verify(port: u16, url: &str, cookie: &str) -> u16 {
    harness::client()
        .get(format!("http://127.0.0.1:{port}/auth/verify"))
        .header("X-Original-URL", url)
        .header("Cookie", format!("_gatehouse={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_administrator_uses_every_page_of_the_console_in_chromium() {
    let chromium = require_browser();
    let dir = tempfile::tempdir().unwrap();
    let db = PgDatabase::create("gatehouse_admin_ui").await;
    let policies = dir.path().join("policies");
    copy_dir(&repo_root().join("policies"), &policies);

    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    let (mut idp, issuer) = start_dev_idp(dir.path(), port);
    drop(reserved);
    let admin_port = free_port();
    let config = dir.path().join("gatehouse.yaml");
    let example = std::fs::read_to_string(repo_root().join("gatehouse.example.yaml")).unwrap();
    std::fs::write(
        &config,
        example
            .replace(
                "listen: 127.0.0.1:4180",
                &format!("listen: 127.0.0.1:{port}"),
            )
            .replace(
                "admin_listen: 127.0.0.1:9090",
                &format!("admin_listen: 127.0.0.1:{admin_port}"),
            )
            .replace(
                "public_url: http://127.0.0.1:4180",
                &format!("public_url: http://127.0.0.1:{port}"),
            )
            .replace(
                "database_url: sqlite://gatehouse.db",
                &format!("database_url: {}", db.url),
            )
            .replace(
                "policies_dir: policies",
                &format!("policies_dir: {}", policies.display()),
            )
            .replace(
                "issuer: http://127.0.0.1:5556",
                &format!("issuer: {issuer}"),
            ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env("GATEHOUSE_AUDIT__SPOOL_DIR", dir.path().join("spool"))
        .env("GATEHOUSE_AUDIT__FLUSH_INTERVAL", "50ms")
        .env("GATEHOUSE_LOG", "info");
    let mut gatehouse = Proc::spawn("gatehouse", command, dir.path().join("gatehouse.log"));
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_http(&format!("{admin}/healthz"), &mut gatehouse).await;

    // Traffic for the overview, the audit search and the impact preview: dave (staff) is
    // let into the restaurant and refused marketing; his device has a client certificate.
    let dave = cli(
        &config,
        &[
            "session",
            "create",
            "--email",
            "dave@example.com",
            "--groups",
            "staff",
        ],
    );
    for _ in 0..3 {
        assert_eq!(
            verify(port, "http://apps.example.com/restaurant/menu", &dave).await,
            200
        );
        assert_eq!(
            verify(port, "http://apps.example.com/marketing/plan", &dave).await,
            403
        );
    }
    cli(
        &config,
        &[
            "device",
            "register",
            "--cert-fingerprint",
            &format!("sha256:{}", "ab".repeat(32)),
            "--trust",
            "low",
            "--email",
            "dave@example.com",
        ],
    );
    // A candidate bundle in which staff may read marketing: an uploaded .tar.gz.
    let candidate = dir.path().join("candidate");
    copy_dir(&policies, &candidate);
    let marketing = std::fs::read_to_string(candidate.join("marketing.rego")).unwrap();
    let (head, _) = marketing
        .split_once("allow if")
        .expect("marketing.rego has an allow rule");
    std::fs::write(
        candidate.join("marketing.rego"),
        format!("{head}allow if \"staff\" in input.user.groups\n"),
    )
    .unwrap();
    std::fs::remove_file(candidate.join("marketing_test.rego")).unwrap();
    let tarball = dir.path().join("candidate.tar.gz");
    let tar = Command::new(require_binary("tar", "tar"))
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&candidate)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());

    let screenshots = repo_root().join("target/admin-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = Command::new("node")
        .arg(browser_dir().join("console.mjs"))
        .env("CHROMIUM", &chromium)
        .env("ADMIN_URL", &admin)
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("SCREENSHOTS", &screenshots)
        .env("VICTIM_COOKIE", &dave)
        .env("CANDIDATE_TARBALL", &tarball)
        .env("POLICIES_DIR", &policies)
        .env("CANDIDATE_DIR", &candidate)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}\n--- gatehouse log ---\n{}",
        gatehouse.logs()
    );
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("the driver's JSON report"),
    )
    .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["console_errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["csp_violations"], serde_json::json!([]), "{report}");
    for page in [
        "overview",
        "routes",
        "playground",
        "impact",
        "audit",
        "sessions",
        "devices",
        "forbidden",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot)
            .unwrap_or_else(|e| panic!("{}: {e}", shot.display()))
            .len();
        assert!(size > 10_000, "{} is {size} bytes", shot.display());
    }

    // What the browser did is in the store: the session it revoked is refused by verify,
    // the device is managed, and both changes are admin actions by carol.
    assert_eq!(
        verify(port, "http://apps.example.com/restaurant/menu", &dave).await,
        401
    );
    // One JSON object per device and line.
    let devices = cli(&config, &["device", "list", "--format", "json"]);
    let device: serde_json::Value = devices
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["email"] == "dave@example.com")
        .unwrap_or_else(|| panic!("dave's device in {devices}"));
    assert_eq!(device["managed"], true, "{devices}");
    assert_eq!(device["trust"], "high", "{devices}");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let actions: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM admin_actions ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for action in ["session.revoke", "device.update"] {
        assert!(
            actions
                .iter()
                .any(|(who, what)| who == "carol@example.com" && what == action),
            "{actions:?}"
        );
    }
    drop(gatehouse);
    let _ = idp.kill();
    let _ = idp.wait();
}
