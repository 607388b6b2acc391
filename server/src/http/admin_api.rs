//! `/admin/api/*`: JSON for operators and the admin UI. Every call passes the
//! `gatehouse-admin` route's policy; changes made with a cookie also need `X-CSRF-Token`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use crate::authorizer::{AdminRefusal, Credentials};
use crate::session::resolver::ResolvedSession;
use crate::state::AppState;

/// Authorizes the call; for unsafe methods with a cookie session, checks the CSRF token.
///
/// The CSRF check is skipped only when the session that authenticated came from the
/// `Authorization: Bearer` header (a browser never sends one on its own). The mere presence
/// of such a header proves nothing: a cross-site page cannot set it, but a request that also
/// carries the cookie must not let a junk bearer switch the check off. So the bearer is
/// tried alone first; only if it names no live session are the cookies tried, and a session
/// from a cookie always needs `X-CSRF-Token`.
async fn authorize(req: &HttpRequest, state: &AppState) -> Result<Arc<ResolvedSession>, ApiError> {
    let cookies = super::cookie_values(req.headers(), &state.config.cookie.name);
    let bearer = super::bearer_token(req.headers());
    if bearer.is_some() {
        let by_bearer = admit(
            req,
            state,
            Credentials {
                cookies: &[],
                bearer,
            },
        )
        .await;
        match by_bearer {
            // The bearer authenticated: no cookie was involved, no CSRF check.
            Ok(session) => return Ok(session),
            // No live session behind the bearer: the cookies may still authenticate.
            Err(AdminRefusal::Unauthenticated(_)) if !cookies.is_empty() => {}
            Err(refusal) => return Err(refusal.into()),
        }
    }
    let session = admit(
        req,
        state,
        Credentials {
            cookies: &cookies,
            bearer: None,
        },
    )
    .await?;
    let unsafe_method = !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    if unsafe_method {
        let presented = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !state
            .authorizer
            .signer
            .verify_csrf(&session.session_id, presented)
        {
            return Err(ApiError::Csrf);
        }
    }
    Ok(session)
}

/// The `gatehouse-admin` route's policy for this call with exactly `credentials`.
async fn admit(
    req: &HttpRequest,
    state: &AppState,
    credentials: Credentials<'_>,
) -> Result<Arc<ResolvedSession>, AdminRefusal> {
    state
        .authorizer
        .authorize_admin(
            req.method().as_str(),
            req.path(),
            req.headers(),
            super::peer_ip(req),
            credentials,
            chrono::Utc::now(),
        )
        .await
}

/// `GET /admin/api/csrf`: the CSRF token for this session.
pub async fn csrf(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let session = authorize(&req, &state).await?;
    let token = state.authorizer.signer.csrf_token(&session.session_id);
    Ok(HttpResponse::Ok().json(json!({"token": token})))
}

/// `GET /admin/api/bundle`: the live bundle's version, load time, files and last error.
pub async fn bundle(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    Ok(HttpResponse::Ok().json(state.reloader.status()))
}

/// `POST /admin/api/reload`: reload the bundle now; answers with the outcome.
pub async fn reload(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let session = authorize(&req, &state).await?;
    tracing::info!(admin = %session.email, "reload requested through the admin API");
    let outcome = state.reloader.reload("admin-api").await;
    let status = state.reloader.status();
    let (decision, detail) = match &outcome {
        crate::reload::ReloadOutcome::Activated { version } => ("activated", version.clone()),
        crate::reload::ReloadOutcome::Unchanged { version } => ("unchanged", version.clone()),
        crate::reload::ReloadOutcome::Refused { error } => ("refused", error.clone()),
    };
    let mut record = crate::audit::AuditRecord::event(
        "admin",
        decision,
        Some(&session.email),
        Some(format!("reload: {detail}")),
    );
    record.route = Some(crate::authorizer::ADMIN_ROUTE.into());
    record.method = Some("POST".into());
    record.path = Some(req.path().to_string());
    record.policy_version = Some(status.version.clone());
    state.audit.record(record).await;
    let detail = json!({"result": decision, "detail": detail});
    if let Err(e) = state
        .store
        .record_admin_action(
            &session.email,
            "policy.reload",
            Some(&status.version),
            &detail,
            chrono::Utc::now(),
        )
        .await
    {
        tracing::warn!(error = %e, "admin action not recorded in admin_actions");
    }
    Ok(match outcome {
        crate::reload::ReloadOutcome::Refused { error } => HttpResponse::UnprocessableEntity()
            .json(json!({"result": "refused", "error": error, "version": status.version})),
        crate::reload::ReloadOutcome::Activated { version } => {
            HttpResponse::Ok().json(json!({"result": "activated", "version": version}))
        }
        crate::reload::ReloadOutcome::Unchanged { version } => {
            HttpResponse::Ok().json(json!({"result": "unchanged", "version": version}))
        }
    })
}
