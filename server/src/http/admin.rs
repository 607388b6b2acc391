//! The admin listener: `/healthz`, `/readyz`, `/metrics` (DESIGN §4).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to answer: a bundle is loaded and the database answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let bundle = state.bundle.load();
    let database = match state.store.ping().await {
        Ok(()) => json!({"ok": true, "backend": state.store.backend_name()}),
        Err(e) => {
            json!({"ok": false, "backend": state.store.backend_name(), "error": e.to_string()})
        }
    };
    let ready = database["ok"] == json!(true);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "bundle": {"version": bundle.version, "loaded_at": bundle.loaded_at.to_rfc3339(), "routes": bundle.routes.routes().len()},
        "database": database,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}
