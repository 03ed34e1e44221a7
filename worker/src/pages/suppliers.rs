//! Suppliers (admin, pharmacist): list, the page of one with their invoices, add, edit,
//! deactivate and activate again.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{Chrome, Pager};
use crate::api::suppliers::{
    self as api, create_supplier, update_supplier, InvoiceSummary, Supplier, SupplierIn,
};
use crate::changes;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::Page;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/suppliers", get(list))
        .route("/suppliers/new", get(new_form).post(create))
        .route("/suppliers/{id}", get(detail))
        .route("/suppliers/{id}/edit", get(edit_form).post(update))
        .route("/suppliers/{id}/active", post(set_active))
}

const PER_PAGE: i64 = 50;
const FIELDS: [&str; 6] = ["name", "contact_person", "phone", "email", "address", "pan"];

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    /// active (default), inactive or all.
    status: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "suppliers/list.html")]
struct ListPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<Supplier>,
    pager: Pager,
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Suppliers)?;
    let chrome = Chrome::new(&state, &viewer, "/suppliers", None).await?;
    let status = p.status.clone().unwrap_or_else(|| "active".to_owned());
    let active = match status.as_str() {
        "inactive" => Some(false),
        "all" => None,
        _ => Some(true),
    };
    let page = Page {
        page: p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1),
        per_page: PER_PAGE,
    };
    let (total, items) = api::list_of(&**state.db().await?, p.q.as_deref(), active, page).await?;
    let q = p.q.clone().unwrap_or_default();
    let pager = Pager::new(
        "/suppliers",
        &[("q", &q), ("status", &status)],
        page.page,
        PER_PAGE,
        total,
    );
    let form = FormState::default().with("q", q).with("status", status);
    ok(&ListPage {
        chrome,
        form,
        items,
        pager,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "suppliers/detail.html")]
struct DetailPage {
    chrome: Chrome,
    s: Supplier,
    invoices: Vec<InvoiceSummary>,
    may_receive: bool,
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Suppliers)?;
    let chrome = Chrome::new(&state, &viewer, "/suppliers", q.notice.as_deref()).await?;
    let (s, invoices) = api::load(&**state.db().await?, id).await?;
    ok(&DetailPage {
        chrome,
        s,
        invoices,
        may_receive: viewer.may(Area::Receipts),
    })
}

#[derive(Template)]
#[template(path = "suppliers/form.html")]
struct FormPage {
    chrome: Chrome,
    form: FormState,
    id: Option<i64>,
}

async fn show_form(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: FormState,
    id: Option<i64>,
) -> PageResult {
    let page = FormPage {
        chrome: Chrome::new(state, viewer, "/suppliers", None).await?,
        form,
        id,
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Suppliers)?;
    show_form(&state, &viewer, StatusCode::OK, FormState::default(), None).await
}

/// Every field is sent, so a blank one clears it (as "" does in the API).
fn body_of(data: &FormData) -> SupplierIn {
    SupplierIn {
        name: data.given("name"),
        contact_person: data.given("contact_person"),
        phone: data.given("phone"),
        email: data.given("email"),
        address: data.given("address"),
        pan: data.given("pan"),
        active: None,
    }
}

async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Suppliers)?;
    match create_supplier(&**state.db().await?, &body_of(&data)).await {
        Ok(s) => {
            changes::data_changed(&state).await;
            Ok(see_other(&format!("/suppliers/{}?notice=created", s.id)))
        }
        Err(e) => {
            let mut form = FormState::from_data(&data);
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
    viewer.require(Area::Suppliers)?;
    let (s, _) = api::load(&**state.db().await?, id).await?;
    let form = FormState::default()
        .with("name", s.name)
        .with_opt("contact_person", s.contact_person)
        .with_opt("phone", s.phone)
        .with_opt("email", s.email)
        .with_opt("address", s.address)
        .with_opt("pan", s.pan);
    show_form(&state, &viewer, StatusCode::OK, form, Some(id)).await
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Suppliers)?;
    match update_supplier(&state, id, &body_of(&data)).await {
        Ok(_) => {
            changes::data_changed(&state).await;
            Ok(see_other(&format!("/suppliers/{id}?notice=saved")))
        }
        Err(e) => {
            let mut form = FormState::from_data(&data);
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
    viewer.require(Area::Suppliers)?;
    let active = fields::flag(&data, "active")?;
    let body = SupplierIn {
        active: Some(active),
        ..SupplierIn::default()
    };
    update_supplier(&state, id, &body).await?;
    changes::data_changed(&state).await;
    let notice = if active { "activated" } else { "deactivated" };
    Ok(see_other(&format!("/suppliers/{id}?notice={notice}")))
}
