//! How a page fails: not logged in becomes a redirect to the login page (coming back to
//! `next` afterwards), anything else an HTML page with the status (403, 404, ...). The JSON
//! API keeps its own error shape (the worker's `http::error`).

use apotheca_pharmacy::Error as DomainError;
use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug)]
pub enum PageError {
    /// No valid session: to the login page, then back to `next` (a local path).
    Login { next: Option<String> },
    /// Any other failure, shown as a page with its status; 401 goes to the login page.
    Status {
        status: StatusCode,
        /// Fit to show (never SQL or a database's words).
        message: String,
        /// Seconds for a Retry-After header.
        retry_after: Option<u64>,
    },
}

/// What a refusal for a role says, page or API alike.
pub const FORBIDDEN_MESSAGE: &str = "your role may not do this";
/// What a failure of ours says (its details are in the log, under the request's id).
pub const INTERNAL_MESSAGE: &str = "internal error; see the worker log for this request id";

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, FORBIDDEN_MESSAGE)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    }

    /// A form without the right CSRF token.
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        )
    }
}

/// The status each of the domain's refusals answers with: 422, 404, 409, 503 (try again in a
/// second) or 500. The JSON API and the pages answer alike.
pub fn status_of(e: &DomainError) -> StatusCode {
    match e {
        DomainError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
        DomainError::Conflict { .. } => StatusCode::CONFLICT,
        DomainError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DomainError> for PageError {
    fn from(e: DomainError) -> Self {
        let status = status_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return Self::internal();
        }
        Self::Status {
            status,
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
            message: e.to_string(),
        }
    }
}

impl From<tokio_postgres::Error> for PageError {
    fn from(e: tokio_postgres::Error) -> Self {
        DomainError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for PageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DomainError::from(e).into()
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "a page did not render");
        Self::internal()
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

/// A rendered page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> PageResult {
    Ok((status, Html(page.render()?)).into_response())
}

/// A rendered page, 200.
pub fn ok(page: &impl Template) -> PageResult {
    render(StatusCode::OK, page)
}

/// A page shown before logging in, with the Set-Cookie of its form token when it made one.
pub fn public_page(status: StatusCode, page: &impl Template, cookie: Option<String>) -> PageResult {
    let mut response = render(status, page)?;
    if let Some(cookie) = cookie {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The login page's address that comes back to `next`.
pub fn login_url(next: Option<&str>) -> String {
    match next.filter(|n| crate::form::is_local_path(n) && *n != "/") {
        Some(n) => format!("/login?next={}", crate::form::url_encode(n)),
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

/// An HTML page for `status` with `message` (which must be fit to show).
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
        css: crate::assets::url("app.css"),
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
            Self::Status { status, .. } if status == StatusCode::UNAUTHORIZED => {
                see_other("/login")
            }
            Self::Status {
                status,
                message,
                retry_after,
            } => {
                let mut response = error_page(status, &message);
                if let Some(secs) = retry_after {
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
