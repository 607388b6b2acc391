//! The `gatehouse` binary's command-line contract: exit codes, `file:line:col` messages,
//! and `session create` + `serve` on the embedded SQLite store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test or benchmark reports failure by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod dev_idp;

const SECRET: &str = "cli-test-cookie-secret-0123456789abcdef";

fn gatehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .expect("run gatehouse")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    path
}

fn broken_bundle(dir: &Path) {
    write(
        dir,
        "routes.yaml",
        "routes:\n  - name: app\n    path: /app\n    policy: routes.app\n",
    );
    write(
        dir,
        "app.rego",
        "package routes.app\n\ndefault allow := false\n\nallow if {\n\tinput.user.email ==\n}\n",
    );
}

#[test]
fn policy_check_accepts_the_example_bundle() {
    let out = gatehouse(&["policy", "check", example_policies().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 6 routes"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn policy_check_reports_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    broken_bundle(dir.path());
    let out = gatehouse(&["policy", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let first = err.lines().next().unwrap_or("");
    let expected_prefix = format!("{}/app.rego:", dir.path().display());
    assert!(first.starts_with(&expected_prefix), "{err}");
    let position: Vec<&str> = first[expected_prefix.len()..].splitn(3, ':').collect();
    assert!(position[0].parse::<usize>().unwrap() >= 6, "{err}");
    assert!(position[1].parse::<usize>().unwrap() >= 1, "{err}");
}

#[test]
fn policy_test_runs_the_bundle_tests() {
    let out = gatehouse(&[
        "policy",
        "test",
        example_policies().to_str().unwrap(),
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("data.routes.restaurant_test.test_kitchen_allowed: PASS ("),
        "{stdout}"
    );
    assert!(stdout.contains("PASS: 12/12"), "{stdout}");
    assert!(
        stdout.contains("with input as {\"user\": {\"groups\": [\"kitchen\"]}}"),
        "--verbose shows the inputs: {stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routes.yaml", "routes: []\n");
    write(dir.path(), "a.rego", "package a\nallow if input.x == 1\n");
    write(
        dir.path(),
        "a_test.rego",
        "package a_test\ntest_ok if data.a.allow with input as {\"x\": 1}\ntest_bad if data.a.allow with input as {\"x\": 2}\n",
    );
    let out = gatehouse(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("data.a_test.test_bad: FAIL ("), "{stdout}");
    assert!(stdout.contains("PASS: 1/2"), "{stdout}");
}

/// `opa test`'s semantics and report on one bundle: data files, parameterized tests,
/// same-named tests, tests outside `*_test.rego`, `todo_test_`, builtin errors, conflicts.
#[test]
fn policy_test_reports_like_opa_test() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routes.yaml", "routes: []\n");
    write(
        dir.path(),
        "a.rego",
        "package a\nimport rego.v1\nallow if input.user.groups[_] in data.teams.allowed\nv := 1 if input.c\nv := 2 if input.c\ntest_in_policy_file if true\n",
    );
    write(dir.path(), "teams/data.yaml", "allowed: [cooks]\n");
    write(
        dir.path(),
        "a_test.rego",
        "package a_test\n\
         import rego.v1\n\
         cases := [{\"note\": \"cook\", \"groups\": [\"cooks\"], \"allow\": true}, {\"note\": \"waiter\", \"groups\": [\"waiters\"], \"allow\": true}]\n\
         test_groups[tc.note] if {\n\
         \tsome tc in cases\n\
         \tdata.a.allow == tc.allow with input as {\"user\": {\"groups\": tc.groups}}\n\
         }\n\
         test_same if true\n\
         test_same if false\n\
         todo_test_later if false\n\
         test_builtin_error_is_undefined if not to_number(\"abc\")\n\
         test_conflict if data.a.v with input as {\"c\": true}\n",
    );
    let out = gatehouse(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let test_file = format!("{}/a_test.rego", dir.path().display());
    for expected in [
        format!("{test_file}:4:\ndata.a_test.test_groups: FAIL ("),
        "  waiter: FAIL\n".to_string(),
        "data.a_test.test_same#01: FAIL (".to_string(),
        "data.a_test.todo_test_later: SKIPPED\n".to_string(),
        "data.a_test.test_conflict: ERROR (".to_string(),
        "-".repeat(80),
        "PASS: 4/8\nFAIL: 2/8\nSKIPPED: 1/8\nERROR: 1/8\n".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // Passing tests and cases are listed only with --verbose.
    assert!(!stdout.contains("cook: PASS"), "{stdout}");
    let verbose = text(&gatehouse(&["policy", "test", dir.path().to_str().unwrap(), "-v"]).stdout);
    assert!(verbose.contains("  cook: PASS\n"), "{verbose}");
    assert!(
        verbose.contains("data.a.test_in_policy_file: PASS ("),
        "{verbose}"
    );

    let out = gatehouse(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    let groups = by_name("test_groups");
    assert_eq!(groups["package"], "data.a_test");
    assert_eq!(groups["fail"], true);
    assert_eq!(groups["location"]["file"], test_file);
    assert_eq!(groups["location"]["row"], 4);
    assert_eq!(groups["sub_results"]["waiter"]["fail"], true);
    assert!(
        groups["sub_results"]["cook"].get("fail").is_none(),
        "{groups}"
    );
    assert!(groups["duration"].as_u64().is_some());
    assert_eq!(by_name("todo_test_later")["skip"], true);
    assert!(by_name("test_conflict")["error"]["message"].is_string());
    assert!(by_name("test_same").get("fail").is_none());
    assert_eq!(by_name("test_same#01")["fail"], true);
}

#[test]
fn policy_eval_decides_a_described_request_as_verify_would() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |name: &str, description: &str| {
        let input = write(dir.path(), name, description);
        gatehouse(&[
            "policy",
            "eval",
            example_policies().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
    };
    let out = eval(
        "admin.json",
        r#"{"url": "https://acme.apps.example.com/dashboard",
            "user": {"email": "ann@example.com", "tenants": {"acme": "admin"}}}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["route"], "tenant-apps", "{decision}");
    assert_eq!(decision["outcome"], "allow");
    assert_eq!(decision["status"], 200);
    assert_eq!(decision["path"], "/dashboard");
    assert_eq!(decision["headers"]["X-Tenant-Id"], "acme");
    assert_eq!(decision["headers"]["X-Tenant-Role"], "admin");
    assert_eq!(
        decision["headers"]["X-Auth-Request-User"],
        "ann@example.com"
    );

    // The CEL route with an unmanaged device: denied with the rule's reason.
    let out = eval(
        "cel.json",
        r#"{"url": "https://apps.example.com/reports", "user": {"email": "fin@example.com",
            "groups": ["finance"]}, "device": {"managed": false}}"#,
    );
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["outcome"], "deny", "{decision}");
    assert_eq!(decision["status"], 403);
    assert_eq!(decision["reason"], "cel_rule_false");

    // Anonymous: the login redirect names the default public URL; normalization applies.
    let out = eval(
        "anonymous.json",
        r#"{"url": "https://apps.example.com/x/../restaurant/orders"}"#,
    );
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["outcome"], "unauthenticated", "{decision}");
    assert_eq!(decision["route"], "restaurant");
    assert_eq!(decision["path"], "/restaurant/orders");
    assert_eq!(decision["status"], 401);
    let redirect = decision["headers"]["X-Auth-Request-Redirect"]
        .as_str()
        .unwrap();
    assert!(
        redirect.starts_with("http://127.0.0.1:4180/auth/login?rd="),
        "{redirect}"
    );

    // A refused spelling is decided (400), as verify answers it.
    let out = eval(
        "refused.json",
        r#"{"url": "https://apps.example.com/healthz/..;/restaurant"}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["outcome"], "bad_request", "{decision}");

    // A description that cannot be decided, or a misspelt field, is bad usage.
    let out = eval(
        "typo.json",
        r#"{"url": "https://apps.example.com/", "user": {"email": "a@b", "group": ["x"]}}"#,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown field `group`"),
        "{}",
        text(&out.stderr)
    );
    let out = eval(
        "time.json",
        r#"{"url": "https://apps.example.com/", "time": "10 o'clock"}"#,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not an RFC 3339 timestamp"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policy_eval_uses_the_configuration_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &example_policies(),
        "headers:\n  email: X-Email\n",
    );
    let input = write(
        dir.path(),
        "request.json",
        r#"{"url": "https://apps.example.com/restaurant", "user": {"email": "bob@example.com", "groups": ["staff"]}}"#,
    );
    let out = gatehouse(&[
        "policy",
        "eval",
        example_policies().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["outcome"], "allow", "{decision}");
    assert_eq!(decision["headers"]["X-Email"], "bob@example.com");
}

fn config_file(dir: &Path, policies: &Path, extra: &str) -> PathBuf {
    write(
        dir,
        "gatehouse.yaml",
        &format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npublic_url: http://127.0.0.1:4180\n\
             database_url: sqlite://gatehouse.db\npolicies_dir: {}\ncookie:\n  secret: {SECRET}\n{extra}",
            policies.display()
        ),
    )
}

#[test]
fn serve_refuses_a_broken_bundle_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    broken_bundle(&bundle);
    let config = config_file(dir.path(), &bundle, "");
    let out = gatehouse(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}/app.rego:", bundle.display())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_config_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &example_policies(),
        "session:\n  ttl: forever\n",
    );
    let out = gatehouse(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("session.ttl"),
        "{}",
        text(&out.stderr)
    );

    let config = config_file(dir.path(), &example_policies(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("GATEHOUSE_COOKIE__SECRTE", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("secrte"),
        "{}",
        text(&out.stderr)
    );

    let out = gatehouse(&[
        "serve",
        "--config",
        dir.path().join("missing.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn session_create_on_sqlite_gives_a_cookie_serve_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_file(dir.path(), &example_policies(), "");
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0",
        &format!("listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}"),
    );
    std::fs::write(&config, config_text).unwrap();
    let created = gatehouse(&[
        "session",
        "create",
        "--config",
        config.to_str().unwrap(),
        "--email",
        "ann@example.com",
        "--groups",
        "staff,kitchen",
        "--tenant",
        "acme",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let cookie = text(&created.stdout).trim().to_string();
    assert!(
        dir.path().join("gatehouse.db").exists(),
        "the SQLite file lives next to the config"
    );

    let mut server = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = client
                .get(format!("http://127.0.0.1:{port}/auth/verify"))
                .header("X-Original-URL", "http://acme.apps.example.com/")
                .header("Cookie", format!("_gatehouse={cookie}"))
                .send()
                .await;
            match r {
                Ok(r) => {
                    return (
                        r.status().as_u16(),
                        r.headers()
                            .get("X-Tenant-Id")
                            .map(|v| v.to_str().unwrap_or("").to_string()),
                    );
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("serve did not answer: {e}"),
            }
        }
    });
    let revoked = gatehouse(&[
        "session",
        "revoke",
        "--config",
        config.to_str().unwrap(),
        "--all",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(result, (200, Some("acme".to_string())));
    assert_eq!(text(&revoked.stdout).trim(), "revoked 1 session(s)");
}

/// The fenced block that follows the marker line at `index`.
fn block_after(lines: &[&str], index: usize) -> String {
    let start = lines[index + 1..]
        .iter()
        .position(|l| l.starts_with("```"))
        .map(|p| index + 1 + p + 1)
        .expect("a fenced block after the marker");
    let end = lines[start..]
        .iter()
        .position(|l| l.starts_with("```"))
        .map(|p| start + p)
        .expect("closing fence");
    lines[start..end].join("\n") + "\n"
}

#[test]
fn every_example_in_the_policy_guide_runs() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policies.md"))
            .unwrap();
    let lines: Vec<&str> = guide.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let mut evals = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(path) = line
            .strip_prefix("<!-- bundle: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            write(dir.path(), path, &block_after(&lines, i));
        } else if let Some(spec) = line
            .strip_prefix("<!-- eval: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            let (route, outcome) = spec.split_once(' ').expect("eval: <route> <outcome>");
            evals.push((
                route.to_string(),
                outcome.to_string(),
                block_after(&lines, i),
            ));
        }
    }
    let bundle = dir.path().to_str().unwrap();
    let check = gatehouse(&["policy", "check", bundle]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let tests = gatehouse(&["policy", "test", bundle]);
    assert!(tests.status.success(), "{}", text(&tests.stdout));
    assert!(
        text(&tests.stdout).contains("PASS: 6/6"),
        "{}",
        text(&tests.stdout)
    );
    assert!(evals.len() >= 5);
    for (n, (route, outcome, input)) in evals.iter().enumerate() {
        let file = write(dir.path(), &format!("input-{n}.json"), input);
        let out = gatehouse(&["policy", "eval", bundle, "--input", file.to_str().unwrap()]);
        assert!(out.status.success(), "{route}: {}", text(&out.stderr));
        let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (decision["route"].as_str(), decision["outcome"].as_str()),
            (Some(route.as_str()), Some(outcome.as_str())),
            "{input}: {decision}"
        );
    }
}

#[test]
fn sighup_reloads_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_file(dir.path(), &example_policies(), "");
    let text_config = std::fs::read_to_string(&config).unwrap().replace(
        "admin_listen: 127.0.0.1:0",
        &format!("admin_listen: 127.0.0.1:{admin}"),
    );
    std::fs::write(&config, text_config).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reloads = rt.block_on(async {
        let client = reqwest::Client::new();
        let metrics = |client: reqwest::Client| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match client
                    .get(format!("http://127.0.0.1:{admin}/metrics"))
                    .send()
                    .await
                {
                    Ok(r) => return r.text().await.unwrap_or_default(),
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("serve did not answer: {e}"),
                }
            }
        };
        let count = |m: &str| {
            m.lines()
                .find(|l| l.starts_with("gatehouse_policy_reloads_total{result=\"unchanged\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = count(&metrics(client.clone()).await);
        let status = Command::new("kill")
            .args(["-HUP", &server.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = count(&metrics(client.clone()).await);
            if now > before || Instant::now() > deadline {
                return (before, now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(reloads.1 > reloads.0, "SIGHUP did not reload: {reloads:?}");
}

/// `session create --groups` follows the IdP's group-name rules: it splits on commas (so no
/// name carries one into the comma-joined groups header), and a name with a control
/// character or over 256 bytes is bad usage, refused before the store is touched.
#[test]
fn session_create_refuses_bad_group_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &example_policies(), "");
    let long = "g".repeat(257);
    for bad in ["staff,bad\u{1}group", long.as_str()] {
        let out = gatehouse(&[
            "session",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--email",
            "ann@example.com",
            "--groups",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("--groups"),
            "{}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).is_empty());
    }
    assert!(
        !dir.path().join("gatehouse.db").exists(),
        "refused before the store was touched"
    );
}

#[test]
fn policy_impact_lists_the_audited_decisions_a_bundle_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &example_policies(), "");
    let config = config.to_str().unwrap();
    let created = gatehouse(&[
        "session",
        "create",
        "--config",
        config,
        "--email",
        "ann@example.com",
        "--groups",
        "staff",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    // Ann was refused marketing a minute ago, and let into the restaurant.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let store = gatehouse::store::Store::connect(&url).await.unwrap();
        let at = chrono::Utc::now() - chrono::Duration::minutes(1);
        let event = |request_id, path, decision, status, reason| gatehouse::store::NewAuditEvent {
            time: at,
            request_id,
            kind: "verify",
            user_id: None,
            email: Some("ann@example.com"),
            tenant: None,
            device_id: None,
            route: Some(if path == "/marketing/plan" {
                "marketing"
            } else {
                "restaurant"
            }),
            host: Some("apps.example.com"),
            method: Some("GET"),
            path: Some(path),
            decision,
            status,
            reason,
            policy_version: None,
            latency_us: 10,
            client_ip: Some("203.0.113.7"),
            transport: Some("http"),
        };
        store
            .insert_audit(&[
                event(
                    "r1",
                    "/marketing/plan",
                    "deny",
                    403,
                    Some("not_in_marketing"),
                ),
                event("r2", "/restaurant/menu", "allow", 200, None),
            ])
            .await
            .unwrap();
    });

    // The same bundle changes nothing.
    let out = gatehouse(&[
        "policy",
        "impact",
        example_policies().to_str().unwrap(),
        "--since",
        "1h",
        "--config",
        config,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 of 2 audited decisions would change"),
        "{}",
        text(&out.stdout)
    );

    // A candidate letting staff into marketing changes ann's denial.
    let candidate = dir.path().join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    for entry in std::fs::read_dir(example_policies()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "marketing_test.rego" {
            std::fs::copy(entry.path(), candidate.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(candidate.join("gatehouse")).unwrap();
    for name in ["admin.rego", "admin_test.rego"] {
        std::fs::copy(
            example_policies().join("gatehouse").join(name),
            candidate.join("gatehouse").join(name),
        )
        .unwrap();
    }
    write(
        &candidate,
        "marketing.rego",
        "package routes.marketing\n\nimport rego.v1\n\ndefault allow := false\n\nallow if \"staff\" in input.user.groups\n",
    );
    let out = gatehouse(&[
        "policy",
        "impact",
        candidate.to_str().unwrap(),
        "--since",
        "1h",
        "--config",
        config,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("route marketing (1 changed)"), "{stdout}");
    assert!(
        stdout.contains("ann@example.com")
            && stdout.contains("GET apps.example.com/marketing/plan"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deny 403 (not_in_marketing) -> allow 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 of 2 audited decisions would change"),
        "{stdout}"
    );

    // A candidate that does not build: its position, exit 1.
    write(
        &candidate,
        "marketing.rego",
        "package routes.marketing\nallow if {\n",
    );
    let out = gatehouse(&[
        "policy",
        "impact",
        candidate.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("marketing.rego:"),
        "{}",
        text(&out.stderr)
    );
}

/// `serve` with `grpc_listen`, stopped by SIGTERM while Envoy checks are in flight: every
/// check that was answered is in the audit table when the process has exited (the servers
/// drain, then the audit writer flushes), and the exit is clean.
#[test]
fn sigterm_drains_grpc_checks_and_keeps_every_audit_record() {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

    let dir = tempfile::tempdir().unwrap();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_file(
        dir.path(),
        &example_policies(),
        &format!("grpc_listen: 127.0.0.1:{grpc}\n"),
    );
    let migrated = gatehouse(&["migrate", "--config", config.to_str().unwrap()]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let mut server = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pid = server.id().to_string();
    let answered = rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}")).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("serve did not answer gRPC: {e}"),
            }
        };
        let check = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        host: "apps.example.com".into(),
                        path: "/healthz".into(),
                        scheme: "https".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        // Eight clients ask in a loop; SIGTERM lands while they do.
        let mut loops = Vec::new();
        for _ in 0..8 {
            let (mut client, check) = (client.clone(), check.clone());
            loops.push(tokio::spawn(async move {
                let mut answered = 0u64;
                while let Ok(response) = client.check(check.clone()).await {
                    assert_eq!(response.into_inner().status.unwrap().code, 0);
                    answered += 1;
                }
                answered
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let mut answered = 0;
        for l in loops {
            answered += l.await.unwrap();
        }
        answered
    });
    let exit = server.wait().unwrap();
    assert!(exit.success(), "serve exited {exit:?} after SIGTERM");
    assert!(answered > 0, "no check was answered before SIGTERM");
    let rows = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM audit_events WHERE transport = 'grpc' AND decision = 'public'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        n
    });
    assert_eq!(
        u64::try_from(rows).unwrap(),
        answered,
        "every answered check is audited"
    );
}
