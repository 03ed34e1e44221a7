//! Goods receipts (supplier invoices; admin, pharmacist): the list, one receipt, and
//! receiving stock: a supplier's invoice with its lines, posted by the same domain code as
//! `POST /api/v1/supplier-invoices`. The form works without scripts: "More lines" sends it
//! back with blank lines added, values kept.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{self, Chrome, Pager};
use crate::api::stock::{self as api, Receipt, ReceiptSummary};
use crate::api::{medicines, suppliers};
use crate::changes;
use crate::http::error::ApiError;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::stock::{ReceiptLine, ReceiptRequest, MAX_RECEIPT_LINES};
use apotheca_pharmacy::values::Page;
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/receipts", get(list))
        .route("/receipts/new", get(new_form).post(create))
        .route("/receipts/{id}", get(detail))
}

const PER_PAGE: i64 = 50;
/// Blank lines a new form starts with, and how many "More lines" adds.
const FIRST_LINES: usize = 3;
const BLANK_LINES: usize = 5;
const LINE_FIELDS: [&str; 6] = [
    "medicine_id",
    "batch_no",
    "manufactured_on",
    "expires_on",
    "quantity",
    "unit_cost",
];

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    supplier_id: Option<String>,
    page: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "receipts/list.html")]
struct ListPage {
    chrome: Chrome,
    form: FormState,
    items: Vec<ReceiptSummary>,
    pager: Pager,
    suppliers: Vec<(String, String)>,
}

async fn supplier_choices(
    state: &AppState,
    active_only: bool,
) -> PageResult<Vec<(String, String)>> {
    Ok(suppliers::choices(&**state.db().await?, active_only)
        .await?
        .into_iter()
        .map(|(id, name)| (id.to_string(), name))
        .collect())
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Receipts)?;
    let chrome = Chrome::new(&state, &viewer, "/receipts", None).await?;
    let supplier = p.supplier_id.clone().unwrap_or_default();
    let page = Page {
        page: p.page.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1),
        per_page: PER_PAGE,
    };
    let (total, items) =
        api::list_of(&**state.db().await?, supplier.trim().parse().ok(), page).await?;
    let pager = Pager::new(
        "/receipts",
        &[("supplier_id", &supplier)],
        page.page,
        PER_PAGE,
        total,
    );
    ok(&ListPage {
        chrome,
        form: FormState::default().with("supplier_id", supplier),
        items,
        pager,
        suppliers: supplier_choices(&state, false).await?,
    })
}

#[derive(Template)]
#[template(path = "receipts/detail.html")]
struct DetailPage {
    chrome: Chrome,
    r: Receipt,
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(p): Query<ListParams>,
) -> PageResult {
    viewer.require(Area::Receipts)?;
    let chrome = Chrome::new(&state, &viewer, "/receipts", p.notice.as_deref()).await?;
    let r = api::load(&**state.db().await?, id).await?;
    ok(&DetailPage { chrome, r })
}

/// One line of the form as typed, with its messages.
#[derive(Debug, Default)]
pub struct Line {
    values: HashMap<&'static str, String>,
    errors: HashMap<String, String>,
}

impl Line {
    pub fn v(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    pub fn err(&self, name: &str) -> Option<&str> {
        self.errors.get(name).map(String::as_str)
    }

    fn is_blank(&self) -> bool {
        self.values.values().all(|v| v.trim().is_empty())
    }
}

/// (name, label, input type, inputmode) of a line's inputs after the medicine.
type Input = (&'static str, &'static str, &'static str, &'static str);
const LINE_INPUTS: [Input; 5] = [
    ("batch_no", "Batch no.", "text", ""),
    ("manufactured_on", "Made on", "date", ""),
    ("expires_on", "Expires on", "date", ""),
    ("quantity", "Units", "number", "numeric"),
    ("unit_cost", "Unit cost", "text", "decimal"),
];

#[derive(Template)]
#[template(path = "receipts/form.html")]
struct FormPage {
    chrome: Chrome,
    form: FormState,
    lines: Vec<Line>,
    inputs: &'static [Input],
    suppliers: Vec<(String, String)>,
    medicines: Vec<(String, String)>,
}

async fn show_form(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: FormState,
    lines: Vec<Line>,
) -> PageResult {
    let medicines = medicines::choices(&**state.db().await?)
        .await?
        .into_iter()
        .map(|(id, name, form)| (id.to_string(), format!("{name} ({form})")))
        .collect();
    let page = FormPage {
        chrome: Chrome::new(state, viewer, "/receipts", None).await?,
        form,
        lines,
        inputs: &LINE_INPUTS,
        suppliers: supplier_choices(state, true).await?,
        medicines,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct NewParams {
    supplier_id: Option<String>,
}

async fn new_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<NewParams>,
) -> PageResult {
    viewer.require(Area::Receipts)?;
    let chrome_today = Chrome::new(&state, &viewer, "/receipts", None).await?.today;
    let form = FormState::default()
        .with_opt("supplier_id", p.supplier_id)
        .with("invoice_date", chrome_today.to_string());
    let lines = (0..FIRST_LINES).map(|_| Line::default()).collect();
    show_form(&state, &viewer, StatusCode::OK, form, lines).await
}

/// The lines as sent: every line sends all six fields, so the n-th value of each belongs
/// to the n-th line.
fn lines_of(data: &FormData) -> Vec<Line> {
    let columns: Vec<Vec<&str>> = LINE_FIELDS.iter().map(|f| data.all(f)).collect();
    let count = columns.iter().map(Vec::len).max().unwrap_or(0);
    (0..count.min(MAX_RECEIPT_LINES))
        .map(|i| Line {
            values: LINE_FIELDS
                .iter()
                .zip(&columns)
                .map(|(f, values)| (*f, values.get(i).copied().unwrap_or_default().to_owned()))
                .collect(),
            errors: HashMap::new(),
        })
        .collect()
}

/// The request from the lines that are not blank (their places kept in `places`), each
/// value that does not parse marked on its line.
fn request_of(
    data: &FormData,
    form: &mut FormState,
    lines: &mut [Line],
) -> Option<(ReceiptRequest, Vec<usize>)> {
    let supplier_id = match data.get("supplier_id").trim().parse::<i64>() {
        Ok(id) => Some(id),
        Err(_) => {
            form.invalid("supplier_id", "Pick the supplier");
            None
        }
    };
    let invoice_date = match fields::date(data.get("invoice_date")) {
        Ok(Some(d)) => Some(d),
        _ => {
            form.invalid("invoice_date", "Give the invoice's date (YYYY-MM-DD)");
            None
        }
    };
    let mut parsed = Vec::new();
    let mut places = Vec::new();
    for (i, line) in lines.iter_mut().enumerate() {
        if line.is_blank() {
            continue;
        }
        let mut bad: Vec<(&str, &str)> = Vec::new();
        let medicine_id = line.v("medicine_id").trim().parse::<i64>().ok();
        if medicine_id.is_none() {
            bad.push(("medicine_id", "Pick the medicine"));
        }
        let made = fields::date(line.v("manufactured_on"));
        if made.is_err() {
            bad.push(("manufactured_on", "A date YYYY-MM-DD, or blank"));
        }
        let expires = fields::date(line.v("expires_on")).ok().flatten();
        if expires.is_none() {
            bad.push(("expires_on", "Give the expiry date (YYYY-MM-DD)"));
        }
        let quantity = line.v("quantity").trim().parse::<i64>().ok();
        if quantity.is_none() {
            bad.push(("quantity", "A whole number of units"));
        }
        let unit_cost = line
            .v("unit_cost")
            .trim()
            .parse::<rust_decimal::Decimal>()
            .ok();
        if unit_cost.is_none() {
            bad.push(("unit_cost", "An amount such as 1.25"));
        }
        for (field, message) in bad {
            line.errors.insert(field.to_owned(), message.to_owned());
        }
        if let (Some(medicine_id), Ok(made), Some(expires), Some(quantity), Some(unit_cost)) =
            (medicine_id, made, expires, quantity, unit_cost)
        {
            parsed.push(ReceiptLine {
                medicine_id,
                batch_no: line.v("batch_no").to_owned(),
                manufactured_on: made,
                expires_on: expires,
                quantity,
                unit_cost,
            });
            places.push(i);
        }
    }
    let complete = lines.iter().all(|l| l.errors.is_empty());
    match (supplier_id, invoice_date, complete) {
        (Some(supplier_id), Some(invoice_date), true) => Some((
            ReceiptRequest {
                supplier_id,
                invoice_no: data.get("invoice_no").to_owned(),
                invoice_date,
                notes: data.given("notes"),
                lines: parsed,
            },
            places,
        )),
        _ => None,
    }
}

/// Puts the domain code's error where it belongs: `lines[k].field` on the k-th sent line.
fn place_error(e: &ApiError, form: &mut FormState, lines: &mut [Line], places: &[usize]) {
    let field = e.field.as_deref().unwrap_or_default();
    if let Some(rest) = field.strip_prefix("lines[") {
        if let Some((k, name)) = rest.split_once("].") {
            if let Some(&i) = k.parse::<usize>().ok().and_then(|k| places.get(k)) {
                lines[i].errors.insert(name.to_owned(), e.message.clone());
                return;
            }
        }
    }
    form.fail(
        e.field.as_deref(),
        &e.message,
        &["supplier_id", "invoice_no", "invoice_date", "notes"],
    );
}

async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Receipts)?;
    let mut form = FormState::from_data(&data);
    let mut lines = lines_of(&data);
    if !data.get("more").is_empty() {
        let more = BLANK_LINES.min(MAX_RECEIPT_LINES.saturating_sub(lines.len()));
        lines.extend((0..more).map(|_| Line::default()));
        return show_form(&state, &viewer, StatusCode::OK, form, lines).await;
    }
    let Some((req, places)) = request_of(&data, &mut form, &mut lines) else {
        return show_form(&state, &viewer, view::form_status(None), form, lines).await;
    };
    let mut db = state.db().await?;
    match api::receive(&mut db, viewer.auth.user_id, &req).await {
        Ok(id) => {
            drop(db);
            changes::data_changed(&state).await;
            Ok(see_other(&format!("/receipts/{id}?notice=received")))
        }
        Err(e) if fields::fits_form(&e) => {
            drop(db);
            place_error(&e, &mut form, &mut lines, &places);
            show_form(&state, &viewer, e.status, form, lines).await
        }
        Err(e) => Err(e.into()),
    }
}
