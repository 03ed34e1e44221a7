//! Customers: list and search (name or phone prefix), add, edit, and the detail page with
//! the purchase history. A phone number is stored normalised and is unique when given; staff
//! see only the invoices they billed themselves in a customer's history.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::{ApiJson, ApiQuery};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::{self, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list).post(create))
        .route("/customers/{id}", get(detail).patch(update))
}

const HISTORY_LIMIT: i64 = 100;
/// Longer search text cannot match a 200-character name.
const MAX_QUERY: usize = 200;

#[derive(Debug, Serialize)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, phone, email, address, created_at";

fn from_row(r: &tokio_postgres::Row) -> Customer {
    Customer {
        id: r.get(0),
        name: r.get(1),
        phone: r.get(2),
        email: r.get(3),
        address: r.get(4),
        created_at: r.get(5),
    }
}

/// A duplicate phone is the one conflict a customer can have: answer it by name.
fn phone_taken(e: tokio_postgres::Error) -> ApiError {
    let duplicate_phone = e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && apotheca_pharmacy::error::violated_constraint(&e) == Some("customers_phone_key");
    if duplicate_phone {
        ApiError::conflict("duplicate", "another customer has this phone number")
            .with_field("phone")
    } else {
        ApiError::from(e)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    q: Option<String>,
    // Not `#[serde(flatten)] Page`: flattened fields reach serde as strings, and a query
    // string's `page=2` would then fail to parse as a number.
    page: Option<i64>,
    per_page: Option<i64>,
}

/// The phone form of a search text (digits with an optional leading +, separators dropped),
/// when it looks like one.
fn phone_prefix(q: &str) -> Option<String> {
    let plus = q.starts_with('+');
    let mut digits = String::new();
    for c in q.chars().skip(usize::from(plus)) {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if digits.is_empty() {
        return None;
    }
    Some(values::like_prefix(&if plus {
        format!("+{digits}")
    } else {
        digits
    }))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Customers)?;
    let page = Page {
        page: query.page.unwrap_or(1),
        per_page: query.per_page.unwrap_or(50),
    };
    let (total, items) = list_of(&state, query.q.as_deref(), page).await?;
    Ok(Json(
        serde_json::json!({"total": total, "page": page.page.max(1), "items": items}),
    ))
}

/// Customers whose name or phone starts with `q`: a page, and how many.
pub(crate) async fn list_of(
    state: &AppState,
    q: Option<&str>,
    page: Page,
) -> ApiResult<(i64, Vec<Customer>)> {
    let q = q.map(str::trim).unwrap_or_default();
    if q.chars().count() > MAX_QUERY {
        return Err(ApiError::invalid(
            "q",
            format!("q is longer than {MAX_QUERY} characters"),
        ));
    }
    let name_pattern = (!q.is_empty()).then(|| values::like_prefix(q));
    let phone_pattern = phone_prefix(q);
    let db = state.db().await?;
    let stmt = db
        .prepare_cached(
            "SELECT id, name, phone, email, address, created_at, count(*) OVER () FROM customers
             WHERE $1::text IS NULL OR lower(name) LIKE $1 OR phone LIKE $2::text
             ORDER BY name, id LIMIT $3 OFFSET $4",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[&name_pattern, &phone_pattern, &page.limit(), &page.offset()],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(6));
    Ok((total, rows.iter().map(from_row).collect()))
}

#[derive(Debug, Serialize)]
pub struct Purchase {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub total: Decimal,
    pub status: String,
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Area::Customers)?;
    let (customer, invoices) = load(&state, &auth, id).await?;
    Ok(Json(
        serde_json::json!({"customer": customer, "invoices": invoices}),
    ))
}

/// A customer and their last 100 purchases, or 404.
pub(crate) async fn load(
    state: &AppState,
    auth: &Auth,
    id: i64,
) -> ApiResult<(Customer, Vec<Purchase>)> {
    // Staff: only what they billed (`docs/domain.md`, "Roles and permissions"); others see everything.
    let billed_by = auth.own_invoices_only().then_some(auth.user_id);
    let db = state.db().await?;
    let customer_sql = format!("SELECT {COLUMNS} FROM customers WHERE id = $1");
    let by_id: &[&(dyn ToSql + Sync)] = &[&id];
    let history: &[&(dyn ToSql + Sync)] = &[&id, &billed_by, &HISTORY_LIMIT];
    let (customer, invoices) = futures::try_join!(
        db.query_opt(&customer_sql, by_id),
        db.query(
            "SELECT id, number, created_at, total, status FROM invoices
             WHERE customer_id = $1 AND ($2::bigint IS NULL OR billed_by = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3",
            history,
        ),
    )?;
    let customer = customer
        .map(|r| from_row(&r))
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let invoices = invoices
        .iter()
        .map(|r| Purchase {
            id: r.get(0),
            number: r.get(1),
            created_at: r.get(2),
            total: r.get(3),
            status: r.get(4),
        })
        .collect();
    Ok((customer, invoices))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CustomerIn {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<CustomerIn>,
) -> ApiResult<(StatusCode, Json<Customer>)> {
    auth.require(Area::Customers)?;
    let customer = create_customer(&**state.db().await?, &body).await?;
    Ok((StatusCode::CREATED, Json(customer)))
}

/// Adds a customer (the caller has checked that they may).
pub(crate) async fn create_customer(
    db: &tokio_postgres::Client,
    body: &CustomerIn,
) -> ApiResult<Customer> {
    let name = values::text("name", body.name.as_deref().unwrap_or_default(), 200)?;
    let phone = values::opt_phone("phone", body.phone.as_deref())?;
    let email = values::opt_email("email", body.email.as_deref())?;
    let address = values::opt_text("address", body.address.as_deref(), 500)?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO customers (name, phone, email, address) VALUES ($1, $2, $3, $4)
                 RETURNING {COLUMNS}"
            ),
            &[&name, &phone, &email, &address],
        )
        .await
        .map_err(phone_taken)?;
    Ok(from_row(&row))
}

/// Changes the fields given (absent or null keeps a field; "" clears an optional one), in
/// one statement so that two edits never interleave.
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CustomerIn>,
) -> ApiResult<Json<Customer>> {
    auth.require(Area::Customers)?;
    Ok(Json(
        update_customer(&**state.db().await?, id, &body).await?,
    ))
}

/// Changes the fields given (the caller has checked that they may).
pub(crate) async fn update_customer(
    db: &tokio_postgres::Client,
    id: i64,
    body: &CustomerIn,
) -> ApiResult<Customer> {
    let name = match body.name.as_deref() {
        Some(raw) => Some(values::text("name", raw, 200)?),
        None => None,
    };
    let phone = values::opt_phone("phone", body.phone.as_deref())?;
    let email = values::opt_email("email", body.email.as_deref())?;
    let address = values::opt_text("address", body.address.as_deref(), 500)?;
    let row = db
        .query_opt(
            &format!(
                "UPDATE customers SET
                    name = coalesce($2, name),
                    phone = CASE WHEN $3::bool THEN $4 ELSE phone END,
                    email = CASE WHEN $5::bool THEN $6 ELSE email END,
                    address = CASE WHEN $7::bool THEN $8 ELSE address END,
                    updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &name,
                &body.phone.is_some(),
                &phone,
                &body.email.is_some(),
                &email,
                &body.address.is_some(),
                &address,
            ],
        )
        .await
        .map_err(phone_taken)?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(from_row(&row))
}

#[cfg(test)]
mod tests {
    use super::phone_prefix;

    #[test]
    fn phone_search() {
        assert_eq!(phone_prefix("984-12").as_deref(), Some("98412%"));
        assert_eq!(phone_prefix("+977").as_deref(), Some("+977%"));
        assert_eq!(phone_prefix("Ram"), None);
        assert_eq!(phone_prefix(""), None);
        assert_eq!(phone_prefix("+"), None);
    }
}
