//! The API's one error type: every failure becomes `{"error": {"code", "message", "field"}}`
//! with the right status, and never carries SQL, a stack trace or a database message that
//! could leak internals (those go to the log, with the request's id).

use apotheca_web::error::{status_of, FORBIDDEN_MESSAGE, INTERNAL_MESSAGE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Extra machine-readable detail (e.g. which lines lack stock).
    pub detail: Option<serde_json::Value>,
    /// Seconds for a Retry-After header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            detail: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed, but a value breaks a rule; `field` names it.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", FORBIDDEN_MESSAGE)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: the request conflicts with the current state (stock, duplicates, ...).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            INTERNAL_MESSAGE,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(1);
        e
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                detail: self.detail.as_ref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(value) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The domain's refusals, each with the status the pages give it too
/// ([`apotheca_web::error::status_of`]) and its machine-readable code; a 503 may be tried
/// again in a second.
impl From<apotheca_pharmacy::Error> for ApiError {
    fn from(e: apotheca_pharmacy::Error) -> Self {
        use apotheca_pharmacy::Error as E;
        let status = status_of(&e);
        let (code, message, field, detail) = match e {
            E::Invalid { field, message } => ("invalid", message, Some(field), None),
            // Its message is its Display ("… not found"), made there only.
            E::NotFound { ref field, .. } => ("not_found", e.to_string(), field.clone(), None),
            E::Conflict {
                code,
                message,
                field,
                detail,
            } => (code, message, field, detail),
            E::Unavailable(message) => return Self::unavailable(message),
            E::Internal => return Self::internal(),
        };
        let mut e = Self::new(status, code, message);
        e.field = field;
        e.detail = detail;
        e
    }
}

/// Too many password checks at once in this worker: 503, try again in a second.
impl From<apotheca_pharmacy::accounts::Busy> for ApiError {
    fn from(e: apotheca_pharmacy::accounts::Busy) -> Self {
        apotheca_pharmacy::Error::from(e).into()
    }
}

/// Classified by the domain ([`apotheca_pharmacy::Error`]): nothing of SQL reaches a client.
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        apotheca_pharmacy::Error::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        apotheca_pharmacy::Error::from(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
