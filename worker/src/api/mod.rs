//! The JSON API (`/api/v1`): one module per part of `docs/domain.md`. Handlers check access with
//! `Auth::require`, parse input into valid values, and call the domain code in `apotheca_pharmacy`
//! for anything that changes stock or money.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod counter;
pub(crate) mod csv;
pub mod customers;
pub mod dashboard;
pub mod medicines;
pub mod reports;
pub mod sales;
pub mod stock;
pub mod suppliers;
pub mod tokens;
pub mod users;

use axum::Router;

use crate::changes;
use crate::state::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    // Writes through these change what the read cache keeps (stock, medicines, suppliers,
    // settings): each successful one is announced to every worker of the tenant.
    let stock_writes = Router::new()
        .merge(suppliers::routes())
        .merge(sales::routes())
        .merge(stock::routes())
        .merge(medicines::routes())
        .merge(admin::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            changes::announce_writes,
        ));
    Router::new()
        .merge(stock_writes)
        .merge(sales::sale_route())
        .merge(auth::routes())
        .merge(tokens::routes())
        .merge(counter::routes())
        .merge(customers::routes())
        .merge(alerts::routes())
        .merge(users::routes())
        .merge(reports::routes())
        .merge(dashboard::routes())
}
