//! The pharmacy in the browser: every screen of `docs/pharmacy-app.md`, rendered on the server from
//! askama templates (`worker/templates`) by calling the same functions as the JSON API
//! (`crate::api`'s query and write functions, `apotheca_pharmacy`'s rules, the sale queue).
//!
//! Each handler checks the user's role itself (a 403 page otherwise); the menus only show
//! what the role may open. Forms carry a CSRF token, show the domain code's messages next
//! to their fields with the values kept, and redirect (303) after a successful POST. Writes
//! that change what the read cache keeps announce it ([`crate::changes::data_changed`]).

pub mod account;
pub mod counter;
pub mod customers;
pub mod dashboard;
pub mod error;
pub mod fields;
pub mod invoices;
pub mod medicines;
pub mod receipts;
pub mod reports;
pub mod session;
pub mod settings;
pub mod suppliers;
pub mod users;
pub mod view;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Every page route (the JSON API is nested under `/api/v1` beside them).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(account::home))
        .route("/login", get(account::login_form).post(account::login))
        .route("/logout", post(account::logout))
        .route(
            "/password-reset",
            get(account::reset_request_form).post(account::reset_request),
        )
        .route(
            "/reset-password",
            get(account::reset_form).post(account::reset),
        )
        .route(
            "/account/password",
            get(account::password_form).post(account::change_password),
        )
        .route("/dashboard", get(dashboard::show))
        .route("/alerts", get(dashboard::alerts))
        .merge(medicines::routes())
        .merge(suppliers::routes())
        .merge(receipts::routes())
        .merge(counter::routes())
        .merge(invoices::routes())
        .merge(customers::routes())
        .merge(reports::routes())
        .merge(users::routes())
        .merge(settings::routes())
        .route("/static/{file}", get(apotheca_web::assets::serve))
        .layer(axum::middleware::map_response(apotheca_web::headers))
}

/// Anything no route takes: the API's JSON 404 under `/api/` and `/_apotheca/`, an HTML
/// page elsewhere.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") || path.starts_with("/_apotheca/") {
        return axum::response::IntoResponse::into_response(
            crate::http::error::ApiError::not_found("page"),
        );
    }
    apotheca_web::headers(apotheca_web::error::error_page(
        StatusCode::NOT_FOUND,
        "There is no page at this address.",
    ))
    .await
}
