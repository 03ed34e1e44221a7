//! Goods receipts (supplier invoices: list, view, post) and batch corrections (write-off,
//! adjustment).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::accounts::Area;
use crate::domain::stock::{self, Correction, ReceiptRequest};
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::values::Page;

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
    let rows = state
        .db()
        .await?
        .query(
            "SELECT i.id, i.supplier_id, s.name, i.invoice_no, i.invoice_date, i.total, u.username, i.created_at, count(*) OVER ()
             FROM supplier_invoices i JOIN suppliers s ON s.id = i.supplier_id JOIN users u ON u.id = i.received_by
             WHERE $1::bigint IS NULL OR i.supplier_id = $1
             ORDER BY i.invoice_date DESC, i.id DESC LIMIT $2 OFFSET $3",
            &[&q.supplier_id, &q.page.limit(), &q.page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(8));
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<_, i64>(0), "supplier_id": r.get::<_, i64>(1), "supplier": r.get::<_, String>(2),
                "invoice_no": r.get::<_, String>(3), "invoice_date": r.get::<_, NaiveDate>(4),
                "total": r.get::<_, Decimal>(5), "received_by": r.get::<_, String>(6),
                "created_at": r.get::<_, DateTime<Utc>>(7),
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({"total": total, "page": q.page.page.max(1), "items": items}),
    ))
}

#[derive(Debug, Serialize)]
struct ReceiptLineOut {
    medicine_id: i64,
    medicine: String,
    batch_id: i64,
    batch_no: String,
    manufactured_on: Option<NaiveDate>,
    expires_on: NaiveDate,
    quantity: i32,
    unit_cost: Decimal,
    line_total: Decimal,
}

async fn load(db: &impl tokio_postgres::GenericClient, id: i64) -> ApiResult<serde_json::Value> {
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
    Ok(serde_json::json!({
        "id": head.get::<_, i64>(0), "supplier_id": head.get::<_, i64>(1), "supplier": head.get::<_, String>(2),
        "invoice_no": head.get::<_, String>(3), "invoice_date": head.get::<_, NaiveDate>(4),
        "total": head.get::<_, Decimal>(5), "received_by": head.get::<_, String>(6),
        "notes": head.get::<_, Option<String>>(7), "created_at": head.get::<_, DateTime<Utc>>(8),
        "lines": lines,
    }))
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Receipts)?;
    Ok(Json(load(&**state.db().await?, id).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<ReceiptRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    auth.require(Area::Receipts)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id = stock::post_receipt(&tx, auth.user_id, &req).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(load(&**db, id).await?)))
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
