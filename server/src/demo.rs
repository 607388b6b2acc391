//! `gatehouse demo`: the zero-setup local stack (README.md), in one process on loopback —
//! embedded SQLite, the development IdP with sample users, two sample upstream apps, and
//! Gatehouse with its built-in proxy in front of them. NOT FOR PRODUCTION.
//!
//! Everything it writes (database, config, the example policy bundle, the IdP's users) goes
//! to `--dir` or a temporary directory removed at exit, so it can be read and edited: the
//! policies hot-reload there like anywhere else.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use rand::RngCore;

use crate::app::{Application, StartError};
use crate::config::{Config, ConfigError};

/// The example bundle (`policies/`), embedded so the demo runs from the binary alone.
const BUNDLE: &[(&str, &str)] = &[
    ("routes.yaml", include_str!("../../policies/routes.yaml")),
    (
        "restaurant.rego",
        include_str!("../../policies/restaurant.rego"),
    ),
    (
        "restaurant_test.rego",
        include_str!("../../policies/restaurant_test.rego"),
    ),
    (
        "marketing.rego",
        include_str!("../../policies/marketing.rego"),
    ),
    (
        "marketing_test.rego",
        include_str!("../../policies/marketing_test.rego"),
    ),
    (
        "tenant_apps.rego",
        include_str!("../../policies/tenant_apps.rego"),
    ),
    (
        "tenant_apps_test.rego",
        include_str!("../../policies/tenant_apps_test.rego"),
    ),
    (
        "gatehouse/admin.rego",
        include_str!("../../policies/gatehouse/admin.rego"),
    ),
    (
        "gatehouse/admin_test.rego",
        include_str!("../../policies/gatehouse/admin_test.rego"),
    ),
];
/// The sample users and the IdP client, from `examples/dev-idp.yaml`.
const IDP_USERS: &str = include_str!("../../examples/dev-idp.yaml");
const CLIENT_SECRET: &str = "dev-idp-secret-change-me";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where to keep the database, config, policies and IdP users (default: a temporary
    /// directory, removed at exit).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Pick free ports instead of the fixed ones (Gatehouse 4180, admin 9090, proxy 8080,
    /// IdP 5556, apps 8081 and 8082); the banner names them.
    #[arg(long)]
    pub ephemeral_ports: bool,
}

/// The demo's addresses.
struct Ports {
    gatehouse: u16,
    admin: u16,
    proxy: u16,
    idp: u16,
    restaurant: u16,
    marketing: u16,
}

/// Why the demo could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on 127.0.0.1:{port}: {source} (try --ephemeral-ports)")]
    Listen { port: u16, source: std::io::Error },
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DevIdp(#[from] gatehouse_dev_idp::ServeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("sample app {app}: cannot read its listener's address: {source}")]
    SampleAppAddress {
        app: &'static str,
        source: std::io::Error,
    },
    #[error("sample app {app} on {addr}: {source}")]
    SampleApp {
        app: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gatehouse stopped: {0}")]
    Stopped(#[source] std::io::Error),
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Binds a loopback listener: the fixed port, or a free one.
fn listen(port: u16, ephemeral: bool) -> Result<TcpListener, DemoError> {
    let port = if ephemeral { 0 } else { port };
    TcpListener::bind(("127.0.0.1", port)).map_err(|source| DemoError::Listen { port, source })
}

fn port_of(l: &TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}

pub async fn run(args: DemoArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}

async fn run_inner(args: DemoArgs) -> Result<(), DemoError> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|source| DemoError::Write {
                path: d.clone(),
                source,
            })?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("gatehouse-demo-")
                .tempdir()
                .map_err(DemoError::TempDir)?;
            temp.path().to_path_buf()
        }
    };
    let ephemeral = args.ephemeral_ports;
    // The IdP and the apps serve on listeners bound here; Gatehouse binds its own from the
    // config, so its ports are picked (and released) first.
    let idp_listener = listen(5556, ephemeral)?;
    let restaurant_listener = listen(8081, ephemeral)?;
    let marketing_listener = listen(8082, ephemeral)?;
    let ports = {
        let g = listen(4180, ephemeral)?;
        let a = listen(9090, ephemeral)?;
        let p = listen(8080, ephemeral)?;
        Ports {
            gatehouse: port_of(&g),
            admin: port_of(&a),
            proxy: port_of(&p),
            idp: port_of(&idp_listener),
            restaurant: port_of(&restaurant_listener),
            marketing: port_of(&marketing_listener),
        }
    };

    write_bundle(&dir.join("policies"), &ports)?;
    let idp_config = dir.join("dev-idp.yaml");
    write(&idp_config, &idp_yaml(&ports))?;
    let (idp, issuer, _) = gatehouse_dev_idp::serve(idp_listener, idp_config)?;
    // Signing out ends the session at Gatehouse and at the IdP (docs/login.md).
    let sign_out = format!("http://127.0.0.1:{}/auth/logout", ports.gatehouse);
    let restaurant = sample_app("Restaurant", restaurant_listener, sign_out.clone())?;
    let marketing = sample_app("Marketing", marketing_listener, sign_out)?;

    let config_path = dir.join("gatehouse.yaml");
    write(&config_path, &gatehouse_yaml(&ports, &issuer))?;
    let config = Config::load(&config_path)?;
    let app = Application::build(config).await?;

    let mut out = std::io::stdout();
    let _ = out.write_all(banner(&ports, &dir).as_bytes());
    let _ = out.flush();
    let (gatehouse, _, _, _) = tokio::join!(app.run_until_stopped(), idp, restaurant, marketing);
    gatehouse.map_err(DemoError::Stopped)
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Write { path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed(parent))?;
    }
    std::fs::write(path, text).map_err(failed(path))
}

/// The example bundle with the sample apps' ports as upstreams.
fn write_bundle(dir: &Path, ports: &Ports) -> Result<(), DemoError> {
    for (name, text) in BUNDLE {
        let text = text
            .replace(
                "upstream: http://127.0.0.1:8081",
                &format!("upstream: http://127.0.0.1:{}", ports.restaurant),
            )
            .replace(
                "upstream: http://127.0.0.1:8082",
                &format!("upstream: http://127.0.0.1:{}", ports.marketing),
            );
        write(&dir.join(name), &text)?;
    }
    Ok(())
}

/// `examples/dev-idp.yaml` with the demo's Gatehouse address in the client.
fn idp_yaml(ports: &Ports) -> String {
    IDP_USERS
        .lines()
        .filter(|l| !l.starts_with("issuer:"))
        .map(|l| {
            l.replace(
                "http://127.0.0.1:4180/]",
                &format!(
                    "http://127.0.0.1:{}/, http://127.0.0.1:{}/]",
                    ports.gatehouse, ports.proxy
                ),
            )
            .replace("127.0.0.1:4180", &format!("127.0.0.1:{}", ports.gatehouse))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn gatehouse_yaml(ports: &Ports, issuer: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!(
        "# Written by `gatehouse demo` (NOT FOR PRODUCTION).\n\
         listen: 127.0.0.1:{gatehouse}\n\
         admin_listen: 127.0.0.1:{admin}\n\
         public_url: http://127.0.0.1:{gatehouse}\n\
         database_url: sqlite://gatehouse.db\n\
         policies_dir: policies\n\
         allowed_redirect_domains: [127.0.0.1, localhost]\n\
         cookie:\n  secure: false\n  secret: {secret}\n\
         session:\n  refresh_interval: 5m\n\
         proxy:\n  listen: 127.0.0.1:{proxy}\n\
         oidc:\n  issuer: {issuer}\n  client_id: gatehouse\n  client_secret: {CLIENT_SECRET}\n  \
         scopes: [openid, email, profile, groups]\n",
        gatehouse = ports.gatehouse,
        admin = ports.admin,
        proxy = ports.proxy,
        secret = hex::encode(secret),
    )
}

fn banner(ports: &Ports, dir: &Path) -> String {
    let line = "=".repeat(72);
    format!(
        "{line}\n\
         gatehouse demo — a local stack on loopback, NOT FOR PRODUCTION\n\
         {line}\n\
         proxy: http://127.0.0.1:{proxy}\n\
         gatehouse: http://127.0.0.1:{gatehouse}\n\
         admin: http://127.0.0.1:{admin}/admin/  (the admin console: sign in as carol / carol)\n\
         metrics: http://127.0.0.1:{admin}/metrics\n\
         idp: http://127.0.0.1:{idp}\n\
         files: {dir}\n\
         \n\
         Open http://127.0.0.1:{proxy}/restaurant  (staff, kitchen)\n\
         or   http://127.0.0.1:{proxy}/marketing   (marketing)\n\
         Sign in as bob / bob (kitchen, marketing), alice / alice (finance, staff) or\n\
         carol / carol (gatehouse-admins, staff). Sign out: http://127.0.0.1:{gatehouse}/auth/logout\n\
         Edit {dir}/policies/*.rego: changes go live at once.\n\
         {line}\n",
        proxy = ports.proxy,
        gatehouse = ports.gatehouse,
        admin = ports.admin,
        idp = ports.idp,
        dir = dir.display(),
    )
}

/// What a sample app shows and links to.
struct SampleApp {
    name: &'static str,
    sign_out: String,
}

/// A sample upstream: a small page saying who Gatehouse says the user is (from the identity
/// headers the proxy set), their groups, what they asked for and how to sign out; the
/// request headers that arrived are folded away below, for the curious.
fn sample_app(
    name: &'static str,
    listener: TcpListener,
    sign_out: String,
) -> Result<actix_web::dev::Server, DemoError> {
    async fn page(req: HttpRequest, app: web::Data<SampleApp>) -> HttpResponse {
        use crate::http::auth::escape;
        let header = |h: &str| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let email = header("x-auth-request-email").unwrap_or_else(|| "nobody".into());
        let groups = header("x-auth-request-groups").unwrap_or_default();
        let chips: String = groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| format!("<span class=\"group\">{}</span>", escape(g)))
            .collect();
        let mut rows = String::new();
        let mut names: Vec<_> = req.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        for n in names {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(n),
                escape(&header(n).unwrap_or_default())
            ));
        }
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{app} · sample app</title><style>{STYLE}</style></head><body><main>\
             <p class=\"kicker\">Sample app behind Gatehouse</p><h1>{app}</h1>\
             <p class=\"who\">Signed in as <strong id=\"email\">{email}</strong></p>\
             <dl><dt>Groups</dt><dd id=\"groups\" data-groups=\"{groups}\">{chips}</dd>\
             <dt>Tenant</dt><dd id=\"tenant\">{tenant}</dd>\
             <dt>You asked for</dt><dd><code id=\"path\">{path}</code></dd></dl>\
             <p><a class=\"out\" id=\"sign-out\" href=\"{sign_out}\">Sign out</a></p>\
             <details><summary>Request headers this app received</summary><table>{rows}</table></details>\
             <p class=\"note\">The app has no login code: Gatehouse decided this request and set the \
             identity headers above. NOT FOR PRODUCTION.</p></main></body></html>\n",
            app = escape(app.name),
            email = escape(&email),
            groups = escape(&groups),
            chips = if chips.is_empty() {
                "none".to_string()
            } else {
                chips
            },
            tenant = escape(&header("x-auth-request-tenant").unwrap_or_else(|| "none".into())),
            path = escape(&req.uri().to_string()),
            sign_out = escape(&app.sign_out),
        );
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
    const STYLE: &str = "body{margin:0;background:#f3f5f9;color:#0f172a;\
        font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
        main{max-width:640px;margin:8vh auto;background:#fff;border:1px solid #e2e8f0;\
        border-radius:12px;padding:28px 32px}\
        .kicker{margin:0;color:#64748b;font-size:12px;text-transform:uppercase;letter-spacing:.06em}\
        h1{margin:4px 0 12px;font-size:28px}.who{font-size:17px}\
        dl{display:grid;grid-template-columns:max-content 1fr;gap:8px 18px}dt{color:#64748b}dd{margin:0}\
        .group{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:999px;\
        padding:1px 10px;margin:0 6px 4px 0;font-size:13px;font-weight:600}\
        code{background:#f1f5f9;padding:1px 6px;border-radius:4px}\
        .out{display:inline-block;background:#4f46e5;color:#fff;padding:7px 14px;border-radius:8px;\
        text-decoration:none;font-weight:600}\
        details{margin-top:18px;color:#334155}table{border-collapse:collapse;font-size:13px;margin-top:8px}\
        td{border-top:1px solid #e2e8f0;padding:4px 10px 4px 0;vertical-align:top;word-break:break-all}\
        .note{color:#64748b;font-size:13px;margin-top:18px}";
    let data = web::Data::new(SampleApp { name, sign_out });
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|source| DemoError::SampleAppAddress { app: name, source })?;
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(page))
    })
    .workers(1)
    .listen(listener)
    .map_err(|source| DemoError::SampleApp {
        app: name,
        addr,
        source,
    })?
    .run())
}
