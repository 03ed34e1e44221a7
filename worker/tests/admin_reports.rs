//! Company profile, settings, user management, reports and the dashboard, over a real
//! tenant. Sales are inserted directly as the tenant role so that the figures are known
//! exactly (and obey the invoices table's CHECKs).

mod support;

use std::str::FromStr;

use axum::http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use support::{Reply, Session, TestApp, PASSWORD};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn put(app: &TestApp, path: &str, s: &Session, body: Value) -> Reply {
    app.call(Method::PUT, path, Some(s), Some(body)).await
}

/// Asserts a 422 naming `field`.
fn invalid(r: &Reply, field: &str) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["field"], field, "{}", r.body);
}

async fn login_with(app: &TestApp, username: &str, password: &str) -> Reply {
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

#[tokio::test]
async fn company_and_settings() {
    let app = TestApp::new("acme").await;
    let admin = app.login("admin").await;
    let pharmacist = app.login("pharmacist").await;
    let staff = app.login("staff").await;

    // No profile yet: every field is null, and every role may read it.
    let c = app
        .expect(200, app.get("/api/v1/company", &staff).await)
        .await;
    assert!(c["name"].is_null() && c["address"].is_null(), "{c}");

    invalid(
        &put(&app, "/api/v1/company", &admin, json!({"name": "  "})).await,
        "name",
    );
    let long = "x".repeat(31);
    for (body, field) in [
        (json!({"name": "P", "email": "not-an-email"}), "email"),
        (json!({"name": "P", "phone": "1".repeat(51)}), "phone"),
        (json!({"name": "P", "pan": long}), "pan"),
        (json!({"name": "P", "vat_no": "v".repeat(31)}), "vat_no"),
        (
            json!({"name": "P", "licence_no": "l".repeat(51)}),
            "licence_no",
        ),
        (json!({"name": "P", "address": "a".repeat(501)}), "address"),
        (json!({"name": "n".repeat(201)}), "name"),
    ] {
        invalid(&put(&app, "/api/v1/company", &admin, body).await, field);
    }
    let body = json!({"name": " Acme Pharmacy ", "address": "Main St 1", "phone": "01-555",
                      "email": "shop@acme.test", "pan": "123", "vat_no": "V9", "licence_no": "L-1"});
    assert_eq!(
        put(&app, "/api/v1/company", &pharmacist, body.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let saved = app
        .expect(200, put(&app, "/api/v1/company", &admin, body).await)
        .await;
    assert_eq!(saved["name"], "Acme Pharmacy");
    // A second PUT updates the single row (address cleared: PUT replaces).
    app.expect(
        200,
        put(
            &app,
            "/api/v1/company",
            &admin,
            json!({"name": "Acme 2", "pan": "999"}),
        )
        .await,
    )
    .await;
    let c = app
        .expect(200, app.get("/api/v1/company", &staff).await)
        .await;
    assert_eq!(
        (c["name"].as_str(), c["pan"].as_str()),
        (Some("Acme 2"), Some("999"))
    );
    assert!(c["address"].is_null());
    let rows: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM company", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // Settings: readable by all, editable by admins only.
    let s = app
        .expect(200, app.get("/api/v1/settings", &pharmacist).await)
        .await;
    assert_eq!(s["currency"], "NPR");
    assert_eq!(s["low_stock_threshold"], 30);
    assert_eq!(s["near_expiry_days"], 90);
    assert_eq!(d(s["tax_rate"].as_str().unwrap()), Decimal::ZERO);
    for who in [&pharmacist, &staff] {
        assert_eq!(
            put(&app, "/api/v1/settings", who, json!({"tax_rate": "0.1"}))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
    for (body, field) in [
        (json!({"currency": "usd"}), "currency"),
        (json!({"currency": "NPRS"}), "currency"),
        (json!({"tax_rate": "1.5"}), "tax_rate"),
        (json!({"tax_rate": "-0.1"}), "tax_rate"),
        (json!({"tax_rate": "0.12345"}), "tax_rate"),
        (json!({"near_expiry_days": 0}), "near_expiry_days"),
        (json!({"near_expiry_days": 3651}), "near_expiry_days"),
        (json!({"low_stock_threshold": -1}), "low_stock_threshold"),
        (
            json!({"low_stock_threshold": 1_000_001}),
            "low_stock_threshold",
        ),
    ] {
        invalid(&put(&app, "/api/v1/settings", &admin, body).await, field);
    }
    let s = app
        .expect(
            200,
            put(
                &app,
                "/api/v1/settings",
                &admin,
                json!({"tax_rate": "0.13"}),
            )
            .await,
        )
        .await;
    assert_eq!(s["tax_rate"], "0.1300");
    assert_eq!(s["low_stock_threshold"], 30, "absent fields stay");
    let s = app
        .expect(
            200,
            put(
                &app,
                "/api/v1/settings",
                &admin,
                json!({"near_expiry_days": 60, "currency": "USD"}),
            )
            .await,
        )
        .await;
    assert_eq!(
        (s["near_expiry_days"].as_i64(), s["currency"].as_str()),
        (Some(60), Some("USD"))
    );
    let s = app
        .expect(200, app.get("/api/v1/settings", &staff).await)
        .await;
    assert_eq!(s["tax_rate"], "0.1300");
    assert_eq!(s["low_stock_threshold"], 30);
    assert_eq!(s["currency"], "USD");
}

#[tokio::test]
async fn users_are_managed_by_admins() {
    let app = TestApp::new("acme").await;
    let admin = app.login("admin").await;
    let pharmacist = app.login("pharmacist").await;
    let staff = app.login("staff").await;
    for who in [&staff, &pharmacist] {
        assert_eq!(
            app.get("/api/v1/users", who).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let new = |username: &str, role: &str| {
        json!({"username": username, "password": PASSWORD, "full_name": "New One",
               "email": "new@acme.test", "role": role})
    };
    assert_eq!(
        app.post("/api/v1/users", &pharmacist, new("x", "staff"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Validation names the field.
    invalid(
        &app.post("/api/v1/users", &admin, new("has space", "staff"))
            .await,
        "username",
    );
    invalid(
        &app.post("/api/v1/users", &admin, new("", "staff")).await,
        "username",
    );
    invalid(
        &app.post("/api/v1/users", &admin, new("ok", "boss")).await,
        "role",
    );
    let mut short = new("ok", "staff");
    short["password"] = json!("short");
    invalid(&app.post("/api/v1/users", &admin, short).await, "password");
    let mut bad_email = new("ok", "staff");
    bad_email["email"] = json!("nope");
    invalid(&app.post("/api/v1/users", &admin, bad_email).await, "email");

    let created = app
        .expect(
            201,
            app.post("/api/v1/users", &admin, new("Cashier2", "staff"))
                .await,
        )
        .await;
    let cashier = created["id"].as_i64().unwrap();
    assert_eq!(
        (created["role"].as_str(), created["active"].as_bool()),
        (Some("staff"), Some(true))
    );
    assert!(created.get("password_hash").is_none());
    // Usernames are unique case-insensitively.
    let r = app
        .post("/api/v1/users", &admin, new("cashier2", "admin"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "username");

    let list = app
        .expect(200, app.get("/api/v1/users", &admin).await)
        .await;
    assert_eq!(list["total"], 4);
    let one = app
        .expect(
            200,
            app.get(&format!("/api/v1/users/{cashier}"), &admin).await,
        )
        .await;
    assert_eq!(one["username"], "Cashier2");
    assert_eq!(
        app.get("/api/v1/users/999999", &admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch("/api/v1/users/999999", &admin, json!({"full_name": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Editing: a blank email clears it, absent fields stay.
    let p = app
        .expect(
            200,
            app.patch(
                &format!("/api/v1/users/{cashier}"),
                &admin,
                json!({"full_name": "Cash Ier", "email": "", "role": "pharmacist"}),
            )
            .await,
        )
        .await;
    assert_eq!(p["full_name"], "Cash Ier");
    assert!(p["email"].is_null());
    assert_eq!(p["role"], "pharmacist");
    invalid(
        &app.patch(
            &format!("/api/v1/users/{cashier}"),
            &admin,
            json!({"role": "root"}),
        )
        .await,
        "role",
    );

    // The only admin can be neither demoted nor deactivated.
    let admin_id = app.user_id("admin").await;
    let me = format!("/api/v1/users/{admin_id}");
    for body in [json!({"role": "staff"}), json!({"active": false})] {
        let r = app.patch(&me, &admin, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "last_admin");
    }
    // With a second admin, still not themself ...
    let admin2 = app
        .expect(
            201,
            app.post("/api/v1/users", &admin, new("admin2", "admin"))
                .await,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let r = app.patch(&me, &admin, json!({"active": false})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["error"]["code"], "self");
    // ... but another admin may demote them; then admin2 is the last one.
    let s2 = app.login("admin2").await;
    app.expect(
        200,
        app.patch(&me, &s2, json!({"role": "pharmacist"})).await,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/users", &admin).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .patch(
            &format!("/api/v1/users/{admin2}"),
            &s2,
            json!({"role": "staff"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["error"]["code"], "last_admin");

    // Deactivating ends the user's sessions and revokes their API tokens.
    let cs = app.login("cashier2").await;
    let token = app
        .expect(
            201,
            app.post("/api/v1/tokens", &cs, json!({"name": "script"}))
                .await,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_url = format!("/api/v1/users/{cashier}");
    app.expect(
        200,
        app.patch(&user_url, &s2, json!({"active": false})).await,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/auth/me", &cs).await.status,
        StatusCode::UNAUTHORIZED
    );
    let db = app.db().await;
    let sessions: i64 = db
        .query_one(
            "SELECT count(*) FROM sessions WHERE user_id = $1",
            &[&cashier],
        )
        .await
        .unwrap()
        .get(0);
    let live_tokens: i64 = db
        .query_one(
            "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL",
            &[&cashier],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((sessions, live_tokens), (0, 0));
    // Reactivated, the old session and token stay dead.
    app.expect(
        200,
        app.patch(&user_url, &s2, json!({"active": true})).await,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/auth/me", &cs).await.status,
        StatusCode::UNAUTHORIZED
    );
    let bearer = format!("Bearer {token}");
    let r = app
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.login("cashier2").await;

    // An admin's password reset ends the user's sessions; the new password works.
    let staff_id = app.user_id("staff").await;
    let reset = format!("/api/v1/users/{staff_id}/password");
    invalid(
        &app.post(&reset, &s2, json!({"new_password": "short"}))
            .await,
        "new_password",
    );
    assert_eq!(
        app.post(
            &reset,
            &pharmacist,
            json!({"new_password": "brand new secret"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(
            "/api/v1/users/999999/password",
            &s2,
            json!({"new_password": "brand new secret"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&reset, &s2, json!({"new_password": "brand new secret"}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &staff).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&app, "staff", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&app, "staff", "brand new secret").await.status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------
// Sales inserted directly
// ---------------------------------------------------------------------------------------

struct Fixture {
    admin: i64,
    staff: i64,
    a: i64,
    b: i64,
    batch_a: i64,
}

async fn medicine(db: &tokio_postgres::Client, name: &str, active: bool) -> i64 {
    db.query_one(
        "INSERT INTO medicines (name, dosage_form, sale_price, active) VALUES ($1, 'tablet', 10, $2) RETURNING id",
        &[&name, &active],
    )
    .await
    .unwrap()
    .get(0)
}

async fn batch(
    db: &tokio_postgres::Client,
    medicine: i64,
    no: &str,
    expires_in_days: i32,
    qty: i32,
    cost: &str,
    supplier: Option<i64>,
) -> i64 {
    db.query_one(
        "INSERT INTO batches (medicine_id, batch_no, expires_on, quantity_on_hand, unit_cost, supplier_id)
         VALUES ($1, $2, current_date + $3::int, $4, $5, $6) RETURNING id",
        &[&medicine, &no, &expires_in_days, &qty, &d(cost), &supplier],
    )
    .await
    .unwrap()
    .get(0)
}

async fn fixture(app: &TestApp) -> Fixture {
    let db = app.db().await;
    let admin = app.user_id("admin").await;
    let staff = app.user_id("staff").await;
    let a = medicine(&db, "Paracetamol 500mg, strip", true).await;
    let b = medicine(&db, "Amoxicillin", true).await;
    Fixture {
        admin,
        staff,
        a,
        b,
        batch_a: 0,
    }
}

/// Inserts a sale obeying the table's CHECKs; `at` is a timestamptz literal (or "now").
/// Returns the invoice id, its line ids and its total.
#[allow(clippy::too_many_arguments)]
async fn sale(
    db: &tokio_postgres::Client,
    number: i64,
    at: &str,
    billed_by: i64,
    method: &str,
    lines: &[(i64, i32, &str)],
    discount: &str,
    tax_rate: &str,
    voided_by: Option<i64>,
) -> (i64, Vec<i64>, Decimal) {
    let subtotal: Decimal = lines.iter().map(|(_, q, p)| d(p) * Decimal::from(*q)).sum();
    let row = db
        .query_one(
            "INSERT INTO invoices (number, created_at, billed_by, payment_method, subtotal, discount,
                                   tax_rate, tax, total, amount_received, change_due, status,
                                   voided_at, voided_by, void_reason)
             SELECT $1::bigint, $2::text::timestamptz, $3::bigint, $4::text, s, dc, r, t, s - dc + t,
                    CASE WHEN $4::text = 'cash' THEN ceil(s - dc + t) ELSE s - dc + t END,
                    CASE WHEN $4::text = 'cash' THEN ceil(s - dc + t) - (s - dc + t) ELSE 0 END,
                    CASE WHEN $8::bigint IS NULL THEN 'completed' ELSE 'voided' END,
                    CASE WHEN $8::bigint IS NULL THEN NULL ELSE now() END, $8,
                    CASE WHEN $8::bigint IS NULL THEN NULL ELSE 'test void' END
             FROM (SELECT $5::numeric AS s, $6::numeric AS dc, $7::numeric AS r,
                          round(($5::numeric - $6::numeric) * $7::numeric, 2) AS t) x
             RETURNING id, total",
            &[&number, &at, &billed_by, &method, &subtotal, &d(discount), &d(tax_rate), &voided_by],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    let mut ids = Vec::new();
    for (i, (medicine, qty, price)) in lines.iter().enumerate() {
        let line_no = i as i32 + 1;
        ids.push(
            db.query_one(
                "INSERT INTO invoice_lines (invoice_id, line_no, medicine_id, medicine_name, quantity, unit_price, line_total)
                 SELECT $1::bigint, $2::int, id, name, $4::int, $5::numeric, $5::numeric * $4::int
                 FROM medicines WHERE id = $3::bigint RETURNING id",
                &[&id, &line_no, medicine, qty, &d(price)],
            )
            .await
            .unwrap()
            .get(0),
        );
    }
    (id, ids, row.get(1))
}

#[tokio::test]
async fn reports_over_known_sales() {
    let app = TestApp::new("acme").await;
    let mut f = fixture(&app).await;
    let db = app.db().await;
    let s1: i64 = db
        .query_one(
            "INSERT INTO suppliers (name) VALUES ('Alpha Pharma') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let s2: i64 = db
        .query_one(
            "INSERT INTO suppliers (name) VALUES ('Beta Supplies') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let c = medicine(&db, "Retired", false).await;
    f.batch_a = batch(&db, f.a, "A1", 365, 100, "2.50", Some(s1)).await;
    batch(&db, f.a, "A0", -1, 10, "1.00", None).await; // expired
    batch(&db, f.b, "B1", 100, 40, "5.00", Some(s1)).await;
    batch(&db, c, "C1", 100, 5, "1.00", Some(s2)).await; // inactive medicine

    // 2024-03-10: a cash and a card sale, a voided wallet sale, and a refund.
    let (inv1, lines1, total1) = sale(
        &db,
        1,
        "2024-03-10 09:00",
        f.staff,
        "cash",
        &[(f.a, 4, "10.00"), (f.b, 1, "25.50")],
        "5.50",
        "0.13",
        None,
    )
    .await;
    assert_eq!(total1, d("67.80")); // 65.50 - 5.50 + 7.80
    let (_, _, total2) = sale(
        &db,
        2,
        "2024-03-10 23:30",
        f.admin,
        "card",
        &[(f.a, 2, "10.00")],
        "0",
        "0.13",
        None,
    )
    .await;
    assert_eq!(total2, d("22.60"));
    sale(
        &db,
        3,
        "2024-03-10 12:00",
        f.staff,
        "wallet",
        &[(f.b, 3, "25.50")],
        "0",
        "0",
        Some(f.admin),
    )
    .await;
    // 2024-03-12: one wallet sale.
    sale(
        &db,
        4,
        "2024-03-12 10:00",
        f.admin,
        "wallet",
        &[(f.a, 1, "10.00")],
        "0",
        "0.1",
        None,
    )
    .await;
    // One unit of A from invoice 1 comes back.
    db.execute(
        "INSERT INTO invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id, quantity)
         VALUES ($1, $2, $3, $4, 4)",
        &[&lines1[0], &f.batch_a, &inv1, &f.a],
    )
    .await
    .unwrap();
    let ret: i64 = db
        .query_one(
            "INSERT INTO returns (invoice_id, reason, refund, processed_by, created_at)
             VALUES ($1, 'wrong item', 11.30, $2, '2024-03-10 15:00') RETURNING id",
            &[&inv1, &f.admin],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO return_lines (return_id, invoice_id, invoice_line_id, batch_id, quantity)
         VALUES ($1, $2, $3, $4, 1)",
        &[&ret, &inv1, &lines1[0], &f.batch_a],
    )
    .await
    .unwrap();

    let ph = app.login("pharmacist").await;
    let staff = app.login("staff").await;
    for path in [
        "daily",
        "sales",
        "top-sellers",
        "stock",
        "stock-by-supplier",
    ] {
        let r = app.get(&format!("/api/v1/reports/{path}"), &staff).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "staff on {path}");
        let r = app.get(&format!("/api/v1/reports/{path}"), &ph).await;
        assert_eq!(r.status, StatusCode::OK, "pharmacist on {path}: {}", r.body);
    }

    // Daily: the voided sale does not count; the refund reduces net.
    let day = app
        .expect(
            200,
            app.get("/api/v1/reports/daily?date=2024-03-10", &ph).await,
        )
        .await;
    assert_eq!(day["count"], 2);
    let money = |v: &Value| d(v.as_str().unwrap_or_else(|| panic!("not money: {v}")));
    assert_eq!(money(&day["gross"]), d("85.50"));
    assert_eq!(money(&day["discount"]), d("5.50"));
    assert_eq!(money(&day["tax"]), d("10.40"));
    assert_eq!(money(&day["total"]), d("90.40"));
    assert_eq!(money(&day["refunds"]), d("11.30"));
    assert_eq!(money(&day["net"]), d("79.10"));
    let pm = &day["by_payment_method"];
    assert_eq!(
        (pm["cash"]["count"].as_i64(), money(&pm["cash"]["total"])),
        (Some(1), d("67.80"))
    );
    assert_eq!(
        (pm["card"]["count"].as_i64(), money(&pm["card"]["total"])),
        (Some(1), d("22.60"))
    );
    assert_eq!(
        (
            pm["wallet"]["count"].as_i64(),
            money(&pm["wallet"]["total"])
        ),
        (Some(0), d("0"))
    );
    invalid(
        &app.get("/api/v1/reports/daily?date=2024-13-01", &ph).await,
        "date",
    );
    invalid(
        &app.get("/api/v1/reports/daily?format=pdf", &ph).await,
        "format",
    );

    let csv = app
        .get("/api/v1/reports/daily?date=2024-03-10&format=csv", &ph)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.body.as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [
        "date,count,gross,discount,tax,total,cash_count,cash_total,card_count,card_total,wallet_count,wallet_total,refunds,net",
        "2024-03-10,2,85.50,5.50,10.40,90.40,1,67.80,1,22.60,0,0.00,11.30,79.10",
    ]);

    // Sales over a range: every day, zeros included, and the totals.
    let r = app
        .expect(
            200,
            app.get("/api/v1/reports/sales?from=2024-03-09&to=2024-03-13", &ph)
                .await,
        )
        .await;
    let days: Vec<(String, i64, Decimal, Decimal)> = r["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["date"].as_str().unwrap().to_owned(),
                x["count"].as_i64().unwrap(),
                money(&x["total"]),
                money(&x["discount"]),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![
            ("2024-03-09".to_owned(), 0, d("0"), d("0")),
            ("2024-03-10".to_owned(), 2, d("90.40"), d("5.50")),
            ("2024-03-11".to_owned(), 0, d("0"), d("0")),
            ("2024-03-12".to_owned(), 1, d("11.00"), d("0")),
            ("2024-03-13".to_owned(), 0, d("0"), d("0")),
        ]
    );
    assert_eq!(r["totals"]["count"], 3);
    assert_eq!(money(&r["totals"]["total"]), d("101.40"));
    assert_eq!(money(&r["totals"]["discount"]), d("5.50"));
    invalid(
        &app.get("/api/v1/reports/sales?from=2024-03-10&to=2024-03-09", &ph)
            .await,
        "to",
    );
    invalid(
        &app.get("/api/v1/reports/sales?from=2023-01-01&to=2024-03-09", &ph)
            .await,
        "from",
    );
    invalid(
        &app.get("/api/v1/reports/sales?from=10/03/2024", &ph).await,
        "from",
    );
    // 366 days is allowed.
    assert_eq!(
        app.get("/api/v1/reports/sales?from=2024-01-01&to=2024-12-31", &ph)
            .await
            .status,
        StatusCode::OK
    );
    let csv = app
        .get(
            "/api/v1/reports/sales?from=2024-03-10&to=2024-03-11&format=csv",
            &ph,
        )
        .await;
    assert_eq!(
        csv.body.as_str().unwrap(),
        "date,count,total,discount\r\n2024-03-10,2,90.40,5.50\r\n2024-03-11,0,0.00,0.00\r\n"
    );

    // Top sellers: A sold 4 + 2 + 1, one returned; B's voided sale is not counted.
    let top = app
        .expect(
            200,
            app.get(
                "/api/v1/reports/top-sellers?from=2024-03-01&to=2024-03-31",
                &ph,
            )
            .await,
        )
        .await;
    let items = top["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (
            items[0]["medicine_id"].as_i64(),
            items[0]["quantity"].as_i64()
        ),
        (Some(f.a), Some(6))
    );
    assert_eq!(money(&items[0]["revenue"]), d("70.00"));
    assert_eq!(
        (
            items[1]["medicine_id"].as_i64(),
            items[1]["quantity"].as_i64()
        ),
        (Some(f.b), Some(1))
    );
    assert_eq!(money(&items[1]["revenue"]), d("25.50"));
    let one = app
        .expect(
            200,
            app.get(
                "/api/v1/reports/top-sellers?from=2024-03-01&to=2024-03-31&limit=1",
                &ph,
            )
            .await,
        )
        .await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    for bad in ["0", "101", "ten"] {
        invalid(
            &app.get(&format!("/api/v1/reports/top-sellers?limit={bad}"), &ph)
                .await,
            "limit",
        );
    }
    let csv = app
        .get(
            "/api/v1/reports/top-sellers?from=2024-03-01&to=2024-03-31&format=csv",
            &ph,
        )
        .await;
    assert_eq!(
        csv.body.as_str().unwrap(),
        format!(
            "medicine_id,name,quantity,revenue\r\n{},\"Paracetamol 500mg, strip\",6,70.00\r\n{},Amoxicillin,1,25.50\r\n",
            f.a, f.b
        )
    );
    assert!(csv.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));

    // Stock: active medicines only; expired units apart and not valued.
    let st = app
        .expect(200, app.get("/api/v1/reports/stock", &ph).await)
        .await;
    let items = st["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{st}");
    let row = |id: i64| items.iter().find(|x| x["medicine_id"] == id).unwrap();
    assert_eq!(
        (row(f.a)["on_hand"].as_i64(), row(f.a)["expired"].as_i64()),
        (Some(100), Some(10))
    );
    assert_eq!(money(&row(f.a)["value"]), d("250.00"));
    assert_eq!(
        (row(f.b)["on_hand"].as_i64(), row(f.b)["expired"].as_i64()),
        (Some(40), Some(0))
    );
    assert_eq!(money(&row(f.b)["value"]), d("200.00"));
    assert_eq!(
        (
            st["totals"]["on_hand"].as_i64(),
            st["totals"]["expired"].as_i64()
        ),
        (Some(140), Some(10))
    );
    assert_eq!(money(&st["totals"]["value"]), d("450.00"));
    let csv = app.get("/api/v1/reports/stock?format=csv", &ph).await;
    let text = csv.body.as_str().unwrap();
    assert!(
        text.starts_with("medicine_id,name,dosage_form,strength,on_hand,expired,value\r\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains(&format!(
        "{},\"Paracetamol 500mg, strip\",tablet,,100,10,250.00\r\n",
        f.a
    )));

    // Stock by supplier, batches without a supplier last.
    let bs = app
        .expect(200, app.get("/api/v1/reports/stock-by-supplier", &ph).await)
        .await;
    let rows: Vec<(Value, String, i64, i64, Decimal)> = bs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["supplier_id"].clone(),
                x["supplier_name"].as_str().unwrap().to_owned(),
                x["medicines"].as_i64().unwrap(),
                x["units"].as_i64().unwrap(),
                money(&x["value"]),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (json!(s1), "Alpha Pharma".to_owned(), 2, 140, d("450.00")),
            (json!(s2), "Beta Supplies".to_owned(), 1, 5, d("5.00")),
            (Value::Null, "unknown supplier".to_owned(), 1, 10, d("0")),
        ]
    );
    assert_eq!(bs["totals"]["units"], 155);
    assert_eq!(money(&bs["totals"]["value"]), d("455.00"));
    let csv = app
        .get("/api/v1/reports/stock-by-supplier?format=csv", &ph)
        .await;
    let text = csv.body.as_str().unwrap();
    assert_eq!(
        text.lines().next(),
        Some("supplier_id,supplier_name,medicines,units,expired_units,value")
    );
    assert!(
        text.ends_with(",unknown supplier,1,10,10,0.00\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn dashboard_per_role() {
    let app = TestApp::new("acme").await;
    let f = fixture(&app).await;
    let db = app.db().await;
    let last_month: String = db
        .query_one(
            "SELECT (date_trunc('month', current_date) - interval '1 month' + interval '12 hours')::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sale(
        &db,
        1,
        "now",
        f.staff,
        "cash",
        &[(f.a, 1, "10.00")],
        "0",
        "0",
        None,
    )
    .await;
    sale(
        &db,
        2,
        "now",
        f.admin,
        "card",
        &[(f.b, 2, "10.00")],
        "0",
        "0",
        None,
    )
    .await;
    sale(
        &db,
        3,
        "now",
        f.staff,
        "cash",
        &[(f.b, 9, "10.00")],
        "0",
        "0",
        Some(f.admin),
    )
    .await;
    sale(
        &db,
        4,
        &last_month,
        f.staff,
        "wallet",
        &[(f.a, 1, "5.00")],
        "0",
        "0",
        None,
    )
    .await;
    let today: String = db
        .query_one("SELECT current_date::text", &[])
        .await
        .unwrap()
        .get(0);

    let admin = app.login("admin").await;
    let staff = app.login("staff").await;
    let money = |v: &Value| d(v.as_str().unwrap_or_else(|| panic!("not money: {v}")));
    let check = |v: &Value, key: &str, count: i64, total: &str| {
        assert_eq!(v[key]["count"].as_i64(), Some(count), "{key}: {v}");
        assert_eq!(money(&v[key]["total"]), d(total), "{key}: {v}");
    };

    let a = app
        .expect(200, app.get("/api/v1/dashboard", &admin).await)
        .await;
    check(&a, "today", 2, "30.00");
    check(&a, "this_month", 2, "30.00");
    check(&a, "last_month", 1, "5.00");
    let trend = a["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 7);
    assert_eq!(trend[6]["date"].as_str(), Some(today.as_str()));
    assert_eq!(trend[6]["count"], 2);
    assert!(trend[..6].iter().all(|t| t["count"] == 0), "{a}");
    assert!(
        trend[0]["date"].as_str() < trend[6]["date"].as_str(),
        "oldest first"
    );
    let top = a["top_medicines"].as_array().unwrap();
    assert_eq!(top[0]["medicine_id"].as_i64(), Some(f.b));
    assert_eq!(top[0]["quantity"], 2);
    assert_eq!(top.len(), 2);
    assert!(a["alerts"].is_object(), "{a}");

    // Staff see their own sales only.
    let s = app
        .expect(200, app.get("/api/v1/dashboard", &staff).await)
        .await;
    check(&s, "today", 1, "10.00");
    check(&s, "this_month", 1, "10.00");
    check(&s, "last_month", 1, "5.00");
    let top = s["top_medicines"].as_array().unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0]["medicine_id"].as_i64(), Some(f.a));
    assert_eq!(s["trend"][6]["count"], 1);
    assert_eq!(money(&s["trend"][6]["total"]), d("10.00"));

    let ph = app.login("pharmacist").await;
    check(
        &app.expect(200, app.get("/api/v1/dashboard", &ph).await)
            .await,
        "today",
        2,
        "30.00",
    );
}
