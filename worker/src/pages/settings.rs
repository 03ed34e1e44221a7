//! The company profile (printed on every receipt) and the pharmacy's settings (alert
//! thresholds, tax rate, currency): admin only.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{self, Chrome};
use crate::api::admin::{self, CompanyIn, SettingsIn};
use crate::changes;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_web::error::{render, see_other, PageResult};
use apotheca_web::form::FormState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(show))
        .route("/settings/company", post(save_company))
        .route("/settings/pharmacy", post(save_settings))
}

const COMPANY_FIELDS: [&str; 7] = [
    "name",
    "address",
    "phone",
    "email",
    "pan",
    "vat_no",
    "licence_no",
];
const SETTINGS_FIELDS: [&str; 4] = [
    "low_stock_threshold",
    "near_expiry_days",
    "tax_rate",
    "currency",
];

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    company: FormState,
    settings: FormState,
}

/// The page with either form as sent (`Some`) or both as stored.
async fn show_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<&str>,
    company: Option<FormState>,
    settings: Option<FormState>,
) -> PageResult {
    let db = state.db().await?;
    let company = match company {
        Some(form) => form,
        None => {
            let c = admin::company(&db).await?;
            FormState::default()
                .with_opt("name", c.name)
                .with_opt("address", c.address)
                .with_opt("phone", c.phone)
                .with_opt("email", c.email)
                .with_opt("pan", c.pan)
                .with_opt("vat_no", c.vat_no)
                .with_opt("licence_no", c.licence_no)
        }
    };
    let settings = match settings {
        Some(form) => form,
        None => {
            let s = admin::settings(&db).await?;
            FormState::default()
                .with("low_stock_threshold", s.low_stock_threshold.to_string())
                .with("near_expiry_days", s.near_expiry_days.to_string())
                .with("tax_rate", s.tax_rate.normalize().to_string())
                .with("currency", s.currency)
        }
    };
    drop(db);
    let page = SettingsPage {
        chrome: Chrome::new(state, viewer, "/settings", notice).await?,
        company,
        settings,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Company)?;
    show_page(
        &state,
        &viewer,
        StatusCode::OK,
        q.notice.as_deref(),
        None,
        None,
    )
    .await
}

async fn save_company(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Company)?;
    let body = CompanyIn {
        name: data.given("name"),
        address: data.given("address"),
        phone: data.given("phone"),
        email: data.given("email"),
        pan: data.given("pan"),
        vat_no: data.given("vat_no"),
        licence_no: data.given("licence_no"),
    };
    match admin::save_company(&**state.db().await?, &body).await {
        Ok(_) => {
            changes::data_changed(&state).await;
            Ok(see_other("/settings?notice=saved"))
        }
        Err(e) => {
            let mut form = FormState::from_data(&data);
            let status = fields::on_form(e, &mut form, &COMPANY_FIELDS)?;
            show_page(&state, &viewer, status, None, Some(form), None).await
        }
    }
}

async fn save_settings(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Company)?;
    let mut form = FormState::from_data(&data);
    let body = SettingsIn {
        low_stock_threshold: fields::int(
            &data,
            &mut form,
            "low_stock_threshold",
            "The low-stock threshold",
        ),
        near_expiry_days: fields::int(
            &data,
            &mut form,
            "near_expiry_days",
            "The near-expiry window",
        ),
        tax_rate: fields::amount(&data, &mut form, "tax_rate", "The tax rate"),
        currency: data.given("currency").filter(|c| !c.trim().is_empty()),
    };
    if form.has_errors() {
        return show_page(
            &state,
            &viewer,
            view::form_status(None),
            None,
            None,
            Some(form),
        )
        .await;
    }
    match admin::save_settings(&**state.db().await?, &body).await {
        Ok(_) => {
            changes::data_changed(&state).await;
            Ok(see_other("/settings?notice=saved"))
        }
        Err(e) => {
            let status = fields::on_form(e, &mut form, &SETTINGS_FIELDS)?;
            show_page(&state, &viewer, status, None, None, Some(form)).await
        }
    }
}
