//! The HTML forms end to end, in-process: a refused form comes back with the domain code's
//! message next to the field and the values kept; a successful one redirects (303); the
//! counter, receiving stock, returns and voids change what the JSON API then reads. (Users,
//! settings and accounts: `pages_accounts.rs`.)

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::html::{self, stock_up};
use support::TestApp;

#[tokio::test]
async fn a_refused_form_keeps_its_values_and_says_why_next_to_the_field() {
    let app = TestApp::new("forms").await;
    let admin = app.login("admin").await;
    let page = html::post(
        &app,
        "/medicines/new",
        &admin,
        &[
            ("name", "Ibuprofen 400 mg"),
            ("brand", "Brufen <b>"),
            ("dosage_form", "tablet"),
            ("sale_price", "4.505"),
            ("reorder_level", "12"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        page.field_error("sale_price").as_deref(),
        Some("sale_price has more than two decimal places")
    );
    assert_eq!(
        page.input_value("name").as_deref(),
        Some("Ibuprofen 400 mg")
    );
    assert_eq!(page.input_value("sale_price").as_deref(), Some("4.505"));
    assert_eq!(page.input_value("reorder_level").as_deref(), Some("12"));
    // Kept, and escaped.
    assert_eq!(
        page.input_value("brand").as_deref(),
        Some("Brufen &#60;b&#62;")
    );
    assert!(page
        .body
        .contains("aria-invalid=\"true\" aria-describedby=\"e-sale_price\""));
    // A value that is not a number at all: marked before the domain code is asked.
    let page = html::post(
        &app,
        "/medicines/new",
        &admin,
        &[
            ("name", "X"),
            ("dosage_form", "tablet"),
            ("sale_price", "1"),
            ("reorder_level", "many"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        page.field_error("reorder_level").as_deref(),
        Some("Reorder level must be a whole number")
    );
    let count: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM medicines", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing was added");
    // Then it goes through, and the medicine is there for the API too.
    let page = html::post(
        &app,
        "/medicines/new",
        &admin,
        &[
            ("name", "Ibuprofen 400 mg"),
            ("dosage_form", "tablet"),
            ("sale_price", "4.50"),
            ("prescription_only", "on"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let id = page.id_in_location("/medicines/");
    let m = app
        .expect(
            200,
            app.get(&format!("/api/v1/medicines/{id}"), &admin).await,
        )
        .await;
    assert_eq!(m["medicine"]["sale_price"], "4.50");
    assert_eq!(m["medicine"]["prescription_only"], true);
    // Other forms: a duplicate phone, a bad email, a taken username.
    let c = html::post(
        &app,
        "/customers/new",
        &admin,
        &[("name", "Ram"), ("phone", "9841 000 000")],
    )
    .await;
    assert_eq!(c.status, StatusCode::SEE_OTHER);
    let dup = html::post(
        &app,
        "/customers/new",
        &admin,
        &[("name", "Shyam"), ("phone", "9841000000")],
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(
        dup.field_error("phone").as_deref(),
        Some("another customer has this phone number")
    );
    assert_eq!(dup.input_value("name").as_deref(), Some("Shyam"));
    let bad = html::post(
        &app,
        "/suppliers/new",
        &admin,
        &[("name", "S"), ("email", "not an email")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.field_error("email").as_deref(),
        Some("email is not an email address")
    );
    let taken = html::post(
        &app,
        "/users/new",
        &admin,
        &[
            ("username", "staff"),
            ("password", "long enough"),
            ("role", "staff"),
        ],
    )
    .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(
        taken.field_error("username").as_deref(),
        Some("this username is taken")
    );
    assert_eq!(
        taken.input_value("password").as_deref(),
        Some(""),
        "passwords are not sent back"
    );
}

#[tokio::test]
async fn the_counter_sells_once_per_form_and_shows_the_receipt() {
    let app = TestApp::new("forms").await;
    let admin = app.login("admin").await;
    let staff = app.login("staff").await;
    let s = stock_up(&app, &admin).await;
    let counter = html::get(&app, "/counter", Some(&staff)).await;
    assert_eq!(counter.status, StatusCode::OK);
    let key = counter
        .input_value("idempotency_key")
        .expect("an idempotency key");
    let m = s.medicine.to_string();
    let sale = [
        ("idempotency_key", key.as_str()),
        ("medicine_id", m.as_str()),
        ("line_name", "Paracetamol 500 mg"),
        ("line_price", "0.01"),
        ("quantity", "4"),
        ("discount", "1.00"),
        ("payment_method", "cash"),
        ("amount_received", "20"),
        ("customer_name", "Gita"),
    ];
    let posted = html::post(&app, "/counter", &staff, &sale).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    assert!(posted.location().ends_with("/receipt"));
    let invoice = posted.id_in_location("/invoices/");
    // The same form sent again (a double click, a reload): the same invoice.
    let again = html::post(&app, "/counter", &staff, &sale).await;
    assert_eq!(again.location(), posted.location());
    let inv = app
        .expect(
            200,
            app.get(&format!("/api/v1/invoices/{invoice}"), &staff)
                .await,
        )
        .await;
    // The server's prices, not the form's.
    assert_eq!(inv["subtotal"], "10.00");
    assert_eq!(inv["total"], "9.00");
    assert_eq!(inv["change_due"], "11.00");
    assert_eq!(inv["customer_name"], "Gita");
    let stock = app
        .expect(
            200,
            app.get(&format!("/api/v1/medicines/{}", s.medicine), &admin)
                .await,
        )
        .await;
    assert_eq!(stock["medicine"]["stock"], 16, "sold once");
    let receipt = html::get(&app, posted.location(), Some(&staff)).await;
    assert_eq!(receipt.status, StatusCode::OK);
    for text in [
        "No. 1",
        "Paracetamol 500 mg",
        "NPR 9.00",
        "NPR 11.00",
        "Gita",
        "data-print",
    ] {
        assert!(receipt.body.contains(text), "receipt lacks {text}");
    }
    // More than the stock: refused, the cart kept, the shortage named.
    let short = html::post(
        &app,
        "/counter",
        &staff,
        &[
            ("idempotency_key", "counter-short"),
            ("medicine_id", m.as_str()),
            ("line_name", "Paracetamol 500 mg"),
            ("line_price", "2.50"),
            ("quantity", "50"),
            ("payment_method", "card"),
        ],
    )
    .await;
    assert_eq!(short.status, StatusCode::CONFLICT);
    assert!(short.body.contains("not enough unexpired stock"));
    assert!(short
        .body
        .contains("Paracetamol 500 mg: 50 asked, 16 in stock"));
    assert!(short.body.contains("value=\"50\""), "the cart is kept");
    assert_eq!(
        short.input_value("idempotency_key").as_deref(),
        Some("counter-short")
    );
    // Cash without the amount received: the message is next to the field.
    let cash = html::post(
        &app,
        "/counter",
        &staff,
        &[
            ("medicine_id", m.as_str()),
            ("quantity", "1"),
            ("payment_method", "cash"),
            ("idempotency_key", "counter-cash"),
        ],
    )
    .await;
    assert_eq!(cash.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        cash.field_error("amount_received").as_deref(),
        Some("a cash sale needs the amount received")
    );
    // The dashboard and the daily report count the sale.
    let dashboard = html::get(&app, "/dashboard", Some(&staff)).await;
    assert!(dashboard.body.contains("NPR 9.00"));
    assert!(dashboard.body.contains("<svg class=\"chart\""));
    let daily = html::get(&app, "/reports/daily", Some(&admin)).await;
    assert!(daily.body.contains("NPR 9.00"));
    assert!(daily.body.contains("/api/v1/reports/daily?date="));
}

#[tokio::test]
async fn receiving_stock_returns_and_voids() {
    let app = TestApp::new("forms").await;
    let admin = app.login("admin").await;
    let s = stock_up(&app, &admin).await;
    let (sup, m) = (s.supplier.to_string(), s.medicine.to_string());
    // "More lines" sends the form back with more blank lines and the values kept.
    let more = html::post(
        &app,
        "/receipts/new",
        &admin,
        &[
            ("supplier_id", &sup),
            ("invoice_no", "HD-2"),
            ("invoice_date", "2026-02-01"),
            ("more", "1"),
            ("medicine_id", &m),
            ("batch_no", "B2"),
            ("manufactured_on", ""),
            ("expires_on", "2099-06-01"),
            ("quantity", "5"),
            ("unit_cost", "1.10"),
        ],
    )
    .await;
    assert_eq!(more.status, StatusCode::OK);
    assert_eq!(more.body.matches("<legend>Line ").count(), 6);
    assert_eq!(more.input_value("batch_no").as_deref(), Some("B2"));
    // A line whose expiry is before its manufacture: the message on that line.
    let line = |batch: &'static str, made: &'static str, expires: &'static str| {
        vec![
            ("medicine_id", m.clone()),
            ("batch_no", batch.to_owned()),
            ("manufactured_on", made.to_owned()),
            ("expires_on", expires.to_owned()),
            ("quantity", "5".to_owned()),
            ("unit_cost", "1.10".to_owned()),
        ]
    };
    let blank: Vec<(&str, String)> = [
        "medicine_id",
        "batch_no",
        "manufactured_on",
        "expires_on",
        "quantity",
        "unit_cost",
    ]
    .iter()
    .map(|f| (*f, String::new()))
    .collect();
    let mut fields: Vec<(&str, String)> = vec![
        ("supplier_id", sup.clone()),
        ("invoice_no", "HD-2".into()),
        ("invoice_date", "2026-02-01".into()),
    ];
    fields.extend(blank.clone());
    fields.extend(line("B2", "2099-07-01", "2099-06-01"));
    let sent: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = html::post(&app, "/receipts/new", &admin, &sent).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("id=\"e-expires_on-2\">the expiry must be after the manufacture date<"),
        "the message belongs to the second line"
    );
    assert!(refused.body.contains("value=\"2099-07-01\""));
    // Corrected: received, and the stock is up.
    let mut fields: Vec<(&str, String)> = vec![
        ("supplier_id", sup.clone()),
        ("invoice_no", "HD-2".into()),
        ("invoice_date", "2026-02-01".into()),
    ];
    fields.extend(line("B2", "2025-07-01", "2099-06-01"));
    fields.extend(blank);
    let sent: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let received = html::post(&app, "/receipts/new", &admin, &sent).await;
    assert_eq!(received.status, StatusCode::SEE_OTHER, "{}", received.body);
    let receipt = html::get(&app, received.location(), Some(&admin)).await;
    assert!(receipt.body.contains("The stock was received."));
    let stock = app
        .expect(
            200,
            app.get(&format!("/api/v1/medicines/{m}"), &admin).await,
        )
        .await;
    assert_eq!(stock["medicine"]["stock"], 25);
    // The same supplier invoice twice: refused next to its number.
    let twice = html::post(&app, "/receipts/new", &admin, &sent).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(
        twice.field_error("invoice_no").as_deref(),
        Some("this supplier's invoice HD-2 is already entered")
    );
    // A sale, part of it returned, more than what is left refused, then voided.
    let sale = app
        .expect(
            201,
            app.post("/api/v1/sales", &admin, json!({"payment_method": "card", "lines": [{"medicine_id": s.medicine, "quantity": 3}]}))
                .await,
        )
        .await;
    let (inv, line_id) = (
        sale["id"].as_i64().unwrap(),
        sale["lines"][0]["id"].as_i64().unwrap(),
    );
    let field = format!("return_{line_id}");
    let back = html::post(
        &app,
        &format!("/invoices/{inv}/return"),
        &admin,
        &[(&field, "1"), ("restock", "on"), ("reason", "wrong item")],
    )
    .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let over = html::post(
        &app,
        &format!("/invoices/{inv}/return"),
        &admin,
        &[(&field, "5"), ("restock", "on"), ("reason", "again")],
    )
    .await;
    assert_eq!(over.status, StatusCode::CONFLICT);
    assert!(over.body.contains("2 unit(s) left to return; 5 asked"));
    assert_eq!(over.input_value("reason").as_deref(), Some("again"));
    let no_reason = html::post(
        &app,
        &format!("/invoices/{inv}/void"),
        &admin,
        &[("void_reason", " ")],
    )
    .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        no_reason.field_error("void_reason").as_deref(),
        Some("reason is required")
    );
    let voided = html::post(
        &app,
        &format!("/invoices/{inv}/void"),
        &admin,
        &[("void_reason", "customer left")],
    )
    .await;
    assert_eq!(voided.status, StatusCode::SEE_OTHER);
    let page = html::get(&app, voided.location(), Some(&admin)).await;
    assert!(page.body.contains("The invoice was voided"));
    assert!(!page.body.contains("Void the invoice"), "no second void");
    let stock = app
        .expect(
            200,
            app.get(&format!("/api/v1/medicines/{m}"), &admin).await,
        )
        .await;
    assert_eq!(stock["medicine"]["stock"], 25, "all back on the shelf");
}
