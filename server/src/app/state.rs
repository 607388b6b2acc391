//! Start-up, step one: connect and migrate the store, load the bundle, and build the shared
//! [`AppState`] and the background work to start later. Every refusal of a bad
//! configuration (exit code 2) happens here, before anything is bound or spawned.

use std::sync::Arc;

use actix_web::web;
use arc_swap::ArcSwap;

use super::StartError;
use super::background::Background;
use crate::audit::PipelineSettings;
use crate::audit::spool::Spool;
use crate::authorizer::Authorizer;
use crate::config::{Config, ConfigError};
use crate::oidc::AuthService;
use crate::oidc::provider::OidcProvider;
use crate::oidc::refresh::Refresher;
use crate::policy::{Bundle, BundleFiles};
use crate::reload::{PolicyReloader, watch};
use crate::session::device::DeviceResolver;
use crate::session::resolver::{SessionResolver, SessionTimeouts};
use crate::state::AppState;
use crate::store::Store;
use crate::tasks::TaskRegistry;

/// The shared state, and the tasks that will serve it.
pub(super) async fn build(
    config: &Config,
) -> Result<(web::Data<AppState>, Background), StartError> {
    let store = Store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    let (bundle, files) = load_bundle(&store, config).await?;
    let bundle = Arc::new(ArcSwap::from_pointee(bundle));
    let sessions = SessionResolver::new(
        store.clone(),
        SessionTimeouts {
            idle_timeout: config.session.idle_timeout.0,
            cache_ttl: config.session.cache_ttl.0,
        },
        config.session.built_documents,
    );
    let devices = DeviceResolver::new(store.clone(), config.session.cache_ttl.0);
    let reloader = Arc::new(PolicyReloader::new(
        config.policies_dir.clone(),
        bundle.clone(),
        files,
        store.clone(),
    ));
    let watcher = watch(&config.policies_dir, reloader.clone())?;
    let spool = Spool::open(&config.audit.spool_dir).map_err(|source| StartError::Spool {
        dir: config.audit.spool_dir.clone(),
        source,
    })?;
    let (audit, audit_writer) = crate::audit::pipeline(
        store.clone(),
        spool,
        PipelineSettings {
            batch_size: config.audit.batch_size,
            flush_interval: config.audit.flush_interval.0,
            queue_capacity: config.audit.queue_capacity,
        },
    );
    let authorizer = Authorizer::new(
        config,
        bundle.clone(),
        sessions.clone(),
        devices,
        audit.clone(),
    );
    let auth = AuthService::new(
        config,
        oidc_provider(config)?,
        store.clone(),
        sessions.clone(),
        audit.clone(),
    );
    let refresher = auth.provider().map(|provider| Refresher {
        store: store.clone(),
        provider: provider.clone(),
        cipher: auth.cipher().clone(),
        sessions: sessions.clone(),
        audit: audit.clone(),
        interval: config.session.refresh_interval.0,
    });
    let tasks = TaskRegistry::default();
    let background = Background {
        tasks: tasks.clone(),
        store: store.clone(),
        audit_writer,
        revocations: store.postgres_pool().map(|pool| (pool.clone(), sessions)),
        refresher,
        discovery: auth.provider().cloned(),
        watcher,
        reloader: reloader.clone(),
        retention_days: config.audit.retention_days,
    };
    let state = web::Data::new(AppState {
        config: Arc::new(config.clone()),
        store,
        bundle,
        authorizer,
        reloader,
        audit,
        auth,
        tasks,
    });
    Ok((state, background))
}

/// Loads, tests and records the policy bundle (refused: exit 2); returns it with its files.
async fn load_bundle(store: &Store, config: &Config) -> Result<(Bundle, BundleFiles), StartError> {
    let files = BundleFiles::read(&config.policies_dir)?;
    let bundle = Bundle::build(&files)?;
    tracing::info!(version = %bundle.version, routes = bundle.routes.routes().len(), "policy bundle loaded");
    crate::metrics::set_bundle_version(&bundle.version);
    crate::metrics::METRICS
        .policy_reloads
        .with_label_values(&["success"])
        .inc();
    store
        .record_policy_version(&bundle.version, &bundle.files, bundle.loaded_at)
        .await?;
    Ok((bundle, files))
}

/// The OIDC relying party, when `oidc` is configured (a bad one: exit 2).
fn oidc_provider(config: &Config) -> Result<Option<Arc<OidcProvider>>, StartError> {
    let Some(oidc) = &config.oidc else {
        return Ok(None);
    };
    let provider = OidcProvider::new(oidc, &config.public_url).map_err(|e| ConfigError::Key {
        key: "oidc".into(),
        message: e.to_string(),
    })?;
    Ok(Some(Arc::new(provider)))
}
