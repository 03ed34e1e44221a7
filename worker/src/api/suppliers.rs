//! Suppliers: list, detail with their invoices, add, edit, deactivate. Deleting one that has
//! stock or history is refused (deactivate instead).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::{self, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/suppliers", get(list).post(create))
        .route("/suppliers/{id}", get(detail).patch(update).delete(remove))
}

#[derive(Debug, Serialize)]
pub struct Supplier {
    pub id: i64,
    pub name: String,
    pub contact_person: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub pan: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, contact_person, phone, email, address, pan, active, created_at";

fn from_row(r: &tokio_postgres::Row) -> Supplier {
    Supplier {
        id: r.get(0),
        name: r.get(1),
        contact_person: r.get(2),
        phone: r.get(3),
        email: r.get(4),
        address: r.get(5),
        pan: r.get(6),
        active: r.get(7),
        created_at: r.get(8),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    q: Option<String>,
    active: Option<bool>,
    #[serde(flatten)]
    page: Page,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Suppliers)?;
    let (total, items) = list_of(
        &**state.db().await?,
        query.q.as_deref(),
        query.active,
        query.page,
    )
    .await?;
    Ok(Json(
        serde_json::json!({"total": total, "page": query.page.page.max(1), "items": items}),
    ))
}

/// Suppliers by name (prefix `q`), optionally only (in)active ones: a page, and how many.
pub(crate) async fn list_of(
    db: &tokio_postgres::Client,
    q: Option<&str>,
    active: Option<bool>,
    page: Page,
) -> ApiResult<(i64, Vec<Supplier>)> {
    let pattern = q
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(values::like_prefix);
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS}, count(*) OVER () FROM suppliers
                 WHERE ($1::text IS NULL OR lower(name) LIKE $1) AND ($2::bool IS NULL OR active = $2)
                 ORDER BY name, id LIMIT $3 OFFSET $4"
            ),
            &[&pattern, &active, &page.limit(), &page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(9));
    Ok((total, rows.iter().map(from_row).collect()))
}

/// Every supplier's id and name by name (only active ones when asked), for pickers.
pub(crate) async fn choices(
    db: &tokio_postgres::Client,
    active_only: bool,
) -> ApiResult<Vec<(i64, String)>> {
    let rows = db
        .query(
            "SELECT id, name FROM suppliers WHERE active OR NOT $1 ORDER BY lower(name), id",
            &[&active_only],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[derive(Debug, Serialize)]
pub struct InvoiceSummary {
    pub id: i64,
    pub invoice_no: String,
    pub invoice_date: NaiveDate,
    pub total: Decimal,
    pub lines: i64,
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Suppliers)?;
    let (supplier, invoices) = load(&**state.db().await?, id).await?;
    Ok(Json(
        serde_json::json!({"supplier": supplier, "invoices": invoices}),
    ))
}

/// A supplier and their last 200 invoices, or 404.
pub(crate) async fn load(
    db: &tokio_postgres::Client,
    id: i64,
) -> ApiResult<(Supplier, Vec<InvoiceSummary>)> {
    let row = db
        .query_opt(
            &format!("SELECT {COLUMNS} FROM suppliers WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("supplier"))?;
    let invoices: Vec<InvoiceSummary> = db
        .query(
            "SELECT i.id, i.invoice_no, i.invoice_date, i.total,
                    (SELECT count(*) FROM supplier_invoice_lines l WHERE l.supplier_invoice_id = i.id)
             FROM supplier_invoices i WHERE i.supplier_id = $1 ORDER BY i.invoice_date DESC, i.id DESC LIMIT 200",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| InvoiceSummary { id: r.get(0), invoice_no: r.get(1), invoice_date: r.get(2), total: r.get(3), lines: r.get(4) })
        .collect();
    Ok((from_row(&row), invoices))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SupplierIn {
    pub name: Option<String>,
    pub contact_person: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub pan: Option<String>,
    pub active: Option<bool>,
}

struct Valid {
    name: String,
    contact_person: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    address: Option<String>,
    pan: Option<String>,
}

fn validate(body: &SupplierIn, name: &str) -> ApiResult<Valid> {
    Ok(Valid {
        name: values::text("name", name, 200)?,
        contact_person: values::opt_text("contact_person", body.contact_person.as_deref(), 200)?,
        phone: values::opt_text("phone", body.phone.as_deref(), 50)?,
        email: values::opt_email("email", body.email.as_deref())?,
        address: values::opt_text("address", body.address.as_deref(), 500)?,
        pan: values::opt_text("pan", body.pan.as_deref(), 30)?,
    })
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<SupplierIn>,
) -> ApiResult<(StatusCode, Json<Supplier>)> {
    auth.require(Area::Suppliers)?;
    let supplier = create_supplier(&**state.db().await?, &body).await?;
    Ok((StatusCode::CREATED, Json(supplier)))
}

/// Adds a supplier (the caller has checked that they may).
pub(crate) async fn create_supplier(
    db: &tokio_postgres::Client,
    body: &SupplierIn,
) -> ApiResult<Supplier> {
    let v = validate(body, body.name.as_deref().unwrap_or_default())?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO suppliers (name, contact_person, phone, email, address, pan, active)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &v.name,
                &v.contact_person,
                &v.phone,
                &v.email,
                &v.address,
                &v.pan,
                &body.active.unwrap_or(true),
            ],
        )
        .await?;
    Ok(from_row(&row))
}

/// Changes the fields given; `active: false` deactivates.
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<SupplierIn>,
) -> ApiResult<Json<Supplier>> {
    auth.require(Area::Suppliers)?;
    Ok(Json(update_supplier(&state, id, &body).await?))
}

/// Changes the fields given (the caller has checked that they may).
pub(crate) async fn update_supplier(
    state: &AppState,
    id: i64,
    body: &SupplierIn,
) -> ApiResult<Supplier> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let current = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM suppliers WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .map(|r| from_row(&r))
        .ok_or_else(|| ApiError::not_found("supplier"))?;
    let merged = SupplierIn {
        name: Some(body.name.clone().unwrap_or(current.name)),
        contact_person: body.contact_person.clone().or(current.contact_person),
        phone: body.phone.clone().or(current.phone),
        email: body.email.clone().or(current.email),
        address: body.address.clone().or(current.address),
        pan: body.pan.clone().or(current.pan),
        active: body.active.or(Some(current.active)),
    };
    let v = validate(&merged, merged.name.as_deref().unwrap_or_default())?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE suppliers SET name = $2, contact_person = $3, phone = $4, email = $5, address = $6, pan = $7,
                        active = $8, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &v.name, &v.contact_person, &v.phone, &v.email, &v.address, &v.pan, &merged.active.unwrap_or(true)],
        )
        .await?;
    tx.commit().await?;
    Ok(from_row(&row))
}

/// Deletes a supplier that nothing refers to; one with invoices or batches is refused.
async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    auth.require(Area::Suppliers)?;
    let db = state.db().await?;
    let used = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM supplier_invoices WHERE supplier_id = $1)
                 OR EXISTS (SELECT 1 FROM batches WHERE supplier_id = $1)",
            &[&id],
        )
        .await?
        .get::<_, bool>(0);
    if used {
        return Err(ApiError::conflict(
            "in_use",
            "this supplier has stock or invoices; deactivate it instead",
        ));
    }
    match db
        .execute("DELETE FROM suppliers WHERE id = $1", &[&id])
        .await?
    {
        0 => Err(ApiError::not_found("supplier")),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
