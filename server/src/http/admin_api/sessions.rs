//! Sessions: `GET /admin/api/sessions?email=`, `DELETE /admin/api/sessions/{id}` and
//! `POST /admin/api/sessions/revoke {"email"}`. A revocation ends the session in the store,
//! drops it from this replica's cache at once and is announced to the others (Postgres
//! `NOTIFY`, docs/operations.md), so verify refuses it everywhere within a second.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{Change, authorize, record_change, store_failed};
use crate::http::error::ApiError;
use crate::state::AppState;

/// The most sessions one listing returns.
const LIST_LIMIT: i64 = 500;

#[derive(Debug, serde::Deserialize)]
pub struct SessionsQuery {
    email: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let email = query.email.as_deref().filter(|e| !e.trim().is_empty());
    let items = state
        .store
        .list_sessions(email, chrono::Utc::now(), LIST_LIMIT)
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(json!({"items": items, "limit": LIST_LIMIT})))
}

pub async fn revoke_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = authorize(&req, &state).await?;
    let revoked = state
        .store
        .revoke_session_by_id(&id, "admin", chrono::Utc::now())
        .await
        .map_err(store_failed)?;
    let Some(hash) = revoked else {
        return Err(ApiError::NotFound("no_live_session"));
    };
    state
        .authorizer
        .sessions
        .evict_hashes(std::slice::from_ref(&hash))
        .await;
    record_change(
        &state,
        &req,
        &admin,
        Change {
            action: "session.revoke",
            audit_decision: "revoked",
            target: Some(&id),
            detail: json!({"session": id.as_str()}),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({"revoked": 1})))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    email: String,
}

pub async fn revoke_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let admin = authorize(&req, &state).await?;
    let email = body.email.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(ApiError::BadRequest("email is required".into()));
    }
    let hashes = state
        .store
        .revoke_sessions_by_email(&email, "admin", chrono::Utc::now())
        .await
        .map_err(store_failed)?;
    state.authorizer.sessions.evict_hashes(&hashes).await;
    record_change(
        &state,
        &req,
        &admin,
        Change {
            action: "session.revoke_user",
            audit_decision: "revoked",
            target: Some(&email),
            detail: json!({"email": email, "sessions": hashes.len()}),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(json!({"revoked": hashes.len()})))
}
