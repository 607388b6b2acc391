//! Prometheus metrics with the names fixed by docs/audit.md, so dashboards can rely on them.
//!
//! Metrics live in one process-wide registry. Counters and histograms are atomic; labelled
//! children are looked up per call (a read lock and a hash), which is cheap next to a policy
//! evaluation.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets from 50 µs to 1 s: verify answers are expected in the tens to hundreds of µs.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub decisions: IntCounterVec,
    pub verify_duration: HistogramVec,
    pub policy_eval_duration: Histogram,
    pub session_cache_hits: IntCounter,
    pub session_cache_misses: IntCounter,
    pub session_documents_rebuilt: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub policy_reload_errors: IntCounter,
    pub policy_bundle_info: IntGaugeVec,
    pub logins: IntCounterVec,
    pub sessions_active: IntGauge,
    pub audit_queue_depth: IntGauge,
    pub audit_written: IntCounter,
    pub audit_spooled: IntCounter,
    pub audit_dropped: IntCounter,
    pub audit_overflow: IntCounter,
    pub audit_spool_pending: IntGauge,
    pub task_up: IntGaugeVec,
    pub task_restarts: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let decisions = IntCounterVec::new(
        Opts::new(
            "gatehouse_decisions_total",
            "Verify decisions by route and outcome",
        ),
        &["route", "decision"],
    )?;
    let verify_duration = HistogramVec::new(
        HistogramOpts::new(
            "gatehouse_verify_duration_seconds",
            "Time to answer a verify request",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
        &["route"],
    )?;
    let policy_eval_duration = Histogram::with_opts(
        HistogramOpts::new(
            "gatehouse_policy_eval_duration_seconds",
            "Time to evaluate a route policy",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )?;
    let session_cache_hits = IntCounter::new(
        "gatehouse_session_cache_hits_total",
        "Sessions answered from memory",
    )?;
    let session_cache_misses = IntCounter::new(
        "gatehouse_session_cache_misses_total",
        "Sessions loaded from the store",
    )?;
    let session_documents_rebuilt = IntCounter::new(
        "gatehouse_session_documents_rebuilt_total",
        "Cached sessions whose policy documents were rebuilt from their compact form (not among the built ones)",
    )?;
    let policy_reloads = IntCounterVec::new(
        Opts::new(
            "gatehouse_policy_reloads_total",
            "Policy bundle reloads by result",
        ),
        &["result"],
    )?;
    let policy_reload_errors = IntCounter::new(
        "gatehouse_policy_reload_errors_total",
        "Policy bundles refused at reload",
    )?;
    let policy_bundle_info = IntGaugeVec::new(
        Opts::new(
            "gatehouse_policy_bundle_info",
            "The live policy bundle (value 1)",
        ),
        &["version"],
    )?;
    let logins = IntCounterVec::new(
        Opts::new("gatehouse_logins_total", "Logins by result"),
        &["result"],
    )?;
    let sessions_active = IntGauge::new(
        "gatehouse_sessions_active",
        "Sessions held in this replica's cache",
    )?;
    let audit_queue_depth = IntGauge::new(
        "gatehouse_audit_queue_depth",
        "Audit records waiting for the writer",
    )?;
    let audit_written = IntCounter::new(
        "gatehouse_audit_written_total",
        "Audit records written to the database",
    )?;
    let audit_spooled = IntCounter::new(
        "gatehouse_audit_spooled_total",
        "Audit records written to the spool while the database was down",
    )?;
    let audit_overflow = IntCounter::new(
        "gatehouse_audit_overflow_total",
        "Audit records the full (or closed) queue could not take, spooled by the request itself",
    )?;
    let audit_dropped = IntCounter::new(
        "gatehouse_audit_dropped_total",
        "Audit records lost (must stay 0)",
    )?;
    let audit_spool_pending = IntGauge::new(
        "gatehouse_audit_spool_pending",
        "Audit records in the spool, not yet replayed",
    )?;
    let task_up = IntGaugeVec::new(
        Opts::new(
            "gatehouse_task_up",
            "Background tasks running (1) or not (0), by task",
        ),
        &["task"],
    )?;
    let task_restarts = IntCounterVec::new(
        Opts::new(
            "gatehouse_task_restarts_total",
            "Background task restarts after a failure, panic or abort, by task",
        ),
        &["task"],
    )?;
    registry.register(Box::new(task_up.clone()))?;
    registry.register(Box::new(task_restarts.clone()))?;
    registry.register(Box::new(audit_queue_depth.clone()))?;
    registry.register(Box::new(audit_written.clone()))?;
    registry.register(Box::new(audit_spooled.clone()))?;
    registry.register(Box::new(audit_dropped.clone()))?;
    registry.register(Box::new(audit_overflow.clone()))?;
    registry.register(Box::new(audit_spool_pending.clone()))?;
    registry.register(Box::new(decisions.clone()))?;
    registry.register(Box::new(verify_duration.clone()))?;
    registry.register(Box::new(policy_eval_duration.clone()))?;
    registry.register(Box::new(session_cache_hits.clone()))?;
    registry.register(Box::new(session_cache_misses.clone()))?;
    registry.register(Box::new(session_documents_rebuilt.clone()))?;
    registry.register(Box::new(policy_reloads.clone()))?;
    registry.register(Box::new(policy_reload_errors.clone()))?;
    registry.register(Box::new(policy_bundle_info.clone()))?;
    registry.register(Box::new(logins.clone()))?;
    registry.register(Box::new(sessions_active.clone()))?;
    Ok(Metrics {
        registry,
        decisions,
        verify_duration,
        policy_eval_duration,
        session_cache_hits,
        session_cache_misses,
        session_documents_rebuilt,
        policy_reloads,
        policy_reload_errors,
        policy_bundle_info,
        logins,
        sessions_active,
        audit_queue_depth,
        audit_written,
        audit_spooled,
        audit_dropped,
        audit_overflow,
        audit_spool_pending,
        task_up,
        task_restarts,
    })
}

/// The process-wide metrics. Building them can only fail on a duplicate name, which is a
/// programming error caught by the first test that touches metrics.
#[allow(
    clippy::expect_used,
    reason = "only a duplicate metric name fails, a programming error every test run catches"
)]
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric definitions are valid"));

pub fn session_cache_hit() {
    METRICS.session_cache_hits.inc();
}

pub fn session_cache_miss() {
    METRICS.session_cache_misses.inc();
}

pub fn session_documents_rebuilt() {
    METRICS.session_documents_rebuilt.inc();
}

/// Marks `version` as the live bundle (the previous version's series is removed).
pub fn set_bundle_version(version: &str) {
    METRICS.policy_bundle_info.reset();
    METRICS
        .policy_bundle_info
        .with_label_values(&[version])
        .set(1);
}

/// The text exposition format for `/metrics`.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&METRICS.registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "could not encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_match_the_design() {
        METRICS.decisions.with_label_values(&["r", "allow"]).inc();
        METRICS
            .verify_duration
            .with_label_values(&["r"])
            .observe(0.0001);
        METRICS.policy_reloads.with_label_values(&["success"]).inc();
        METRICS.logins.with_label_values(&["success"]).inc();
        set_bundle_version("abc");
        METRICS.task_up.with_label_values(&["t"]).set(1);
        METRICS.task_restarts.with_label_values(&["t"]).inc();
        let text = render();
        for name in [
            "gatehouse_decisions_total",
            "gatehouse_verify_duration_seconds_bucket",
            "gatehouse_policy_eval_duration_seconds",
            "gatehouse_session_cache_hits_total",
            "gatehouse_session_cache_misses_total",
            "gatehouse_session_documents_rebuilt_total",
            "gatehouse_policy_reloads_total",
            "gatehouse_policy_reload_errors_total",
            "gatehouse_policy_bundle_info{version=\"abc\"} 1",
            "gatehouse_logins_total",
            "gatehouse_sessions_active",
            "gatehouse_audit_queue_depth",
            "gatehouse_audit_written_total",
            "gatehouse_audit_spooled_total",
            "gatehouse_audit_dropped_total",
            "gatehouse_audit_overflow_total",
            "gatehouse_task_up{task=\"t\"} 1",
            "gatehouse_task_restarts_total",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }
}
