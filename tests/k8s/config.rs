//! The shipped Kubernetes configuration, run natively: `gatehouse serve` with the
//! gatehouse-config ConfigMap's file, the Deployment's environment, the Secret's keys as
//! files and the gatehouse-policies ConfigMap laid out as the kubelet lays out a ConfigMap
//! volume (`..<timestamp>/` holding the files, `..data` pointing at it, each key a symlink
//! through `..data`). Only addresses and mount paths are rewritten. Then the ConfigMap is
//! updated the way the kubelet does it — a new timestamped directory and an atomic rename
//! of `..data` — and the running Gatehouse follows it.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{PgDatabase, Proc, client, wait_http};
use crate::manifests::{find, shipped_config};
use crate::oidc_provider::OidcProvider;

/// Writes `data` as the kubelet writes a ConfigMap volume, into the timestamped directory
/// `stamp`, and points `..data` (and each key) at it.
fn project_configmap(dir: &Path, stamp: &str, data: &serde_json::Map<String, Value>) {
    let real = dir.join(stamp);
    std::fs::create_dir_all(&real).unwrap();
    for (key, value) in data {
        std::fs::write(real.join(key), value.as_str().unwrap()).unwrap();
    }
    // The atomic swap: a new symlink renamed over `..data`.
    let tmp = dir.join("..data_tmp");
    symlink(stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for key in data.keys() {
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(key), &link).unwrap();
        }
    }
}

#[tokio::test]
async fn the_shipped_config_and_policies_configmap_run_and_hot_reload() {
    let starting = crate::STARTING.lock().await;
    // Held until the provider has bound its own port.
    let reserved: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = reserved
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let idp = OidcProvider::start(serde_json::json!({
        "clients": [{
            "client_id": "gatehouse",
            "client_secret": "k8s-config-test-oidc-secret",
            "redirect_uris": ["https://auth.example.com/auth/callback", "https://auth.example.com/oauth2/callback"],
        }]
    }));
    let db = PgDatabase::create("gatehouse_k8s").await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let policies = dir.path().join("policies");
    let spool = dir.path().join("spool");
    for d in [&secrets, &policies, &spool] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The Secret's keys, as the secret volume presents them.
    std::fs::write(secrets.join("database-url"), &db.url).unwrap();
    std::fs::write(
        secrets.join("cookie-secret"),
        "k8s-test-cookie-secret-0123456789abcdef0123",
    )
    .unwrap();
    std::fs::write(
        secrets.join("oidc-client-secret"),
        "k8s-config-test-oidc-secret",
    )
    .unwrap();
    let policies_cm = find("base", "ConfigMap", "gatehouse-policies");
    let data = policies_cm["data"].as_object().unwrap().clone();
    project_configmap(&policies, "..2026_12_01_00_00_00.1", &data);

    let (port, admin, grpc) = (ports[0], ports[1], ports[2]);
    drop(reserved);
    let config = shipped_config();
    let text = find("base", "ConfigMap", "gatehouse-config")["data"]["gatehouse.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rewritten = text.clone();
    for (from, to) in [
        ("0.0.0.0:4180".to_string(), format!("127.0.0.1:{port}")),
        ("0.0.0.0:9090".to_string(), format!("127.0.0.1:{admin}")),
        ("0.0.0.0:9191".to_string(), format!("127.0.0.1:{grpc}")),
        ("[10.0.0.0/8]".to_string(), "[127.0.0.1/32]".to_string()),
        ("https://idp.example.com".to_string(), idp.issuer.clone()),
        (
            "/run/secrets/gatehouse".to_string(),
            secrets.display().to_string(),
        ),
        (
            "/etc/gatehouse/policies".to_string(),
            policies.display().to_string(),
        ),
        (
            "/var/lib/gatehouse/spool".to_string(),
            spool.display().to_string(),
        ),
    ] {
        assert!(
            rewritten.contains(&from),
            "the shipped config has no `{from}`"
        );
        rewritten = rewritten.replace(&from, &to);
    }
    let config_path = dir.path().join("gatehouse.yaml");
    std::fs::write(&config_path, &rewritten).unwrap();

    // The Deployment's command line and environment.
    let deployment = find("base", "Deployment", "gatehouse");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for arg in container["args"].as_array().unwrap() {
        let arg = arg.as_str().unwrap();
        command.arg(if arg.ends_with("gatehouse.yaml") {
            config_path.to_str().unwrap()
        } else {
            arg
        });
    }
    for env in container["env"].as_array().unwrap() {
        command.env(
            env["name"].as_str().unwrap(),
            env["value"].as_str().unwrap(),
        );
    }
    let mut gh = Proc::spawn("gatehouse", command, dir.path().join("gatehouse.log"));
    let admin_url = format!("http://127.0.0.1:{admin}");
    wait_http(&format!("{admin_url}/healthz"), &mut gh).await;
    drop(starting);
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = c.get(format!("{admin_url}/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz: {}", gh.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gh.logs().contains("\"level\":"),
        "GATEHOUSE_LOG_FORMAT=json: {}",
        gh.logs()
    );

    // A session from the store (through the CLI, on the same config) is honoured.
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "session",
            "create",
            "--email",
            "ann@example.com",
            "--groups",
            "staff",
        ])
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let verify = |path: &str| {
        c.get(format!("http://127.0.0.1:{port}/oauth2/auth"))
            .header(
                "X-Original-URL",
                format!("https://restaurant.example.com{path}"),
            )
            .header("X-Original-Method", "GET")
            .header(
                "Cookie",
                format!("{}={session}", config["cookie"]["name"].as_str().unwrap()),
            )
            .send()
    };
    let allowed = verify("/restaurant/menu").await.unwrap();
    assert_eq!(allowed.status(), 200, "{}", gh.logs());
    assert_eq!(allowed.headers()["x-auth-request-email"], "ann@example.com");

    // The sign-in host's login goes to the configured IdP, the callback on public_url.
    let login = c
        .get(format!(
            "http://127.0.0.1:{port}/oauth2/start?rd=https://restaurant.example.com/"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302, "{}", gh.logs());
    let location = login.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&idp.issuer), "{location}");
    assert!(
        location.contains("redirect_uri=https%3A%2F%2Fauth.example.com%2Foauth2%2Fcallback"),
        "{location}"
    );

    // A ConfigMap update, as the kubelet applies it: a route that did not exist answers.
    assert_eq!(verify("/swapped").await.unwrap().status(), 403, "no_route");
    let mut updated = data.clone();
    let routes = updated["routes.yaml"].as_str().unwrap().replace(
        "routes:\n",
        "routes:\n  - name: swapped\n    path: /swapped\n    public: true\n",
    );
    updated.insert("routes.yaml".into(), routes.into());
    project_configmap(&policies, "..2026_12_01_00_05_00.2", &updated);
    let swapped_at = Instant::now();
    loop {
        if verify("/swapped").await.unwrap().status() == 200 {
            break;
        }
        assert!(
            swapped_at.elapsed() < Duration::from_secs(10),
            "the ConfigMap update was not picked up: {}",
            gh.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(verify("/restaurant").await.unwrap().status(), 200);
    gh.assert_running();
}
