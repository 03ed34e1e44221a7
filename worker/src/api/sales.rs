//! The counter and invoices: posting a sale (with an optional `Idempotency-Key`), listing and
//! reading invoices (staff: their own only), returns and voids.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::sale_queue;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::invoices::{self, Invoice};
use apotheca_pharmacy::returns::{self, ReturnRequest};
use apotheca_pharmacy::sale::{Pending, Posted, SaleRequest};
use apotheca_pharmacy::values::Page;
use axum::response::{IntoResponse, Response};

/// Invoices, returns and voids; their writes are announced by the caller's route layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invoices", get(list))
        .route("/invoices/{id}", get(detail))
        .route("/invoices/{id}/returns", post(create_return))
        .route("/invoices/{id}/void", post(void))
}

/// Posting a sale: announced by the sale queue, once per batch.
pub fn sale_route() -> Router<AppState> {
    Router::new().route("/sales", post(create_sale))
}

/// 201 with the new invoice; 200 with the earlier one when the Idempotency-Key was used
/// before for the same sale.
async fn create_sale(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SaleRequest>,
) -> ApiResult<Response> {
    auth.require(Area::Counter)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "the key must be plain text"))?
                .to_owned(),
        ),
        None => None,
    };
    let sale = Pending::new(auth.user_id, &auth.username, &req, key.as_deref())?;
    Ok(match sale_queue::post(&state, sale).await? {
        Posted::New(invoice) => (StatusCode::CREATED, Json(invoice)).into_response(),
        Posted::Earlier(id) => {
            let db = state.db().await?;
            let invoice = invoices::load(&db, id, None).await?;
            (StatusCode::OK, Json(invoice)).into_response()
        }
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    status: Option<String>,
    #[serde(flatten)]
    page: Page,
}

/// Which invoices a list shows.
#[derive(Debug, Default)]
pub(crate) struct InvoiceFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub status: Option<String>,
    /// Staff: only what they billed.
    pub billed_by: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub customer_name: Option<String>,
    pub billed_by: String,
    pub payment_method: String,
    pub total: Decimal,
    pub status: String,
}

/// Invoices by date range (inclusive, by day), newest first.
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Invoices)?;
    let filter = InvoiceFilter {
        from: q.from,
        to: q.to,
        status: q.status,
        billed_by: auth.own_invoices_only().then_some(auth.user_id),
    };
    let (total, items) = list_of(&**state.db().await?, &filter, q.page).await?;
    Ok(Json(
        serde_json::json!({"total": total, "page": q.page.page.max(1), "items": items}),
    ))
}

/// One page of the invoices `filter` selects, and how many there are.
pub(crate) async fn list_of(
    db: &tokio_postgres::Client,
    filter: &InvoiceFilter,
    page: Page,
) -> ApiResult<(i64, Vec<Summary>)> {
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if to < from {
            return Err(ApiError::invalid("to", "the range ends before it starts"));
        }
    }
    if let Some(s) = filter.status.as_deref() {
        if s != "completed" && s != "voided" {
            return Err(ApiError::invalid("status", "status is completed or voided"));
        }
    }
    let rows = db
        .query(
            "SELECT i.id, i.number, i.created_at, i.customer_name, u.username, i.payment_method, i.total, i.status,
                    count(*) OVER ()
             FROM invoices i JOIN users u ON u.id = i.billed_by
             WHERE ($1::date IS NULL OR i.created_at >= $1::date) AND ($2::date IS NULL OR i.created_at < $2::date + 1)
               AND ($3::bigint IS NULL OR i.billed_by = $3) AND ($4::text IS NULL OR i.status = $4)
             ORDER BY i.created_at DESC, i.id DESC LIMIT $5 OFFSET $6",
            &[&filter.from, &filter.to, &filter.billed_by, &filter.status, &page.limit(), &page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(8));
    let items: Vec<Summary> = rows
        .iter()
        .map(|r| Summary {
            id: r.get(0),
            number: r.get(1),
            created_at: r.get(2),
            customer_name: r.get(3),
            billed_by: r.get(4),
            payment_method: r.get(5),
            total: r.get(6),
            status: r.get(7),
        })
        .collect();
    Ok((total, items))
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<Invoice>> {
    auth.require(Area::Invoices)?;
    let own = auth.own_invoices_only().then_some(auth.user_id);
    Ok(Json(invoices::load(&*state.db().await?, id, own).await?))
}

async fn create_return(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<ReturnRequest>,
) -> ApiResult<(StatusCode, Json<Invoice>)> {
    auth.require(Area::Returns)?;
    let mut db = state.db().await?;
    record_return(&mut db, auth.user_id, id, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(invoices::load(&db, id, None).await?),
    ))
}

/// Records a return of invoice `id` in a transaction of its own (the caller has checked
/// that the user may, and announces the change).
pub(crate) async fn record_return(
    db: &mut deadpool_postgres::Object,
    user_id: i64,
    id: i64,
    req: &ReturnRequest,
) -> ApiResult<i64> {
    let tx = db.transaction().await?;
    let return_id = returns::post_return(&tx, user_id, id, req).await?;
    tx.commit().await?;
    Ok(return_id)
}

/// Voids invoice `id` in a transaction of its own (likewise).
pub(crate) async fn void_invoice(
    db: &mut deadpool_postgres::Object,
    user_id: i64,
    id: i64,
    reason: &str,
) -> ApiResult<()> {
    let tx = db.transaction().await?;
    returns::void(&tx, user_id, id, reason).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct VoidRequest {
    reason: String,
}

async fn void(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<VoidRequest>,
) -> ApiResult<Json<Invoice>> {
    auth.require(Area::Voids)?;
    let mut db = state.db().await?;
    void_invoice(&mut db, auth.user_id, id, &req.reason).await?;
    Ok(Json(invoices::load(&db, id, None).await?))
}
