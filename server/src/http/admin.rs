//! The admin listener: `/healthz`, `/readyz`, `/metrics` (README.md, docs/operations.md).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to answer: a bundle is loaded, the database answers, and the background tasks that
/// gate readiness run (the audit writer; the revocation listener, without which revoked
/// sessions would keep working from this replica's cache).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reload = state.reloader.status();
    let readiness = state.readiness().await;
    let backend = state.store.backend_name();
    let database = match &readiness.database {
        Ok(()) => json!({"ok": true, "backend": backend}),
        Err(e) => json!({"ok": false, "backend": backend, "error": e}),
    };
    let reasons = readiness.problems;
    let ready = reasons.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "reasons": reasons,
        // A refused reload does not make us unready: the previous bundle is valid and serving.
        "bundle": {
            "version": reload.version,
            "loaded_at": reload.loaded_at.to_rfc3339(),
            "routes": state.bundle.load().routes.routes().len(),
            "last_error": reload.last_error,
            "last_error_at": reload.last_error_at.map(|t| t.to_rfc3339()),
        },
        "database": database,
        // Records waiting in the spool mean the database was (or is) unreachable.
        "audit": {
            "queue_depth": crate::metrics::METRICS.audit_queue_depth.get(),
            "spool_pending": crate::metrics::METRICS.audit_spool_pending.get(),
            "dropped": crate::metrics::METRICS.audit_dropped.get(),
        },
        // Every background task: state, reason, restarts, how its last run ended.
        "tasks": state.tasks.statuses(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let cached = state.authorizer.sessions.cached_sessions();
    crate::metrics::METRICS
        .sessions_active
        .set(i64::try_from(cached).unwrap_or(i64::MAX));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}
