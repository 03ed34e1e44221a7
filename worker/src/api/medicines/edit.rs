//! Adding and editing medicines: the bodies, their validation, and one atomic statement each.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::{dosage_form, from_row, Medicine, MAX_REORDER_LEVEL};
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::{self, Money};

const INSERT_SQL: &str = concat!(
    "WITH m AS (
        INSERT INTO medicines (name, brand, generic_name, dosage_form, strength, sale_price,
                               reorder_level, prescription_only, active)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
    base_columns!(),
    ")
     SELECT ",
    medicine_columns!(),
    " FROM m",
    stock_lateral!()
);

/// One atomic statement: a NULL value keeps the column, and for the optional texts a flag
/// says whether the field was given (so that "" can clear it).
const UPDATE_SQL: &str = concat!(
    "WITH m AS (
        UPDATE medicines SET
            name = coalesce($2, name),
            brand = CASE WHEN $3::bool THEN $4 ELSE brand END,
            generic_name = CASE WHEN $5::bool THEN $6 ELSE generic_name END,
            dosage_form = coalesce($7, dosage_form),
            strength = CASE WHEN $8::bool THEN $9 ELSE strength END,
            sale_price = coalesce($10, sale_price),
            reorder_level = coalesce($11, reorder_level),
            prescription_only = coalesce($12, prescription_only),
            active = coalesce($13, active),
            updated_at = now()
        WHERE id = $1 RETURNING ",
    base_columns!(),
    ")
     SELECT ",
    medicine_columns!(),
    " FROM m",
    stock_lateral!()
);

/// Create and edit bodies. `sale_price` is taken as raw JSON so that a malformed amount is a
/// 422 naming the field (a string such as "12.50" is preferred; a number is accepted).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MedicineIn {
    pub name: Option<String>,
    pub brand: Option<String>,
    pub generic_name: Option<String>,
    pub dosage_form: Option<String>,
    pub strength: Option<String>,
    pub sale_price: Option<serde_json::Value>,
    pub reorder_level: Option<i64>,
    pub prescription_only: Option<bool>,
    pub active: Option<bool>,
}

fn price(raw: &serde_json::Value) -> ApiResult<Money> {
    let text = match raw {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let value = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| ApiError::invalid("sale_price", "sale_price is not an amount"))?;
    Ok(Money::parse("sale_price", value)?)
}

fn reorder_level(raw: i64) -> ApiResult<i32> {
    if !(0..=MAX_REORDER_LEVEL).contains(&raw) {
        return Err(ApiError::invalid(
            "reorder_level",
            format!("reorder_level must be between 0 and {MAX_REORDER_LEVEL}"),
        ));
    }
    Ok(raw as i32)
}

/// The fields a body gives, each validated (`None`: not given, or blank for optional texts).
struct Fields {
    name: Option<String>,
    brand: Option<String>,
    generic_name: Option<String>,
    dosage_form: Option<String>,
    strength: Option<String>,
    sale_price: Option<Money>,
    reorder_level: Option<i32>,
}

fn fields(body: &MedicineIn) -> ApiResult<Fields> {
    Ok(Fields {
        name: body
            .name
            .as_deref()
            .map(|n| values::text("name", n, 200))
            .transpose()?,
        brand: values::opt_text("brand", body.brand.as_deref(), 200)?,
        generic_name: values::opt_text("generic_name", body.generic_name.as_deref(), 200)?,
        dosage_form: body.dosage_form.as_deref().map(dosage_form).transpose()?,
        strength: values::opt_text("strength", body.strength.as_deref(), 100)?,
        sale_price: body.sale_price.as_ref().map(price).transpose()?,
        reorder_level: body.reorder_level.map(reorder_level).transpose()?,
    })
}

pub(crate) fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

pub(super) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<MedicineIn>,
) -> ApiResult<(StatusCode, Json<Medicine>)> {
    auth.require(Area::Medicines)?;
    let medicine = create_medicine(&**state.db().await?, &body).await?;
    Ok((StatusCode::CREATED, Json(medicine)))
}

/// Adds a medicine (the caller has checked that they may).
pub(crate) async fn create_medicine(
    db: &tokio_postgres::Client,
    body: &MedicineIn,
) -> ApiResult<Medicine> {
    let f = fields(body)?;
    let name = required(f.name, "name")?;
    let form = required(f.dosage_form, "dosage_form")?;
    let sale_price = required(f.sale_price, "sale_price")?;
    let row = db
        .query_one(
            INSERT_SQL,
            &[
                &name,
                &f.brand,
                &f.generic_name,
                &form,
                &f.strength,
                &sale_price,
                &f.reorder_level.unwrap_or(0),
                &body.prescription_only.unwrap_or(false),
                &body.active.unwrap_or(true),
            ],
        )
        .await?;
    Ok(from_row(&row))
}

/// Changes the fields given (absent or null keeps a field; "" clears an optional text);
/// `active: false` deactivates.
pub(super) async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<MedicineIn>,
) -> ApiResult<Json<Medicine>> {
    auth.require(Area::Medicines)?;
    Ok(Json(
        update_medicine(&**state.db().await?, id, &body).await?,
    ))
}

/// Changes the fields given (the caller has checked that they may).
pub(crate) async fn update_medicine(
    db: &tokio_postgres::Client,
    id: i64,
    body: &MedicineIn,
) -> ApiResult<Medicine> {
    let f = fields(body)?;
    let row = db
        .query_opt(
            UPDATE_SQL,
            &[
                &id,
                &f.name,
                &body.brand.is_some(),
                &f.brand,
                &body.generic_name.is_some(),
                &f.generic_name,
                &f.dosage_form,
                &body.strength.is_some(),
                &f.strength,
                &f.sale_price,
                &f.reorder_level,
                &body.prescription_only,
                &body.active,
            ],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("medicine"))?;
    Ok(from_row(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(
            price(&serde_json::json!(3)).unwrap().get(),
            Decimal::new(3, 0)
        );
        assert!(price(&serde_json::json!(true)).is_err());
    }
}
