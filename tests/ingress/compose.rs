//! `compose.yaml` cannot be run here (no Docker engine), so it is checked three ways: against
//! the Compose Specification schema; for its wiring (every mounted file exists, the NGINX
//! file is the one the e2e tests run, the IdP and Gatehouse configs agree on client, secret
//! and callback); and by running its IdP config (node oidc-provider) and its Gatehouse config
//! natively against each other and Postgres.

use std::process::Command;

use serde_json::Value;

use crate::harness::{PgDatabase, Proc, free_port, repo_root, require_binary, wait_http};
use crate::oidc_provider::{Browser, OidcProvider};

fn compose() -> Value {
    let text = std::fs::read_to_string(repo_root().join("compose.yaml")).expect("compose.yaml");
    serde_saphyr::from_str(&text).expect("compose.yaml is YAML")
}

fn validate(file: &std::path::Path) -> std::process::Output {
    Command::new(require_binary("python3", "python3"))
        .arg(repo_root().join("tests/compose/validate.py"))
        .arg(file)
        .arg(repo_root().join("tests/compose/compose_spec.json"))
        .output()
        .expect("run python3")
}

#[test]
fn compose_yaml_matches_the_compose_specification() {
    let out = validate(&repo_root().join("compose.yaml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(3),
        "{stdout}: install them with `pip install jsonschema pyyaml`"
    );
    assert!(out.status.success(), "compose.yaml: {stdout}");

    // The validator does catch mistakes: an unknown service key is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(repo_root().join("compose.yaml"))
        .unwrap()
        .replace(
            "    image: postgres:16",
            "    image: postgres:16\n    imagee: typo",
        );
    let path = dir.path().join("compose.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imagee"));
}

#[test]
fn compose_wires_the_files_the_tests_run() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            let source = spec.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    repo_root().join(source).exists(),
                    "service {name} mounts {source}, which does not exist"
                );
            }
        }
    }
    let nginx_volumes = services["nginx"]["volumes"].to_string();
    assert!(
        nginx_volumes.contains("./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf"),
        "NGINX must run the deploy/ file the e2e tests run: {nginx_volumes}"
    );
    assert_eq!(services["gatehouse"]["network_mode"], "service:idp");
    assert_eq!(
        services["idp"]["networks"]["default"]["aliases"][0], "gatehouse",
        "NGINX's `gatehouse:4180` must reach the idp namespace Gatehouse runs in"
    );
    assert!(services["nginx"]["ports"].to_string().contains("8080:80"));
    assert!(services["idp"]["ports"].to_string().contains("5556:5556"));

    // The IdP's client and Gatehouse's config agree.
    let idp: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/compose/idp.json")).unwrap(),
    )
    .unwrap();
    let gh: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/compose/gatehouse.yaml")).unwrap(),
    )
    .unwrap();
    let client = &idp["clients"][0];
    assert_eq!(client["client_id"], gh["oidc"]["client_id"]);
    assert_eq!(client["client_secret"], gh["oidc"]["client_secret"]);
    assert_eq!(idp["issuer"], gh["oidc"]["issuer"]);
    let public = gh["public_url"].as_str().unwrap();
    assert_eq!(public, "http://localhost:8080", "NGINX publishes 8080");
    assert!(
        client["redirect_uris"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("{public}/auth/callback")))
    );
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("/etc/gatehouse/gatehouse.yaml"));
    assert!(
        services["gatehouse"]["volumes"]
            .to_string()
            .contains(":/etc/gatehouse/gatehouse.yaml")
    );
}

/// The compose IdP config and Gatehouse config, run natively: Gatehouse starts on Postgres
/// with the mounted-policies layout, and a browser's login goes to the IdP, which accepts
/// Gatehouse's client and callback and shows its sign-in page.
#[tokio::test]
async fn compose_idp_and_gatehouse_configs_run_natively() {
    let mut idp_config: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/compose/idp.json")).unwrap(),
    )
    .unwrap();
    // Loopback and a free port here; in compose it listens on 0.0.0.0:5556.
    idp_config["host"] = "127.0.0.1".into();
    idp_config["port"] = 0.into();
    idp_config.as_object_mut().unwrap().remove("issuer");
    let idp = OidcProvider::start(idp_config);

    let db = PgDatabase::create("gatehouse_compose").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .args(["serve", "--config"])
        .arg(repo_root().join("deploy/compose/gatehouse.yaml"))
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("GATEHOUSE_DATABASE_URL", &db.url)
        // In the container the policies are mounted next to the config.
        .env("GATEHOUSE_POLICIES_DIR", repo_root().join("policies"))
        .env("GATEHOUSE_AUDIT__SPOOL_DIR", dir.path().join("spool"))
        .env("GATEHOUSE_OIDC__ISSUER", &idp.issuer);
    let mut gh = Proc::spawn("gatehouse", command, dir.path().join("gatehouse.log"));
    wait_http(&format!("http://127.0.0.1:{admin_port}/healthz"), &mut gh).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{admin_port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", gh.logs());

    let browser = Browser::new();
    let page = browser
        .follow(&format!("http://127.0.0.1:{port}/auth/login"))
        .await;
    assert!(
        page.chain
            .iter()
            .any(|u| u.contains("redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fauth%2Fcallback")),
        "{:?}",
        page.chain
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.forms()
            .iter()
            .any(|f| f.input("prompt") == Some("login")),
        "the IdP accepted the client and callback and asks for a login: {}",
        page.body
    );
}
