//! `gatehouse-dev-idp`: the development OpenID provider behind `gatehouse dev-idp` and
//! `gatehouse demo`, on loopback. NOT FOR PRODUCTION.
//!
//! Static users and clients from a YAML file ([`config`]), an RSA key generated at start
//! ([`keys`]), state in memory ([`store`]), tokens built with openidconnect's types
//! ([`tokens`]), and the endpoints ([`http`]): discovery, JWKS, authorize with a login
//! form, token (code with PKCE S256, refresh with rotation), userinfo, end_session with
//! back-channel logout. The file is re-read on every request, so an edited user's groups
//! show at the next refresh. See docs/dev-idp.md.
//!
//! It does not depend on the `gatehouse` crate: the relying party and the provider its
//! tests sign in against share no code.
#![forbid(unsafe_code)]

pub mod config;
pub mod html;
pub mod http;
pub mod keys;
pub mod signed;
pub mod store;
pub mod tokens;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use actix_web::{App, HttpServer, web};

use config::{DevIdpConfig, DevIdpConfigError};

/// Why the dev IdP could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] DevIdpConfigError),
    #[error("cannot read the listening address: {0}")]
    Address(#[source] std::io::Error),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Setup(#[from] http::SetupError),
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl ServeError {
    /// 2 for a bad file (as for Gatehouse's own configuration), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// The arguments of `gatehouse dev-idp`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevIdpArgs {
    /// A loopback address (127.0.0.1, ::1); port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:5556")]
    pub listen: SocketAddr,
    /// The YAML file with the clients and users (see examples/dev-idp.yaml).
    #[arg(long)]
    pub config: PathBuf,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// `gatehouse dev-idp`: refuses a non-loopback address (exit 2), serves until stopped and
/// prints the banner (with the issuer) once the socket is bound.
pub async fn run(args: DevIdpArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        return fail(
            2,
            format!(
                "--listen {}: the dev IdP listens only on loopback (127.0.0.1 or ::1); it is a development tool, NOT for production",
                args.listen
            ),
        );
    }
    let listener = match std::net::TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => return fail(1, format!("cannot listen on {}: {e}", args.listen)),
    };
    let (server, _issuer, banner) = match serve(listener, args.config.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e.exit_code(), e),
    };
    // Printed once the socket is bound: tests and scripts read the issuer from it.
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
    match server.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}

/// Starts the dev IdP on `listener` with the YAML at `config_path`: the server (to await),
/// its issuer and the banner to print.
pub fn serve(
    listener: std::net::TcpListener,
    config_path: PathBuf,
) -> Result<(actix_web::dev::Server, String, String), ServeError> {
    let config = DevIdpConfig::load(&config_path)?;
    let addr = listener.local_addr().map_err(ServeError::Address)?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    if let Some(port) = url::Url::parse(&issuer)
        .ok()
        .and_then(|u| u.port_or_known_default())
        && port != addr.port()
    {
        tracing::warn!(%issuer, listen = %addr, "dev-idp: the issuer's port is not the listening port");
    }
    let key = keys::SigningKey::generate()?;
    let banner = banner(&issuer, &addr, &config);
    let idp = http::Idp::new(issuer.clone(), config_path, config, key).map(web::Data::new)?;
    let server = HttpServer::new(move || App::new().app_data(idp.clone()).configure(http::routes))
        .workers(2)
        .listen(listener)
        .map_err(|source| ServeError::Serve { addr, source })?
        .run();
    Ok((server, issuer, banner))
}

fn banner(issuer: &str, addr: &SocketAddr, config: &DevIdpConfig) -> String {
    let line = "=".repeat(72);
    let mut out = format!(
        "{line}\ngatehouse dev-idp: DEVELOPMENT IDENTITY PROVIDER — NOT FOR PRODUCTION\n{line}\n\
         listening on http://{addr}\nissuer: {issuer}\n\
         discovery: {}/.well-known/openid-configuration\nclients:\n",
        issuer.trim_end_matches('/')
    );
    for c in &config.clients {
        out.push_str(&format!(
            "  {} (redirect_uris: {})\n",
            c.client_id,
            c.redirect_uris.join(", ")
        ));
    }
    out.push_str("logins (username / password):\n");
    for u in &config.users {
        out.push_str(&format!(
            "  {} / {}  <{}> groups: [{}]\n",
            u.username,
            u.password,
            u.email,
            u.groups.join(", ")
        ));
    }
    out.push_str(&line);
    out.push('\n');
    out
}
