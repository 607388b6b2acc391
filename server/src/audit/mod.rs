//! The audit trail (docs/audit.md): every decision becomes a record, off the hot path.
//!
//! Verify hands a record to a bounded queue (`audit.queue_capacity`) and moves on; one writer
//! task batches records (`audit.batch_size` or every `audit.flush_interval`) into the
//! database. When the database cannot take a batch (down, or slower than the decisions
//! coming in: the queue is past half full), the batch is appended to a spool file and
//! fsync'd, and later batches queue behind it, so order is kept; the spool is replayed into
//! the database when it is back, or has caught up. A record that finds the queue full or
//! closed (the writer stuck, or stopped at shutdown) is appended to the spool by the request
//! itself. So no record is dropped while the disk takes writes, and memory stays bounded by
//! the queue: `gatehouse_audit_dropped_total` counts only records the spool file refused
//! (a full or failing disk), and stays 0.

pub mod spool;
mod writer;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::metrics::METRICS;
use crate::store::{AsAuditEvent, NewAuditEvent, Store};
use spool::Spool;

pub use writer::{AuditWriter, SupervisedWriter, WRITE_TIMEOUT, WriterHandle};

/// A bound of an audit search as people write it (`audit query --since`, the admin API's
/// `since`/`until`): a duration meaning that long before `now` (`1h`, `7d`), or an RFC 3339
/// time.
pub fn parse_time_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is neither a duration (1h, 7d) nor an RFC 3339 time: {e}")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(now - ago)
}

/// Records the queue holds by default (`audit.queue_capacity`): about 50 MB of records, and
/// a few seconds of the fastest verify rate a replica reaches.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;

/// How the pipeline is sized (`audit.*` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    /// Records one database write takes at most.
    pub batch_size: usize,
    /// The longest a record waits in the queue before a write.
    pub flush_interval: Duration,
    /// Records the queue holds; past half of it the writer spools instead of writing.
    pub queue_capacity: usize,
}

/// The audit pipeline of one process: the sink every request records into, and the writer
/// task that empties it, sharing one spool.
pub fn pipeline(
    store: Store,
    spool: Spool,
    settings: PipelineSettings,
) -> (AuditSink, AuditWriter) {
    let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
    let spool = SharedSpool::new(spool);
    let sink = AuditSink {
        tx,
        spool: spool.clone(),
    };
    (sink, AuditWriter::new(store, rx, spool, settings))
}

/// The spool as the writer and the sinks share it. The writer appends its batches; a sink
/// appends a record the queue cannot take and wakes the writer to replay it. Only ever locked
/// on blocking threads (`spawn_blocking`), for one file operation.
#[derive(Clone)]
pub struct SharedSpool {
    spool: Arc<Mutex<Spool>>,
    appended: Arc<Notify>,
}

impl SharedSpool {
    fn new(spool: Spool) -> SharedSpool {
        SharedSpool {
            spool: Arc::new(Mutex::new(spool)),
            appended: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock leaves the spool's state as consistent as the file.
        self.spool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the spool on a blocking thread.
    async fn with<R, F>(&self, f: F) -> std::io::Result<R>
    where
        F: FnOnce(&mut Spool) -> std::io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let shared = self.clone();
        match tokio::task::spawn_blocking(move || f(&mut shared.lock())).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(format!(
                "audit spool task failed: {e}"
            ))),
        }
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    pub request_id: String,
    /// `verify`, `login`, `logout`, `revoke` or `admin`.
    pub kind: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub tenant: Option<String>,
    pub device_id: Option<String>,
    pub route: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `allow`, `deny`, `unauthenticated`, `error`, `public` or `bad_request`.
    pub decision: String,
    pub status: i32,
    pub reason: Option<String>,
    pub policy_version: Option<String>,
    pub latency_us: i64,
    pub client_ip: Option<String>,
    /// `http`, `proxy` or `grpc` for decisions. Records spooled before the field existed
    /// read as `None`.
    #[serde(default)]
    pub transport: Option<String>,
}

impl AuditRecord {
    /// A record of something other than a verify call: a revocation, an admin change.
    pub fn event(
        kind: &str,
        decision: &str,
        email: Option<&str>,
        reason: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            time: chrono::Utc::now(),
            request_id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            user_id: None,
            email: email.map(str::to_string),
            tenant: None,
            device_id: None,
            route: None,
            host: None,
            method: None,
            path: None,
            decision: decision.into(),
            status: 0,
            reason,
            policy_version: None,
            latency_us: 0,
            client_ip: None,
            transport: None,
        }
    }
}

/// The row the store writes for a record: the store defines its columns, the record lends
/// its fields.
impl AsAuditEvent for AuditRecord {
    fn as_audit_event(&self) -> NewAuditEvent<'_> {
        NewAuditEvent {
            time: self.time,
            request_id: &self.request_id,
            kind: &self.kind,
            user_id: self.user_id.as_deref(),
            email: self.email.as_deref(),
            tenant: self.tenant.as_deref(),
            device_id: self.device_id.as_deref(),
            route: self.route.as_deref(),
            host: self.host.as_deref(),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            decision: &self.decision,
            status: self.status,
            reason: self.reason.as_deref(),
            policy_version: self.policy_version.as_deref(),
            latency_us: self.latency_us,
            client_ip: self.client_ip.as_deref(),
            transport: self.transport.as_deref(),
        }
    }
}

/// The sending side of the audit queue; cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    spool: SharedSpool,
}

impl AuditSink {
    /// Queues a record. When the queue is full (the writer is stuck on the database) or
    /// closed (shutdown), the record goes to the spool instead, and the writer replays it;
    /// only a spool file that cannot be written loses it, counted and logged.
    pub async fn record(&self, record: AuditRecord) {
        let record = match self.tx.try_send(record) {
            Ok(()) => {
                METRICS.audit_queue_depth.inc();
                return;
            }
            Err(
                mpsc::error::TrySendError::Full(record) | mpsc::error::TrySendError::Closed(record),
            ) => record,
        };
        METRICS.audit_overflow.inc();
        let spooled = self
            .spool
            .with(move |spool| {
                spool.append_unsynced(std::slice::from_ref(&record))?;
                Ok(spool.pending())
            })
            .await;
        match spooled {
            Ok(pending) => {
                METRICS.audit_spooled.inc();
                METRICS
                    .audit_spool_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
                self.spool.appended.notify_one();
            }
            Err(e) => {
                METRICS.audit_dropped.inc();
                tracing::error!(error = %e, "audit queue full and the spool cannot be written: an audit record was lost");
            }
        }
    }
}
