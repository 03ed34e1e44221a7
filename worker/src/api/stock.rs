//! Goods receipts (supplier invoices: list, view, post) and batch corrections (write-off,
//! adjustment).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::stock::{self, Correction, ReceiptRequest};
use apotheca_pharmacy::values::Page;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/supplier-invoices", get(list).post(create))
        .route("/supplier-invoices/{id}", get(detail))
        .route("/batches/{id}/write-off", post(write_off))
        .route("/batches/{id}/adjust", post(adjust))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    supplier_id: Option<i64>,
    #[serde(flatten)]
    page: Page,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Receipts)?;
    let (total, items) = list_of(&**state.db().await?, q.supplier_id, q.page).await?;
    Ok(Json(
        serde_json::json!({"total": total, "page": q.page.page.max(1), "items": items}),
    ))
}

/// A goods receipt as lists show it.
#[derive(Debug, Serialize)]
pub struct ReceiptSummary {
    pub id: i64,
    pub supplier_id: i64,
    pub supplier: String,
    pub invoice_no: String,
    pub invoice_date: NaiveDate,
    pub total: Decimal,
    pub received_by: String,
    pub created_at: DateTime<Utc>,
}

/// Goods receipts, newest first, optionally of one supplier: a page, and how many.
pub(crate) async fn list_of(
    db: &tokio_postgres::Client,
    supplier_id: Option<i64>,
    page: Page,
) -> ApiResult<(i64, Vec<ReceiptSummary>)> {
    let rows = db
        .query(
            "SELECT i.id, i.supplier_id, s.name, i.invoice_no, i.invoice_date, i.total, u.username, i.created_at, count(*) OVER ()
             FROM supplier_invoices i JOIN suppliers s ON s.id = i.supplier_id JOIN users u ON u.id = i.received_by
             WHERE $1::bigint IS NULL OR i.supplier_id = $1
             ORDER BY i.invoice_date DESC, i.id DESC LIMIT $2 OFFSET $3",
            &[&supplier_id, &page.limit(), &page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(8));
    let items = rows
        .iter()
        .map(|r| ReceiptSummary {
            id: r.get(0),
            supplier_id: r.get(1),
            supplier: r.get(2),
            invoice_no: r.get(3),
            invoice_date: r.get(4),
            total: r.get(5),
            received_by: r.get(6),
            created_at: r.get(7),
        })
        .collect();
    Ok((total, items))
}

#[derive(Debug, Serialize)]
pub struct ReceiptLineOut {
    pub medicine_id: i64,
    pub medicine: String,
    pub batch_id: i64,
    pub batch_no: String,
    pub manufactured_on: Option<NaiveDate>,
    pub expires_on: NaiveDate,
    pub quantity: i32,
    pub unit_cost: Decimal,
    pub line_total: Decimal,
}

/// A goods receipt with its lines.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub id: i64,
    pub supplier_id: i64,
    pub supplier: String,
    pub invoice_no: String,
    pub invoice_date: NaiveDate,
    pub total: Decimal,
    pub received_by: String,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<ReceiptLineOut>,
}

/// One goods receipt, or 404.
pub(crate) async fn load(db: &impl tokio_postgres::GenericClient, id: i64) -> ApiResult<Receipt> {
    let head = db
        .query_opt(
            "SELECT i.id, i.supplier_id, s.name, i.invoice_no, i.invoice_date, i.total, u.username, i.notes, i.created_at
             FROM supplier_invoices i JOIN suppliers s ON s.id = i.supplier_id JOIN users u ON u.id = i.received_by
             WHERE i.id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("supplier invoice"))?;
    let lines: Vec<ReceiptLineOut> = db
        .query(
            "SELECT l.medicine_id, m.name, l.batch_id, l.batch_no, l.manufactured_on, l.expires_on, l.quantity, l.unit_cost, l.line_total
             FROM supplier_invoice_lines l JOIN medicines m ON m.id = l.medicine_id
             WHERE l.supplier_invoice_id = $1 ORDER BY l.id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| ReceiptLineOut {
            medicine_id: r.get(0),
            medicine: r.get(1),
            batch_id: r.get(2),
            batch_no: r.get(3),
            manufactured_on: r.get(4),
            expires_on: r.get(5),
            quantity: r.get(6),
            unit_cost: r.get(7),
            line_total: r.get(8),
        })
        .collect();
    Ok(Receipt {
        id: head.get(0),
        supplier_id: head.get(1),
        supplier: head.get(2),
        invoice_no: head.get(3),
        invoice_date: head.get(4),
        total: head.get(5),
        received_by: head.get(6),
        notes: head.get(7),
        created_at: head.get(8),
        lines,
    })
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<Receipt>> {
    auth.require(Area::Receipts)?;
    Ok(Json(load(&**state.db().await?, id).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<ReceiptRequest>,
) -> ApiResult<(StatusCode, Json<Receipt>)> {
    auth.require(Area::Receipts)?;
    let mut db = state.db().await?;
    let id = receive(&mut db, auth.user_id, &req).await?;
    Ok((StatusCode::CREATED, Json(load(&**db, id).await?)))
}

/// Posts a goods receipt in a transaction of its own; returns its id (the caller has
/// checked that the user may, and announces the change).
pub(crate) async fn receive(
    db: &mut deadpool_postgres::Object,
    user_id: i64,
    req: &ReceiptRequest,
) -> ApiResult<i64> {
    let tx = db.transaction().await?;
    let id = stock::post_receipt(&tx, user_id, req).await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(Debug, Deserialize)]
struct Change {
    quantity: i64,
    reason: String,
}

async fn write_off(
    state: State<AppState>,
    auth: Auth,
    id: Path<i64>,
    req: ApiJson<Change>,
) -> ApiResult<Json<serde_json::Value>> {
    correct(state, auth, id, req, Correction::WriteOff).await
}

async fn adjust(
    state: State<AppState>,
    auth: Auth,
    id: Path<i64>,
    req: ApiJson<Change>,
) -> ApiResult<Json<serde_json::Value>> {
    correct(state, auth, id, req, Correction::Adjustment).await
}

async fn correct(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<Change>,
    kind: Correction,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Medicines)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let left = stock::correct(&tx, auth.user_id, id, kind, req.quantity, &req.reason).await?;
    tx.commit().await?;
    Ok(Json(
        serde_json::json!({"batch_id": id, "quantity_on_hand": left}),
    ))
}
