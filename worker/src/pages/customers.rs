//! Customers (every role): search by name or phone, the page of one with their purchases
//! (staff: the ones they billed), add, edit, and a sale for them at the counter.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{Chrome, Pager};
use crate::api::customers::{
    self as api, create_customer, update_customer, Customer, CustomerIn, Purchase,
};
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::values::Page;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list))
        .route("/customers/new", get(new_form).post(create))
        .route("/customers/{id}", get(detail))
        .route("/customers/{id}/edit", get(edit_form).post(update))
}

const PER_PAGE: i64 = 50;
const FIELDS: [&str; 4] = ["name", "phone", "email", "address"];

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "customers/list.html")]
struct ListPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<Customer>,
    pager: Pager,
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Customers)?;
    let chrome = Chrome::new(&state, &viewer, "/customers", None).await?;
    let q = p.q.clone().unwrap_or_default();
    let mut form = FormState::default().with("q", q.clone());
    let page = Page {
        page: p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1),
        per_page: PER_PAGE,
    };
    let (total, items) = match api::list_of(&state, Some(&q), page).await {
        Ok(found) => found,
        Err(e) => {
            fields::on_form(e, &mut form, &["q"])?;
            (0, Vec::new())
        }
    };
    let pager = Pager::new("/customers", &[("q", &q)], page.page, PER_PAGE, total);
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
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "customers/detail.html")]
struct DetailPage {
    chrome: Chrome,
    c: Customer,
    invoices: Vec<Purchase>,
    may_sell: bool,
    own_only: bool,
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    viewer.require(Area::Customers)?;
    let chrome = Chrome::new(&state, &viewer, "/customers", q.notice.as_deref()).await?;
    let (c, invoices) = api::load(&state, &viewer.auth, id).await?;
    ok(&DetailPage {
        chrome,
        c,
        invoices,
        may_sell: viewer.may(Area::Counter),
        own_only: viewer.auth.own_invoices_only(),
    })
}

#[derive(Template)]
#[template(path = "customers/form.html")]
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
        chrome: Chrome::new(state, viewer, "/customers", None).await?,
        form,
        id,
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Area::Customers)?;
    show_form(&state, &viewer, StatusCode::OK, FormState::default(), None).await
}

/// Every field is sent, so a blank one clears it.
fn body_of(data: &FormData) -> CustomerIn {
    CustomerIn {
        name: data.given("name"),
        phone: data.given("phone"),
        email: data.given("email"),
        address: data.given("address"),
    }
}

async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Customers)?;
    match create_customer(&**state.db().await?, &body_of(&data)).await {
        Ok(c) => Ok(see_other(&format!("/customers/{}?notice=created", c.id))),
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
    viewer.require(Area::Customers)?;
    let (c, _) = api::load(&state, &viewer.auth, id).await?;
    let form = FormState::default()
        .with("name", c.name)
        .with_opt("phone", c.phone)
        .with_opt("email", c.email)
        .with_opt("address", c.address);
    show_form(&state, &viewer, StatusCode::OK, form, Some(id)).await
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Customers)?;
    match update_customer(&**state.db().await?, id, &body_of(&data)).await {
        Ok(_) => Ok(see_other(&format!("/customers/{id}?notice=saved"))),
        Err(e) => {
            let mut form = FormState::from_data(&data);
            let status = fields::on_form(e, &mut form, &FIELDS)?;
            show_form(&state, &viewer, status, form, Some(id)).await
        }
    }
}
