//! The one task that moves audit records from the queue to the database (or the spool).
//!
//! Under the supervisor ([`SupervisedWriter`]) the writer's state — the queue's receiving
//! end, the spool, the records taken off the queue but not yet written — outlives a run that
//! panics or is aborted: the next run takes the same state, first moves those records to the
//! spool (fsync'd), and goes on. The queue keeps accepting records meanwhile, so losing the
//! loop loses no record; `/readyz` fails until the loop runs again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::AuditRecord;
use super::spool::{Chunk, MAX_CHUNK_BYTES, Spool};
use crate::metrics::METRICS;
use crate::store::Store;
use crate::tasks::{TaskContext, TaskError, stop_requested};

/// The longest wait between two replay attempts while the database stays down.
const MAX_REPLAY_BACKOFF: Duration = Duration::from_secs(2);

pub struct AuditWriter {
    store: Store,
    rx: mpsc::Receiver<AuditRecord>,
    /// Used only by this task, through `spawn_blocking` (file I/O stays off the runtime's
    /// workers); the lock is never contended.
    spool: Arc<Mutex<Spool>>,
    batch_size: usize,
    flush_interval: Duration,
    /// Records taken off the queue, not yet written.
    buffer: Vec<AuditRecord>,
    /// When to try the next replay chunk; `None` while the spool is empty.
    replay_at: Option<Instant>,
    /// The wait after a failed replay attempt, doubled per failure up to
    /// [`MAX_REPLAY_BACKOFF`].
    backoff: Duration,
}

/// Stops an unsupervised writer (benches, tests) after it has drained the queue.
pub struct WriterHandle {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl WriterHandle {
    /// Closes the queue (later records count as dropped), writes everything already queued,
    /// and waits for that, at most `limit`.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::error!("audit writer did not finish draining in time");
        }
    }
}

/// The writer as a supervised task: its state survives a run that ends.
#[derive(Clone)]
pub struct SupervisedWriter {
    writer: Arc<tokio::sync::Mutex<AuditWriter>>,
}

impl SupervisedWriter {
    /// One run: on a restart, the records the last run held go to the spool first. Returns
    /// once shutdown was asked for and the queue is drained.
    pub async fn run(&self, ctx: TaskContext) -> Result<(), TaskError> {
        // The lock is free unless an aborted run is still unwinding; a tokio mutex is not
        // poisoned by a panic, and the state it guards stays consistent between awaits.
        let mut writer = self.writer.lock().await;
        if ctx.is_restart() {
            writer.recover().await;
        }
        ctx.up();
        writer.run(ctx.shutdown_signal()).await;
        Ok(())
    }
}

/// What one replay step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// A chunk went to the database; more is waiting.
    More,
    /// The spool is empty.
    Done,
    /// The database (or the spool file) failed; the spool is as it was.
    Failed,
}

fn lock(spool: &Mutex<Spool>) -> MutexGuard<'_, Spool> {
    // A panic while holding the lock leaves the spool's state as consistent as the file.
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let replay_at = (!spool.is_empty()).then(Instant::now);
        AuditWriter {
            store,
            rx,
            spool: Arc::new(Mutex::new(spool)),
            batch_size: batch_size.max(1),
            flush_interval,
            buffer: Vec::with_capacity(batch_size.max(1)),
            replay_at,
            backoff: flush_interval,
        }
    }

    /// Runs the writer on its own, unsupervised (benches and tests).
    pub fn spawn(mut self) -> WriterHandle {
        let (stop, stopped) = watch::channel(false);
        WriterHandle {
            task: tokio::spawn(async move { self.run(stopped).await }),
            stop,
        }
    }

    /// Hands the writer to the supervisor (see the module comment).
    pub fn supervised(self) -> SupervisedWriter {
        SupervisedWriter {
            writer: Arc::new(tokio::sync::Mutex::new(self)),
        }
    }

    /// After a run ended abruptly: the records it had taken off the queue go to the spool
    /// (the plainest path, fsync'd), to be replayed in order before anything newer.
    async fn recover(&mut self) {
        if !self.buffer.is_empty() {
            tracing::warn!(
                records = self.buffer.len(),
                "audit writer restarted; spooling the records its last run held"
            );
            self.spool_batch().await;
        }
    }

    /// Runs `f` on the spool on a blocking thread.
    async fn with_spool<R, F>(&self, f: F) -> std::io::Result<R>
    where
        F: FnOnce(&mut Spool) -> std::io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || f(&mut lock(&spool))).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(format!(
                "audit spool task failed: {e}"
            ))),
        }
    }

    fn spool_is_empty(&self) -> bool {
        lock(&self.spool).is_empty()
    }

    /// Writes until `stop` is raised (or its sender dropped), then drains the queue.
    async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Replay one chunk at a time, so the queue is served between chunks.
            let replay_due = self.replay_at;
            tokio::select! {
                received = self.rx.recv_many(&mut self.buffer, self.batch_size) => {
                    if received == 0 {
                        // Every sink is gone: drain what is left and stop.
                        self.flush().await;
                        self.replay_all().await;
                        return;
                    }
                    METRICS.audit_queue_depth.sub(i64::try_from(received).unwrap_or(0));
                    if self.buffer.len() >= self.batch_size {
                        self.flush().await;
                    }
                }
                _ = tick.tick() => {
                    self.flush().await;
                }
                _ = tokio::time::sleep_until(replay_due.unwrap_or_else(Instant::now)), if replay_due.is_some() => {
                    self.replay_step().await;
                }
                _ = stop_requested(&mut stop) => {
                    self.rx.close();
                    while self.rx.recv_many(&mut self.buffer, self.batch_size).await > 0 {
                        if self.buffer.len() >= self.batch_size {
                            self.flush().await;
                        }
                    }
                    METRICS.audit_queue_depth.set(0);
                    self.replay_all().await;
                    self.flush().await;
                    tracing::info!("audit queue drained");
                    return;
                }
            }
        }
    }

    /// Writes the buffer to the database, or to the spool when the database fails or the
    /// spool already holds older records (which must be written first).
    async fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if self.spool_is_empty() {
            match self.store.insert_audit(&self.buffer).await {
                Ok(()) => {
                    METRICS.audit_written.inc_by(self.buffer.len() as u64);
                    self.buffer.clear();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = self.buffer.len(), "audit write failed; spooling");
                    // The database just failed: the first replay waits a little.
                    self.backoff = self.flush_interval;
                    self.replay_at = Some(Instant::now() + self.backoff);
                }
            }
        }
        self.spool_batch().await;
    }

    /// Appends the buffer to the spool.
    async fn spool_batch(&mut self) {
        let records = std::mem::take(&mut self.buffer);
        let count = records.len();
        let appended = self
            .with_spool(move |spool| {
                spool.append(&records)?;
                Ok(spool.pending())
            })
            .await;
        match appended {
            Ok(pending) => {
                METRICS.audit_spooled.inc_by(count as u64);
                METRICS
                    .audit_spool_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
            Err(e) => {
                METRICS.audit_dropped.inc_by(count as u64);
                tracing::error!(error = %e, records = count, path = %lock(&self.spool).path().display(),
                    "cannot write the audit spool: records lost");
            }
        }
        if self.replay_at.is_none() && !self.spool_is_empty() {
            self.replay_at = Some(Instant::now() + self.backoff);
        }
    }

    /// One replay step, and when the next one is due: at once while chunks go through,
    /// after a growing pause while the database fails, never while the spool is empty.
    async fn replay_step(&mut self) -> Replay {
        let outcome = self.replay_chunk().await;
        self.replay_at = match outcome {
            Replay::More => {
                self.backoff = self.flush_interval;
                Some(Instant::now())
            }
            Replay::Done => {
                self.backoff = self.flush_interval;
                None
            }
            Replay::Failed => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_REPLAY_BACKOFF.max(self.flush_interval));
                Some(Instant::now() + wait)
            }
        };
        outcome
    }

    /// Replays chunks until the spool is empty or the database fails (at shutdown).
    async fn replay_all(&mut self) {
        while self.replay_at.is_some() {
            if self.replay_step().await != Replay::More {
                return;
            }
        }
    }

    /// Writes the next chunk of spooled records (at most `batch_size`) to the database and
    /// moves the spool's offset past it; empties the spool once all of it is written. A
    /// failure leaves the offset where it was, so the same chunk is tried again; rows of it
    /// already written are skipped then (inserts ignore rows they already have).
    async fn replay_chunk(&mut self) -> Replay {
        let max_records = self.batch_size;
        let chunk = match self
            .with_spool(move |spool| spool.read_chunk(max_records, MAX_CHUNK_BYTES))
            .await
        {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit spool");
                return Replay::Failed;
            }
        };
        let Chunk {
            records,
            lines,
            end,
            at_end,
        } = chunk;
        if let Err(e) = self.store.insert_audit(&records).await {
            tracing::debug!(error = %e, "audit database still unavailable; spool kept");
            return Replay::Failed;
        }
        METRICS.audit_written.inc_by(records.len() as u64);
        let replayed = Chunk {
            records: Vec::new(),
            lines,
            end,
            at_end,
        };
        let marked = self
            .with_spool(move |spool| {
                spool.mark_replayed(&replayed);
                if replayed.at_end {
                    spool.clear()?;
                }
                Ok(spool.pending())
            })
            .await;
        match marked {
            Ok(pending) => {
                METRICS
                    .audit_spool_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
            Err(e) => {
                // The records are in the database and the offset moved on; only the
                // truncation failed. It is tried again after the next chunk.
                tracing::error!(error = %e, "cannot empty the audit spool after replay");
                return Replay::Failed;
            }
        }
        if at_end {
            tracing::info!("audit spool replayed");
            Replay::Done
        } else {
            Replay::More
        }
    }
}
