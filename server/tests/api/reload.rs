//! Hot reload: edits go live within seconds, broken bundles never replace the live one,
//! directory deletion and ConfigMap-style symlink swaps are survived.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::{AppOptions, Backend, Person, TestApp, example_policies, spawn_app_with};

const KITCHEN_MAY_MARKET: &str = "package routes.marketing\n\nimport rego.v1\n\ndefault allow := false\n\nallow if \"marketing\" in input.user.groups\n\nallow if \"kitchen\" in input.user.groups\n\nreason := \"not_in_marketing\" if not allow\n";
const BROKEN_MARKETING: &str = "package routes.marketing\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\t\"kitchen\" in\n}\n";

pub(crate) fn copy_dir(from: &Path, to: &Path) {
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

async fn app_with_bundle_copy(dir: &Path) -> TestApp {
    copy_dir(&example_policies(), dir);
    let mut options = AppOptions::new(Backend::Sqlite);
    options.policies = dir.to_path_buf();
    spawn_app_with(options).await
}

/// The example bundle copied to `dir`, served, and a session for ann (group `kitchen`).
async fn app_with_kitchen_user(dir: &Path) -> (TestApp, String) {
    let app = app_with_bundle_copy(dir).await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    (app, ann)
}

/// Polls `/readyz` until it reports a refused reload; fails after 3 s.
async fn wait_for_reload_error(app: &TestApp) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let ready = readyz(app).await;
        if !ready["bundle"]["last_error"].is_null() {
            return ready;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the refused reload was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(app: &TestApp, cookie: &str, url: &str) -> u16 {
    app.verify_as(url, cookie).await.status().as_u16()
}

/// Polls until `url` answers `want`, failing after `limit`.
async fn wait_for_status(
    app: &TestApp,
    cookie: &str,
    url: &str,
    want: u16,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if status_of(app, cookie, url).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{url} did not become {want} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn readyz(app: &TestApp) -> serde_json::Value {
    app.admin_json("/readyz").await
}

const MARKETING: &str = "https://apps.example.com/marketing";

#[tokio::test]
async fn edited_policy_goes_live_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (app, ann) = app_with_kitchen_user(dir.path()).await;
    assert_eq!(status_of(&app, &ann, MARKETING).await, 403);
    let before = readyz(&app).await["bundle"]["version"].clone();
    std::fs::write(dir.path().join("marketing.rego"), KITCHEN_MAY_MARKET).unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(2)).await;
    let after = readyz(&app).await;
    assert_ne!(after["bundle"]["version"], before);
    assert!(after["bundle"]["last_error"].is_null());
}

#[tokio::test]
async fn broken_policy_keeps_the_last_good_bundle_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (app, ann) = app_with_kitchen_user(dir.path()).await;
    let version = readyz(&app).await["bundle"]["version"].clone();
    std::fs::write(dir.path().join("marketing.rego"), BROKEN_MARKETING).unwrap();
    // The error shows in /readyz (still ready: the old bundle is valid) with file:line:col.
    let ready = wait_for_reload_error(&app).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["bundle"]["version"], version);
    let error = ready["bundle"]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}/marketing.rego:", dir.path().display())),
        "{error}"
    );
    // The old decisions keep coming.
    assert_eq!(status_of(&app, &ann, MARKETING).await, 403);
    assert_eq!(
        status_of(&app, &ann, "https://apps.example.com/restaurant").await,
        200
    );
    let metrics = app.admin_text("/metrics").await;
    assert!(
        metrics.contains("gatehouse_policy_reload_errors_total"),
        "{metrics}"
    );
    // Fixing the file, saved as editors do (write a temporary file, rename it over the
    // original), activates the fix and clears the error.
    let temporary = dir.path().join(".marketing.rego.swp");
    std::fs::write(&temporary, KITCHEN_MAY_MARKET).unwrap();
    std::fs::rename(&temporary, dir.path().join("marketing.rego")).unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(2)).await;
    assert!(readyz(&app).await["bundle"]["last_error"].is_null());
}

/// A marketing policy that reads who may enter from a data file beside it.
const MARKETING_FROM_DATA: &str = "package routes.marketing\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\tsome g in input.user.groups\n\tg in data.marketing.allowed_groups\n}\n\nreason := \"not_in_marketing\" if not allow\n";

#[tokio::test]
async fn data_files_are_loaded_watched_and_a_broken_one_keeps_the_last_good_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (app, ann) = app_with_kitchen_user(dir.path()).await;
    // The policy and its data arrive together: the data lets the kitchen in.
    let data_dir = dir.path().join("marketing");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(
        data_dir.join("data.json"),
        r#"{"allowed_groups": ["marketing", "kitchen"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("marketing.rego"), MARKETING_FROM_DATA).unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(3)).await;
    // Editing only the data file goes live.
    std::fs::write(
        data_dir.join("data.json"),
        r#"{"allowed_groups": ["marketing"]}"#,
    )
    .unwrap();
    wait_for_status(&app, &ann, MARKETING, 403, Duration::from_secs(2)).await;
    let version = readyz(&app).await["bundle"]["version"].clone();
    // A data file that does not parse is refused with its position; the bundle keeps serving.
    std::fs::write(
        data_dir.join("data.json"),
        "{\n  \"allowed_groups\": [\"kitchen\",\n}\n",
    )
    .unwrap();
    let ready = wait_for_reload_error(&app).await;
    assert_eq!(ready["bundle"]["version"], version);
    let error = ready["bundle"]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "{}/marketing/data.json:3:1:",
            dir.path().display()
        )),
        "{error}"
    );
    assert_eq!(status_of(&app, &ann, MARKETING).await, 403);
    // A YAML data file works the same way.
    std::fs::remove_file(data_dir.join("data.json")).unwrap();
    std::fs::write(
        data_dir.join("data.yaml"),
        "allowed_groups: [marketing, kitchen]\n",
    )
    .unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(2)).await;
    assert!(readyz(&app).await["bundle"]["last_error"].is_null());
}

#[tokio::test]
async fn deleting_and_restoring_the_directory_is_survived() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    let app = app_with_bundle_copy(&dir).await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    std::fs::remove_dir_all(&dir).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        status_of(&app, &ann, "https://apps.example.com/restaurant").await,
        200
    );
    assert_eq!(status_of(&app, &ann, MARKETING).await, 403);
    copy_dir(&example_policies(), &dir);
    std::fs::write(dir.join("marketing.rego"), KITCHEN_MAY_MARKET).unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(3)).await;
}

#[cfg(unix)]
#[tokio::test]
async fn configmap_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Kubernetes layout: ..<timestamp>/ holds the files, ..data points at it, and each
    // visible name is a symlink into ..data.
    copy_dir(&example_policies(), &d.join("..2026_11_22_a"));
    symlink("..2026_11_22_a", d.join("..data")).unwrap();
    for entry in std::fs::read_dir(d.join("..2026_11_22_a")).unwrap() {
        let name = entry.unwrap().file_name();
        symlink(Path::new("..data").join(&name), d.join(&name)).unwrap();
    }
    let mut options = AppOptions::new(Backend::Sqlite);
    options.policies = d.to_path_buf();
    let app = spawn_app_with(options).await;
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    assert_eq!(status_of(&app, &ann, MARKETING).await, 403);
    // The kubelet writes a new timestamped directory and renames a fresh symlink over ..data.
    copy_dir(&example_policies(), &d.join("..2026_11_22_b"));
    std::fs::write(d.join("..2026_11_22_b/marketing.rego"), KITCHEN_MAY_MARKET).unwrap();
    symlink("..2026_11_22_b", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_22_a")).unwrap();
    wait_for_status(&app, &ann, MARKETING, 200, Duration::from_secs(2)).await;
}

async fn admin_bearer(app: &TestApp) -> String {
    app.login(&Person {
        email: "root@example.com",
        groups: &["gatehouse-admins"],
        tenant: None,
    })
    .await
}

#[tokio::test]
async fn admin_reload_api_is_guarded_by_the_admin_policy_and_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_bundle_copy(dir.path()).await;
    let url = format!("{}/admin/api/reload", app.admin);
    assert_eq!(app.client.post(&url).send().await.unwrap().status(), 401);
    let staff = app
        .login(&Person {
            email: "sam@example.com",
            groups: &["staff"],
            tenant: None,
        })
        .await;
    let r = app
        .client
        .post(&url)
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let root = admin_bearer(&app).await;
    let r: serde_json::Value = app
        .client
        .post(&url)
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], "unchanged");
    // With a cookie, a change needs the session's CSRF token.
    let r = app
        .client
        .post(&url)
        .header("Cookie", app.cookie(&root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let csrf: serde_json::Value = app
        .client
        .get(format!("{}/admin/api/csrf", app.admin))
        .header("Cookie", app.cookie(&root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = csrf["token"].as_str().unwrap();
    let r = app
        .client
        .post(&url)
        .header("Cookie", app.cookie(&root))
        .header("X-CSRF-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A broken bundle is refused with its location; the bundle API shows it.
    std::fs::write(dir.path().join("marketing.rego"), BROKEN_MARKETING).unwrap();
    let r = app
        .client
        .post(&url)
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let bundle: serde_json::Value = app
        .client
        .get(format!("{}/admin/api/bundle", app.admin))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        bundle["last_error"]
            .as_str()
            .unwrap()
            .contains("marketing.rego:"),
        "{bundle}"
    );
    assert!(bundle["files"].as_array().unwrap().len() >= 9);
    // Each reload through the API is an admin action on record.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    let actions: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM admin_actions ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(
        actions
            .iter()
            .all(|(actor, action)| actor == "root@example.com" && action == "policy.reload")
    );
}

#[tokio::test]
async fn a_hundred_reloads_under_load_give_no_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = std::sync::Arc::new(app_with_bundle_copy(dir.path()).await);
    let ann = app
        .login(&Person {
            email: "ann@example.com",
            groups: &["kitchen"],
            tenant: None,
        })
        .await;
    let mia = app
        .login(&Person {
            email: "mia@example.com",
            groups: &["marketing"],
            tenant: None,
        })
        .await;
    let root = admin_bearer(&app).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loaders = Vec::new();
    for (cookie, url, want) in [
        (ann.clone(), "https://apps.example.com/restaurant", 200u16),
        (mia.clone(), "https://apps.example.com/restaurant", 403u16),
    ] {
        let app = app.clone();
        let stop = stop.clone();
        loaders.push(tokio::spawn(async move {
            let (mut total, mut wrong) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                total += 1;
                if status_of(&app, &cookie, url).await != want {
                    wrong += 1;
                }
            }
            (total, wrong)
        }));
    }
    let marketing = std::fs::read_to_string(dir.path().join("marketing.rego")).unwrap();
    for i in 0..100 {
        // Each version differs (a comment), so each reload activates a new bundle.
        std::fs::write(
            dir.path().join("marketing.rego"),
            format!("{marketing}\n# revision {i}\n"),
        )
        .unwrap();
        let r: serde_json::Value = app
            .client
            .post(format!("{}/admin/api/reload", app.admin))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            r["result"] == "activated" || r["result"] == "unchanged",
            "{r}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for loader in loaders {
        let (total, wrong) = loader.await.unwrap();
        assert!(total > 50, "the load loop ran only {total} requests");
        assert_eq!(
            wrong, 0,
            "{wrong} of {total} answers were wrong during reloads"
        );
    }
}
