//! The `gatehouse` command line (README.md): the clap types, the dispatch to one module per
//! command and the helpers they share. Exit codes: 0 success, 1 failure (a failing policy
//! check or test, an unreachable database), 2 bad usage, configuration or bundle.

mod audit;
mod device;
mod impact;
mod migrate;
mod policy;
mod serve;
mod session;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
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
        /// Rows per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after the previous page (the cursor it printed on stderr).
        #[arg(long)]
        cursor: Option<crate::store::AuditCursor>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    /// `opa test`'s human-readable report.
    Pretty,
    /// `opa test --format json`: an array of results.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    /// One JSON object per line.
    Json,
}

/// `1h` means one hour ago; `2026-11-22T18:00:00Z` means that time.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::audit::parse_time_bound(text, chrono::Utc::now())
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
    /// Run every `test_*` rule of the bundle with its data files, like `opa test`.
    Test {
        dir: PathBuf,
        /// Also list passing tests and cases with their durations, and show every test's
        /// source (with its `with input as` documents).
        #[arg(long, short)]
        verbose: bool,
        /// `pretty` (opa test's report) or `json` (opa test --format json).
        #[arg(long, value_enum, default_value_t = TestFormat::Pretty)]
        format: TestFormat,
    },
    /// Decide one described request as `/auth/verify` would and print the verdict as JSON.
    /// The description (a JSON file, `-` for stdin) is the admin playground's:
    /// `{"url", "method", "headers", "user": {"email", "groups", "tenants", …},
    /// "device": {"managed", "trust", …}, "time"}`; only `url` is required.
    Eval {
        dir: PathBuf,
        /// The described request.
        #[arg(long)]
        input: PathBuf,
        /// Decide with this configuration's header names, trusted proxies and public URL
        /// (default: the built-in header names and http://127.0.0.1:4180).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Re-decide recently audited requests with the bundle in DIR and with the
    /// configuration's own bundle (`policies_dir`), users as they are now, and print those
    /// whose outcome would change (docs/admin.md). Exit 1 when any would.
    Impact {
        dir: PathBuf,
        /// How far back: a duration such as 24h or 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Re-decide at most this many of the newest audited requests.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(c) => serve::serve(&c.config).await,
        Command::Migrate(c) => migrate::migrate(&c.config).await,
        Command::Session(s) => session::session(s).await,
        Command::Policy(p) => policy::policy(p).await,
        Command::Audit(a) => audit::audit(a).await,
        Command::Device(d) => device::device(d).await,
        Command::DevIdp(args) => gatehouse_dev_idp::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| fail(2, e))
}

async fn connect(path: &Path) -> Result<(Config, Store), ExitCode> {
    let config = load_config(path)?;
    let store = Store::connect(config.database_url.expose())
        .await
        .map_err(|e| fail(1, e))?;
    store.migrate().await.map_err(|e| fail(1, e))?;
    Ok((config, store))
}
