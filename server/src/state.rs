//! The one shared application state behind `web::Data` (a missing `Data<T>` is a runtime
//! 500 in actix, so there is exactly one).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::AuditSink;
use crate::authorizer::Authorizer;
use crate::config::Config;
use crate::oidc::AuthService;
use crate::policy::Bundle;
use crate::reload::PolicyReloader;
use crate::store::Store;
use crate::tasks::TaskRegistry;

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The live policy bundle; swapped whole on reload.
    pub bundle: Arc<ArcSwap<Bundle>>,
    pub authorizer: Authorizer,
    /// Every reload trigger (watcher, SIGHUP, admin API) goes through it.
    pub reloader: Arc<PolicyReloader>,
    /// The audit queue; every decision is recorded through it.
    pub audit: AuditSink,
    /// Login, logout and back-channel logout.
    pub auth: AuthService,
    /// The supervised background tasks' states, for `/readyz`.
    pub tasks: TaskRegistry,
}

/// Whether this replica can answer correctly right now (`/readyz`, gRPC health).
pub struct Readiness {
    /// The database's answer to a ping.
    pub database: Result<(), String>,
    /// Why not ready; empty when ready.
    pub problems: Vec<String>,
}

impl AppState {
    /// Not ready when the database does not answer or a task that gates readiness is down
    /// (the audit writer; the revocation listener, without which revoked sessions keep
    /// working from the cache). A refused reload does not count: the previous bundle serves.
    pub async fn readiness(&self) -> Readiness {
        let database = self.store.ping().await.map_err(|e| e.to_string());
        let mut problems = Vec::new();
        if database.is_err() {
            problems.push("the database does not answer".to_string());
        }
        problems.extend(self.tasks.readiness_problems());
        Readiness { database, problems }
    }
}
