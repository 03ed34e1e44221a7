//! The API's one error type: every failure becomes `{"error": {"code", "message", "field"}}`
//! with the right status, and never carries SQL, a stack trace or a database message that
//! could leak internals (those go to the log, with the request's id).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;

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
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role may not do this",
        )
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
            "internal error; see the worker log for this request id",
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

/// Too many password checks at once in this worker: 503, try again in a second.
impl From<crate::accounts::Busy> for ApiError {
    fn from(e: crate::accounts::Busy) -> Self {
        Self::unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            tracing::error!(error = %e, "database connection failed");
            return Self::unavailable("the database is unavailable; try again");
        };
        let constraint = e
            .as_db_error()
            .and_then(|d| d.constraint())
            .unwrap_or_default()
            .to_owned();
        if *code == SqlState::UNIQUE_VIOLATION {
            return Self::conflict(
                "duplicate",
                format!("this already exists ({})", readable(&constraint)),
            )
            .with_field(&field_of(&constraint));
        }
        if *code == SqlState::CHECK_VIOLATION || *code == SqlState::NOT_NULL_VIOLATION {
            return Self::invalid(
                &field_of(&constraint),
                format!("a value breaks a rule ({})", readable(&constraint)),
            );
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return Self::conflict(
                "in_use",
                format!(
                    "it is referenced elsewhere or refers to something missing ({})",
                    readable(&constraint)
                ),
            );
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::QUERY_CANCELED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            tracing::warn!(error = %e, "transaction could not complete");
            return Self::unavailable("busy; try again");
        }
        // Class 08 (connection exception) and 57 (operator intervention: the server shutting
        // down or restarting, e.g. 57P01 on a fast shutdown): the database is going or coming
        // back, not the request's fault nor ours.
        if code.code().starts_with("08") || code.code().starts_with("57") {
            tracing::warn!(error = %e, "the database went away");
            return Self::unavailable("the database is unavailable; try again");
        }
        // Class 22, data exceptions: a value PostgreSQL cannot take (a date out of range, a
        // number too large, text too long) came from the request.
        if code.code().starts_with("22") {
            return Self::invalid("", "a value is out of range or malformed");
        }
        tracing::error!(error = ?e.as_db_error().map(|d| d.message()), code = code.code(), "database error");
        Self::internal()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(error = %e, "no database connection");
        Self::unavailable("the database is unavailable; try again")
    }
}

/// `medicines_name_check` → `name` (the column a CHECK or UNIQUE constraint is about, when
/// PostgreSQL's default naming makes it clear).
fn field_of(constraint: &str) -> String {
    let parts: Vec<&str> = constraint.split('_').collect();
    if parts.len() >= 3 && matches!(parts.last(), Some(&"check" | &"key")) {
        // table is usually 1 word (e.g. "medicines") or 2 ("stock_movements"); the column
        // is what is between; a good enough guess for a hint.
        let inner = &parts[1..parts.len() - 1];
        return inner.join("_");
    }
    String::new()
}

fn readable(constraint: &str) -> String {
    constraint.replace('_', " ")
}

pub type ApiResult<T> = Result<T, ApiError>;
