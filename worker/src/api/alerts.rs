//! Alerts: what needs attention in the stock — expired batches still on the shelf, active
//! medicines out of stock or at/below their reorder level, and batches expiring within the
//! near-expiry window (settings, or `?days=`). Counts are exact, lists capped at 200 each.
//! `counts` also feeds the dashboard's alert counters.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio_postgres::GenericClient;

use crate::accounts::Area;
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/alerts", get(alerts))
}

const LIST_LIMIT: i64 = 200;
const MAX_DAYS: i32 = 3650;

/// Sellable stock of each active medicine (expired batches are not stock: they cannot be
/// sold), as the CTE `stock` that the counts and the two medicine lists share.
macro_rules! stock_cte {
    () => {
        "WITH stock AS MATERIALIZED (
            SELECT m.id, m.name, m.reorder_level,
                   coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on > current_date), 0)::bigint AS stock
            FROM medicines m LEFT JOIN batches b ON b.medicine_id = m.id
            WHERE m.active GROUP BY m.id)"
    };
}

/// The four counts; `$1` is the near-expiry window in days, or NULL for the settings' one.
macro_rules! count_columns {
    () => {
        "(SELECT count(*) FROM batches WHERE quantity_on_hand > 0 AND expires_on <= current_date),
         (SELECT count(*) FROM stock WHERE stock = 0),
         (SELECT count(*) FROM stock WHERE stock > 0 AND stock <= reorder_level),
         (SELECT count(*) FROM batches
           WHERE quantity_on_hand > 0 AND expires_on > current_date
             AND expires_on <= current_date + coalesce($1::int, (SELECT near_expiry_days FROM settings)))"
    };
}

const COUNTS_SQL: &str = concat!(stock_cte!(), " SELECT ", count_columns!());

/// Counts and lists in one statement: one snapshot (the lists agree with the counts) and the
/// stock sums computed once. Each list is built as JSON by PostgreSQL; `$2` caps them.
const ALERTS_SQL: &str = concat!(
    stock_cte!(),
    " SELECT ",
    count_columns!(),
    ",
     (SELECT coalesce(json_agg(x ORDER BY x.expires_on, x.batch_id), '[]')
        FROM (SELECT b.id AS batch_id, m.id AS medicine_id, m.name AS medicine_name, b.batch_no,
                     b.expires_on, b.quantity_on_hand AS quantity
              FROM batches b JOIN medicines m ON m.id = b.medicine_id
              WHERE b.quantity_on_hand > 0 AND b.expires_on <= current_date
              ORDER BY b.expires_on, b.id LIMIT $2) x),
     (SELECT coalesce(json_agg(x ORDER BY x.medicine_name, x.medicine_id), '[]')
        FROM (SELECT id AS medicine_id, name AS medicine_name, reorder_level, stock FROM stock
              WHERE stock = 0 ORDER BY name, id LIMIT $2) x),
     -- Lowest stock first.
     (SELECT coalesce(json_agg(x ORDER BY x.stock, x.medicine_name, x.medicine_id), '[]')
        FROM (SELECT id AS medicine_id, name AS medicine_name, reorder_level, stock FROM stock
              WHERE stock > 0 AND stock <= reorder_level ORDER BY stock, name, id LIMIT $2) x),
     (SELECT coalesce(json_agg(x ORDER BY x.expires_on, x.batch_id), '[]')
        FROM (SELECT b.id AS batch_id, m.id AS medicine_id, m.name AS medicine_name, b.batch_no,
                     b.expires_on, b.expires_on - current_date AS days_left,
                     b.quantity_on_hand AS quantity
              FROM batches b JOIN medicines m ON m.id = b.medicine_id
              WHERE b.quantity_on_hand > 0 AND b.expires_on > current_date
                AND b.expires_on <= current_date
                    + coalesce($1::int, (SELECT near_expiry_days FROM settings))
              ORDER BY b.expires_on, b.id LIMIT $2) x)"
);

fn counts_json(r: &tokio_postgres::Row) -> serde_json::Value {
    serde_json::json!({
        "expired": r.get::<_, i64>(0),
        "out_of_stock": r.get::<_, i64>(1),
        "low_stock": r.get::<_, i64>(2),
        "expiring": r.get::<_, i64>(3),
    })
}

/// `{"expired", "out_of_stock", "low_stock", "expiring"}` with the settings' near-expiry
/// window; for the dashboard (pass `&**db` for a pool connection, or a transaction).
pub async fn counts(db: &impl GenericClient) -> Result<serde_json::Value, ApiError> {
    let row = db.query_one(COUNTS_SQL, &[&None::<i32>]).await?;
    Ok(counts_json(&row))
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    /// Text, parsed here, so that a malformed value is refused naming the field.
    days: Option<String>,
}

fn days(raw: Option<&str>) -> ApiResult<Option<i32>> {
    let Some(raw) = raw.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<i32>() {
        Ok(d) if (1..=MAX_DAYS).contains(&d) => Ok(Some(d)),
        _ => Err(ApiError::invalid(
            "days",
            format!("days must be a whole number from 1 to {MAX_DAYS}"),
        )),
    }
}

async fn alerts(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Alerts)?;
    let days = days(query.days.as_deref())?;
    let db = state.db().await?;
    let stmt = db.prepare_cached(ALERTS_SQL).await?;
    let row = db.query_one(&stmt, &[&days, &LIST_LIMIT]).await?;
    let list = |i: usize| row.get::<_, serde_json::Value>(i);
    Ok(Json(serde_json::json!({
        "counts": counts_json(&row),
        "expired": list(4),
        "out_of_stock": list(5),
        "low_stock": list(6),
        "expiring": list(7),
    })))
}

#[cfg(test)]
mod tests {
    use super::days;

    #[test]
    fn days_param() {
        assert_eq!(days(None).unwrap(), None);
        assert_eq!(days(Some(" ")).unwrap(), None);
        assert_eq!(days(Some("30")).unwrap(), Some(30));
        assert!(days(Some("0")).is_err());
        assert!(days(Some("3651")).is_err());
        assert!(days(Some("ten")).is_err());
    }
}
