//! The counter (every role): search as you type (the page's script asks
//! `GET /api/v1/counter/search`), a cart, discount, payment and change; the sale is posted
//! through the sale queue exactly as `POST /api/v1/sales` posts it, with an idempotency key
//! made when the page was drawn, so a form sent twice makes one invoice. Then the printable
//! receipt with the pharmacy's header.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use rand::RngCore;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::fields;
use super::session::{Submitted, Viewer};
use super::view::{self, Chrome};
use crate::api::admin::{self, Company};
use crate::api::customers::{self, Customer};
use crate::http::error::ApiError;
use crate::sale_queue;
use crate::state::AppState;
use apotheca_pharmacy::accounts::Area;
use apotheca_pharmacy::invoices::{self, Invoice};
use apotheca_pharmacy::sale::{LineRequest, Payment, Pending, Posted, SaleRequest};
use apotheca_web::error::{ok, render, see_other, PageResult};
use apotheca_web::form::{FormData, FormState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/counter", get(show).post(post_sale))
        .route("/invoices/{id}/receipt", get(receipt))
}

/// A line of the cart as the form sent it (name and price only for showing it again: the
/// server prices every sale itself).
#[derive(Debug)]
pub struct CartLine {
    pub id: String,
    pub name: String,
    pub price: String,
    pub quantity: String,
}

#[derive(Template)]
#[template(path = "counter.html")]
struct CounterPage {
    chrome: Chrome,
    form: FormState,
    lines: Vec<CartLine>,
    customer: Option<Customer>,
    tax_rate: Decimal,
    counter_js: &'static str,
}

fn new_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("counter-{}", hex::encode(bytes))
}

async fn show_counter(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    form: FormState,
    lines: Vec<CartLine>,
) -> PageResult {
    let customer = match form.v("customer_id").parse::<i64>() {
        Ok(id) => Some(customers::load(state, &viewer.auth, id).await?.0),
        Err(_) => None,
    };
    let tax_rate = admin::settings(&**state.db().await?).await?.tax_rate;
    let page = CounterPage {
        chrome: Chrome::new(state, viewer, "/counter", None).await?,
        form,
        lines,
        customer,
        tax_rate,
        counter_js: apotheca_web::assets::url("counter.js"),
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct CounterParams {
    customer_id: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<CounterParams>,
) -> PageResult {
    viewer.require(Area::Counter)?;
    let form = FormState::default()
        .with("idempotency_key", new_key())
        .with("payment_method", "cash")
        .with_opt("customer_id", p.customer_id);
    show_counter(&state, &viewer, StatusCode::OK, form, Vec::new()).await
}

fn cart_of(data: &FormData) -> Vec<CartLine> {
    let (ids, quantities) = (data.all("medicine_id"), data.all("quantity"));
    let (names, prices) = (data.all("line_name"), data.all("line_price"));
    let at = |v: &[&str], i: usize| v.get(i).copied().unwrap_or_default().to_owned();
    (0..ids.len().min(apotheca_pharmacy::sale::MAX_LINES + 1))
        .map(|i| CartLine {
            id: at(&ids, i),
            name: at(&names, i),
            price: at(&prices, i),
            quantity: at(&quantities, i),
        })
        .collect()
}

/// The request the API would take, from the form; what does not parse is marked.
fn request_of(data: &FormData, lines: &[CartLine], form: &mut FormState) -> Option<SaleRequest> {
    let mut requested = Vec::with_capacity(lines.len());
    for line in lines {
        let name = if line.name.is_empty() {
            "a line"
        } else {
            &line.name
        };
        match (line.id.trim().parse(), line.quantity.trim().parse()) {
            (Ok(medicine_id), Ok(quantity)) => requested.push(LineRequest {
                medicine_id,
                quantity,
            }),
            (Err(_), _) => form
                .details
                .push(format!("{name}: not a medicine of this pharmacy")),
            (_, Err(_)) => form
                .details
                .push(format!("{name}: the units must be a whole number")),
        }
    }
    if !form.details.is_empty() {
        form.error = Some("Some lines of the cart are not right.".to_owned());
    }
    let payment = match data.get("payment_method") {
        "cash" => Some(Payment::Cash),
        "card" => Some(Payment::Card),
        "wallet" => Some(Payment::Wallet),
        _ => {
            form.invalid("payment_method", "Choose cash, card or wallet");
            None
        }
    };
    let discount = fields::amount(data, form, "discount", "The discount").unwrap_or_default();
    let received = fields::amount(data, form, "amount_received", "The amount received");
    let customer_id = match data.get("customer_id").trim() {
        "" => None,
        raw => raw.parse().ok(),
    };
    if form.has_errors() {
        return None;
    }
    let payment = payment?;
    Some(SaleRequest {
        customer_id,
        customer_name: data.given("customer_name"),
        customer_phone: data.given("customer_phone"),
        payment_method: payment,
        discount,
        // Card and wallet sales are paid exactly; a stale cash figure must not count.
        amount_received: (payment == Payment::Cash).then_some(received).flatten(),
        lines: requested,
    })
}

/// "Paracetamol 500 mg: 12 asked, 5 in stock" for each line the stock could not cover.
fn shortages(detail: Option<&serde_json::Value>) -> Vec<String> {
    let lines = detail
        .and_then(|d| d.get("lines"))
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    lines
        .iter()
        .map(|l| {
            let name = l.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let asked = l.get("requested").and_then(|n| n.as_i64()).unwrap_or(0);
            let available = l.get("available").and_then(|n| n.as_i64()).unwrap_or(0);
            let expired = l.get("expired_only").and_then(|n| n.as_i64()).unwrap_or(0);
            let mut text = format!("{name}: {asked} asked, {available} in stock");
            if expired > 0 {
                text.push_str(&format!(" (and {expired} expired, never sold)"));
            }
            text
        })
        .collect()
}

const FIELDS: [&str; 5] = [
    "discount",
    "amount_received",
    "payment_method",
    "customer_name",
    "customer_phone",
];

async fn post_sale(
    State(state): State<AppState>,
    Submitted { viewer, form: data }: Submitted,
) -> PageResult {
    viewer.require(Area::Counter)?;
    let mut form = FormState::from_data(&data);
    let lines = cart_of(&data);
    let Some(req) = request_of(&data, &lines, &mut form) else {
        return show_counter(&state, &viewer, view::form_status(None), form, lines).await;
    };
    let key = Some(data.get("idempotency_key")).filter(|k| !k.is_empty());
    let posted = match Pending::new(viewer.auth.user_id, &viewer.auth.username, &req, key) {
        Ok(sale) => sale_queue::post(&state, sale).await,
        Err(e) => Err(e),
    };
    match posted {
        Ok(Posted::New(invoice)) => Ok(see_other(&format!("/invoices/{}/receipt", invoice.id))),
        Ok(Posted::Earlier(id)) => Ok(see_other(&format!("/invoices/{id}/receipt"))),
        Err(e) => {
            let e = ApiError::from(e);
            let status = fields::on_form(e.clone(), &mut form, &FIELDS)?;
            form.details = shortages(e.detail.as_ref());
            show_counter(&state, &viewer, status, form, lines).await
        }
    }
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    chrome: Chrome,
    company: Company,
    i: Invoice,
}

async fn receipt(State(state): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> PageResult {
    viewer.require(Area::Invoices)?;
    let own = viewer
        .auth
        .own_invoices_only()
        .then_some(viewer.auth.user_id);
    let (i, company) = {
        let db = state.db().await?;
        (
            invoices::load(&db, id, own).await?,
            admin::company(&db).await?,
        )
    };
    let page = ReceiptPage {
        chrome: Chrome::new(&state, &viewer, "/counter", None).await?,
        company,
        i,
    };
    ok(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortage_lines() {
        let detail = serde_json::json!({"lines": [
            {"medicine_id": 1, "name": "Aspirin", "requested": 5, "available": 2, "expired_only": 0},
            {"medicine_id": 2, "name": "Old", "requested": 1, "available": 0, "expired_only": 3},
        ]});
        assert_eq!(
            shortages(Some(&detail)),
            [
                "Aspirin: 5 asked, 2 in stock",
                "Old: 1 asked, 0 in stock (and 3 expired, never sold)"
            ]
        );
        assert!(shortages(None).is_empty());
    }

    #[test]
    fn the_form_becomes_the_api_request() {
        let data = FormData(
            [
                ("medicine_id", "3"),
                ("line_name", "A"),
                ("line_price", "1.00"),
                ("quantity", "2"),
                ("payment_method", "card"),
                ("discount", ""),
                ("amount_received", "100"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        );
        let mut form = FormState::default();
        let req = request_of(&data, &cart_of(&data), &mut form).unwrap();
        assert_eq!(req.lines.len(), 1);
        assert_eq!((req.lines[0].medicine_id, req.lines[0].quantity), (3, 2));
        assert_eq!(req.discount, Decimal::ZERO);
        assert_eq!(req.amount_received, None, "card sales ignore a cash figure");
        let bad = FormData(vec![("payment_method".into(), "cheque".into())]);
        assert!(request_of(&bad, &[], &mut form).is_none());
        assert!(form.err("payment_method").is_some());
    }
}
