//! `POST /admin/api/impact?since=24h&limit=N[&against=previous]`: the policy impact preview
//! (docs/admin.md). The candidate is the `.tar.gz` bundle in the body, or with no body the
//! files on disk (`policies_dir`); with `against=previous`, the live bundle is the candidate
//! and the bundle its activation replaced the baseline. A candidate that does not build
//! answers 422 with its `file:line:col` error, as a refused reload does.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{authorize, store_failed};
use crate::http::error::ApiError;
use crate::policy::BundleFiles;
use crate::replay::{self, CandidateError};
use crate::state::AppState;

/// Records re-decided when the caller names no limit, and the most it may name.
const DEFAULT_LIMIT: usize = 10_000;
const MAX_LIMIT: usize = 100_000;
/// The longest window: thirty days.
const MAX_SINCE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, serde::Deserialize)]
pub struct ImpactQuery {
    since: Option<String>,
    limit: Option<usize>,
    against: Option<String>,
}

pub async fn impact(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ImpactQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let window = humantime::parse_duration(query.since.as_deref().unwrap_or("24h"))
        .map_err(|_| ApiError::BadRequest("since must be a duration such as 24h".into()))?;
    if window > MAX_SINCE {
        return Err(ApiError::BadRequest("since must be at most 30 days".into()));
    }
    let since = chrono::Utc::now()
        - chrono::Duration::from_std(window).map_err(|_| ApiError::BadRequest("since".into()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let live = state.bundle.load_full();
    let (baseline, candidate) = match query.against.as_deref() {
        Some("previous") => {
            let previous = state
                .reloader
                .previous()
                .ok_or(ApiError::NotFound("no_previous_bundle"))?;
            (previous, live)
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "against must be `previous`, not `{other}`"
            )));
        }
        None => {
            let files = if body.is_empty() {
                let dir = state.reloader.dir().to_path_buf();
                web::block(move || BundleFiles::read(&dir))
                    .await
                    .map_err(|_| ApiError::Internal("policy_error"))?
                    .map_err(|e| CandidateError::Refused(e.to_string()))
            } else {
                web::block(move || replay::files_from_tar_gz(&body))
                    .await
                    .map_err(|_| ApiError::Internal("policy_error"))?
            };
            let candidate = match files {
                Ok(files) => replay::build_candidate(files).await,
                Err(e) => Err(e),
            };
            match candidate {
                Ok(bundle) => (live, Arc::new(bundle)),
                Err(e) => {
                    return Ok(HttpResponse::UnprocessableEntity().json(json!({
                        "error": e.to_string(),
                        "refused": matches!(e, CandidateError::Refused(_)),
                    })));
                }
            }
        }
    };
    let report = replay::impact(
        &state.store,
        &state.authorizer.settings,
        baseline,
        candidate,
        since,
        limit,
    )
    .await
    .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(report))
}
