//! Every error the API returns, in one table: code, Knock error type and HTTP status.
//! Responses use Knock's shape `{"code","message","status","type"}`, plus `errors` with
//! field details for validation failures.

use std::panic::Location;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hark_core::recipient::FieldError;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ApiKeyMissing,
    InvalidApiKey,
    SecretKeyRequired,
    MissingUserToken,
    InvalidUserToken,
    UserAccessDenied,
    ServiceTokenMissing,
    InvalidServiceToken,
    InvalidSignature,
    InvalidJson,
    InvalidParams,
    IdempotencyKeyReused,
    WorkflowMissing,
    WorkflowInactive,
    UserMissing,
    ResourceMissing,
    EnvironmentMissing,
    RouteMissing,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    /// (code, type, status)
    pub fn describe(self) -> (&'static str, &'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            ApiKeyMissing => (
                "api_key_missing",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            InvalidApiKey => (
                "invalid_api_key",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            SecretKeyRequired => (
                "secret_key_required",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            MissingUserToken => (
                "missing_user_token",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            InvalidUserToken => (
                "invalid_user_token",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            UserAccessDenied => (
                "access_denied",
                "authorization_error",
                StatusCode::FORBIDDEN,
            ),
            ServiceTokenMissing => (
                "service_token_missing",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            InvalidServiceToken => (
                "invalid_service_token",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            InvalidSignature => (
                "invalid_signature",
                "authentication_error",
                StatusCode::UNAUTHORIZED,
            ),
            InvalidJson => (
                "invalid_json",
                "invalid_request_error",
                StatusCode::BAD_REQUEST,
            ),
            InvalidParams => (
                "invalid_params",
                "invalid_request_error",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            IdempotencyKeyReused => (
                "idempotency_key_reused",
                "invalid_request_error",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            WorkflowMissing => (
                "workflow_missing",
                "invalid_request_error",
                StatusCode::NOT_FOUND,
            ),
            WorkflowInactive => (
                "workflow_inactive",
                "invalid_request_error",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            UserMissing => (
                "user_missing",
                "invalid_request_error",
                StatusCode::NOT_FOUND,
            ),
            ResourceMissing => (
                "resource_missing",
                "invalid_request_error",
                StatusCode::NOT_FOUND,
            ),
            EnvironmentMissing => (
                "environment_missing",
                "invalid_request_error",
                StatusCode::NOT_FOUND,
            ),
            RouteMissing => (
                "route_missing",
                "invalid_request_error",
                StatusCode::NOT_FOUND,
            ),
            MethodNotAllowed => (
                "method_not_allowed",
                "invalid_request_error",
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            PayloadTooLarge => (
                "payload_too_large",
                "invalid_request_error",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ServiceUnavailable => (
                "service_unavailable",
                "api_error",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            Internal => (
                "internal_error",
                "api_error",
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Where the error was raised, for logs (never sent to clients).
    pub location: &'static Location<'static>,
}

impl ApiError {
    #[track_caller]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
            location: Location::caller(),
        }
    }

    #[track_caller]
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let message = match errors.first() {
            Some(e) if errors.len() == 1 => format!("{}: {}", e.field, e.message),
            _ => "The request has invalid parameters".to_string(),
        };
        Self {
            code: ErrorCode::InvalidParams,
            message,
            errors,
            location: Location::caller(),
        }
    }

    #[track_caller]
    pub fn field(field: &str, message: &str) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    #[track_caller]
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorCode::ResourceMissing,
            format!("The {what} was not found"),
        )
    }
}

impl From<hark_store::StoreError> for ApiError {
    #[track_caller]
    fn from(e: hark_store::StoreError) -> Self {
        let transient = e.is_transient();
        tracing::error!(error = %e, "store error");
        if transient {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The database is temporarily unavailable; retry later",
            )
        } else {
            ApiError::new(ErrorCode::Internal, "An internal error occurred")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, error_type, status) = self.code.describe();
        if status.is_server_error() {
            tracing::error!(code, at = %self.location, message = %self.message, "request failed");
        } else {
            tracing::debug!(code, at = %self.location, message = %self.message, "request refused");
        }
        let mut body = json!({
            "code": code,
            "message": self.message,
            "status": status.as_u16(),
            "type": error_type,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
