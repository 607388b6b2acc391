//! Processes for end-to-end tests: the real `gatehouse` binary, NGINX and Caddy with the
//! configurations from `deploy/`, an echo app, and a Postgres database per test.
//!
//! A missing binary fails the test with the package to install; nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

pub const COOKIE_SECRET: &str = "e2e-cookie-secret-0123456789abcdef012345";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Finds `name` on PATH or in the sbin directories, or fails saying what to install.
pub fn require_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is needed by this test: install it with `apt-get install -y {package}`");
}

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process stopped when dropped, whose output goes to a log file kept for failures.
///
/// Each child leads a process group of its own, so that stopping it also ends what it
/// started (NGINX's workers): on drop it gets `stop_signal` (SIGKILL unless
/// [`Proc::stop_gracefully`]), a bounded wait, then SIGKILL for the whole group.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    stop_signal: &'static str,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Proc {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
            stop_signal: "KILL",
        }
    }

    /// Stop with `signal` (`TERM`, `QUIT`) on drop, waiting for the process to exit.
    pub fn stop_gracefully(mut self, signal: &'static str) -> Proc {
        self.stop_signal = signal;
        self
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (after a signal), at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Fails with the process's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.logs());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let signal = |sig: &str, target: &str| {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), "--", target])
                .stderr(Stdio::null())
                .status();
        };
        if let Ok(None) = self.child.try_wait() {
            signal(self.stop_signal, &pid);
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                eprintln!("{} ignored SIG{}; killing it", self.name, self.stop_signal);
            }
        }
        // Whatever is left of its process group (the group id is the child's pid).
        signal("KILL", &format!("-{pid}"));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers (any status), or fails with the process's log.
pub async fn wait_http(url: &str, proc: &mut Proc) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        proc.assert_running();
        if client
            .get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} did not answer at {url}:\n{}", proc.name, proc.logs());
}

pub use crate::postgres::PgDatabase;

/// What the echo app received: one entry per request, in order.
#[derive(Clone, Default)]
pub struct EchoLog(std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

#[allow(dead_code)] // used by some test binaries including this file only
impl EchoLog {
    /// Takes (and forgets) what was received so far: `{"path": …, "headers": {name: value}}`
    /// with lower-case names (a repeated header's values joined by `, `).
    pub fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// An upstream app that answers every request with what it received, as JSON.
pub async fn start_echo_app() -> u16 {
    start_recording_echo_app().await.0
}

/// [`start_echo_app`] that also records every request it answers.
pub async fn start_recording_echo_app() -> (u16, EchoLog) {
    async fn echo(req: HttpRequest, log: web::Data<EchoLog>) -> HttpResponse {
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers().iter() {
            let v = v.to_str().unwrap_or("<binary>");
            let joined = match headers.get(k.as_str()).and_then(|old| old.as_str()) {
                Some(old) => format!("{old}, {v}"),
                None => v.to_string(),
            };
            headers.insert(k.as_str().to_string(), joined.into());
        }
        let seen = serde_json::json!({"path": req.uri().to_string(), "headers": headers});
        log.0.lock().unwrap().push(seen.clone());
        HttpResponse::Ok().json(seen)
    }
    let log = EchoLog::default();
    let data = web::Data::new(log.clone());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo app");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(echo))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (port, log)
}

/// A running Gatehouse (`gatehouse serve`) with its own database and config file.
pub struct Gatehouse {
    pub port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
    pub proc: Proc,
    pub db_url: String,
    /// The database this instance created (dropped after the test); `None` for a replica
    /// started on another instance's database.
    _db: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

/// How to start a Gatehouse beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct GatehouseOptions {
    /// The public port; a free one when `None`.
    pub port: Option<u16>,
    /// `{port}` is replaced by the public port.
    pub public_url: String,
    /// YAML appended to the config (e.g. an `oidc:` section).
    pub extra_yaml: String,
}

impl Gatehouse {
    pub async fn start(public_url: &str) -> Gatehouse {
        Self::start_with(GatehouseOptions {
            public_url: public_url.into(),
            ..Default::default()
        })
        .await
    }

    /// A Gatehouse on a database of its own, configured by `options`.
    pub async fn start_with(options: GatehouseOptions) -> Gatehouse {
        let db = PgDatabase::create("gatehouse_e2e").await;
        let url = db.url.clone();
        Self::start_on(&options, &url, Some(db)).await
    }

    /// A second replica on the same database as `first`.
    pub async fn replica_of(first: &Gatehouse) -> Gatehouse {
        Self::replica_with(
            first,
            GatehouseOptions {
                public_url: "http://localhost:4999".into(),
                ..Default::default()
            },
        )
        .await
    }

    /// A replica on `first`'s database, configured by `options`.
    pub async fn replica_with(first: &Gatehouse, options: GatehouseOptions) -> Gatehouse {
        Self::start_on(&options, &first.db_url, None).await
    }

    async fn start_on(
        options: &GatehouseOptions,
        db_url: &str,
        db: Option<PgDatabase>,
    ) -> Gatehouse {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = options.port.unwrap_or_else(free_port);
        let admin_port = free_port();
        let public_url = options.public_url.replace("{port}", &port.to_string());
        let config = format!(
            "listen: 127.0.0.1:{port}\n\
             admin_listen: 127.0.0.1:{admin_port}\n\
             public_url: {public_url}\n\
             database_url: {}\n\
             policies_dir: {}\n\
             trusted_proxies: [127.0.0.1/32, ::1/128]\n\
             allowed_redirect_domains: [localhost, 127.0.0.1, .example.com]\n\
             cookie:\n  secure: false\n  secret: {COOKIE_SECRET}\n{}",
            db_url,
            repo_root().join("policies").display(),
            options.extra_yaml,
        );
        let config_path = dir.path().join("gatehouse.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("GATEHOUSE_LOG", "info");
        let mut proc = Proc::spawn("gatehouse", command, dir.path().join("gatehouse.log"));
        wait_http(&format!("http://127.0.0.1:{admin_port}/healthz"), &mut proc).await;
        Gatehouse {
            port,
            admin_port,
            config_path,
            proc,
            db_url: db_url.to_string(),
            _db: db,
            _dir: dir,
        }
    }

    /// Runs a `gatehouse` CLI command against this instance's config; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .expect("run gatehouse CLI");
        assert!(
            output.status.success(),
            "gatehouse {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `session create` through the real CLI; returns the cookie value.
    pub fn create_session(&self, email: &str, groups: &str) -> String {
        self.cli(&["session", "create", "--email", email, "--groups", groups])
    }
}

/// Every e2e test also checks that its Gatehouse lost no audit record
/// (`gatehouse_audit_dropped_total` stays 0), read from `/metrics` before it is stopped.
impl Drop for Gatehouse {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(dropped) = scrape_metric(self.admin_port, "gatehouse_audit_dropped_total") {
            assert_eq!(
                dropped,
                0.0,
                "gatehouse dropped audit records:\n{}",
                self.proc.logs()
            );
        }
    }
}

/// One unlabelled metric from `/metrics` on `port`, with a blocking HTTP/1.0 request (this
/// runs in `Drop`); `None` if the process no longer answers.
fn scrape_metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    metric_value(&text, name)
}

/// The value of `series` (a metric name with its labels, e.g.
/// `gatehouse_logins_total{result="success"}`) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Spawns `command` with stdout piped and reads its banner: for each of `prefixes`, the rest
/// of the first line starting with it (how `dev-idp` and `demo` announce free ports).
#[allow(dead_code)] // used by tests/oidc, which includes this file too
pub fn spawn_reading_banner(command: &mut Command, prefixes: &[&str]) -> (Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut values: Vec<Option<String>> = vec![None; prefixes.len()];
    while values.iter().any(Option::is_none) {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{command:?} printed no {prefixes:?} ({e})"));
        for (prefix, value) in prefixes.iter().zip(values.iter_mut()) {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                value.get_or_insert_with(|| rest.to_string());
            }
        }
    }
    (child, values.into_iter().flatten().collect())
}

/// An HTTP client that, like an ingress or a script, does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A file of `deploy/`, e.g. `nginx/nginx.conf`. `INGRESS_TEST_DEPLOY_DIR` points the
/// end-to-end tests at another copy (say, an older commit's, to see what it let through;
/// not `GATEHOUSE_…`: the binary reads those as config overrides).
pub fn deploy_file(relative: &str) -> String {
    let dir = std::env::var_os("INGRESS_TEST_DEPLOY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("deploy"));
    let path = dir.join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rewrites the service addresses of a `deploy/` config to loopback ports.
pub fn localize(template: &str, replacements: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "deploy config no longer contains `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

/// NGINX running `deploy/nginx/nginx.conf` against `gatehouse` and the echo app.
/// NGINX listens on `port`, chosen by the caller (the login redirect names it).
pub fn start_nginx(gatehouse_port: u16, app_port: u16, dir: &Path, port: u16) -> Proc {
    let template = deploy_file("nginx/nginx.conf");
    let conf = localize(
        &template,
        &[
            (
                "server gatehouse:4180;",
                format!("server 127.0.0.1:{gatehouse_port};"),
            ),
            (
                "server restaurant:8080;",
                format!("server 127.0.0.1:{app_port};"),
            ),
            (
                "server marketing:8080;",
                format!("server 127.0.0.1:{app_port};"),
            ),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
        ],
    );
    start_nginx_conf(&conf, dir)
}

/// NGINX running the configuration `conf`, its files in `dir`.
pub fn start_nginx_conf(conf: &str, dir: &Path) -> Proc {
    let nginx = require_binary("nginx", "nginx");
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let globals = format!(
        "daemon off; pid {}; error_log {} info;",
        dir.join("nginx.pid").display(),
        dir.join("nginx-error.log").display()
    );
    let mut command = Command::new(nginx);
    command.arg("-c").arg(&conf_path).arg("-g").arg(globals);
    // SIGTERM: the master stops its workers and waits for them (SIGKILL would orphan them).
    Proc::spawn("nginx", command, dir.join("nginx.out")).stop_gracefully("TERM")
}

/// Caddy running `deploy/caddy/Caddyfile` against `gatehouse` and the echo app.
pub fn start_caddy(gatehouse_port: u16, app_port: u16, dir: &Path, port: u16) -> Proc {
    let caddy = require_binary("caddy", "caddy");
    let template = deploy_file("caddy/Caddyfile");
    let conf = localize(
        &template,
        &[
            ("gatehouse:4180", format!("127.0.0.1:{gatehouse_port}")),
            ("restaurant:8080", format!("127.0.0.1:{app_port}")),
            ("marketing:8080", format!("127.0.0.1:{app_port}")),
            // Every host name (as shipped), on loopback only.
            (":80 {", format!(":{port} {{\n\tbind 127.0.0.1")),
        ],
    );
    let conf_path = dir.join("Caddyfile");
    std::fs::write(&conf_path, conf).expect("write Caddyfile");
    let mut command = Command::new(caddy);
    command
        .arg("run")
        .arg("--config")
        .arg(&conf_path)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    Proc::spawn("caddy", command, dir.join("caddy.log")).stop_gracefully("TERM")
}

/// `nginx -t` on a configuration text: fails the test with NGINX's message.
pub fn nginx_t(conf: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(require_binary("nginx", "nginx"))
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .arg("-g")
        .arg(format!(
            "pid {}; error_log {};",
            dir.path().join("nginx.pid").display(),
            dir.path().join("error.log").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}\n{conf}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `caddy validate` on a Caddyfile text: fails the test with Caddy's message.
pub fn caddy_validate(caddyfile: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let out = Command::new(require_binary("caddy", "caddy"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "caddy validate: {}\n{caddyfile}",
        String::from_utf8_lossy(&out.stderr)
    );
}
