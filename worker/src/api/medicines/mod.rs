//! Medicines: the master data (list with search and filters, detail with batches and the
//! stock ledger, add, edit, deactivate; never deleted). Stock is never stored on a
//! medicine: every figure here is summed from its batches, and only unexpired batches count
//! as stock that can be sold. The counter's search (`super::counter`) shares the stock SQL
//! fragments and the search pattern defined here.

use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiQuery;
use crate::readcache;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::{self, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/medicines", get(list).post(edit::create))
        .route("/medicines/{id}", get(detail).patch(edit::update))
}

#[rustfmt::skip]
pub const DOSAGE_FORMS: [&str; 10] = [
    "tablet", "capsule", "syrup", "liquid", "injection", "ointment", "cream", "patch", "drops",
    "other",
];

const MAX_REORDER_LEVEL: i64 = 1_000_000;
/// Longer search text cannot match a 200-character name; refusing it keeps LIKE cheap.
const MAX_QUERY: usize = 200;

/// Stock figures of medicine `m`, one row per medicine (an aggregate without GROUP BY).
/// Expired means `expires_on <= current_date`: a batch is not sold on its expiry day.
macro_rules! stock_lateral {
    () => {
        " CROSS JOIN LATERAL (
            SELECT coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on > current_date), 0)::bigint AS stock,
                   coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date), 0)::bigint AS expired_stock,
                   min(b.expires_on) FILTER (WHERE b.expires_on > current_date AND b.quantity_on_hand > 0) AS next_expiry
            FROM batches b WHERE b.medicine_id = m.id) s "
    };
}
pub(crate) use stock_lateral;

/// The columns `from_row` reads, from `m` (a medicines row) and `s` (`stock_lateral!`).
macro_rules! medicine_columns {
    () => {
        "m.id, m.name, m.brand, m.generic_name, m.dosage_form, m.strength, m.sale_price,
         m.reorder_level, m.prescription_only, m.active, s.stock, s.expired_stock, s.next_expiry"
    };
}

/// The medicines columns that `medicine_columns!` reads (explicit, never `*`: a cached
/// statement must keep its shape if a migration adds a column).
macro_rules! base_columns {
    () => {
        "id, name, brand, generic_name, dosage_form, strength, sale_price, reorder_level,
         prescription_only, active"
    };
}
pub(crate) use base_columns;

mod edit;
pub(crate) use edit::{create_medicine, required, update_medicine, MedicineIn};

/// The matching ids and names first (narrow rows: the count and the sort need them all),
/// then the page, and only then the page's medicine rows and its stock. A stock subquery in the
/// filters runs only when its filter is on (`$n IS NOT TRUE OR ...` stops at the first
/// true). The count is a row of its own, so a page past the end still reports the total
/// (with one all-NULL medicine row, which the handler skips).
const LIST_SQL: &str = "WITH f AS MATERIALIZED (
        SELECT m.id, m.name FROM medicines m
        WHERE ($1::text IS NULL OR lower(m.name) LIKE $1 OR lower(m.generic_name) LIKE $1
               OR lower(m.brand) LIKE $1)
          AND ($2::text IS NULL OR m.dosage_form = $2)
          AND ($3::bigint IS NULL OR EXISTS (
                SELECT 1 FROM batches b WHERE b.medicine_id = m.id AND b.supplier_id = $3))
          -- Low stock = not above the reorder level; one hashed pass over the batches
          -- instead of one sum per medicine (medicines without stock qualify).
          AND ($4::bool IS NOT TRUE OR m.id NOT IN (
                SELECT b.medicine_id FROM batches b JOIN medicines r ON r.id = b.medicine_id
                WHERE b.expires_on > current_date
                GROUP BY b.medicine_id, r.reorder_level
                HAVING sum(b.quantity_on_hand) > r.reorder_level))
          AND ($5::bool IS NOT TRUE OR EXISTS (
                SELECT 1 FROM batches b
                WHERE b.medicine_id = m.id AND b.quantity_on_hand > 0 AND b.expires_on > current_date
                  AND b.expires_on <= current_date + (SELECT near_expiry_days FROM settings)))
          AND ($6::bool IS NOT TRUE OR EXISTS (
                SELECT 1 FROM batches b
                WHERE b.medicine_id = m.id AND b.quantity_on_hand > 0 AND b.expires_on <= current_date))
          AND ($7::bool IS NULL OR m.active = $7)),
     page AS (SELECT id FROM f ORDER BY name, id LIMIT $8 OFFSET $9),
     -- The page's stock in one grouped pass over its batches (a per-row subquery costs
     -- twice as much at 50 rows).
     s AS (SELECT b.medicine_id,
                  sum(b.quantity_on_hand) FILTER (WHERE b.expires_on > current_date)::bigint AS stock,
                  sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date)::bigint AS expired_stock,
                  min(b.expires_on) FILTER (WHERE b.expires_on > current_date AND b.quantity_on_hand > 0) AS next_expiry
           FROM batches b WHERE b.medicine_id IN (SELECT id FROM page) GROUP BY b.medicine_id)
     SELECT m.id, m.name, m.brand, m.generic_name, m.dosage_form, m.strength, m.sale_price,
            m.reorder_level, m.prescription_only, m.active, coalesce(s.stock, 0), coalesce(s.expired_stock, 0),
            s.next_expiry, c.total
     FROM (SELECT count(*) AS total FROM f) c
     LEFT JOIN (page p JOIN medicines m ON m.id = p.id LEFT JOIN s ON s.medicine_id = m.id) ON true
     ORDER BY m.name, m.id";

const DETAIL_SQL: &str = concat!(
    "SELECT ",
    medicine_columns!(),
    " FROM medicines m",
    stock_lateral!(),
    "WHERE m.id = $1"
);

const BATCHES_SQL: &str =
    "SELECT b.id, b.batch_no, b.manufactured_on, b.expires_on, b.quantity_on_hand, b.unit_cost,
            b.supplier_id, s.name, b.received_at, b.expires_on <= current_date
     FROM batches b LEFT JOIN suppliers s ON s.id = b.supplier_id
     WHERE b.medicine_id = $1 ORDER BY b.expires_on, b.id";

const LEDGER_SQL: &str =
    "SELECT sm.id, sm.at, b.batch_no, sm.quantity, sm.reason, sm.reference, u.username
     FROM stock_movements sm JOIN batches b ON b.id = sm.batch_id
     LEFT JOIN users u ON u.id = sm.user_id
     WHERE b.medicine_id = $1 ORDER BY sm.at DESC, sm.id DESC LIMIT 100";

#[derive(Debug, Serialize)]
pub struct Medicine {
    pub id: i64,
    pub name: String,
    pub brand: Option<String>,
    pub generic_name: Option<String>,
    pub dosage_form: String,
    pub strength: Option<String>,
    pub sale_price: Decimal,
    pub reorder_level: i32,
    pub prescription_only: bool,
    pub active: bool,
    /// Units in unexpired batches (what can be sold).
    pub stock: i64,
    pub expired_stock: i64,
    /// Earliest expiry among unexpired batches with stock.
    pub next_expiry: Option<NaiveDate>,
}

pub(super) fn from_row(r: &tokio_postgres::Row) -> Medicine {
    Medicine {
        id: r.get(0),
        name: r.get(1),
        brand: r.get(2),
        generic_name: r.get(3),
        dosage_form: r.get(4),
        strength: r.get(5),
        sale_price: r.get(6),
        reorder_level: r.get(7),
        prescription_only: r.get(8),
        active: r.get(9),
        stock: r.get(10),
        expired_stock: r.get(11),
        next_expiry: r.get(12),
    }
}

/// Every active medicine's id, name and dosage form by name, for pickers.
pub(crate) async fn choices(db: &tokio_postgres::Client) -> ApiResult<Vec<(i64, String, String)>> {
    let rows = db
        .query(
            "SELECT id, name, dosage_form FROM medicines WHERE active ORDER BY name, id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// `?q=` as a LIKE prefix pattern, or None when blank.
pub(crate) fn search_pattern(raw: Option<&str>, min_chars: usize) -> ApiResult<Option<String>> {
    let q = raw.map(str::trim).unwrap_or_default();
    let chars = q.chars().count();
    if chars == 0 && min_chars <= 1 {
        return Ok(None);
    }
    if chars < min_chars {
        return Err(ApiError::invalid(
            "q",
            format!("type at least {min_chars} characters"),
        ));
    }
    if chars > MAX_QUERY {
        return Err(ApiError::invalid(
            "q",
            format!("q is longer than {MAX_QUERY} characters"),
        ));
    }
    Ok(Some(values::like_prefix(q)))
}

pub(crate) fn dosage_form(raw: &str) -> ApiResult<String> {
    let form = raw.trim().to_lowercase();
    if DOSAGE_FORMS.contains(&form.as_str()) {
        Ok(form)
    } else {
        Err(ApiError::invalid(
            "dosage_form",
            format!("dosage_form must be one of {}", DOSAGE_FORMS.join(", ")),
        ))
    }
}

/// The list's search and filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    pub q: Option<String>,
    pub dosage_form: Option<String>,
    pub supplier_id: Option<i64>,
    pub low_stock: Option<bool>,
    pub expiring: Option<bool>,
    pub expired: Option<bool>,
    pub active: Option<bool>,
    // Not `#[serde(flatten)] Page`: flattened fields reach serde as strings, and a query
    // string's `page=2` would then fail to parse as a number.
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

/// One page of the list.
#[derive(Debug, Serialize)]
pub struct MedicineList {
    pub total: i64,
    pub page: i64,
    pub items: Vec<Medicine>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    auth.require(Area::Medicines)?;
    readcache::respond(&state, &uri.to_string(), move |state| async move {
        list_page(&state, query).await
    })
    .await
}

async fn list_page(state: &AppState, query: ListQuery) -> ApiResult<MedicineList> {
    list_of(state, &query).await
}

/// The medicines matching `query`, one page of them.
pub(crate) async fn list_of(state: &AppState, query: &ListQuery) -> ApiResult<MedicineList> {
    let pattern = search_pattern(query.q.as_deref(), 1)?;
    let form = match query.dosage_form.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(dosage_form(raw)?),
    };
    let page = Page {
        page: query.page.unwrap_or(1),
        per_page: query.per_page.unwrap_or(50),
    };
    let db = state.db().await?;
    let stmt = db.prepare_cached(LIST_SQL).await?;
    let rows = db
        .query(
            &stmt,
            &[
                &pattern,
                &form,
                &query.supplier_id,
                &query.low_stock,
                &query.expiring,
                &query.expired,
                &query.active,
                &page.limit(),
                &page.offset(),
            ],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(13));
    let items: Vec<Medicine> = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(0).is_some())
        .map(from_row)
        .collect();
    Ok(MedicineList {
        total,
        page: page.page.max(1),
        items,
    })
}

#[derive(Debug, Serialize)]
pub struct Batch {
    pub id: i64,
    pub batch_no: String,
    pub manufactured_on: Option<NaiveDate>,
    pub expires_on: NaiveDate,
    pub quantity_on_hand: i32,
    pub unit_cost: Decimal,
    pub supplier_id: Option<i64>,
    pub supplier_name: Option<String>,
    pub received_at: DateTime<Utc>,
    pub expired: bool,
}

#[derive(Debug, Serialize)]
pub struct Movement {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub batch_no: String,
    pub quantity: i32,
    pub reason: String,
    pub reference: Option<String>,
    pub username: Option<String>,
}

/// A medicine with its batches (earliest expiry first) and its last 100 movements.
#[derive(Debug, Serialize)]
pub struct MedicinePage {
    pub medicine: Medicine,
    pub batches: Vec<Batch>,
    pub ledger: Vec<Movement>,
}

async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    auth.require(Area::Medicines)?;
    readcache::respond(&state, &uri.to_string(), move |state| async move {
        medicine_page(&state, id).await
    })
    .await
}

/// One medicine's page, or 404.
pub(crate) async fn medicine_page(state: &AppState, id: i64) -> ApiResult<MedicinePage> {
    let db = state.db().await?;
    // Prepared once per connection, and the three queries pipelined on it.
    let (one, all, moves) = futures::try_join!(
        db.prepare_cached(DETAIL_SQL),
        db.prepare_cached(BATCHES_SQL),
        db.prepare_cached(LEDGER_SQL),
    )?;
    let by_id: &[&(dyn ToSql + Sync)] = &[&id];
    let (medicine, batches, ledger) = futures::try_join!(
        db.query_opt(&one, by_id),
        db.query(&all, by_id),
        db.query(&moves, by_id),
    )?;
    let medicine = medicine
        .map(|r| from_row(&r))
        .ok_or_else(|| ApiError::not_found("medicine"))?;
    let batches: Vec<Batch> = batches
        .iter()
        .map(|r| Batch {
            id: r.get(0),
            batch_no: r.get(1),
            manufactured_on: r.get(2),
            expires_on: r.get(3),
            quantity_on_hand: r.get(4),
            unit_cost: r.get(5),
            supplier_id: r.get(6),
            supplier_name: r.get(7),
            received_at: r.get(8),
            expired: r.get(9),
        })
        .collect();
    let ledger: Vec<Movement> = ledger
        .iter()
        .map(|r| Movement {
            id: r.get(0),
            at: r.get(1),
            batch_no: r.get(2),
            quantity: r.get(3),
            reason: r.get(4),
            reference: r.get(5),
            username: r.get(6),
        })
        .collect();
    Ok(MedicinePage {
        medicine,
        batches,
        ledger,
    })
}
