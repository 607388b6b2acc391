//! The one error type at the HTTP boundary of the JSON API (`/admin/api/*`): each variant's
//! status is stated once, here; the body names only a short code, never an internal cause
//! (causes of 500s are logged instead).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::authorizer::AdminRefusal;

/// Why an API call was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request Gatehouse refuses to read (a path spelling, a malformed value).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No live session: the code says why (`session_unknown`, `session_expired`, …).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A live session the policy refuses; the policy's reason code.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A change made with a cookie session without the session's `X-CSRF-Token`.
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// What the call names does not exist (a session, a device).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The store or the policy failed; the code names which, the cause is logged.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ApiError {
    /// The code in the JSON body.
    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(reason) => reason,
            ApiError::Unauthenticated(code) => code,
            ApiError::Forbidden(reason) => reason,
            ApiError::Csrf => "csrf_token_missing_or_wrong",
            ApiError::NotFound(code) => code,
            ApiError::Internal(code) => code,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({"error": self.code()}))
    }
}

impl From<AdminRefusal> for ApiError {
    fn from(refusal: AdminRefusal) -> ApiError {
        match refusal {
            AdminRefusal::BadRequest(reason) => ApiError::BadRequest(reason),
            AdminRefusal::Unauthenticated(code) => ApiError::Unauthenticated(code),
            AdminRefusal::NoAdminRoute => ApiError::Forbidden("no_admin_route".into()),
            AdminRefusal::Denied(reason) => ApiError::Forbidden(reason),
            AdminRefusal::StoreFailed => ApiError::Internal("store_error"),
            AdminRefusal::PolicyFailed => ApiError::Internal("policy_error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_status_and_a_code_without_internals() {
        let cases = [
            (
                AdminRefusal::BadRequest("path contains a backslash".into()),
                400,
                "path contains a backslash",
            ),
            (
                AdminRefusal::Unauthenticated("session_expired".into()),
                401,
                "session_expired",
            ),
            (AdminRefusal::NoAdminRoute, 403, "no_admin_route"),
            (
                AdminRefusal::Denied("not_an_admin".into()),
                403,
                "not_an_admin",
            ),
            (AdminRefusal::StoreFailed, 500, "store_error"),
            (AdminRefusal::PolicyFailed, 500, "policy_error"),
        ];
        for (refusal, status, code) in cases {
            let error = ApiError::from(refusal);
            assert_eq!(error.status_code().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
        }
        assert_eq!(ApiError::Csrf.status_code(), StatusCode::FORBIDDEN);
    }
}
