//! Hot reload (docs/policies.md): validate a new bundle off the hot path, then swap it in whole.
//!
//! Every trigger (the file watcher, `SIGHUP`, `POST /admin/api/reload`) calls
//! [`PolicyReloader::reload`]. Reloads are serialized, so an older build can never replace
//! a newer one. A refused bundle leaves the live one serving; its error is kept for
//! `/readyz`, the admin API and the log, and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use notify::RecursiveMode;
use notify_debouncer_full::{Debouncer, RecommendedCache, new_debouncer};

use crate::metrics::METRICS;
use crate::policy::{Bundle, BundleFiles, PolicyError};
use crate::store::Store;
use crate::tasks::{TaskContext, TaskError};

/// How long the watcher waits for a burst of file events to settle.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The reload state shown by `/readyz` and `GET /admin/api/bundle`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub version: String,
    pub loaded_at: DateTime<Utc>,
    pub files: Vec<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub reloads: u64,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Activated { version: String },
    Unchanged { version: String },
    Refused { error: String },
}

impl ReloadOutcome {
    fn metric_label(&self) -> &'static str {
        match self {
            ReloadOutcome::Activated { .. } => "success",
            ReloadOutcome::Unchanged { .. } => "unchanged",
            ReloadOutcome::Refused { .. } => "failure",
        }
    }
}

pub struct PolicyReloader {
    dir: PathBuf,
    live: Arc<ArcSwap<Bundle>>,
    store: Store,
    status: Mutex<ReloadStatus>,
    /// The live bundle's files: the admin UI shows their source, and its tests' results.
    sources: Mutex<Arc<BundleFiles>>,
    /// The bundle the last activation replaced: the admin UI previews what that
    /// activation changed (docs/admin.md).
    previous: Mutex<Option<Arc<Bundle>>>,
    /// Serializes reloads (held across the build, so it is an async mutex).
    running: tokio::sync::Mutex<()>,
}

impl PolicyReloader {
    /// `files` are the live bundle's files, as it was built from them.
    pub fn new(
        dir: PathBuf,
        live: Arc<ArcSwap<Bundle>>,
        files: BundleFiles,
        store: Store,
    ) -> PolicyReloader {
        let status = {
            let b = live.load();
            ReloadStatus {
                version: b.version.clone(),
                loaded_at: b.loaded_at,
                files: b.files.clone(),
                last_error: None,
                last_error_at: None,
                reloads: 0,
            }
        };
        PolicyReloader {
            dir,
            live,
            store,
            status: Mutex::new(status),
            sources: Mutex::new(Arc::new(files)),
            previous: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The policy directory it reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The live bundle's files.
    pub fn sources(&self) -> Arc<BundleFiles> {
        self.sources
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The bundle the last activation replaced, if any.
    pub fn previous(&self) -> Option<Arc<Bundle>> {
        self.previous
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn update_status(&self, f: impl FnOnce(&mut ReloadStatus)) {
        let mut guard = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// Reads, compiles and tests the bundle; swaps it in if it differs and passes.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _serial = self.running.lock().await;
        let dir = self.dir.clone();
        let current = self.live.load().version.clone();
        let live_version = current.clone();
        let built = tokio::task::spawn_blocking(
            move || -> Result<Option<(Bundle, BundleFiles)>, PolicyError> {
                let files = BundleFiles::read(&dir)?;
                if files.version() == live_version {
                    return Ok(None);
                }
                Bundle::build(&files).map(|b| Some((b, files)))
            },
        )
        .await
        .unwrap_or_else(|e| {
            Err(PolicyError::at(
                "<gatehouse>",
                1,
                1,
                format!("reload task failed: {e}"),
            ))
        });

        let outcome = match built {
            Ok(None) => {
                // The files on disk are the live bundle again (e.g. a broken edit reverted).
                self.update_status(|s| {
                    s.last_error = None;
                    s.last_error_at = None;
                });
                ReloadOutcome::Unchanged { version: current }
            }
            Ok(Some((bundle, files))) => {
                let version = bundle.version.clone();
                if let Err(e) = self
                    .store
                    .record_policy_version(&version, &bundle.files, bundle.loaded_at)
                    .await
                {
                    // The bundle is valid; serving it matters more than the history row.
                    tracing::warn!(error = %e, %version, "could not record the policy version");
                }
                self.update_status(|s| {
                    s.version = version.clone();
                    s.loaded_at = bundle.loaded_at;
                    s.files = bundle.files.clone();
                    s.last_error = None;
                    s.last_error_at = None;
                    s.reloads += 1;
                });
                let replaced = self.live.swap(Arc::new(bundle));
                *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(files);
                *self.previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(replaced);
                crate::metrics::set_bundle_version(&version);
                tracing::info!(%version, trigger, "policy bundle activated");
                ReloadOutcome::Activated { version }
            }
            Err(error) => {
                let report = error.report();
                tracing::error!(trigger, error = %report, "policy bundle refused; the previous bundle keeps serving");
                METRICS.policy_reload_errors.inc();
                self.update_status(|s| {
                    s.last_error = Some(error.to_string());
                    s.last_error_at = Some(Utc::now());
                });
                ReloadOutcome::Refused {
                    error: error.to_string(),
                }
            }
        };
        METRICS
            .policy_reloads
            .with_label_values(&[outcome.metric_label()])
            .inc();
        outcome
    }
}

/// The file watcher: a debouncer feeding a channel, and the task that reloads on each
/// settled burst. Dropping it stops watching.
pub struct PolicyWatcher {
    dir: PathBuf,
    debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    changes: tokio::sync::mpsc::Receiver<()>,
    reloader: Arc<PolicyReloader>,
}

/// Watches `dir`; [`PolicyWatcher::run`] asks for a reload after each settled burst of
/// changes.
///
/// The directory is watched recursively (a watch on a single file dies with an editor's
/// rename-on-save), and its parent non-recursively, so that deleting and re-creating the
/// whole directory, or a Kubernetes ConfigMap's `..data` symlink swap, is seen too. Events
/// are not filtered by kind: any change under `dir` means "rescan, hash, compile, swap".
pub fn watch(dir: &Path, reloader: Arc<PolicyReloader>) -> Result<PolicyWatcher, notify::Error> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let parent = dir.parent().map(Path::to_path_buf);
    let (tx, changes) = tokio::sync::mpsc::channel::<()>(1);
    let watched_dir = dir.clone();
    let mut debouncer = new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let relevant = match &result {
                Ok(events) => events
                    .iter()
                    .any(|e| e.paths.iter().any(|p| p.starts_with(&watched_dir))),
                Err(_) => true,
            };
            if relevant {
                // A full channel means a reload is already pending; it will see this change.
                let _ = tx.try_send(());
            }
        },
    )?;
    if let Some(parent) = &parent {
        debouncer.watch(parent, RecursiveMode::NonRecursive)?;
    }
    debouncer.watch(&dir, RecursiveMode::Recursive)?;
    Ok(PolicyWatcher {
        dir,
        debouncer,
        changes,
        reloader,
    })
}

impl PolicyWatcher {
    /// Reloads after each change until shutdown (a supervised task). A watcher made for a
    /// restart reloads once first: changes made while no watcher ran were not seen.
    pub async fn run(mut self, mut ctx: TaskContext) -> Result<(), TaskError> {
        if ctx.is_restart() {
            self.reloader.reload("watch").await;
        }
        loop {
            let changed = tokio::select! {
                changed = self.changes.recv() => changed,
                _ = ctx.shutdown() => return Ok(()),
            };
            if changed.is_none() {
                return Err(TaskError::new("the file watcher stopped sending events"));
            }
            // After the directory was deleted and re-created the old watch is gone: renew it
            // (renewing a live watch is harmless).
            if self.dir.exists() {
                let _ = self.debouncer.unwatch(&self.dir);
                let _ = self.debouncer.watch(&self.dir, RecursiveMode::Recursive);
            }
            self.reloader.reload("watch").await;
        }
    }
}
