//! The audit trail (docs/audit.md): every decision becomes a record, off the hot path.
//!
//! Verify hands a record to a bounded queue and moves on; one writer task batches records
//! (`audit.batch_size` or every `audit.flush_interval`) into the database. When the database
//! cannot take a batch, the batch is appended to a spool file and fsync'd, and later batches
//! queue behind it, so order is kept; the spool is replayed when the database is back. A
//! graceful shutdown drains the queue. Nothing is dropped silently:
//! `gatehouse_audit_dropped_total` counts what could not even be queued, and stays 0.

pub mod spool;
mod writer;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::metrics::METRICS;
use crate::store::{AsAuditEvent, NewAuditEvent};

pub use writer::{AuditWriter, SupervisedWriter, WriterHandle};

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

/// How long a verify may wait for room in a full queue before the record is counted as
/// dropped. A full queue means the writer is far behind; waiting longer would stall the
/// ingress.
pub const MAX_ENQUEUE_WAIT: Duration = Duration::from_millis(50);
/// Records the queue holds before verify has to wait.
pub const QUEUE_CAPACITY: usize = 100_000;

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
}

impl AuditSink {
    /// A sink and the receiving end for [`AuditWriter`].
    pub fn channel() -> (AuditSink, mpsc::Receiver<AuditRecord>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (AuditSink { tx }, rx)
    }

    /// Queues a record; waits at most [`MAX_ENQUEUE_WAIT`] when the queue is full.
    pub async fn record(&self, record: AuditRecord) {
        let sent = match self.tx.try_send(record) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(record)) => {
                self.tx.send_timeout(record, MAX_ENQUEUE_WAIT).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if sent {
            METRICS.audit_queue_depth.inc();
        } else {
            METRICS.audit_dropped.inc();
            tracing::error!("audit queue full or closed: an audit record was dropped");
        }
    }
}
