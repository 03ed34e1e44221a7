//! How a page fails ([`apotheca_web::error`]), and the worker's own refusals (the JSON
//! API's [`ApiError`]) shown as pages.

use apotheca_web::error::PageError;

use crate::http::error::ApiError;

/// An API refusal as a page: its status, its message and its Retry-After.
impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Status {
            status: e.status,
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}
