//! Start-up: connect, migrate, load the bundle, bind the listeners. `main` and the tests
//! both go through [`Application::build`]; tests bind port 0 and read the ports back.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use arc_swap::ArcSwap;

use crate::audit::spool::Spool;
use crate::audit::{AuditSink, AuditWriter, WriterHandle};
use crate::config::{Config, ConfigError};
use crate::decision::Decider;
use crate::http;
use crate::oidc::AuthService;
use crate::oidc::provider::OidcProvider;
use crate::oidc::refresh::Refresher;
use crate::policy::reload::{PolicyReloader, WatchHandle, watch};
use crate::policy::{Bundle, PolicyError};
use crate::session::resolver::{SessionResolver, SessionTimeouts};
use crate::state::AppState;
use crate::store::{Store, StoreError};

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
    public: Server,
    admin: Server,
    proxy: Option<Server>,
    state: web::Data<AppState>,
    /// Watching stops when the application is dropped.
    _watcher: WatchHandle,
    audit_writer: WriterHandle,
}

fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        warn_unimplemented(&config);
        let store = Store::connect(config.database_url.expose()).await?;
        store.migrate().await?;
        let bundle = Bundle::load(&config.policies_dir)?;
        tracing::info!(version = %bundle.version, routes = bundle.routes.routes().len(), "policy bundle loaded");
        crate::metrics::set_bundle_version(&bundle.version);
        crate::metrics::METRICS
            .policy_reloads
            .with_label_values(&["success"])
            .inc();
        store
            .record_policy_version(&bundle.version, &bundle.files, bundle.loaded_at)
            .await?;
        let bundle = Arc::new(ArcSwap::from_pointee(bundle));
        let sessions = SessionResolver::new(
            store.clone(),
            SessionTimeouts {
                idle_timeout: config.session.idle_timeout.0,
                cache_ttl: config.session.cache_ttl.0,
            },
        );
        if let Some(pool) = store.postgres_pool() {
            crate::session::revocation::spawn_listener(pool.clone(), sessions.clone());
        }
        let devices =
            crate::session::device::DeviceResolver::new(store.clone(), config.session.cache_ttl.0);
        let decider = Decider::new(&config, bundle.clone(), sessions.clone(), devices);
        let reloader = Arc::new(PolicyReloader::new(
            config.policies_dir.clone(),
            bundle.clone(),
            store.clone(),
        ));
        let watcher = watch(&config.policies_dir, reloader.clone())?;
        let spool = Spool::open(&config.audit.spool_dir).map_err(|source| StartError::Spool {
            dir: config.audit.spool_dir.clone(),
            source,
        })?;
        let (audit, audit_rx) = AuditSink::channel();
        let audit_writer = AuditWriter::new(
            store.clone(),
            audit_rx,
            spool,
            config.audit.batch_size,
            config.audit.flush_interval.0,
        )
        .spawn();
        let provider = match &config.oidc {
            Some(oidc) => Some(Arc::new(
                OidcProvider::new(oidc, &config.public_url).map_err(|e| ConfigError::Key {
                    key: "oidc".into(),
                    message: e,
                })?,
            )),
            None => None,
        };
        let auth = AuthService::new(
            &config,
            provider,
            store.clone(),
            sessions.clone(),
            audit.clone(),
        );
        if let Some(provider) = auth.provider() {
            spawn_initial_discovery(provider.clone());
            Refresher {
                store: store.clone(),
                provider: provider.clone(),
                cipher: auth.cipher().clone(),
                sessions,
                audit: audit.clone(),
                interval: config.session.refresh_interval.0,
            }
            .spawn();
        }
        spawn_partition_maintenance(store.clone(), config.audit.retention_days);
        spawn_login_state_purge(store.clone());
        spawn_sighup_reloads(reloader.clone());
        let state = web::Data::new(AppState {
            config: Arc::new(config.clone()),
            store,
            bundle,
            decider,
            reloader,
            audit,
            auth,
        });

        let public_listener = bind(config.listen)?;
        let admin_listener = bind(config.admin_listen)?;
        let public_addr = public_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.admin_listen,
                source,
            })?;

        let public_state = state.clone();
        let public = HttpServer::new(move || {
            App::new()
                .app_data(public_state.clone())
                .configure(public_routes)
        })
        .shutdown_timeout(10)
        .client_request_timeout(Duration::from_secs(10))
        .listen(public_listener)
        .map_err(|source| StartError::Bind {
            addr: public_addr,
            source,
        })?
        .run();

        let admin_state = state.clone();
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .configure(admin_routes)
        })
        .workers(1)
        .shutdown_timeout(10)
        .listen(admin_listener)
        .map_err(|source| StartError::Bind {
            addr: admin_addr,
            source,
        })?
        .run();

        let (proxy, proxy_addr) = match &config.proxy {
            Some(p) => {
                let listener = bind(p.listen)?;
                let addr = listener.local_addr().map_err(|source| StartError::Bind {
                    addr: p.listen,
                    source,
                })?;
                let proxy_state = state.clone();
                let forwarder = web::Data::new(http::proxy::Forwarder::new(&config));
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(proxy_state.clone())
                        .app_data(forwarder.clone())
                        .default_service(web::to(http::proxy::proxy))
                })
                .shutdown_timeout(10)
                .listen(listener)
                .map_err(|source| StartError::Bind { addr, source })?
                .run();
                tracing::info!(listen = %addr, "built-in proxy listening");
                (Some(server), Some(addr))
            }
            None => (None, None),
        };

        Ok(Application {
            public_addr,
            admin_addr,
            proxy_addr,
            public,
            admin,
            proxy,
            state,
            _watcher: watcher,
            audit_writer,
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

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until a signal stops both listeners (actix handles SIGINT/SIGTERM and drains
    /// in-flight requests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            public,
            admin,
            proxy,
            state,
            _watcher,
            audit_writer,
            ..
        } = self;
        let proxy = async move {
            match proxy {
                Some(p) => p.await,
                None => Ok(()),
            }
        };
        let (public, admin, proxy) = tokio::join!(public, admin, proxy);
        drop(_watcher);
        // Both servers have drained their requests: the writer now flushes everything
        // queued (to the database, or the spool if it is down) before we exit.
        audit_writer.finish(Duration::from_secs(30)).await;
        state.store.close().await;
        public.and(admin).and(proxy)
    }
}

/// The public listener: verify and the browser login endpoints, with oauth2-proxy's
/// `/oauth2/*` aliases.
fn public_routes(cfg: &mut web::ServiceConfig) {
    use http::auth;
    // NGINX `auth_request` keeps the original method (POST, DELETE, …): accept them all.
    cfg.route("/auth/verify", web::route().to(http::verify::verify))
        .route("/oauth2/auth", web::route().to(http::verify::verify))
        .route("/auth/login", web::get().to(auth::login))
        .route("/oauth2/start", web::get().to(auth::login))
        .route("/auth/callback", web::get().to(auth::callback))
        .route("/oauth2/callback", web::get().to(auth::callback))
        .route("/auth/logout", web::get().to(auth::logout))
        .route("/auth/logout", web::post().to(auth::logout))
        .route("/oauth2/sign_out", web::get().to(auth::logout))
        .route("/oauth2/sign_out", web::post().to(auth::logout))
        .route(
            "/auth/backchannel-logout",
            web::post().to(auth::backchannel_logout),
        )
        .route("/", web::get().to(auth::home));
}

/// Reads the IdP's discovery document at start so the first login does not wait for it;
/// an IdP that is down now is retried at the next login.
fn spawn_initial_discovery(provider: Arc<OidcProvider>) {
    tokio::spawn(async move {
        if let Err(e) = provider.discovered().await {
            tracing::warn!(error = %e, "OIDC discovery failed at start; logins retry it");
        }
    });
}

fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(http::admin::healthz))
        .route("/readyz", web::get().to(http::admin::readyz))
        .route("/metrics", web::get().to(http::admin::metrics))
        .route("/admin/api/csrf", web::get().to(http::admin_api::csrf))
        .route("/admin/api/bundle", web::get().to(http::admin_api::bundle))
        .route("/admin/api/reload", web::post().to(http::admin_api::reload));
}

/// Says plainly which configured parts do not run yet, rather than ignoring them silently.
fn warn_unimplemented(config: &Config) {
    if let Some(grpc) = &config.grpc_listen {
        tracing::warn!(listen = %grpc, "`grpc_listen` is configured but the Envoy ext_authz server is not implemented yet; nothing listens there");
    }
}

/// Drops logins that were started and never finished, every minute.
fn spawn_login_state_purge(store: Store) {
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            if let Err(e) = store.purge_login_states(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "purging expired login states failed");
            }
        }
    });
}

/// Keeps daily audit partitions created ahead and drops expired ones, hourly.
fn spawn_partition_maintenance(store: Store, retention_days: u32) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match store.maintain_audit_partitions(retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    dropped = n,
                    retention_days,
                    "expired audit partitions dropped"
                ),
                Err(e) => tracing::warn!(error = %e, "audit partition maintenance failed"),
            }
        }
    });
}

/// `SIGHUP` reloads the policy bundle, as operators expect of a daemon.
fn spawn_sighup_reloads(reloader: Arc<PolicyReloader>) {
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!(
                "cannot listen for SIGHUP; reload with the file watcher or the admin API"
            );
            return;
        };
        while hangups.recv().await.is_some() {
            reloader.reload("sighup").await;
        }
    });
}
