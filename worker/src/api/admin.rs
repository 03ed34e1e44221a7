//! Administration: the company profile and tenant settings (readable by every role because
//! receipts and the counter need them, editable by admins only). User management is in
//! `super::users`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/company", get(get_company).put(put_company))
        .route("/settings", get(get_settings).put(put_settings))
}

// ---------------------------------------------------------------------------------------
// Company profile
// ---------------------------------------------------------------------------------------

/// All fields are `null` until sign-up or an admin has saved the profile.
#[derive(Debug, Default, Serialize)]
pub struct Company {
    pub name: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub pan: Option<String>,
    pub vat_no: Option<String>,
    pub licence_no: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

const COMPANY_COLUMNS: &str = "name, address, phone, email, pan, vat_no, licence_no, updated_at";

fn company_from_row(r: &tokio_postgres::Row) -> Company {
    Company {
        name: r.get(0),
        address: r.get(1),
        phone: r.get(2),
        email: r.get(3),
        pan: r.get(4),
        vat_no: r.get(5),
        licence_no: r.get(6),
        updated_at: r.get(7),
    }
}

async fn get_company(State(state): State<AppState>, _auth: Auth) -> ApiResult<Json<Company>> {
    // Every logged-in role may read it: the receipt header prints it.
    Ok(Json(company(&**state.db().await?).await?))
}

/// The company profile (all `None` until saved).
pub(crate) async fn company(db: &tokio_postgres::Client) -> ApiResult<Company> {
    let row = db
        .query_opt(&format!("SELECT {COMPANY_COLUMNS} FROM company"), &[])
        .await?;
    Ok(row.as_ref().map(company_from_row).unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CompanyIn {
    pub name: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub pan: Option<String>,
    pub vat_no: Option<String>,
    pub licence_no: Option<String>,
}

/// Replaces the whole profile (a PUT: absent optional fields become empty).
async fn put_company(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<CompanyIn>,
) -> ApiResult<Json<Company>> {
    auth.require(Area::Company)?;
    Ok(Json(save_company(&**state.db().await?, &body).await?))
}

/// Replaces the company profile (the caller has checked that they may).
pub(crate) async fn save_company(
    db: &tokio_postgres::Client,
    body: &CompanyIn,
) -> ApiResult<Company> {
    let name = values::text("name", body.name.as_deref().unwrap_or_default(), 200)?;
    let address = values::opt_text("address", body.address.as_deref(), 500)?;
    let phone = values::opt_text("phone", body.phone.as_deref(), 50)?;
    let email = values::opt_email("email", body.email.as_deref())?;
    let pan = values::opt_text("pan", body.pan.as_deref(), 30)?;
    let vat_no = values::opt_text("vat_no", body.vat_no.as_deref(), 30)?;
    let licence_no = values::opt_text("licence_no", body.licence_no.as_deref(), 50)?;
    // The time comes through EXCLUDED: Citus takes only immutable functions in DO UPDATE SET.
    let row = db
        .query_one(
            &format!(
                "INSERT INTO company (id, name, address, phone, email, pan, vat_no, licence_no, updated_at)
                 VALUES (true, $1, $2, $3, $4, $5, $6, $7, now())
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, address = EXCLUDED.address,
                     phone = EXCLUDED.phone, email = EXCLUDED.email, pan = EXCLUDED.pan,
                     vat_no = EXCLUDED.vat_no, licence_no = EXCLUDED.licence_no,
                     updated_at = EXCLUDED.updated_at
                 RETURNING {COMPANY_COLUMNS}"
            ),
            &[&name, &address, &phone, &email, &pan, &vat_no, &licence_no],
        )
        .await?;
    Ok(company_from_row(&row))
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Settings {
    pub low_stock_threshold: i32,
    pub near_expiry_days: i32,
    pub tax_rate: Decimal,
    pub currency: String,
    pub updated_at: Option<DateTime<Utc>>,
}

const SETTINGS_COLUMNS: &str =
    "low_stock_threshold, near_expiry_days, tax_rate, currency, updated_at";

fn settings_from_row(r: &tokio_postgres::Row) -> Settings {
    Settings {
        low_stock_threshold: r.get(0),
        near_expiry_days: r.get(1),
        tax_rate: r.get(2),
        currency: r.get(3),
        updated_at: r.get(4),
    }
}

async fn get_settings(State(state): State<AppState>, _auth: Auth) -> ApiResult<Json<Settings>> {
    // Every role reads them (the counter needs the tax rate and currency).
    Ok(Json(settings(&**state.db().await?).await?))
}

/// The tenant's settings.
pub(crate) async fn settings(db: &tokio_postgres::Client) -> ApiResult<Settings> {
    let row = db
        .query_opt(&format!("SELECT {SETTINGS_COLUMNS} FROM settings"), &[])
        .await?;
    // The migration inserts the row; the schema defaults stand in should it be missing.
    Ok(row.as_ref().map(settings_from_row).unwrap_or(Settings {
        low_stock_threshold: 30,
        near_expiry_days: 90,
        tax_rate: Decimal::ZERO,
        currency: "NPR".to_owned(),
        updated_at: None,
    }))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SettingsIn {
    pub low_stock_threshold: Option<i64>,
    pub near_expiry_days: Option<i64>,
    pub tax_rate: Option<Decimal>,
    pub currency: Option<String>,
}

fn int_in(field: &str, value: Option<i64>, min: i64, max: i64) -> ApiResult<Option<i32>> {
    match value {
        None => Ok(None),
        Some(v) if (min..=max).contains(&v) => Ok(i32::try_from(v).ok()),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be between {min} and {max}"),
        )),
    }
}

/// 0..=1 with at most four places: numeric(6,4) would round more places silently.
fn tax_rate_in(rate: Decimal) -> ApiResult<Decimal> {
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        Err(ApiError::invalid(
            "tax_rate",
            "tax_rate must be between 0 and 1",
        ))
    } else if rate.normalize().scale() > 4 {
        Err(ApiError::invalid(
            "tax_rate",
            "tax_rate has more than four decimal places",
        ))
    } else {
        Ok(rate)
    }
}

/// Partial update: fields left out keep their value.
async fn put_settings(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<SettingsIn>,
) -> ApiResult<Json<Settings>> {
    auth.require(Area::Company)?;
    Ok(Json(save_settings(&**state.db().await?, &body).await?))
}

/// Changes the settings given (the caller has checked that they may).
pub(crate) async fn save_settings(
    db: &tokio_postgres::Client,
    body: &SettingsIn,
) -> ApiResult<Settings> {
    let low = int_in(
        "low_stock_threshold",
        body.low_stock_threshold,
        0,
        1_000_000,
    )?;
    let near = int_in("near_expiry_days", body.near_expiry_days, 1, 3650)?;
    let tax_rate = body.tax_rate.map(tax_rate_in).transpose()?;
    let currency = match body.currency.as_deref().map(str::trim) {
        Some(c) if !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())) => {
            return Err(ApiError::invalid(
                "currency",
                "currency must be a three-letter upper-case code such as NPR",
            ))
        }
        c => c.map(str::to_owned),
    };
    // An upsert, so that a tenant whose settings row went missing heals itself. The time comes
    // through EXCLUDED: Citus takes only immutable functions in DO UPDATE SET.
    let row = db
        .query_one(
            &format!(
                "INSERT INTO settings (id, low_stock_threshold, near_expiry_days, tax_rate, currency, updated_at)
                 VALUES (true, coalesce($1::int, 30), coalesce($2::int, 90), coalesce($3::numeric, 0),
                         coalesce($4::text, 'NPR'), now())
                 ON CONFLICT (id) DO UPDATE SET
                     low_stock_threshold = coalesce($1::int, settings.low_stock_threshold),
                     near_expiry_days = coalesce($2::int, settings.near_expiry_days),
                     tax_rate = coalesce($3::numeric, settings.tax_rate),
                     currency = coalesce($4::text, settings.currency),
                     updated_at = EXCLUDED.updated_at
                 RETURNING {SETTINGS_COLUMNS}"
            ),
            &[&low, &near, &tax_rate, &currency],
        )
        .await?;
    Ok(settings_from_row(&row))
}
