//! The gRPC listener (`grpc_listen`): Envoy's `ext_authz` `Authorization/Check` and
//! `grpc.health.v1.Health` (docs/ingress.md). `check` maps Envoy's messages to the one
//! decision; this module serves them and keeps the health status in step with `/readyz`.

pub mod check;

use std::future::Future;
use std::time::Duration;

use actix_web::web;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::state::AppState;

/// The service name Envoy's gRPC health check of the ext_authz cluster may ask about.
pub const AUTHORIZATION_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// How often the health status follows readiness.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Serves `listener` until `stop` completes, then stops accepting and lets in-flight checks
/// finish (up to `drain` — a stuck connection must not hold the shutdown forever).
pub fn serve(
    listener: std::net::TcpListener,
    state: web::Data<AppState>,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // Checks are small and many: no Nagle delay on the answers.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (reporter, health) = tonic_health::server::health_reporter();
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let readiness = ReadinessFollower {
        reporter,
        state: state.clone(),
        stopped,
    };
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(AuthorizationServer::new(check::CheckService::new(state)));
    Ok(tokio::spawn(async move {
        // Both names answer NOT_SERVING until readiness is known, never NOT_FOUND (the
        // Authorization name) or SERVING (tonic-health's default for "").
        readiness.announce_not_serving().await;
        tokio::spawn(readiness.run());
        let (begin_drain, drain_begun) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            stop.await;
            let _ = stopping.send(true);
            let _ = begin_drain.send(());
        };
        let server = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => served,
            () = async {
                let _ = drain_begun.await;
                tokio::time::sleep(drain).await;
            } => {
                tracing::warn!(?drain, "gRPC checks still running at the drain limit; closing");
                Ok(())
            }
        }
    }))
}

/// Keeps `grpc.health.v1` in step with `/readyz` (database answers, the tasks that gate
/// readiness run): Envoy's health check stops sending checks to a replica that could only
/// fail them. Stops, reporting NOT_SERVING, when the server stops.
struct ReadinessFollower {
    reporter: HealthReporter,
    state: web::Data<AppState>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl ReadinessFollower {
    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status(AUTHORIZATION_SERVICE, status)
            .await;
    }

    async fn announce_not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    async fn run(mut self) {
        let mut last = Some(ServingStatus::NotServing);
        loop {
            let status = if *self.stopped.borrow() {
                ServingStatus::NotServing
            } else if self.state.readiness().await.problems.is_empty() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                tracing::info!(?status, "gRPC health");
                self.set(status).await;
                last = Some(status);
            }
            if *self.stopped.borrow() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(HEALTH_INTERVAL) => {}
                _ = self.stopped.changed() => {}
            }
        }
    }
}
