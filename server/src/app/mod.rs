//! Start-up and shutdown. `main` and the tests both go through [`Application::build`]; tests
//! bind port 0 and read the ports back.
//!
//! Three steps, one file each: [`state`] connects, migrates, loads the bundle and builds the
//! shared state (everything that can refuse a bad configuration); [`listeners`] binds the
//! sockets and serves them; [`background`] starts the supervised tasks. Shutdown runs them
//! backwards: the servers drain their requests, then the tasks stop (the audit writer last,
//! draining its queue), then the store closes.

mod background;
mod listeners;
mod state;

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::web;

use crate::config::{Config, ConfigError};
use crate::policy::PolicyError;
use crate::state::AppState;
use crate::store::StoreError;
use crate::tasks::Supervisor;

/// How long the background tasks get to stop, each (the audit writer drains its queue).
const TASK_STOP_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("policy bundle refused: {}", .0.report())]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot open the audit spool in {dir}: {source}")]
    Spool {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch the policy directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// Bad configuration or policies exit 2, as the CLI contract says; the rest exit 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Policy(_) => 2,
            _ => 1,
        }
    }
}

pub struct Application {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    proxy_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    servers: listeners::Servers,
    state: web::Data<AppState>,
    tasks: Supervisor,
}

impl Application {
    /// Builds the state, binds every listener, then starts the background tasks; returns
    /// with the listeners bound (their addresses are known) and serving.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let (state, background) = state::build(&config).await?;
        let listeners = listeners::bind(&config)?;
        let addrs = listeners.addrs();
        let tasks = background::start(background).await;
        let servers = listeners.serve(&state, &config)?;
        Ok(Application {
            public_addr: addrs.public,
            admin_addr: addrs.admin,
            proxy_addr: addrs.proxy,
            grpc_addr: addrs.grpc,
            servers,
            state,
            tasks,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The built-in proxy's address, when `proxy` is configured.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy_addr
    }

    /// The gRPC (Envoy ext_authz) address, when `grpc_listen` is configured.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until a signal stops the listeners (actix handles SIGINT/SIGTERM and drains
    /// in-flight requests), then stops the tasks and closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            servers,
            state,
            tasks,
            ..
        } = self;
        let served = servers.stopped().await;
        // The servers have drained their requests: the tasks stop now, the audit writer
        // last, after it has written everything queued (to the database, or the spool if
        // it is down).
        tasks.shutdown(TASK_STOP_LIMIT).await;
        state.store.close().await;
        served
    }
}
