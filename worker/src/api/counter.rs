//! The counter's medicine search (`GET /counter/search`): the billing screen's lookup of
//! active medicines by name, generic name or brand, at most 20, each with its sellable stock
//! (unexpired batches only), next expiry and an expiry badge. Stock is summed with the same
//! SQL fragments as `super::medicines`.

use axum::extract::{OriginalUri, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::medicines::{base_columns, required, search_pattern, stock_lateral};
use crate::http::auth::Auth;
use crate::http::error::ApiResult;
use crate::http::json::ApiQuery;
use crate::readcache;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;

pub fn routes() -> Router<AppState> {
    Router::new().route("/counter/search", get(counter_search))
}

/// Counter badges (`docs/domain.md`, "The counter"): fixed thresholds, not the alert settings.
const CRITICAL_DAYS: i32 = 30;
const WARNING_DAYS: i32 = 90;
const COUNTER_LIMIT: i64 = 20;

/// The page of 20 first (index-friendly, no stock work for rows not shown), then its stock.
const COUNTER_SQL: &str = concat!(
    "WITH m AS (
        SELECT ",
    base_columns!(),
    " FROM medicines m
        WHERE m.active AND (lower(m.name) LIKE $1 OR lower(m.generic_name) LIKE $1
                            OR lower(m.brand) LIKE $1)
        ORDER BY m.name, m.id LIMIT $2)
     SELECT m.id, m.name, m.brand, m.generic_name, m.dosage_form, m.strength, m.sale_price,
            m.prescription_only, s.stock, s.next_expiry, s.next_expiry - current_date
     FROM m",
    stock_lateral!(),
    "ORDER BY m.name, m.id"
);

#[derive(Debug, Deserialize)]
struct CounterQuery {
    q: Option<String>,
}

#[derive(Debug, Serialize)]
struct CounterItem {
    id: i64,
    name: String,
    brand: Option<String>,
    generic_name: Option<String>,
    dosage_form: String,
    strength: Option<String>,
    sale_price: Decimal,
    prescription_only: bool,
    stock: i64,
    next_expiry: Option<NaiveDate>,
    days_to_expiry: Option<i32>,
    badge: Option<&'static str>,
    out_of_stock: bool,
}

fn badge(days_to_expiry: Option<i32>) -> Option<&'static str> {
    match days_to_expiry? {
        d if d < CRITICAL_DAYS => Some("critical"),
        d if d < WARNING_DAYS => Some("warning"),
        _ => None,
    }
}

/// Billing search: active medicines only, at most 20, with sellable stock and expiry badge.
async fn counter_search(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
    ApiQuery(query): ApiQuery<CounterQuery>,
) -> ApiResult<Response> {
    auth.require(Area::Counter)?;
    let pattern = required(search_pattern(query.q.as_deref(), 2)?, "q")?;
    readcache::respond(&state, &uri.to_string(), move |state| async move {
        search(&state, pattern).await
    })
    .await
}

async fn search(state: &AppState, pattern: String) -> ApiResult<serde_json::Value> {
    let db = state.db().await?;
    let stmt = db.prepare_cached(COUNTER_SQL).await?;
    let rows = db.query(&stmt, &[&pattern, &COUNTER_LIMIT]).await?;
    let items: Vec<CounterItem> = rows
        .iter()
        .map(|r| {
            let stock: i64 = r.get(8);
            let days: Option<i32> = r.get(10);
            CounterItem {
                id: r.get(0),
                name: r.get(1),
                brand: r.get(2),
                generic_name: r.get(3),
                dosage_form: r.get(4),
                strength: r.get(5),
                sale_price: r.get(6),
                prescription_only: r.get(7),
                stock,
                next_expiry: r.get(9),
                days_to_expiry: days,
                badge: badge(days),
                out_of_stock: stock == 0,
            }
        })
        .collect();
    Ok(serde_json::json!({"items": items}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_boundaries() {
        let badges: Vec<_> = [0, 29, 30, 89, 90].map(|d| badge(Some(d))).into();
        let (c, w) = (Some("critical"), Some("warning"));
        assert_eq!(badges, [c, c, w, w, None]);
    }
}
