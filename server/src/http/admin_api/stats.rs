//! `GET /admin/api/stats?window=1h`: what the overview shows — decisions per minute by
//! outcome, the most denied routes and users, and the audit pipeline's state (queue depth,
//! records waiting in the spool, records dropped: docs/audit.md).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{authorize, store_failed};
use crate::http::error::ApiError;
use crate::metrics::METRICS;
use crate::state::AppState;

/// The longest window the overview may ask for: the per-minute series stays small.
const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    /// `1h` by default; humantime (`15m`, `6h`), at most a day.
    window: Option<String>,
}

pub async fn stats(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state).await?;
    let window = parse_window(query.window.as_deref().unwrap_or("1h"))?;
    let now = chrono::Utc::now();
    let since = now
        - chrono::Duration::from_std(window).map_err(|_| ApiError::BadRequest("window".into()))?;
    let stats = state
        .store
        .decision_stats(since)
        .await
        .map_err(store_failed)?;
    Ok(HttpResponse::Ok().json(json!({
        "window_seconds": window.as_secs(),
        "since": since,
        "now": now,
        "per_minute": stats.per_minute,
        "top_denied_routes": stats.top_denied_routes,
        "top_denied_users": stats.top_denied_users,
        "audit": {
            "queue_depth": METRICS.audit_queue_depth.get(),
            "spool_pending": METRICS.audit_spool_pending.get(),
            "dropped": METRICS.audit_dropped.get(),
        },
    })))
}

/// A window such as `1h` or `30m`, between a minute and a day.
fn parse_window(text: &str) -> Result<std::time::Duration, ApiError> {
    let window = humantime::parse_duration(text)
        .map_err(|_| ApiError::BadRequest("window must be a duration such as 1h".into()))?;
    if window < std::time::Duration::from_secs(60) || window > MAX_WINDOW {
        return Err(ApiError::BadRequest(
            "window must be between 1m and 24h".into(),
        ));
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_between_a_minute_and_a_day() {
        assert_eq!(parse_window("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_window("15m").unwrap().as_secs(), 900);
        assert!(parse_window("10s").is_err());
        assert!(parse_window("2d").is_err());
        assert!(parse_window("soon").is_err());
    }
}
