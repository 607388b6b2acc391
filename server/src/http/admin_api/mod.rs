//! `/admin/api/*`: JSON for operators and the admin UI (docs/admin.md). Every call passes
//! the `gatehouse-admin` route's policy; changes made with a cookie also need
//! `X-CSRF-Token`; every change is recorded in `admin_actions` and the audit trail.
//!
//! One module per page's concern: [`routes`], [`stats`], [`decide`], [`impact`], [`audit`],
//! [`sessions`], [`devices`]; this
//! file has the authorization, the change record, and the bundle endpoints.

pub mod audit;
pub mod decide;
pub mod devices;
pub mod impact;
pub mod routes;
pub mod sessions;
pub mod stats;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use crate::authorizer::{AdminRefusal, Credentials};
use crate::headers::ActixHeaders;
use crate::request::credentials::{bearer_token, cookie_values};
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
pub(crate) async fn authorize(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Arc<ResolvedSession>, ApiError> {
    let headers = ActixHeaders(req.headers());
    let cookies = cookie_values(&headers, &state.config.cookie.name);
    let bearer = bearer_token(&headers);
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
            &ActixHeaders(req.headers()),
            super::peer_ip(req),
            credentials,
            chrono::Utc::now(),
        )
        .await
}

/// `GET /admin/api/csrf`: the CSRF token for this session, and who it is (the UI shows
/// the signed-in administrator and a sign-out link).
pub async fn csrf(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let session = authorize(&req, &state).await?;
    let token = state.authorizer.signer.csrf_token(&session.session_id);
    let logout_url = format!(
        "{}/auth/logout",
        state.config.public_url.as_str().trim_end_matches('/')
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "token": token,
            "email": session.email,
            "groups": session.groups().collect::<Vec<_>>(),
            "logout_url": logout_url,
        })))
}

/// `GET /admin/api/bundle`: the live bundle's version, load time, files, routes count, last
/// error, and the version the last activation replaced.
pub async fn bundle(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let status = state.reloader.status();
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "routes".into(),
            json!(state.bundle.load().routes.routes().len()),
        );
        map.insert(
            "previous_version".into(),
            json!(state.reloader.previous().map(|b| b.version.clone())),
        );
    }
    Ok(HttpResponse::Ok().json(body))
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
    record_change(
        &state,
        &req,
        &session,
        Change {
            action: "policy.reload",
            audit_decision: decision,
            target: Some(&status.version),
            detail: json!({"result": decision, "detail": detail}),
        },
    )
    .await;
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

/// One administrator's change, as [`record_change`] writes it.
pub(crate) struct Change<'a> {
    /// `admin_actions.action`, e.g. `session.revoke`.
    pub action: &'a str,
    /// The audit record's `decision` (what happened: `revoked`, `activated`, …).
    pub audit_decision: &'a str,
    /// What was changed: a session or device id, an email, a bundle version.
    pub target: Option<&'a str>,
    pub detail: serde_json::Value,
}

/// Records a change in `admin_actions` and as an `admin` audit event (docs/audit.md), so
/// the security team finds it in both places. A failure to write `admin_actions` is logged,
/// not answered: the change itself has happened; the audit event is never dropped.
pub(crate) async fn record_change(
    state: &AppState,
    req: &HttpRequest,
    admin: &ResolvedSession,
    change: Change<'_>,
) {
    let reason = match change.target {
        Some(target) => format!("{}: {target}", change.action),
        None => change.action.to_string(),
    };
    let mut record = crate::audit::AuditRecord::event(
        "admin",
        change.audit_decision,
        Some(&admin.email),
        Some(reason),
    );
    record.user_id = Some(admin.user_id.clone());
    record.route = Some(crate::authorizer::ADMIN_ROUTE.into());
    record.method = Some(req.method().as_str().to_string());
    record.path = Some(req.path().to_string());
    record.policy_version = Some(state.bundle.load().version.clone());
    record.client_ip = Some(super::peer_ip(req).to_string());
    state.audit.record(record).await;
    if let Err(e) = state
        .store
        .record_admin_action(
            &admin.email,
            change.action,
            change.target,
            &change.detail,
            chrono::Utc::now(),
        )
        .await
    {
        tracing::warn!(error = %e, action = change.action, "admin action not recorded in admin_actions");
    }
}

/// `GET /admin/api/actions`: the latest administrators' changes (the overview lists them).
pub async fn actions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let rows = state
        .store
        .recent_admin_actions(20)
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(json!({"items": rows})))
}

/// Any other `/admin/api/` path: 404 in the API's shape, for admins only.
pub async fn not_found(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    Err(ApiError::NotFound("no_such_endpoint"))
}

/// A store failure, logged with its cause and answered as `store_error`.
pub(crate) fn store_failed(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Invalid(message) => ApiError::BadRequest(message),
        e => {
            tracing::error!(error = %e, "admin API: store failed");
            ApiError::Internal("store_error")
        }
    }
}
