//! `POST /admin/api/decide`: the decision playground (docs/admin.md). The body describes a
//! request — `{"url", "method", "headers", "user", "device", "time"}`, the core's `DryRun` —
//! or names an audit record, `{"audit_id"}`, which is replayed: its request described with
//! the user and device as they are now, at the time it was made. Either is decided by the
//! live bundle through `Authorizer::dry_run`, the path verify takes, and is not audited as a
//! decision (it is no request).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{authorize, store_failed};
use crate::http::error::ApiError;
use crate::replay::Describer;
use crate::state::AppState;
use gatehouse_core::dry_run::DryRun;

pub async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let body = body.into_inner();
    let now = chrono::Utc::now();
    if let Some(id) = body.get("audit_id") {
        let id = id
            .as_i64()
            .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| ApiError::BadRequest("audit_id must be an audit record's id".into()))?;
        let record = state
            .store
            .audited_decision(id)
            .await
            .map_err(store_failed)?
            .ok_or(ApiError::NotFound("no_such_decision"))?;
        let described = Describer::new(&state.store)
            .describe(&record)
            .await
            .map_err(store_failed)?;
        let answer = state
            .authorizer
            .dry_run(&described, now)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        return Ok(HttpResponse::Ok().json(json!({
            "answer": answer,
            "described": described,
            "replayed": record,
        })));
    }
    let described: DryRun = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("not a request description: {e}")))?;
    let answer = state
        .authorizer
        .dry_run(&described, now)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({"answer": answer, "described": described})))
}
