//! The one task that moves audit records from the queue to the database (or the spool).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AuditRecord;
use super::spool::Spool;
use crate::metrics::METRICS;
use crate::store::Store;

pub struct AuditWriter {
    store: Store,
    rx: mpsc::Receiver<AuditRecord>,
    spool: Spool,
    batch_size: usize,
    flush_interval: Duration,
}

/// Stops the writer after it has drained the queue.
pub struct WriterHandle {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterHandle {
    /// Closes the queue (later records count as dropped), writes everything already queued,
    /// and waits for that, at most `limit`.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::error!("audit writer did not finish draining in time");
        }
    }
}

impl AuditWriter {
    pub fn new(
        store: Store,
        rx: mpsc::Receiver<AuditRecord>,
        spool: Spool,
        batch_size: usize,
        flush_interval: Duration,
    ) -> AuditWriter {
        METRICS
            .audit_spool_pending
            .set(i64::try_from(spool.pending()).unwrap_or(i64::MAX));
        AuditWriter {
            store,
            rx,
            spool,
            batch_size: batch_size.max(1),
            flush_interval,
        }
    }

    pub fn spawn(self) -> WriterHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        WriterHandle {
            task: tokio::spawn(self.run(stopped)),
            stop,
        }
    }

    async fn run(mut self, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        let mut buffer: Vec<AuditRecord> = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.rx.recv_many(&mut buffer, self.batch_size) => {
                    if received == 0 {
                        // Every sink is gone: drain what is left and stop.
                        self.flush(&mut buffer).await;
                        self.replay().await;
                        return;
                    }
                    METRICS.audit_queue_depth.sub(i64::try_from(received).unwrap_or(0));
                    if buffer.len() >= self.batch_size {
                        self.flush(&mut buffer).await;
                    }
                }
                _ = tick.tick() => {
                    self.flush(&mut buffer).await;
                    self.replay().await;
                }
                _ = &mut stopped => {
                    self.rx.close();
                    while self.rx.recv_many(&mut buffer, self.batch_size).await > 0 {
                        if buffer.len() >= self.batch_size {
                            self.flush(&mut buffer).await;
                        }
                    }
                    METRICS.audit_queue_depth.set(0);
                    self.replay().await;
                    self.flush(&mut buffer).await;
                    tracing::info!("audit queue drained");
                    return;
                }
            }
        }
    }

    /// Writes the buffer to the database, or to the spool when the database fails or the
    /// spool already holds older records (which must be written first).
    async fn flush(&mut self, buffer: &mut Vec<AuditRecord>) {
        if buffer.is_empty() {
            return;
        }
        if self.spool.pending() == 0 {
            match self.store.insert_audit(buffer).await {
                Ok(()) => {
                    METRICS.audit_written.inc_by(buffer.len() as u64);
                    buffer.clear();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = buffer.len(), "audit write failed; spooling")
                }
            }
        }
        self.spool_batch(buffer);
    }

    fn spool_batch(&mut self, buffer: &mut Vec<AuditRecord>) {
        match self.spool.append(buffer) {
            Ok(()) => METRICS.audit_spooled.inc_by(buffer.len() as u64),
            Err(e) => {
                METRICS.audit_dropped.inc_by(buffer.len() as u64);
                tracing::error!(error = %e, records = buffer.len(), path = %self.spool.path().display(),
                    "cannot write the audit spool: records lost");
            }
        }
        METRICS
            .audit_spool_pending
            .set(i64::try_from(self.spool.pending()).unwrap_or(i64::MAX));
        buffer.clear();
    }

    /// Writes spooled records to the database in order, then empties the spool. A failure
    /// part-way leaves the spool as it is; rows already written are skipped on the next try
    /// (inserts ignore rows they already have).
    async fn replay(&mut self) {
        if self.spool.pending() == 0 {
            return;
        }
        let records = match self.spool.read_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit spool");
                return;
            }
        };
        for chunk in records.chunks(self.batch_size) {
            if let Err(e) = self.store.insert_audit(chunk).await {
                tracing::debug!(error = %e, "audit database still unavailable; spool kept");
                return;
            }
        }
        METRICS.audit_written.inc_by(records.len() as u64);
        if let Err(e) = self.spool.clear() {
            tracing::error!(error = %e, "cannot empty the audit spool after replay");
        }
        METRICS.audit_spool_pending.set(0);
        tracing::info!(records = records.len(), "audit spool replayed");
    }
}
