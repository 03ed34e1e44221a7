//! Medicines (admin, pharmacist): the list with search and filters, the page of one with its
//! batches and ledger, add, edit, deactivate and activate again.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{self, Chrome, Pager};
use crate::api::medicines::{
    self as api, create_medicine, update_medicine, ListQuery, Medicine, MedicineIn, MedicinePage,
    DOSAGE_FORMS,
};
use crate::api::suppliers;
use crate::changes;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/medicines", get(list))
        .route("/medicines/new", get(new_form).post(create))
        .route("/medicines/{id}", get(detail))
        .route("/medicines/{id}/edit", get(edit_form).post(update))
        .route("/medicines/{id}/active", post(set_active))
}

const PER_PAGE: i64 = 50;
const FIELDS: [&str; 7] = [
    "name",
    "brand",
    "generic_name",
    "dosage_form",
    "strength",
    "sale_price",
    "reorder_level",
];

fn form_choices() -> Vec<(String, String)> {
    DOSAGE_FORMS
        .iter()
        .map(|f| ((*f).to_owned(), (*f).to_owned()))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    dosage_form: Option<String>,
    supplier_id: Option<String>,
    low_stock: Option<String>,
    expiring: Option<String>,
    expired: Option<String>,
    /// active (default), inactive or all.
    status: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "medicines/list.html")]
struct ListPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<Medicine>,
    pager: Pager,
    forms: Vec<(String, String)>,
    suppliers: Vec<(String, String)>,
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let chrome = Chrome::new(&state, &viewer, "/medicines", None).await?;
    let status = p.status.clone().unwrap_or_else(|| "active".to_owned());
    let mut form = FormState::default()
        .with_opt("q", p.q.clone())
        .with_opt("dosage_form", p.dosage_form.clone())
        .with_opt("supplier_id", p.supplier_id.clone())
        .with("status", status.clone());
    for (name, value) in [
        ("low_stock", &p.low_stock),
        ("expiring", &p.expiring),
        ("expired", &p.expired),
    ] {
        if value.is_some() {
            form = form.with(name, "on");
        }
    }
    let page = p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1);
    let supplier_id = match p.supplier_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                form.invalid("supplier_id", "Pick a supplier from the list");
                None
            }
        },
    };
    let query = ListQuery {
        q: p.q.clone(),
        dosage_form: p.dosage_form.clone(),
        supplier_id,
        low_stock: p.low_stock.is_some().then_some(true),
        expiring: p.expiring.is_some().then_some(true),
        expired: p.expired.is_some().then_some(true),
        active: match status.as_str() {
            "inactive" => Some(false),
            "all" => None,
            _ => Some(true),
        },
        page: Some(page),
        per_page: Some(PER_PAGE),
    };
    let (items, total) = match api::list_of(&state, &query).await {
        Ok(list) => (list.items, list.total),
        Err(e) => {
            fields::on_form(e, &mut form, &["q", "dosage_form", "supplier_id"])?;
            (Vec::new(), 0)
        }
    };
    let params = [
        ("q", p.q.as_deref().unwrap_or_default()),
        ("dosage_form", p.dosage_form.as_deref().unwrap_or_default()),
        ("supplier_id", p.supplier_id.as_deref().unwrap_or_default()),
        ("low_stock", p.low_stock.as_deref().unwrap_or_default()),
        ("expiring", p.expiring.as_deref().unwrap_or_default()),
        ("expired", p.expired.as_deref().unwrap_or_default()),
        ("status", status.as_str()),
    ];
    let pager = Pager::new("/medicines", &params, page, PER_PAGE, total);
    let suppliers = suppliers::choices(&**state.db().await?, false)
        .await?
        .into_iter()
        .map(|(id, name)| (id.to_string(), name))
        .collect();
    let status = if form.has_errors() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &ListPage {
            chrome,
            form,
            items,
            pager,
            forms: form_choices(),
            suppliers,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "medicines/detail.html")]
struct DetailPage {
    chrome: Chrome,
    m: MedicinePage,
    may_receive: bool,
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let chrome = Chrome::new(&state, &viewer, "/medicines", q.notice.as_deref()).await?;
    let m = api::medicine_page(&state, id).await?;
    ok(&DetailPage {
        chrome,
        m,
        may_receive: viewer.may(Area::Receipts),
    })
}

#[derive(Template)]
#[template(path = "medicines/form.html")]
struct FormPage {
    chrome: Chrome,
    form: FormState,
    /// None: a new medicine.
    id: Option<i64>,
    forms: Vec<(String, String)>,
}

async fn show_form(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: FormState,
    id: Option<i64>,
) -> PageResult {
    let page = FormPage {
        chrome: Chrome::new(state, viewer, "/medicines", None).await?,
        form,
        id,
        forms: form_choices(),
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Medicines)?;
    let form = FormState::default()
        .with("dosage_form", "tablet")
        .with("reorder_level", "0");
    show_form(&state, &viewer, StatusCode::OK, form, None).await
}

/// The body the API would take, from the form; numbers that do not parse are marked.
fn body_of(data: &FormData, form: &mut FormState) -> MedicineIn {
    let price = data.get("sale_price").trim();
    MedicineIn {
        name: data.given("name"),
        brand: data.given("brand"),
        generic_name: data.given("generic_name"),
        dosage_form: data.given("dosage_form"),
        strength: data.given("strength"),
        sale_price: (!price.is_empty()).then(|| serde_json::Value::String(price.to_owned())),
        reorder_level: fields::int(data, form, "reorder_level", "Reorder level"),
        prescription_only: Some(data.ticked("prescription_only")),
        active: None,
    }
}

async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let mut form = FormState::from_data(&data);
    let body = body_of(&data, &mut form);
    if form.has_errors() {
        return show_form(&state, &viewer, view::form_status(None), form, None).await;
    }
    match create_medicine(&**state.db().await?, &body).await {
        Ok(m) => {
            changes::data_changed(&state).await;
            Ok(see_other(&format!("/medicines/{}?notice=created", m.id)))
        }
        Err(e) => {
            let status = fields::on_form(e, &mut form, &FIELDS)?;
            show_form(&state, &viewer, status, form, None).await
        }
    }
}

async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let m = api::medicine_page(&state, id).await?.medicine;
    let mut form = FormState::default()
        .with("name", m.name)
        .with_opt("brand", m.brand)
        .with_opt("generic_name", m.generic_name)
        .with("dosage_form", m.dosage_form)
        .with_opt("strength", m.strength)
        .with("sale_price", m.sale_price.to_string())
        .with("reorder_level", m.reorder_level.to_string());
    if m.prescription_only {
        form = form.with("prescription_only", "on");
    }
    show_form(&state, &viewer, StatusCode::OK, form, Some(id)).await
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let mut form = FormState::from_data(&data);
    let body = body_of(&data, &mut form);
    if body.sale_price.is_none() {
        form.invalid("sale_price", "sale_price is required");
    }
    if form.has_errors() {
        return show_form(&state, &viewer, view::form_status(None), form, Some(id)).await;
    }
    match update_medicine(&**state.db().await?, id, &body).await {
        Ok(_) => {
            changes::data_changed(&state).await;
            Ok(see_other(&format!("/medicines/{id}?notice=saved")))
        }
        Err(e) => {
            let status = fields::on_form(e, &mut form, &FIELDS)?;
            show_form(&state, &viewer, status, form, Some(id)).await
        }
    }
}

async fn set_active(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Medicines)?;
    let active = fields::flag(&data, "active")?;
    let body = MedicineIn {
        active: Some(active),
        ..MedicineIn::default()
    };
    update_medicine(&**state.db().await?, id, &body).await?;
    changes::data_changed(&state).await;
    let notice = if active { "activated" } else { "deactivated" };
    Ok(see_other(&format!("/medicines/{id}?notice={notice}")))
}
