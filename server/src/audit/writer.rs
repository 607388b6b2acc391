//! The one task that moves audit records from the queue to the database (or the spool).
//!
//! The database gets a batch only while it keeps up: when the queue is past half full (more
//! decisions arrive than the database takes) or a write fails or hangs past
//! [`WRITE_TIMEOUT`], batches go to the spool, which takes them at disk speed, and later
//! batches queue behind them. Spooled records are replayed, a chunk at a time between
//! batches, once the queue is back under half full: under a burst the database writes what it
//! can and the spool takes the rest, so verify never waits for the database and no record is
//! dropped.
//!
//! Under the supervisor ([`SupervisedWriter`]) the writer's state — the queue's receiving
//! end, the spool, the records taken off the queue but not yet written — outlives a run that
//! panics or is aborted: the next run takes the same state, first moves those records to the
//! spool (fsync'd), and goes on. The queue keeps accepting records meanwhile, so losing the
//! loop loses no record; `/readyz` fails until the loop runs again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::spool::{Chunk, MAX_CHUNK_BYTES};
use super::{AuditRecord, PipelineSettings, SharedSpool};
use crate::metrics::METRICS;
use crate::store::Store;
use crate::tasks::{TaskContext, TaskError, stop_requested};

/// The longest wait between two replay attempts while the database stays down.
const MAX_REPLAY_BACKOFF: Duration = Duration::from_secs(2);
/// A database write that takes longer is given up and its batch spooled: a database that
/// hangs (a lock, a network partition) must not stop the queue from draining. A write given
/// up may still commit; its replay then skips the rows (`ON CONFLICT DO NOTHING`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the writer lets records gather in the queue after taking a batch smaller than
/// `batch_size`, before it asks the queue again. While it waits for the queue, every record
/// sent wakes it (a thread wake-up across cores per decision, most of the writer's CPU
/// under load in a `perf` profile); pausing between takes turns that into one wake-up per
/// few hundred records at high rates. Capped by `audit.flush_interval`.
const GATHER_PAUSE: Duration = Duration::from_millis(5);

pub struct AuditWriter {
    store: Store,
    rx: mpsc::Receiver<AuditRecord>,
    /// Shared with the sinks, which append what the queue cannot take; used through
    /// `spawn_blocking`, so file I/O stays off the runtime's workers.
    spool: SharedSpool,
    batch_size: usize,
    flush_interval: Duration,
    /// Records in the queue from which on the writer is behind: batches go to the spool and
    /// replay waits.
    high_water: usize,
    /// Whether the last flush found the writer behind (logged once per episode).
    behind: bool,
    /// Records taken off the queue, not yet written.
    buffer: Vec<AuditRecord>,
    /// When to take from the queue again after a small take (see [`GATHER_PAUSE`]); `None`
    /// while the writer waits on the queue.
    gather_until: Option<Instant>,
    /// The pause between takes: [`GATHER_PAUSE`], at most the flush interval.
    gather_pause: Duration,
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
    /// Closes the queue (later records go to the spool), writes everything already queued,
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

impl AuditWriter {
    /// The writer of [`super::pipeline`].
    pub(super) fn new(
        store: Store,
        rx: mpsc::Receiver<AuditRecord>,
        spool: SharedSpool,
        settings: PipelineSettings,
    ) -> AuditWriter {
        let (pending, is_empty) = {
            let spool = spool.lock();
            (spool.pending(), spool.is_empty())
        };
        METRICS
            .audit_spool_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let batch_size = settings.batch_size.max(1);
        AuditWriter {
            store,
            high_water: (rx.max_capacity() / 2).max(1),
            rx,
            spool,
            batch_size,
            flush_interval: settings.flush_interval,
            behind: false,
            buffer: Vec::with_capacity(batch_size),
            gather_until: None,
            gather_pause: GATHER_PAUSE.min(settings.flush_interval),
            replay_at: (!is_empty).then(Instant::now),
            backoff: settings.flush_interval,
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

    fn spool_is_empty(&self) -> bool {
        self.spool.lock().is_empty()
    }

    /// More decisions arrive than the database takes: the queue is past half full.
    fn is_behind(&self) -> bool {
        self.rx.len() >= self.high_water
    }

    /// Fsyncs what sinks appended to the spool without waiting for the disk.
    async fn sync_spool(&self) {
        if let Err(e) = self.spool.with(|spool| spool.sync()).await {
            tracing::error!(error = %e, "cannot fsync the audit spool");
        }
    }

    /// Writes until `stop` is raised (or its sender dropped), then drains the queue.
    async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Replay one chunk at a time, so the queue is served between chunks.
            let replay_due = self.replay_at;
            let gather_due = self.gather_until;
            tokio::select! {
                received = self.rx.recv_many(&mut self.buffer, self.batch_size), if gather_due.is_none() => {
                    if received == 0 {
                        // Every sink is gone: drain what is left and stop.
                        self.flush().await;
                        self.replay_all().await;
                        return;
                    }
                    METRICS.audit_queue_depth.sub(i64::try_from(received).unwrap_or(0));
                    if self.buffer.len() >= self.batch_size {
                        self.flush().await;
                    } else if !self.gather_pause.is_zero() {
                        self.gather_until = Some(Instant::now() + self.gather_pause);
                    }
                }
                _ = tokio::time::sleep_until(gather_due.unwrap_or_else(Instant::now)), if gather_due.is_some() => {
                    self.gather_until = None;
                }
                _ = tick.tick() => {
                    // What queued during a pause is written with this flush too, so a
                    // record still reaches the database within a flush interval.
                    self.take_queued();
                    self.flush().await;
                    self.sync_spool().await;
                }
                _ = tokio::time::sleep_until(replay_due.unwrap_or_else(Instant::now)), if replay_due.is_some() => {
                    if self.is_behind() {
                        // Drain the queue first; the database is the bottleneck.
                        self.replay_at = Some(Instant::now() + self.flush_interval);
                    } else {
                        self.replay_step().await;
                    }
                }
                () = self.spool.appended.notified() => {
                    // A sink spooled a record the queue could not take.
                    if self.replay_at.is_none() {
                        self.replay_at = Some(Instant::now() + self.backoff);
                    }
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
                    self.sync_spool().await;
                    tracing::info!("audit queue drained");
                    return;
                }
            }
        }
    }

    /// Moves what the queue holds now into the buffer (up to a batch), without waiting.
    fn take_queued(&mut self) {
        let mut taken = 0_i64;
        while self.buffer.len() < self.batch_size {
            match self.rx.try_recv() {
                Ok(record) => {
                    self.buffer.push(record);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        METRICS.audit_queue_depth.sub(taken);
    }

    /// Writes the buffer to the database, or to the spool when the database fails, hangs or
    /// falls behind, or the spool already holds older records (which must be written first).
    async fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let behind = self.is_behind();
        if behind != self.behind {
            self.behind = behind;
            if behind {
                tracing::warn!(
                    queued = self.rx.len(),
                    "audit writer behind the decisions; spooling until it catches up"
                );
            } else {
                tracing::info!("audit writer caught up; replaying the spool");
            }
        }
        if !behind && self.spool_is_empty() {
            let failure = match tokio::time::timeout(
                WRITE_TIMEOUT,
                self.store.write_audit_batch(&self.buffer),
            )
            .await
            {
                Ok(Ok(())) => {
                    METRICS.audit_written.inc_by(self.buffer.len() as u64);
                    self.buffer.clear();
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {WRITE_TIMEOUT:?}"),
            };
            tracing::warn!(error = %failure, records = self.buffer.len(), "audit write failed; spooling");
            // The database just failed: the first replay waits a little.
            self.backoff = self.flush_interval;
            self.replay_at = Some(Instant::now() + self.backoff);
        }
        self.spool_batch().await;
    }

    /// Appends the buffer to the spool.
    async fn spool_batch(&mut self) {
        let records = std::mem::take(&mut self.buffer);
        let count = records.len();
        let appended = self
            .spool
            .with(move |spool| {
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
                tracing::error!(error = %e, records = count, path = %self.spool.lock().path().display(),
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
            .spool
            .with(move |spool| spool.read_chunk(max_records, MAX_CHUNK_BYTES))
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
        match tokio::time::timeout(WRITE_TIMEOUT, self.store.insert_audit(&records)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "audit database still unavailable; spool kept");
                return Replay::Failed;
            }
            Err(_) => {
                tracing::debug!("audit database did not answer a replay in time; spool kept");
                return Replay::Failed;
            }
        }
        METRICS.audit_written.inc_by(records.len() as u64);
        let replayed = Chunk {
            records: Vec::new(),
            lines,
            end,
            at_end,
        };
        let marked = self
            .spool
            .with(move |spool| {
                spool.mark_replayed(&replayed);
                // Not `replayed.at_end`: a sink may have appended since the chunk was read.
                if spool.is_empty() {
                    spool.clear()?;
                }
                Ok((spool.pending(), spool.is_empty()))
            })
            .await;
        let emptied = match marked {
            Ok((pending, emptied)) => {
                METRICS
                    .audit_spool_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
                emptied
            }
            Err(e) => {
                // The records are in the database and the offset moved on; only the
                // truncation failed. It is tried again after the next chunk.
                tracing::error!(error = %e, "cannot empty the audit spool after replay");
                return Replay::Failed;
            }
        };
        if emptied {
            tracing::info!("audit spool replayed");
            Replay::Done
        } else {
            Replay::More
        }
    }
}
