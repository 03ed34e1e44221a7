//! Reports (admin and pharmacist): daily sales, sales over a range, top sellers, stock on
//! hand with its value, stock by supplier. Each answers JSON, or CSV with `?format=csv`.
//!
//! Only `completed` invoices count as sales (a voided one is as if it never happened).
//! Days are the database's days: an invoice belongs to `created_at::date` in the
//! database's time zone, and "today" is its `current_date`. Ranges are inclusive and at
//! most [`MAX_DAYS`] long. The sales queries filter with `created_at >= day` and
//! `created_at < day + 1` (the same boundaries as `created_at::date`) so that the index on
//! `invoices.created_at` serves them.
//!
//! The sales and top-seller queries are shared with the dashboard, with an optional
//! `billed_by` filter for staff.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::csv;
use crate::accounts::Area;
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reports/daily", get(daily))
        .route("/reports/sales", get(sales))
        .route("/reports/top-sellers", get(top_sellers_report))
        .route("/reports/stock", get(stock))
        .route("/reports/stock-by-supplier", get(stock_by_supplier))
}

/// The longest range a report covers, in days.
pub const MAX_DAYS: i64 = 366;

/// Zero with two places, so that empty sums print like money ("0.00").
fn zero() -> Decimal {
    Decimal::new(0, 2)
}

/// Every report's query string; each report reads the parameters it needs. Kept as text so
/// that a bad value is refused naming its parameter.
#[derive(Debug, Default, Deserialize)]
struct Params {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    format: Option<String>,
}

impl Params {
    fn csv(&self) -> ApiResult<bool> {
        match self.format.as_deref().map(str::trim) {
            None | Some("") | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::invalid("format", "format is json or csv")),
        }
    }

    /// The inclusive range `from..=to`; `to` defaults to today, `from` to 29 days earlier.
    fn range(&self, today: NaiveDate) -> ApiResult<(NaiveDate, NaiveDate)> {
        let to = opt_date("to", self.to.as_deref())?.unwrap_or(today);
        let from = match opt_date("from", self.from.as_deref())? {
            Some(d) => d,
            None => to
                .checked_sub_days(chrono::Days::new(29))
                .ok_or_else(|| ApiError::invalid("to", "to is out of range"))?,
        };
        if to < from {
            return Err(ApiError::invalid("to", "to must not be before from"));
        }
        if (to - from).num_days() + 1 > MAX_DAYS {
            return Err(ApiError::invalid(
                "from",
                format!("a report covers at most {MAX_DAYS} days"),
            ));
        }
        Ok((from, to))
    }
}

fn opt_date(field: &str, raw: Option<&str>) -> ApiResult<Option<NaiveDate>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ApiError::invalid(field, format!("{field} must be a date YYYY-MM-DD"))),
    }
}

/// The database's today (its time zone decides where days start).
pub async fn today(db: &tokio_postgres::Client) -> ApiResult<NaiveDate> {
    Ok(db.query_one("SELECT current_date", &[]).await?.get(0))
}

// ---------------------------------------------------------------------------------------
// Daily sales
// ---------------------------------------------------------------------------------------

async fn daily(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let db = state.db().await?;
    let date = match opt_date("date", p.date.as_deref())? {
        Some(d) => d,
        None => today(&db).await?,
    };
    let r = db
        .query_one(
            "SELECT count(*), coalesce(sum(subtotal), 0.00), coalesce(sum(discount), 0.00),
                    coalesce(sum(tax), 0.00), coalesce(sum(total), 0.00),
                    count(*) FILTER (WHERE payment_method = 'cash'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'cash'), 0.00),
                    count(*) FILTER (WHERE payment_method = 'card'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'card'), 0.00),
                    count(*) FILTER (WHERE payment_method = 'wallet'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'wallet'), 0.00),
                    (SELECT coalesce(sum(refund), 0.00) FROM returns
                      WHERE created_at >= $1::date AND created_at < $1::date + 1)
             FROM invoices
             WHERE status = 'completed' AND created_at >= $1::date AND created_at < $1::date + 1",
            &[&date],
        )
        .await?;
    let (count, gross, discount, tax, total): (i64, Decimal, Decimal, Decimal, Decimal) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let refunds: Decimal = r.get(11);
    let mut out = json!({
        "date": date, "count": count, "gross": gross, "discount": discount, "tax": tax,
        "total": total, "refunds": refunds, "net": total - refunds,
    });
    // (method, its count, its total), in column order.
    let methods: Vec<(&str, i64, Decimal)> = ["cash", "card", "wallet"]
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, r.get(5 + 2 * i), r.get(6 + 2 * i)))
        .collect();
    if csv {
        // One flat row: the methods become columns.
        for (m, n, t) in &methods {
            out[format!("{m}_count")] = json!(n);
            out[format!("{m}_total")] = json!(t);
        }
        let head = concat!(
            "date,count,gross,discount,tax,total,cash_count,cash_total,card_count,card_total,",
            "wallet_count,wallet_total,refunds,net"
        );
        return csv::table(&format!("daily-{date}"), head, &[out]);
    }
    let by_method: serde_json::Map<String, serde_json::Value> = methods
        .iter()
        .map(|(m, n, t)| ((*m).to_owned(), json!({"count": n, "total": t})))
        .collect();
    out["by_payment_method"] = by_method.into();
    Ok(Json(out).into_response())
}

// ---------------------------------------------------------------------------------------
// Sales over a range
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct DaySales {
    pub date: NaiveDate,
    pub count: i64,
    pub total: Decimal,
    pub discount: Decimal,
}

/// One row per day of `from..=to`, oldest first, days without sales included as zeros;
/// `billed_by` limits it to one user's invoices.
pub async fn sales_by_day(
    db: &tokio_postgres::Client,
    from: NaiveDate,
    to: NaiveDate,
    billed_by: Option<i64>,
) -> ApiResult<Vec<DaySales>> {
    let rows = db
        .query(
            "WITH days AS (
                 SELECT $1::date + n AS day FROM generate_series(0, $2::date - $1::date) AS n
             ), sold AS (
                 SELECT created_at::date AS day, count(*) AS n, sum(total) AS total,
                        sum(discount) AS discount
                 FROM invoices
                 WHERE status = 'completed' AND created_at >= $1::date AND created_at < $2::date + 1
                   AND ($3::bigint IS NULL OR billed_by = $3)
                 GROUP BY 1
             )
             SELECT d.day, coalesce(s.n, 0), coalesce(s.total, 0.00), coalesce(s.discount, 0.00)
             FROM days d LEFT JOIN sold s USING (day) ORDER BY d.day",
            &[&from, &to, &billed_by],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DaySales {
            date: r.get(0),
            count: r.get(1),
            total: r.get(2),
            discount: r.get(3),
        })
        .collect())
}

async fn sales(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let db = state.db().await?;
    let (from, to) = p.range(today(&db).await?)?;
    let days = sales_by_day(&db, from, to, None).await?;
    if csv {
        let head = "date,count,total,discount";
        return csv::table(&format!("sales-{from}-{to}"), head, &days);
    }
    let (count, total, discount) = days.iter().fold((0i64, zero(), zero()), |acc, d| {
        (acc.0 + d.count, acc.1 + d.total, acc.2 + d.discount)
    });
    Ok(Json(json!({
        "from": from, "to": to, "days": days,
        "totals": {"count": count, "total": total, "discount": discount},
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Top sellers
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct TopSeller {
    pub medicine_id: i64,
    pub name: String,
    /// Units sold less units returned.
    pub quantity: i64,
    /// Σ line totals of the sales (before invoice discounts).
    pub revenue: Decimal,
}

/// The best sellers of `from..=to` by units (net of returns of those sales), then revenue.
pub async fn top_sellers(
    db: &tokio_postgres::Client,
    from: NaiveDate,
    to: NaiveDate,
    limit: i64,
    billed_by: Option<i64>,
) -> ApiResult<Vec<TopSeller>> {
    let rows = db
        .query(
            "WITH sales AS (
                 SELECT id FROM invoices
                 WHERE status = 'completed' AND created_at >= $1::date AND created_at < $2::date + 1
                   AND ($4::bigint IS NULL OR billed_by = $4)
             ), sold AS (
                 SELECT l.medicine_id, sum(l.quantity)::bigint AS qty, sum(l.line_total) AS revenue
                 FROM invoice_lines l JOIN sales s ON s.id = l.invoice_id
                 GROUP BY l.medicine_id
             ), returned AS (
                 SELECT l.medicine_id, sum(rl.quantity)::bigint AS qty
                 FROM return_lines rl JOIN sales s ON s.id = rl.invoice_id
                      JOIN invoice_lines l ON l.id = rl.invoice_line_id
                 GROUP BY l.medicine_id
             )
             SELECT m.id, m.name, so.qty - coalesce(r.qty, 0) AS quantity, so.revenue
             FROM sold so JOIN medicines m ON m.id = so.medicine_id
                  LEFT JOIN returned r ON r.medicine_id = so.medicine_id
             ORDER BY quantity DESC, so.revenue DESC, m.name, m.id
             LIMIT $3",
            &[&from, &to, &limit, &billed_by],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TopSeller {
            medicine_id: r.get(0),
            name: r.get(1),
            quantity: r.get(2),
            revenue: r.get(3),
        })
        .collect())
}

async fn top_sellers_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let limit = match p.limit.as_deref().map(str::trim) {
        None | Some("") => 10,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "limit must be between 1 and 100"))?,
    };
    let db = state.db().await?;
    let (from, to) = p.range(today(&db).await?)?;
    let items = top_sellers(&db, from, to, limit, None).await?;
    if csv {
        let head = "medicine_id,name,quantity,revenue";
        return csv::table(&format!("top-sellers-{from}-{to}"), head, &items);
    }
    Ok(Json(json!({"from": from, "to": to, "items": items})).into_response())
}

// ---------------------------------------------------------------------------------------
// Stock
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct StockRow {
    medicine_id: i64,
    name: String,
    dosage_form: String,
    strength: Option<String>,
    /// Units in batches that have not expired (the sellable stock).
    on_hand: i64,
    expired: i64,
    /// Σ quantity × unit cost over unexpired batches.
    value: Decimal,
}

async fn stock(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    // Expired means expires_on <= current_date, as the counter's FEFO sees it.
    let items: Vec<StockRow> = state
        .db()
        .await?
        .query(
            "SELECT m.id, m.name, m.dosage_form, m.strength,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on > current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand * b.unit_cost) FILTER (WHERE b.expires_on > current_date), 0.00)
             FROM medicines m LEFT JOIN batches b ON b.medicine_id = m.id
             WHERE m.active
             GROUP BY m.id ORDER BY lower(m.name), m.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| StockRow {
            medicine_id: r.get(0),
            name: r.get(1),
            dosage_form: r.get(2),
            strength: r.get(3),
            on_hand: r.get(4),
            expired: r.get(5),
            value: r.get(6),
        })
        .collect();
    if csv {
        let head = "medicine_id,name,dosage_form,strength,on_hand,expired,value";
        return csv::table("stock", head, &items);
    }
    let (on_hand, expired, value) = items.iter().fold((0i64, 0i64, zero()), |acc, s| {
        (acc.0 + s.on_hand, acc.1 + s.expired, acc.2 + s.value)
    });
    Ok(Json(json!({
        "items": items,
        "totals": {"on_hand": on_hand, "expired": expired, "value": value},
    }))
    .into_response())
}

#[derive(Debug, Serialize)]
struct SupplierStock {
    /// `None`: batches received without a supplier.
    supplier_id: Option<i64>,
    supplier_name: String,
    medicines: i64,
    /// All units on hand, expired ones included.
    units: i64,
    expired_units: i64,
    /// Σ quantity × unit cost over unexpired batches.
    value: Decimal,
}

async fn stock_by_supplier(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let items: Vec<SupplierStock> = state
        .db()
        .await?
        .query(
            "SELECT b.supplier_id, coalesce(s.name, 'unknown supplier'), count(DISTINCT b.medicine_id),
                    sum(b.quantity_on_hand)::bigint,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand * b.unit_cost) FILTER (WHERE b.expires_on > current_date), 0.00)
             FROM batches b LEFT JOIN suppliers s ON s.id = b.supplier_id
             WHERE b.quantity_on_hand > 0
             GROUP BY b.supplier_id, s.name
             ORDER BY b.supplier_id IS NULL, lower(s.name), b.supplier_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| SupplierStock {
            supplier_id: r.get(0),
            supplier_name: r.get(1),
            medicines: r.get(2),
            units: r.get(3),
            expired_units: r.get(4),
            value: r.get(5),
        })
        .collect();
    if csv {
        let head = "supplier_id,supplier_name,medicines,units,expired_units,value";
        return csv::table("stock-by-supplier", head, &items);
    }
    let (units, value) = items
        .iter()
        .fold((0i64, zero()), |acc, s| (acc.0 + s.units, acc.1 + s.value));
    Ok(Json(json!({"items": items, "totals": {"units": units, "value": value}})).into_response())
}
