//! The `gatehouse` command line (DESIGN §2). Exit codes: 0 success, 1 failure (a failing
//! policy check or test, an unreachable database), 2 bad usage, configuration or bundle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{Application, StartError};
use crate::config::Config;
use crate::policy::testing::{self, TestOutcome};
use crate::policy::{Bundle, BundleFiles};
use crate::session::token::CookieSigner;
use crate::session::{SessionGrant, issue_session};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Identity-aware forward-auth: OIDC sessions, per-route Rego/CEL policies, audit"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, env = "GATEHOUSE_CONFIG", default_value = "gatehouse.yaml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Create or revoke sessions directly in the store.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check, test and evaluate policy bundles.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Register devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Run a development OpenID provider on loopback (NOT for production).
    DevIdp(gatehouse_dev_idp::DevIdpArgs),
    /// A zero-setup local stack on loopback: SQLite, the development IdP with sample users,
    /// two sample apps behind the built-in proxy (NOT for production).
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices (browser devices from logins and certificate devices), newest first.
    List {
        /// Only this user's devices.
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Mark a device managed (or not) and/or set its trust level; policies see it as
    /// `input.device` within `session.cache_ttl`.
    Set {
        /// The device id (from `device list`).
        id: String,
        #[arg(long)]
        managed: Option<bool>,
        /// low, medium or high.
        #[arg(long)]
        trust: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Register (or update) the device of an mTLS client certificate; prints its id. A trusted
    /// ingress passes the verified certificate's fingerprint as X-Client-Cert-Fingerprint
    /// (or NGINX's $ssl_client_fingerprint as X-SSL-Client-Fingerprint).
    Register {
        /// SHA-256 (or NGINX's SHA-1) fingerprint, hex with or without colons.
        #[arg(long)]
        cert_fingerprint: String,
        /// The device is managed by the organisation.
        #[arg(long)]
        managed: bool,
        /// low, medium or high.
        #[arg(long, default_value = "medium")]
        trust: String,
        /// The user the device belongs to (must exist).
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit records, newest first.
    Query {
        /// The user's email.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        route: Option<String>,
        /// allow, deny, unauthenticated, error, public or bad_request.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// A duration back from now (`1h`, `7d`) or an RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// A duration back from now or an RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    /// One JSON object per line.
    Json,
}

/// `1h` means one hour ago; `2026-11-22T18:00:00Z` means that time.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is neither a duration (1h, 7d) nor an RFC 3339 time: {e}")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(chrono::Utc::now() - ago)
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a user (if needed) and a session; prints the cookie value.
    Create {
        #[arg(long)]
        email: String,
        /// Store-assigned groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Make the user a member of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// The tenant role (with --tenant).
        #[arg(long, default_value = "member")]
        tenant_role: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// Session lifetime, e.g. 1h; defaults to session.ttl.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke sessions of one user, or all sessions.
    Revoke {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        email: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and compile a bundle; prints `file:line:col: message` on error.
    Check { dir: PathBuf },
    /// Run every `test_*` rule in `*_test.rego` files, like `opa test`.
    Test {
        dir: PathBuf,
        /// Also list passing tests with their durations, and show every test's source
        /// (with its `with input as` documents).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Print the decision for one input document (JSON file, `-` for stdin).
    Eval {
        dir: PathBuf,
        #[arg(long)]
        route: String,
        #[arg(long)]
        input: PathBuf,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(c) => serve(&c.config).await,
        Command::Migrate(c) => migrate(&c.config).await,
        Command::Session(s) => session(s).await,
        Command::Policy(p) => policy(p),
        Command::Audit(a) => audit(a).await,
        Command::Device(d) => device(d).await,
        Command::DevIdp(args) => gatehouse_dev_idp::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

async fn device(command: DeviceCommand) -> ExitCode {
    match command {
        DeviceCommand::List {
            email,
            format,
            config,
        } => device_list(email.as_deref(), format, &config.config).await,
        DeviceCommand::Set {
            id,
            managed,
            trust,
            config,
        } => device_set(&id, managed, trust.as_deref(), &config.config).await,
        DeviceCommand::Register {
            cert_fingerprint,
            managed,
            trust,
            email,
            config,
        } => device_register(&cert_fingerprint, managed, &trust, email, &config.config).await,
    }
}

async fn device_list(email: Option<&str>, format: OutputFormat, config: &Path) -> ExitCode {
    let (_, store) = match connect(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let devices = match store.list_devices(email).await {
        Ok(d) => d,
        Err(e) => return fail(1, e),
    };
    match format {
        OutputFormat::Json => {
            for d in &devices {
                println!("{}", serde_json::to_string(d).unwrap_or_default());
            }
        }
        OutputFormat::Table => {
            println!(
                "{:<36}  {:<28}  {:<11}  {:<7}  {:<6}  LAST SEEN",
                "ID", "USER", "KIND", "MANAGED", "TRUST"
            );
            for d in &devices {
                println!(
                    "{:<36}  {:<28}  {:<11}  {:<7}  {:<6}  {}",
                    d.id,
                    d.email.as_deref().unwrap_or("-"),
                    if d.browser { "browser" } else { "certificate" },
                    d.managed,
                    d.trust,
                    d.last_seen_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    ExitCode::SUCCESS
}

async fn device_set(
    id: &str,
    managed: Option<bool>,
    trust: Option<&str>,
    config: &Path,
) -> ExitCode {
    if managed.is_none() && trust.is_none() {
        return fail(2, "nothing to set: give --managed and/or --trust");
    }
    let (_, store) = match connect(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    match store.update_device(id, managed, trust).await {
        Ok(true) => {
            let record = crate::audit::AuditRecord::event(
                "admin",
                "device_updated",
                None,
                Some(format!("{id} managed={managed:?} trust={trust:?}")),
            );
            if let Err(e) = store.insert_audit(&[record]).await {
                eprintln!("warning: device updated but not audited: {e}");
            }
            let detail = serde_json::json!({"managed": managed, "trust": trust});
            if let Err(e) = store
                .record_admin_action(
                    "cli",
                    "device_updated",
                    Some(id),
                    &detail,
                    chrono::Utc::now(),
                )
                .await
            {
                eprintln!("warning: admin action not recorded: {e}");
            }
            eprintln!("device {id} updated");
            ExitCode::SUCCESS
        }
        Ok(false) => fail(1, format!("no device with id {id}")),
        Err(crate::store::StoreError::Invalid(message)) => fail(2, message),
        Err(e) => fail(1, e),
    }
}

async fn device_register(
    cert_fingerprint: &str,
    managed: bool,
    trust: &str,
    email: Option<String>,
    config: &Path,
) -> ExitCode {
    let config = ConfigArg {
        config: config.to_path_buf(),
    };
    let Some(fingerprint) = crate::session::device::normalize_fingerprint(cert_fingerprint) else {
        return fail(
            2,
            "--cert-fingerprint must be a hex SHA-256 or SHA-1 fingerprint",
        );
    };
    let (_, store) = match connect(&config.config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    match store
        .register_cert_device(
            &fingerprint,
            managed,
            trust,
            email.as_deref(),
            chrono::Utc::now(),
        )
        .await
    {
        Ok(id) => {
            let record = crate::audit::AuditRecord::event(
                "admin",
                "device_registered",
                email.as_deref(),
                Some(format!("{fingerprint} managed={managed} trust={trust}")),
            );
            if let Err(e) = store.insert_audit(&[record]).await {
                eprintln!("warning: device registered but not audited: {e}");
            }
            println!("{id}");
            eprintln!("device {id}: {fingerprint}, managed: {managed}, trust: {trust}");
            ExitCode::SUCCESS
        }
        Err(crate::store::StoreError::Invalid(message)) => fail(2, message),
        Err(e) => fail(1, e),
    }
}

async fn audit(command: AuditCommand) -> ExitCode {
    let AuditCommand::Query {
        user,
        route,
        decision,
        tenant,
        since,
        until,
        limit,
        format,
        config,
    } = command;
    let (_, store) = match connect(&config.config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let filter = crate::store::AuditFilter {
        email: user,
        route,
        decision,
        tenant,
        since,
        until,
        limit,
    };
    let rows = match store.query_audit(&filter).await {
        Ok(rows) => rows,
        Err(e) => return fail(1, e),
    };
    match format {
        OutputFormat::Json => {
            for row in &rows {
                println!("{}", serde_json::to_string(row).unwrap_or_default());
            }
        }
        OutputFormat::Table => {
            println!(
                "{:<27} {:<15} {:>3}  {:<16} {:<24} {:<6} {:<28} REASON",
                "TIME", "DECISION", "ST", "ROUTE", "USER", "METHOD", "PATH"
            );
            for r in &rows {
                println!(
                    "{:<27} {:<15} {:>3}  {:<16} {:<24} {:<6} {:<28} {}",
                    r.time,
                    r.decision,
                    r.status,
                    r.route.as_deref().unwrap_or("-"),
                    r.email.as_deref().unwrap_or("-"),
                    r.method.as_deref().unwrap_or("-"),
                    r.path.as_deref().unwrap_or("-"),
                    r.reason.as_deref().unwrap_or("")
                );
            }
            eprintln!("{} record(s)", rows.len());
        }
    }
    ExitCode::SUCCESS
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| fail(2, e))
}

async fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => return start_failed(e),
    };
    tracing::info!(listen = %app.public_addr(), admin = %app.admin_addr(), "gatehouse serving");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}

fn start_failed(e: StartError) -> ExitCode {
    fail(e.exit_code(), e)
}

async fn connect(path: &Path) -> Result<(Config, Store), ExitCode> {
    let config = load_config(path)?;
    let store = Store::connect(config.database_url.expose())
        .await
        .map_err(|e| fail(1, e))?;
    store.migrate().await.map_err(|e| fail(1, e))?;
    Ok((config, store))
}

async fn migrate(path: &Path) -> ExitCode {
    match connect(path).await {
        Ok((_, store)) => {
            eprintln!("migrations applied ({})", store.backend_name());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn session(command: SessionCommand) -> ExitCode {
    match command {
        SessionCommand::Create {
            email,
            groups,
            tenant,
            tenant_role,
            name,
            username,
            ttl,
            config,
        } => {
            let groups: Vec<String> = groups
                .into_iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            // `--groups` splits on commas, so no name here has one; the other rules the
            // IdP's groups follow (no control characters, at most 256 bytes) apply too.
            if let Some((group, problem)) = groups
                .iter()
                .find_map(|g| crate::oidc::claims::group_name_problem(g).map(|p| (g, p)))
            {
                return fail(2, format!("--groups: the group {group:?} {problem}"));
            }
            let (config, store) = match connect(&config.config).await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let signer = CookieSigner::new(config.cookie.secret.expose().as_bytes());
            let grant = SessionGrant {
                email,
                name,
                username,
                store_groups: Some(groups),
                tenant: tenant.map(|t| (t, tenant_role)),
                ttl: ttl.unwrap_or(config.session.ttl.0),
                amr: vec!["cli".into()],
                ip: None,
                user_agent: Some("gatehouse-cli".into()),
            };
            match issue_session(&store, &signer, &grant, chrono::Utc::now()).await {
                Ok(issued) => {
                    // stdout carries only the cookie value, for scripts.
                    println!("{}", issued.cookie_value);
                    eprintln!(
                        "session {} for {} expires {}; send it as cookie `{}` or `Authorization: Bearer`",
                        issued.session_id,
                        grant.email,
                        issued.expires_at.to_rfc3339(),
                        config.cookie.name
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        SessionCommand::Revoke { email, all, config } => {
            let (_, store) = match connect(&config.config).await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let now = chrono::Utc::now();
            let result = match (&email, all) {
                (_, true) => store.revoke_all_sessions("cli: revoke --all", now).await,
                (Some(e), false) => {
                    store
                        .revoke_sessions_by_email(e, "cli: revoke --email", now)
                        .await
                }
                (None, false) => return fail(2, "give --email or --all"),
            };
            match result {
                Ok(hashes) => {
                    let who = if all {
                        "all sessions".to_string()
                    } else {
                        email.clone().unwrap_or_default()
                    };
                    let record = crate::audit::AuditRecord::event(
                        "revoke",
                        "revoked",
                        email.as_deref(),
                        Some(format!("cli: {} session(s) of {who}", hashes.len())),
                    );
                    if let Err(e) = store.insert_audit(&[record]).await {
                        eprintln!("warning: revocation done but not audited: {e}");
                    }
                    println!("revoked {} session(s)", hashes.len());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

fn policy(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { dir } => match Bundle::load(&dir) {
            Ok(bundle) => {
                println!(
                    "ok: {} routes, {} files, version {}",
                    bundle.routes.routes().len(),
                    bundle.files.len(),
                    bundle.version
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.report());
                ExitCode::from(1)
            }
        },
        PolicyCommand::Test { dir, verbose } => policy_test(&dir, verbose),
        PolicyCommand::Eval { dir, route, input } => {
            let bundle = match Bundle::load(&dir) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{}", e.report());
                    return ExitCode::from(1);
                }
            };
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&input)
            };
            let document: serde_json::Value = match text
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(e) => return fail(2, format!("{}: {e}", input.display())),
            };
            match bundle.evaluate_document(&route, &document) {
                Ok(outcome) => {
                    let headers: serde_json::Map<String, serde_json::Value> = outcome
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    let out = serde_json::json!({
                        "route": route,
                        "allow": outcome.allow,
                        "reason": outcome.reason,
                        "headers": headers,
                        "status": outcome.status.unwrap_or(if outcome.allow { 200 } else { 403 }),
                        "bundle_version": bundle.version,
                    });
                    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

fn policy_test(dir: &Path, verbose: bool) -> ExitCode {
    let files = match BundleFiles::read(dir) {
        Ok(f) => f,
        Err(e) => return fail(1, e.report()),
    };
    let (policies, tests) = files.rego_sources();
    let results = match testing::run_tests(&policies, &tests) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}", e.report());
            return ExitCode::from(1);
        }
    };
    // With --verbose each test is shown with its source, which holds its `with input as`.
    let source_of = |r: &testing::TestResult| -> String {
        tests
            .iter()
            .find(|t| t.path == r.file)
            .map(|t| {
                t.text
                    .lines()
                    .skip(r.line.saturating_sub(1))
                    .take_while(|l| !l.trim().is_empty())
                    .map(|l| format!("    | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let mut failed = 0;
    for r in &results {
        if verbose {
            println!("{}", source_of(r));
        }
        match &r.outcome {
            TestOutcome::Pass if verbose => {
                println!("PASS {} ({:?})  {}:{}", r.name, r.duration, r.file, r.line)
            }
            TestOutcome::Pass => {}
            TestOutcome::Fail => {
                failed += 1;
                println!("FAIL {}  {}:{}", r.name, r.file, r.line);
            }
            TestOutcome::Error(e) => {
                failed += 1;
                println!(
                    "ERROR {}  {}:{}\n  {}",
                    r.name,
                    r.file,
                    r.line,
                    e.replace('\n', "\n  ")
                );
            }
        }
    }
    println!("{}", "-".repeat(40));
    println!("PASS: {}/{}", results.len() - failed, results.len());
    if failed > 0 {
        println!("FAIL: {failed}/{}", results.len());
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
