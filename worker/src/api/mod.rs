//! The JSON API (`/api/v1`): one module per part of DOMAIN.md. Handlers check access with
//! `Auth::require`, parse input into valid values, and call the domain code in `crate::domain`
//! for anything that changes stock or money.

pub mod auth;
pub mod suppliers;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::routes())
        .merge(suppliers::routes())
}
