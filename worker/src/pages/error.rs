//! How a page fails: not logged in becomes a redirect to the login page (coming back to
//! `next` afterwards), anything else an HTML page with the status (403, 404, ...). The JSON
//! API keeps its own error shape (`crate::http::error`).

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::http::error::ApiError;

#[derive(Debug)]
pub enum PageError {
    /// No valid session: to the login page, then back to `next` (a local path).
    Login { next: Option<String> },
    /// Any other failure, shown as a page with the error's status.
    Api(ApiError),
}

impl PageError {
    pub fn forbidden() -> Self {
        Self::Api(ApiError::forbidden())
    }

    pub fn not_found(what: &str) -> Self {
        Self::Api(ApiError::not_found(what))
    }

    /// A form without the right CSRF token.
    pub fn csrf() -> Self {
        Self::Api(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        ))
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<apotheca_pharmacy::Error> for PageError {
    fn from(e: apotheca_pharmacy::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for PageError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Api(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for PageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Api(e.into())
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "a page did not render");
        Self::Api(ApiError::internal())
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

/// The login page's address that comes back to `next`.
pub fn login_url(next: Option<&str>) -> String {
    match next.filter(|n| super::session::is_local_path(n) && *n != "/") {
        Some(n) => format!("/login?next={}", super::view::url_encode(n)),
        None => "/login".to_owned(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    css: &'static str,
    links: &'a Links,
}

/// Where an error page leads: a home page and a login page.
pub struct Links {
    pub home: &'static str,
    pub home_label: &'static str,
    pub login: &'static str,
}

/// A pharmacy's pages.
pub const PHARMACY_LINKS: Links = Links {
    home: "/dashboard",
    home_label: "Go to the dashboard",
    login: "/login",
};

/// An HTML page for `status` with `message` (which must be fit to show: `ApiError`s are).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    error_page_in(status, message, &PHARMACY_LINKS)
}

/// [`error_page`] with links of another part of the site (the operator console).
pub fn error_page_in(status: StatusCode, message: &str, links: &Links) -> Response {
    let title = match status.as_u16() {
        400 => "Bad request",
        403 => "Not allowed",
        404 => "Not found",
        405 => "Not allowed here",
        409 => "Conflict",
        413 => "Too large",
        415 | 422 => "Cannot use this",
        429 => "Too many attempts",
        503 => "Unavailable",
        s if s >= 500 => "Something went wrong",
        _ => "Cannot do this",
    };
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        css: super::assets::url("app.css"),
        links,
    };
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the error page did not render");
            (status, format!("{title}: {message}")).into_response()
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Login { next } => see_other(&login_url(next.as_deref())),
            Self::Api(e) if e.status == StatusCode::UNAUTHORIZED => see_other("/login"),
            Self::Api(e) => {
                let mut response = error_page(e.status, &e.message);
                if let Some(secs) = e.retry_after {
                    if let Ok(value) = secs.to_string().parse() {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                }
                response
            }
        }
    }
}

/// 303 See Other: after a POST, the browser GETs `to`.
pub fn see_other(to: &str) -> Response {
    match header::HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "bad redirect"),
    }
}
