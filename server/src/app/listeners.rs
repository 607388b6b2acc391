//! Start-up, step two: bind the public, admin and (when configured) proxy and gRPC
//! listeners, then serve them. Everything is bound before anything serves, so a port in use fails the start
//! (exit 1) with nothing left running.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;

use super::StartError;
use crate::config::Config;
use crate::http;
use crate::state::AppState;

/// How long a stopping server lets in-flight requests finish.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// The bound sockets, not serving yet.
pub(super) struct Listeners {
    public: Bound,
    admin: Bound,
    proxy: Option<Bound>,
    grpc: Option<Bound>,
}

struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The running servers.
pub(super) struct Servers {
    public: Server,
    admin: Server,
    proxy: Option<Server>,
    grpc: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

pub(super) fn bind(config: &Config) -> Result<Listeners, StartError> {
    Ok(Listeners {
        public: bind_one(config.listen)?,
        admin: bind_one(config.admin_listen)?,
        proxy: config
            .proxy
            .as_ref()
            .map(|p| bind_one(p.listen))
            .transpose()?,
        grpc: config.grpc_listen.map(bind_one).transpose()?,
    })
}

/// Binds `addr` and reads back the address (the port, when `addr` asked for port 0).
fn bind_one(addr: SocketAddr) -> Result<Bound, StartError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok(Bound { listener, addr })
}

impl Listeners {
    /// The addresses bound.
    pub(super) fn addrs(&self) -> Addresses {
        Addresses {
            public: self.public.addr,
            admin: self.admin.addr,
            proxy: self.proxy.as_ref().map(|p| p.addr),
            grpc: self.grpc.as_ref().map(|g| g.addr),
        }
    }

    /// Starts a server on each listener.
    pub(super) fn serve(
        self,
        state: &web::Data<AppState>,
        config: &Config,
    ) -> Result<Servers, StartError> {
        let public_state = state.clone();
        let public = HttpServer::new(move || {
            App::new()
                .app_data(public_state.clone())
                .configure(public_routes)
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .client_request_timeout(Duration::from_secs(10))
        .listen(self.public.listener)
        .map_err(listen_failed(self.public.addr))?
        .run();

        let admin_state = state.clone();
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .wrap(admin_headers())
                .configure(admin_routes)
        })
        .workers(1)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(self.admin.listener)
        .map_err(listen_failed(self.admin.addr))?
        .run();

        let proxy = match self.proxy {
            Some(bound) => {
                let addr = bound.addr;
                let proxy_state = state.clone();
                let proxy_config = config.clone();
                let server = HttpServer::new(move || {
                    // One upstream client per worker (this closure runs once on each): its
                    // pooled connections are driven by the worker's own runtime, so a
                    // request and its upstream connection never wake each other across
                    // threads, as they did when the workers shared one pool.
                    let forwarder = web::Data::new(http::proxy::Forwarder::new(&proxy_config));
                    App::new()
                        .app_data(proxy_state.clone())
                        .app_data(forwarder)
                        .default_service(web::to(http::proxy::proxy))
                })
                .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
                .listen(bound.listener)
                .map_err(listen_failed(addr))?
                .run();
                tracing::info!(listen = %addr, "built-in proxy listening");
                Some(server)
            }
            None => None,
        };
        let grpc = match self.grpc {
            Some(bound) => {
                let addr = bound.addr;
                // Stops on the signals actix-web's servers stop on, so all drain together.
                let handle = crate::grpc::serve(
                    bound.listener,
                    state.clone(),
                    stop_signal(),
                    Duration::from_secs(SHUTDOWN_TIMEOUT_SECS),
                )
                .map_err(listen_failed(addr))?;
                tracing::info!(listen = %addr, "Envoy ext_authz gRPC listening");
                Some(handle)
            }
            None => None,
        };
        Ok(Servers {
            public,
            admin,
            proxy,
            grpc,
        })
    }
}

/// Headers on every admin answer: the UI's Content-Security-Policy (docs/security.md), no
/// MIME sniffing, no framing, no referrer leaving the console.
fn admin_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            http::admin_ui::CONTENT_SECURITY_POLICY,
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}

/// Where the servers listen.
pub(super) struct Addresses {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub proxy: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
}

/// SIGINT or SIGTERM: the signals actix-web's servers stop on (tokio delivers a signal to
/// every listener, so both hear it).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; the gRPC server stops with the process");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `HttpServer::listen` failing on a bound socket (it reads the socket's options).
fn listen_failed(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Bind { addr, source }
}

impl Servers {
    /// Waits until every server has stopped (after a signal) and drained its requests.
    pub(super) async fn stopped(self) -> std::io::Result<()> {
        let proxy = async move {
            match self.proxy {
                Some(p) => p.await,
                None => Ok(()),
            }
        };
        let grpc = async move {
            match self.grpc {
                Some(handle) => match handle.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(std::io::Error::other(e)),
                    Err(e) => Err(std::io::Error::other(e)),
                },
                None => Ok(()),
            }
        };
        let (public, admin, proxy, grpc) = tokio::join!(self.public, self.admin, proxy, grpc);
        public.and(admin).and(proxy).and(grpc)
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

/// The admin listener: health, metrics, the admin API and UI (docs/admin.md).
fn admin_routes(cfg: &mut web::ServiceConfig) {
    use http::admin_api as api;
    // Bodies the API cannot read answer in its JSON error shape, not actix's text.
    let json = web::JsonConfig::default()
        .limit(256 * 1024)
        .error_handler(|e, _| http::error::ApiError::BadRequest(e.to_string()).into());
    // An uploaded candidate bundle for the impact preview (`.tar.gz`) may be a few MiB.
    let bytes = web::PayloadConfig::new(8 * 1024 * 1024);
    cfg.app_data(json)
        .app_data(bytes)
        .route("/healthz", web::get().to(http::admin::healthz))
        .route("/readyz", web::get().to(http::admin::readyz))
        .route("/metrics", web::get().to(http::admin::metrics))
        .route("/admin/api/csrf", web::get().to(api::csrf))
        .route("/admin/api/bundle", web::get().to(api::bundle))
        .route("/admin/api/reload", web::post().to(api::reload))
        .route("/admin/api/actions", web::get().to(api::actions))
        .route("/admin/api/routes", web::get().to(api::routes::routes))
        .route("/admin/api/stats", web::get().to(api::stats::stats))
        .route("/admin/api/audit", web::get().to(api::audit::search))
        .route("/admin/api/decide", web::post().to(api::decide::decide))
        .route("/admin/api/impact", web::post().to(api::impact::impact))
        .route("/admin/api/sessions", web::get().to(api::sessions::list))
        .route(
            "/admin/api/sessions/revoke",
            web::post().to(api::sessions::revoke_user),
        )
        .route(
            "/admin/api/sessions/{id}",
            web::delete().to(api::sessions::revoke_one),
        )
        .route("/admin/api/devices", web::get().to(api::devices::list))
        .route(
            "/admin/api/devices/{id}",
            web::patch().to(api::devices::update),
        )
        // Unknown API paths answer in the API's shape, after the same authorization.
        .route("/admin/api/{rest:.*}", web::route().to(api::not_found))
        .route("/admin", web::get().to(http::admin_ui::asset))
        .route("/admin/{file:.*}", web::get().to(http::admin_ui::asset));
}
