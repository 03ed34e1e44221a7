//! Alerts: what needs attention in the stock — expired batches still on the shelf, active
//! medicines out of stock or at/below their reorder level, and batches expiring within the
//! near-expiry window (settings, or `?days=`). Counts are exact, lists capped at 200 each.
//! `counts` also feeds the dashboard's alert counters.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;

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

/// How many of each kind of alert there are.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    pub expired: i64,
    pub out_of_stock: i64,
    pub low_stock: i64,
    pub expiring: i64,
}

impl Counts {
    pub fn total(&self) -> i64 {
        self.expired + self.out_of_stock + self.low_stock + self.expiring
    }
}

fn counts_from(r: &tokio_postgres::Row) -> Counts {
    Counts {
        expired: r.get(0),
        out_of_stock: r.get(1),
        low_stock: r.get(2),
        expiring: r.get(3),
    }
}

/// The counts with the settings' near-expiry window; for the dashboard (pass `&**db` for a
/// pool connection, or a transaction).
pub async fn counts(db: &impl GenericClient) -> Result<Counts, ApiError> {
    let row = db.query_one(COUNTS_SQL, &[&None::<i32>]).await?;
    Ok(counts_from(&row))
}

/// A batch in the expired or expiring list.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchAlert {
    pub batch_id: i64,
    pub medicine_id: i64,
    pub medicine_name: String,
    pub batch_no: String,
    pub expires_on: NaiveDate,
    /// Expiring batches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i32>,
    pub quantity: i64,
}

/// A medicine in the out-of-stock or low-stock list.
#[derive(Debug, Serialize, Deserialize)]
pub struct StockAlert {
    pub medicine_id: i64,
    pub medicine_name: String,
    pub reorder_level: i64,
    pub stock: i64,
}

#[derive(Debug, Serialize)]
pub struct Alerts {
    pub counts: Counts,
    pub expired: Vec<BatchAlert>,
    pub out_of_stock: Vec<StockAlert>,
    pub low_stock: Vec<StockAlert>,
    pub expiring: Vec<BatchAlert>,
}

/// The counts and the lists (each at most 200 long) in one snapshot; `days` replaces the
/// settings' near-expiry window.
pub async fn load(db: &deadpool_postgres::ClientWrapper, days: Option<i32>) -> ApiResult<Alerts> {
    let stmt = db.prepare_cached(ALERTS_SQL).await?;
    let row = db.query_one(&stmt, &[&days, &LIST_LIMIT]).await?;
    fn list<T: serde::de::DeserializeOwned>(
        row: &tokio_postgres::Row,
        i: usize,
    ) -> ApiResult<Vec<T>> {
        serde_json::from_value(row.get::<_, serde_json::Value>(i)).map_err(|e| {
            tracing::error!(error = %e, "an alert list does not read back");
            ApiError::internal()
        })
    }
    Ok(Alerts {
        counts: counts_from(&row),
        expired: list(&row, 4)?,
        out_of_stock: list(&row, 5)?,
        low_stock: list(&row, 6)?,
        expiring: list(&row, 7)?,
    })
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    /// Text, parsed here, so that a malformed value is refused naming the field.
    days: Option<String>,
}

/// `?days=`: blank is the settings' window.
pub fn days(raw: Option<&str>) -> ApiResult<Option<i32>> {
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
) -> ApiResult<Json<Alerts>> {
    auth.require(Area::Alerts)?;
    let days = days(query.days.as_deref())?;
    Ok(Json(load(&*state.db().await?, days).await?))
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
