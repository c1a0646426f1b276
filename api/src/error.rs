//! Every API error is one JSON shape: `{"error":{"code","message","field"}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use pilotlight_core::PlatformError;
use pilotlight_core::ports::{QueueError, RuntimeError, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `invalid_json`, `invalid_field`,
    /// `unknown_field`, `body_too_large`, `not_found`, `conflict`, `unavailable`, `failed`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The spec field at fault, as a dotted path (`scaling.max`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub detail: ErrorDetail,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, detail: ErrorDetail { code: code.into(), message: message.into(), field: None } }
    }
    /// An error that names the field at fault.
    pub fn field(status: StatusCode, code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, detail: ErrorDetail { code: code.into(), message: message.into(), field: Some(field.into()) } }
    }
    pub(crate) fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.detail })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        let message = e.to_string();
        match e {
            PlatformError::Invalid(v) => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", v.field.clone(), v.to_string())
            }
            PlatformError::NotFound(_) => ApiError::not_found(message),
            PlatformError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            PlatformError::Failed { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "failed", message),
            PlatformError::Unsupported(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unsupported", message),
            PlatformError::Store(StoreError::Conflict { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            PlatformError::Queue(QueueError::InvalidInput { field, message }) => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", field, message)
            }
            PlatformError::Runtime(RuntimeError::NotFound(_)) => ApiError::not_found(message),
            _ => {
                tracing::warn!(error = %message, "API request failed on a backend");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}
