//! Supervised background tasks (docs/operations.md, "Background tasks").
//!
//! Every long-running task of the service (the audit writer, the revocation listener, the
//! session refresher, the policy watcher, SIGHUP, the maintenance loops) is started through
//! one [`Supervisor`]. It names the task, logs how each run ended (returned, failed with an
//! error, panicked, aborted — zero2prod's `report_exit`), restarts it with exponential
//! backoff when its [`TaskSpec`] says so, and keeps each task's state in a [`TaskRegistry`]
//! that `/readyz` reads: a task that gates readiness makes the replica unready, with the
//! reason, for as long as it is not running. A background task never dies silently.
//!
//! One lifecycle mechanism: each task gets a [`TaskContext`] whose shutdown signal (a
//! `watch` channel) the supervisor raises at shutdown. Tasks are stopped one at a time in
//! the reverse order of their start, so the audit writer (started first) drains last, after
//! every task that might still queue a record.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tokio::time::Instant;

use crate::metrics::METRICS;

/// The first restart waits this long; each further failure doubles it.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run at least this long was healthy: the next failure restarts after [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Why a task's run ended with an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(String);

impl TaskError {
    pub fn new(reason: impl Display) -> TaskError {
        TaskError(reason.to_string())
    }
}

/// What the supervisor does when a run ends other than by shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start it again after a backoff, however it ended.
    Always,
    /// A one-off: a normal return finishes it; an error or a panic leaves it failed.
    Never,
}

/// How a task is supervised.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub name: &'static str,
    pub restart: Restart,
    /// `/readyz` fails while this task is not running.
    pub gates_readiness: bool,
    /// The task calls [`TaskContext::up`] once it is really working (e.g. after `LISTEN`);
    /// until then it is `starting`. Otherwise it counts as running as soon as it is spawned.
    pub reports_up: bool,
}

impl TaskSpec {
    /// A task restarted whenever it ends, not gating readiness.
    pub const fn restarted(name: &'static str) -> TaskSpec {
        TaskSpec {
            name,
            restart: Restart::Always,
            gates_readiness: false,
            reports_up: false,
        }
    }

    /// A task that runs once.
    pub const fn once(name: &'static str) -> TaskSpec {
        TaskSpec {
            restart: Restart::Never,
            ..TaskSpec::restarted(name)
        }
    }

    pub const fn gating_readiness(self) -> TaskSpec {
        TaskSpec {
            gates_readiness: true,
            ..self
        }
    }

    pub const fn reporting_up(self) -> TaskSpec {
        TaskSpec {
            reports_up: true,
            ..self
        }
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Spawned, not yet working (see [`TaskSpec::reports_up`]).
    Starting,
    Running,
    /// Ended unexpectedly; waiting for its restart.
    Down,
    /// A one-off task that completed.
    Finished,
    /// Ended and will not be restarted.
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

/// One task's state, as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub gates_readiness: bool,
    /// Why it is down or failed.
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub restarts: u64,
    /// How its last run ended, if one did.
    pub last_exit: Option<String>,
}

struct Entry {
    status: TaskStatus,
    /// The current run, for [`TaskRegistry::abort`].
    run: Option<AbortHandle>,
}

/// The state of every supervised task; cheap to clone, shared with `/readyz`.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    inner: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
}

impl TaskRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        // Updates are single assignments: a panic elsewhere cannot leave an entry half-made.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every task's status, by name.
    pub fn statuses(&self) -> BTreeMap<&'static str, TaskStatus> {
        self.lock()
            .iter()
            .map(|(name, e)| (*name, e.status.clone()))
            .collect()
    }

    pub fn status(&self, name: &str) -> Option<TaskStatus> {
        self.lock().get(name).map(|e| e.status.clone())
    }

    /// Why the replica is not ready, one line per readiness-gating task that is not running;
    /// empty when all of them run.
    pub fn readiness_problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.status.gates_readiness && e.status.state != TaskState::Running)
            .map(|(name, e)| {
                let state = serde_json::to_value(e.status.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                match &e.status.reason {
                    Some(reason) => format!("{name} is {state}: {reason}"),
                    None => format!("{name} is {state}"),
                }
            })
            .collect()
    }

    /// Aborts the task's current run, as a crash would end it; the supervisor reports and
    /// handles the exit as for any other. For fault-injection tests and operators' drills.
    pub fn abort(&self, name: &str) -> bool {
        match self.lock().get(name).and_then(|e| e.run.as_ref()) {
            Some(run) => {
                run.abort();
                true
            }
            None => false,
        }
    }

    fn set(&self, name: &'static str, state: TaskState, reason: Option<String>) {
        let mut tasks = self.lock();
        if let Some(entry) = tasks.get_mut(name)
            && (entry.status.state != state || entry.status.reason != reason)
        {
            entry.status.state = state;
            entry.status.reason = reason;
            entry.status.since = Utc::now();
        }
        METRICS
            .task_up
            .with_label_values(&[name])
            .set(i64::from(state == TaskState::Running));
    }

    fn register(&self, spec: &TaskSpec) {
        self.lock().insert(
            spec.name,
            Entry {
                status: TaskStatus {
                    state: TaskState::Starting,
                    gates_readiness: spec.gates_readiness,
                    reason: None,
                    since: Utc::now(),
                    restarts: 0,
                    last_exit: None,
                },
                run: None,
            },
        );
    }

    fn started(&self, name: &'static str, run: AbortHandle) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.run = Some(run);
        }
    }

    fn exited(&self, name: &'static str, exit: &Exit) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.run = None;
            entry.status.last_exit = Some(exit.to_string());
        }
    }

    fn restarting(&self, name: &'static str) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.status.restarts += 1;
        }
        METRICS.task_restarts.with_label_values(&[name]).inc();
    }
}

/// What a task's run is given: its name, whether it is a restart, the shutdown signal, and a
/// way to say it is working.
pub struct TaskContext {
    name: &'static str,
    restarts: u64,
    registry: TaskRegistry,
    shutdown: watch::Receiver<bool>,
}

impl TaskContext {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// This run follows an earlier one that ended (work it should have done meanwhile may be
    /// missing).
    pub fn is_restart(&self) -> bool {
        self.restarts > 0
    }

    /// The task is working (see [`TaskSpec::reports_up`]).
    pub fn up(&self) {
        self.registry.set(self.name, TaskState::Running, None);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown is asked for (at once if it already was).
    pub async fn shutdown(&mut self) {
        stop_requested(&mut self.shutdown).await;
    }

    /// The shutdown signal itself, for code that takes a receiver.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

/// Resolves once `stop` is raised, or its sender is gone (then nobody can raise it: stop as
/// well).
pub async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across the caller's awaits.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// How one run of a task ended.
#[derive(Debug)]
enum Exit {
    Returned,
    Failed(TaskError),
    Panicked(String),
    Aborted,
}

impl Exit {
    fn of(result: Result<Result<(), TaskError>, JoinError>) -> Exit {
        match result {
            Ok(Ok(())) => Exit::Returned,
            Ok(Err(e)) => Exit::Failed(e),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".into());
                Exit::Panicked(message)
            }
            Err(_) => Exit::Aborted,
        }
    }
}

impl Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Returned => write!(f, "returned"),
            Exit::Failed(e) => write!(f, "failed: {e}"),
            Exit::Panicked(message) => write!(f, "panicked: {message}"),
            Exit::Aborted => write!(f, "aborted"),
        }
    }
}

/// Logs how a run ended, with the task's name (zero2prod's `report_exit`).
fn report_exit(spec: &TaskSpec, exit: &Exit, stopping: bool) {
    let task = spec.name;
    match exit {
        Exit::Returned if stopping => tracing::info!(task, "background task stopped"),
        Exit::Returned if spec.restart == Restart::Never => {
            tracing::info!(task, "background task finished")
        }
        Exit::Returned => tracing::error!(task, "background task returned unexpectedly"),
        Exit::Failed(e) if spec.gates_readiness => {
            tracing::error!(task, error = %e, "background task failed")
        }
        Exit::Failed(e) => tracing::warn!(task, error = %e, "background task failed"),
        Exit::Panicked(message) => {
            tracing::error!(task, panic = %message, "background task panicked")
        }
        Exit::Aborted => tracing::error!(task, "background task aborted"),
    }
}

/// The wait before the next restart.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: MIN_BACKOFF }
    }

    /// The wait after a run that lasted `ran`: short again after a healthy run, doubled
    /// after each quick failure.
    fn after(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.next = MIN_BACKOFF;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }
}

struct Supervised {
    name: &'static str,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

/// Starts, watches, restarts and stops the background tasks.
pub struct Supervisor {
    registry: TaskRegistry,
    tasks: Vec<Supervised>,
}

impl Supervisor {
    pub fn new(registry: TaskRegistry) -> Supervisor {
        Supervisor {
            registry,
            tasks: Vec::new(),
        }
    }

    pub fn registry(&self) -> TaskRegistry {
        self.registry.clone()
    }

    /// Spawns a task: `run` is called for each run (the first, and every restart).
    pub fn spawn<F, Fut>(&mut self, spec: TaskSpec, run: F)
    where
        F: FnMut(TaskContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        self.registry.register(&spec);
        let join = tokio::spawn(supervise(spec, run, self.registry.clone(), stopped));
        self.tasks.push(Supervised {
            name: spec.name,
            stop,
            join,
        });
    }

    /// Stops the tasks in the reverse order of their start, each given at most `limit` to
    /// finish its work (the audit writer drains its queue then).
    pub async fn shutdown(self, limit: Duration) {
        for task in self.tasks.into_iter().rev() {
            let _ = task.stop.send(true);
            let mut join = task.join;
            if tokio::time::timeout(limit, &mut join).await.is_err() {
                tracing::error!(
                    task = task.name,
                    "background task did not stop in time; aborted"
                );
                self.registry.abort(task.name);
                join.abort();
            }
        }
    }
}

/// Runs a task until shutdown, or until it ends for good.
async fn supervise<F, Fut>(
    spec: TaskSpec,
    mut run: F,
    registry: TaskRegistry,
    mut stopped: watch::Receiver<bool>,
) where
    F: FnMut(TaskContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    let mut backoff = Backoff::new();
    let mut restarts = 0;
    loop {
        let initial = if spec.reports_up {
            TaskState::Starting
        } else {
            TaskState::Running
        };
        registry.set(spec.name, initial, None);
        let context = TaskContext {
            name: spec.name,
            restarts,
            registry: registry.clone(),
            shutdown: stopped.clone(),
        };
        let started = Instant::now();
        // Its own task, so that a panic is caught here and the run can be aborted alone.
        let handle = tokio::spawn(run(context));
        registry.started(spec.name, handle.abort_handle());
        let exit = Exit::of(handle.await);
        let stopping = *stopped.borrow();
        report_exit(&spec, &exit, stopping);
        registry.exited(spec.name, &exit);
        if stopping {
            registry.set(spec.name, TaskState::Stopped, None);
            return;
        }
        match (&exit, spec.restart) {
            (Exit::Returned, Restart::Never) => {
                registry.set(spec.name, TaskState::Finished, None);
                return;
            }
            (_, Restart::Never) => {
                registry.set(spec.name, TaskState::Failed, Some(exit.to_string()));
                return;
            }
            (_, Restart::Always) => {}
        }
        let wait = backoff.after(started.elapsed());
        registry.set(spec.name, TaskState::Down, Some(exit.to_string()));
        tracing::warn!(
            task = spec.name,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "restarting background task"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop_requested(&mut stopped) => {
                registry.set(spec.name, TaskState::Stopped, None);
                return;
            }
        }
        restarts += 1;
        registry.restarting(spec.name);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Log lines written while the returned guard lives (a current-thread runtime keeps every
    /// task on this thread, so the thread-local subscriber sees them).
    fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        #[derive(Clone)]
        struct Writer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Writer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer(logs.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
    }

    async fn wait_for(registry: &TaskRegistry, name: &str, state: TaskState) -> TaskStatus {
        let started = std::time::Instant::now();
        loop {
            let status = registry.status(name).unwrap();
            if status.state == state {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} never became {state:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_task_is_logged_fails_readiness_and_is_restarted() {
        let (logs, _guard) = capture_logs();
        let registry = TaskRegistry::default();
        let mut supervisor = Supervisor::new(registry.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        supervisor.spawn(
            TaskSpec::restarted("flaky").gating_readiness(),
            move |mut ctx| {
                let run = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if run == 0 {
                        panic!("the first run breaks");
                    }
                    ctx.shutdown().await;
                    Ok(())
                }
            },
        );
        let down = wait_for(&registry, "flaky", TaskState::Down).await;
        assert_eq!(
            down.reason.as_deref(),
            Some("panicked: the first run breaks")
        );
        assert_eq!(
            registry.readiness_problems(),
            vec!["flaky is down: panicked: the first run breaks".to_string()]
        );
        let running = wait_for(&registry, "flaky", TaskState::Running).await;
        assert_eq!(running.restarts, 1);
        assert_eq!(
            running.last_exit.as_deref(),
            Some("panicked: the first run breaks")
        );
        assert!(registry.readiness_problems().is_empty());
        let logged = text(&logs);
        assert!(logged.contains("background task panicked"), "{logged}");
        assert!(logged.contains("task=\"flaky\""), "{logged}");
        assert!(logged.contains("the first run breaks"), "{logged}");
        supervisor.shutdown(Duration::from_secs(1)).await;
        assert_eq!(registry.status("flaky").unwrap().state, TaskState::Stopped);
        assert!(text(&logs).contains("background task stopped"));
    }

    #[tokio::test]
    async fn an_aborted_task_is_logged_and_restarted() {
        let (logs, _guard) = capture_logs();
        let registry = TaskRegistry::default();
        let mut supervisor = Supervisor::new(registry.clone());
        supervisor.spawn(TaskSpec::restarted("loop"), |mut ctx| async move {
            ctx.shutdown().await;
            Ok(())
        });
        wait_for(&registry, "loop", TaskState::Running).await;
        assert!(registry.abort("loop"));
        let down = wait_for(&registry, "loop", TaskState::Down).await;
        assert_eq!(down.reason.as_deref(), Some("aborted"));
        // Not gating readiness: down, but the replica stays ready.
        assert!(registry.readiness_problems().is_empty());
        assert_eq!(
            wait_for(&registry, "loop", TaskState::Running)
                .await
                .restarts,
            1
        );
        assert!(text(&logs).contains("background task aborted"));
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_one_off_that_fails_stays_failed_and_a_gating_one_keeps_the_replica_unready() {
        let (logs, _guard) = capture_logs();
        let registry = TaskRegistry::default();
        let mut supervisor = Supervisor::new(registry.clone());
        supervisor.spawn(TaskSpec::once("done"), |_| async { Ok(()) });
        supervisor.spawn(TaskSpec::once("broken").gating_readiness(), |_| async {
            Err(TaskError::new("no luck"))
        });
        wait_for(&registry, "done", TaskState::Finished).await;
        let failed = wait_for(&registry, "broken", TaskState::Failed).await;
        assert_eq!(failed.reason.as_deref(), Some("failed: no luck"));
        assert_eq!(
            registry.readiness_problems(),
            vec!["broken is failed: failed: no luck".to_string()]
        );
        let logged = text(&logs);
        assert!(logged.contains("background task finished"), "{logged}");
        assert!(logged.contains("background task failed"), "{logged}");
        assert!(logged.contains("no luck"), "{logged}");
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_task_reporting_up_is_starting_until_it_says_so() {
        let registry = TaskRegistry::default();
        let mut supervisor = Supervisor::new(registry.clone());
        let (go, gate) = watch::channel(false);
        supervisor.spawn(
            TaskSpec::restarted("listener")
                .gating_readiness()
                .reporting_up(),
            move |mut ctx| {
                let mut gate = gate.clone();
                async move {
                    let _ = gate.wait_for(|go| *go).await;
                    ctx.up();
                    ctx.shutdown().await;
                    Ok(())
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            registry.readiness_problems(),
            vec!["listener is starting".to_string()]
        );
        let _ = go.send(true);
        wait_for(&registry, "listener", TaskState::Running).await;
        assert!(registry.readiness_problems().is_empty());
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn shutdown_stops_tasks_in_reverse_start_order() {
        let registry = TaskRegistry::default();
        let mut supervisor = Supervisor::new(registry.clone());
        let order = Arc::new(Mutex::new(Vec::new()));
        for name in ["first", "second", "third"] {
            let order = order.clone();
            supervisor.spawn(TaskSpec::restarted(name), move |mut ctx| {
                let order = order.clone();
                async move {
                    ctx.shutdown().await;
                    order.lock().unwrap().push(ctx.name());
                    Ok(())
                }
            });
        }
        for name in ["first", "second", "third"] {
            wait_for(&registry, name, TaskState::Running).await;
        }
        supervisor.shutdown(Duration::from_secs(1)).await;
        assert_eq!(*order.lock().unwrap(), vec!["third", "second", "first"]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(1);
        assert_eq!(b.after(quick), MIN_BACKOFF);
        assert_eq!(b.after(quick), MIN_BACKOFF * 2);
        for _ in 0..20 {
            b.after(quick);
        }
        assert_eq!(b.after(quick), MAX_BACKOFF);
        assert_eq!(b.after(HEALTHY_RUN), MIN_BACKOFF);
    }
}
