//! Devices: `GET /admin/api/devices?email=` and `PATCH /admin/api/devices/{id}`
//! `{"managed", "trust", "posture"}` — what policies read as `input.device`
//! (docs/policies.md). A change reaches the device's sessions at once: their cached input
//! documents are dropped here and announced to the other replicas.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{Change, authorize, record_change, store_failed};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::DeviceChange;

#[derive(Debug, serde::Deserialize)]
pub struct DevicesQuery {
    email: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<DevicesQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let email = query.email.as_deref().filter(|e| !e.trim().is_empty());
    let items = state
        .store
        .list_devices(email)
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<DeviceChange>,
) -> Result<HttpResponse, ApiError> {
    let admin = authorize(&req, &state).await?;
    let change = body.into_inner();
    if change.managed.is_none() && change.trust.is_none() && change.posture.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give managed, trust or posture".into(),
        ));
    }
    let found = state
        .store
        .update_device(&id, &change)
        .await
        .map_err(store_failed)?;
    if !found {
        return Err(ApiError::NotFound("no_such_device"));
    }
    let hashes = state
        .store
        .device_session_hashes(&id)
        .await
        .map_err(store_failed)?;
    state.authorizer.sessions.evict_hashes(&hashes).await;
    record_change(
        &state,
        &req,
        &admin,
        Change {
            action: "device.update",
            audit_decision: "device_updated",
            target: Some(&id),
            detail: json!({
                "managed": change.managed,
                "trust": change.trust,
                "posture": change.posture,
            }),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({"updated": id.as_str()})))
}
