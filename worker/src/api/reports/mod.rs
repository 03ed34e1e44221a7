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
use serde::Deserialize;
use serde_json::json;

mod queries;
pub use queries::*;

use super::csv;
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;

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

/// Every report's query string; each report reads the parameters it needs. Kept as text so
/// that a bad value is refused naming its parameter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
    pub format: Option<String>,
}

impl Params {
    fn csv(&self) -> ApiResult<bool> {
        match self.format.as_deref().map(str::trim) {
            None | Some("") | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::invalid("format", "format is json or csv")),
        }
    }

    /// `?limit=` of the top sellers: 1 to 100, 10 when blank.
    pub fn limit(&self) -> ApiResult<i64> {
        match self.limit.as_deref().map(str::trim) {
            None | Some("") => Ok(10),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| ApiError::invalid("limit", "limit must be between 1 and 100")),
        }
    }

    /// The inclusive range `from..=to`; `to` defaults to today, `from` to 29 days earlier.
    pub fn range(&self, today: NaiveDate) -> ApiResult<(NaiveDate, NaiveDate)> {
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

pub(crate) fn opt_date(field: &str, raw: Option<&str>) -> ApiResult<Option<NaiveDate>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ApiError::invalid(field, format!("{field} must be a date YYYY-MM-DD"))),
    }
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
    let d = daily_report(&db, date).await?;
    let mut out = json!({
        "date": d.date, "count": d.count, "gross": d.gross, "discount": d.discount, "tax": d.tax,
        "total": d.total, "refunds": d.refunds, "net": d.net,
    });
    if csv {
        // One flat row: the methods become columns.
        for m in &d.by_method {
            out[format!("{}_count", m.method)] = json!(m.count);
            out[format!("{}_total", m.method)] = json!(m.total);
        }
        let head = concat!(
            "date,count,gross,discount,tax,total,cash_count,cash_total,card_count,card_total,",
            "wallet_count,wallet_total,refunds,net"
        );
        return csv::table(&format!("daily-{date}"), head, &[out]);
    }
    let by_method: serde_json::Map<String, serde_json::Value> = d
        .by_method
        .iter()
        .map(|m| {
            (
                m.method.to_owned(),
                json!({"count": m.count, "total": m.total}),
            )
        })
        .collect();
    out["by_payment_method"] = by_method.into();
    Ok(Json(out).into_response())
}

// ---------------------------------------------------------------------------------------
// Sales over a range
// ---------------------------------------------------------------------------------------

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
    let (count, total, discount) = day_totals(&days);
    Ok(Json(json!({
        "from": from, "to": to, "days": days,
        "totals": {"count": count, "total": total, "discount": discount},
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Top sellers
// ---------------------------------------------------------------------------------------

async fn top_sellers_report(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let limit = p.limit()?;
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

async fn stock(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let items = stock_rows(&**state.db().await?).await?;
    if csv {
        let head = "medicine_id,name,dosage_form,strength,on_hand,expired,value";
        return csv::table("stock", head, &items);
    }
    let (on_hand, expired, value) = stock_totals(&items);
    Ok(Json(json!({
        "items": items,
        "totals": {"on_hand": on_hand, "expired": expired, "value": value},
    }))
    .into_response())
}

async fn stock_by_supplier(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    auth.require(Area::Reports)?;
    let csv = p.csv()?;
    let items = supplier_stock_rows(&**state.db().await?).await?;
    if csv {
        let head = "supplier_id,supplier_name,medicines,units,expired_units,value";
        return csv::table("stock-by-supplier", head, &items);
    }
    let (units, value) = supplier_stock_totals(&items);
    Ok(Json(json!({"items": items, "totals": {"units": units, "value": value}})).into_response())
}
