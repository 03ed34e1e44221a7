//! The dashboard (every role): today's, this month's and last month's sales, the top 5
//! medicines of this month, the 7-day sales trend and the alert counters.
//!
//! Staff see only the invoices they billed themselves (`docs/domain.md`, "Roles and permissions": staff see their own
//! invoices), so every sales figure here is filtered by `billed_by` for them; the alert
//! counters are about stock and are the same for everyone. Days and months are the
//! database's (its time zone), as in the reports.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use super::reports;
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;

pub fn routes() -> Router<AppState> {
    Router::new().route("/dashboard", get(dashboard))
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sales {
    pub count: i64,
    pub total: Decimal,
}

/// What the dashboard shows.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub today: Sales,
    pub this_month: Sales,
    pub last_month: Sales,
    pub top_medicines: Vec<reports::TopSeller>,
    /// The last 7 days, oldest first, today last.
    pub trend: Vec<reports::DaySales>,
    pub alerts: super::alerts::Counts,
    /// Staff see their own sales only.
    pub own_sales_only: bool,
}

async fn dashboard(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Dashboard>> {
    auth.require(Area::Dashboard)?;
    Ok(Json(load(&**state.db().await?, &auth).await?))
}

/// The dashboard of `auth`'s user (the caller has checked that they may see it).
pub async fn load(db: &tokio_postgres::Client, auth: &Auth) -> ApiResult<Dashboard> {
    let billed_by = auth.own_invoices_only().then_some(auth.user_id);
    let today = reports::today(db).await?;
    let month_start = today.with_day(1).ok_or_else(ApiError::internal)?;
    let last_month_start = month_start
        .checked_sub_months(chrono::Months::new(1))
        .ok_or_else(ApiError::internal)?;
    // One scan of last month and this month; the FILTERs split it into the three figures.
    let r = db
        .query_one(
            "SELECT count(*) FILTER (WHERE created_at >= $1::date),
                    coalesce(sum(total) FILTER (WHERE created_at >= $1::date), 0.00),
                    count(*) FILTER (WHERE created_at >= $2::date),
                    coalesce(sum(total) FILTER (WHERE created_at >= $2::date), 0.00),
                    count(*) FILTER (WHERE created_at < $2::date),
                    coalesce(sum(total) FILTER (WHERE created_at < $2::date), 0.00)
             FROM invoices
             WHERE status = 'completed' AND created_at >= $3::date AND created_at < $1::date + 1
               AND ($4::bigint IS NULL OR billed_by = $4)",
            &[&today, &month_start, &last_month_start, &billed_by],
        )
        .await?;
    let sales = |i: usize| Sales {
        count: r.get(i),
        total: r.get(i + 1),
    };
    let top_medicines = reports::top_sellers(db, month_start, today, 5, billed_by).await?;
    let week_start: NaiveDate = today - Days::new(6);
    let trend = reports::sales_by_day(db, week_start, today, billed_by).await?;
    let alerts = super::alerts::counts(db).await?;
    Ok(Dashboard {
        today: sales(0),
        this_month: sales(2),
        last_month: sales(4),
        top_medicines,
        trend,
        alerts,
        own_sales_only: billed_by.is_some(),
    })
}
