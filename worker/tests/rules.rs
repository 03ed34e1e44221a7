//! The rules 1–12 of `docs/domain.md`, each with a test that fails when the rule is broken.

mod support;

use std::str::FromStr;

use axum::http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use support::{Session, TestApp};

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(
        v.as_str()
            .unwrap_or_else(|| panic!("not a decimal string: {v}")),
    )
    .unwrap()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn days(n: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(n)).to_string()
}

struct Shop {
    app: TestApp,
    boss: Session,
    supplier: i64,
}

impl Shop {
    async fn new() -> Self {
        Self::with(TestApp::new("acme").await).await
    }

    async fn with(app: TestApp) -> Self {
        let boss = app.login("pharmacist").await;
        let supplier = app
            .expect(
                201,
                app.post("/api/v1/suppliers", &boss, json!({"name": "Himal Pharma"}))
                    .await,
            )
            .await["id"]
            .as_i64()
            .unwrap();
        Self {
            app,
            boss,
            supplier,
        }
    }

    async fn medicine(&self, name: &str, price: &str) -> i64 {
        self.app
            .db()
            .await
            .query_one(
                "INSERT INTO medicines (name, dosage_form, sale_price) VALUES ($1, 'tablet', $2::text::numeric) RETURNING id",
                &[&name, &price],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Receives (batch_no, expires in days, quantity) of a medicine through the API.
    async fn receive(&self, medicine: i64, batches: &[(&str, i64, i64)]) -> Value {
        let n: i64 = self
            .app
            .db()
            .await
            .query_one("SELECT count(*) FROM supplier_invoices", &[])
            .await
            .unwrap()
            .get(0);
        let lines: Vec<Value> = batches
            .iter()
            .map(|(no, exp, q)| json!({"medicine_id": medicine, "batch_no": no, "expires_on": days(*exp), "quantity": q, "unit_cost": "5.00"}))
            .collect();
        let body = json!({"supplier_id": self.supplier, "invoice_no": format!("SI-{n}"), "invoice_date": days(0), "lines": lines});
        self.app
            .expect(
                201,
                self.app
                    .post("/api/v1/supplier-invoices", &self.boss, body)
                    .await,
            )
            .await
    }

    async fn sell(&self, s: &Session, lines: Value) -> support::Reply {
        self.app
            .post(
                "/api/v1/sales",
                s,
                json!({"payment_method": "card", "lines": lines}),
            )
            .await
    }

    async fn stock(&self, medicine: i64) -> i64 {
        self.app
            .db()
            .await
            .query_one("SELECT coalesce(sum(quantity_on_hand), 0)::bigint FROM batches WHERE medicine_id = $1", &[&medicine])
            .await
            .unwrap()
            .get(0)
    }

    /// Rule 2 everywhere: every batch's quantity equals the sum of its ledger movements.
    async fn assert_ledger_agrees(&self) {
        let off: i64 = self
            .app
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM batches b WHERE b.quantity_on_hand <>
                     (SELECT coalesce(sum(m.quantity), 0) FROM stock_movements m WHERE m.batch_id = b.id)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(off, 0, "a batch disagrees with its ledger");
    }
}

/// Posts the same sale with the same key `n` times at once; every answer must be the sale
/// (201 or 200). Returns how many distinct invoices came back.
async fn racing_retries(
    shop: &std::sync::Arc<Shop>,
    s: &Session,
    body: &Value,
    key: &'static str,
    n: usize,
) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (shop, s, body) = (shop.clone(), s.clone(), body.clone());
            tokio::spawn(async move {
                shop.app
                    .call_with(
                        Method::POST,
                        "/api/v1/sales",
                        Some(&s),
                        Some(body),
                        &[("idempotency-key", key)],
                    )
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::OK,
            "a retry must get the sale, not {}: {}",
            r.status,
            r.body
        );
        ids.insert(r.body["id"].as_i64().unwrap());
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_1_and_12_fifty_concurrent_sales_of_ten_units() {
    let tenant = apotheca_testkit::TestTenant::new("acme").await;
    let settings = apotheca_worker::settings::WorkerSettings {
        pool_size: 12,
        ..Default::default()
    };
    let shop = Shop::with(TestApp::with_settings(tenant, settings).await).await;
    let m = shop.medicine("Paracetamol 500", "2.00").await;
    shop.receive(m, &[("P-1", 100, 6), ("P-2", 200, 4)]).await;
    let cashier = shop.app.login("staff").await;
    let shop = std::sync::Arc::new(shop);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (shop, s) = (shop.clone(), cashier.clone());
            tokio::spawn(async move {
                shop.sell(&s, json!([{"medicine_id": m, "quantity": 1}]))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            201 => ok += 1,
            409 => assert_eq!(r.body["error"]["code"], "insufficient_stock"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(ok, 10, "exactly the 10 units in stock are sold");
    assert_eq!(shop.stock(m).await, 0);
    shop.assert_ledger_agrees().await;
    // Gap-free numbering: 1..=10.
    let numbers: Vec<i64> = apotheca_testkit::column(
        &**shop.app.db().await,
        "SELECT number FROM invoices ORDER BY number",
    )
    .await;
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());

    // Rule 1 for write-offs too: more than the batch holds is refused whole.
    let batch: i64 = shop
        .app
        .db()
        .await
        .query_one("SELECT id FROM batches WHERE batch_no = 'P-1'", &[])
        .await
        .unwrap()
        .get(0);
    let r = shop
        .app
        .post(
            &format!("/api/v1/batches/{batch}/write-off"),
            &shop.boss,
            json!({"quantity": 1, "reason": "broken"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    shop.receive(m, &[("P-1", 100, 3)]).await;
    let r = shop
        .app
        .post(
            &format!("/api/v1/batches/{batch}/write-off"),
            &shop.boss,
            json!({"quantity": 4, "reason": "broken"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        shop.stock(m).await,
        3,
        "a refused write-off changes nothing"
    );
    let r = shop
        .app
        .post(
            &format!("/api/v1/batches/{batch}/write-off"),
            &shop.boss,
            json!({"quantity": 2, "reason": "broken"}),
        )
        .await;
    assert_eq!(shop.app.expect(200, r).await["quantity_on_hand"], 1);
    shop.assert_ledger_agrees().await;
}

#[tokio::test]
async fn rule_2_every_change_writes_the_ledger() {
    let shop = Shop::new().await;
    let m = shop.medicine("Amoxicillin 250", "10.00").await;
    shop.receive(m, &[("A-1", 100, 20), ("A-2", 300, 5)]).await;
    let s = shop.app.login("admin").await;
    let inv = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 7}]))
                .await,
        )
        .await;
    let line = inv["lines"][0]["id"].as_i64().unwrap();
    let id = inv["id"].as_i64().unwrap();
    shop.app.expect(201, shop.app.post(&format!("/api/v1/invoices/{id}/returns"), &s, json!({"reason": "wrong item", "lines": [{"invoice_line_id": line, "quantity": 2}]})).await).await;
    let b: i64 = shop
        .app
        .db()
        .await
        .query_one("SELECT id FROM batches WHERE batch_no = 'A-2'", &[])
        .await
        .unwrap()
        .get(0);
    shop.app
        .expect(
            200,
            shop.app
                .post(
                    &format!("/api/v1/batches/{b}/adjust"),
                    &s,
                    json!({"quantity": -1, "reason": "count"}),
                )
                .await,
        )
        .await;
    shop.app
        .expect(
            200,
            shop.app
                .post(
                    &format!("/api/v1/batches/{b}/adjust"),
                    &s,
                    json!({"quantity": 3, "reason": "found"}),
                )
                .await,
        )
        .await;
    let inv2 = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 4}]))
                .await,
        )
        .await;
    shop.app
        .expect(
            200,
            shop.app
                .post(
                    &format!("/api/v1/invoices/{}/void", inv2["id"]),
                    &s,
                    json!({"reason": "customer left"}),
                )
                .await,
        )
        .await;
    assert_eq!(shop.stock(m).await, 20 + 5 - 7 + 2 - 1 + 3);
    shop.assert_ledger_agrees().await;
    let reasons: Vec<String> = apotheca_testkit::column(
        &**shop.app.db().await,
        "SELECT DISTINCT reason FROM stock_movements ORDER BY 1",
    )
    .await;
    assert_eq!(reasons, ["adjustment", "receipt", "return", "sale"]);
}

#[tokio::test]
async fn rule_3_first_expiry_first_out_across_batches() {
    let shop = Shop::new().await;
    let m = shop.medicine("Cetirizine 10", "3.00").await;
    shop.receive(m, &[("LATE", 300, 10), ("MID", 200, 5), ("SOON", 100, 3)])
        .await;
    let s = shop.app.login("staff").await;
    let inv = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 6}]))
                .await,
        )
        .await;
    let batches: Vec<(String, i64)> = inv["lines"][0]["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["batch_no"].as_str().unwrap().to_owned(),
                b["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        batches,
        [("SOON".to_owned(), 3), ("MID".to_owned(), 3)],
        "one line draws on two batches, earliest expiry first"
    );
    shop.assert_ledger_agrees().await;
}

#[tokio::test]
async fn rule_4_expired_stock_is_never_sold() {
    let shop = Shop::new().await;
    let m = shop.medicine("Old syrup", "4.00").await;
    shop.receive(m, &[("EXP", -10, 50)]).await;
    let s = shop.app.login("staff").await;
    let r = shop
        .sell(&s, json!([{"medicine_id": m, "quantity": 1}]))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["error"]["code"], "only_expired_stock");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // Mixed: 2 good units and 50 expired; 3 wanted → refused whole, nothing sold.
    shop.receive(m, &[("GOOD", 100, 2)]).await;
    let r = shop
        .sell(&s, json!([{"medicine_id": m, "quantity": 3}]))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_stock"))
    );
    assert_eq!(r.body["error"]["detail"]["lines"][0]["available"], 2);
    let inv = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 2}]))
                .await,
        )
        .await;
    assert_eq!(inv["lines"][0]["batches"][0]["batch_no"], "GOOD");
    assert_eq!(shop.stock(m).await, 50, "the expired batch is untouched");
}

#[tokio::test]
async fn rule_5_and_10_totals_are_computed_by_the_server_exactly() {
    let shop = Shop::new().await;
    let admin = shop.app.login("admin").await;
    shop.app
        .db()
        .await
        .batch_execute("UPDATE settings SET tax_rate = 0.13")
        .await
        .unwrap();
    let a = shop.medicine("A", "12.50").await;
    let b = shop.medicine("B", "0.10").await;
    shop.receive(a, &[("A", 100, 10)]).await;
    shop.receive(b, &[("B", 100, 10)]).await;
    // The client's totals and prices are ignored.
    let body = json!({
        "payment_method": "card", "discount": "2.55", "subtotal": "1.00", "total": "1.00", "tax": "0",
        "lines": [{"medicine_id": a, "quantity": 3, "unit_price": "0.01", "line_total": "0.01"},
                  {"medicine_id": b, "quantity": 3}],
    });
    let inv = shop
        .app
        .expect(201, shop.app.post("/api/v1/sales", &admin, body).await)
        .await;
    // 3 × 12.50 + 3 × 0.10 = 37.80 exactly (no binary floating point).
    assert_eq!(dec(&inv["subtotal"]), d("37.80"));
    assert_eq!(dec(&inv["lines"][1]["line_total"]), d("0.30"));
    assert_eq!(dec(&inv["discount"]), d("2.55"));
    // (37.80 − 2.55) × 0.13 = 4.5825 → 4.58
    assert_eq!(dec(&inv["tax"]), d("4.58"));
    assert_eq!(dec(&inv["total"]), d("39.83"));
    // Half a cent rounds away from zero, as PostgreSQL's round() does: (5.00 − 0) × 0.13 = 0.65;
    // with price 0.05 and rate 0.10: 0.005 → 0.01.
    shop.app
        .db()
        .await
        .batch_execute("UPDATE settings SET tax_rate = 0.10")
        .await
        .unwrap();
    let c = shop.medicine("C", "0.05").await;
    shop.receive(c, &[("C", 100, 10)]).await;
    let inv = shop
        .app
        .expect(
            201,
            shop.sell(&admin, json!([{"medicine_id": c, "quantity": 1}]))
                .await,
        )
        .await;
    assert_eq!(dec(&inv["tax"]), d("0.01"));
    // Discounts: never negative, never above the subtotal; money has at most two places.
    for (discount, field) in [
        ("-1", "discount"),
        ("100.00", "discount"),
        ("0.001", "discount"),
    ] {
        let r = shop.app.post("/api/v1/sales", &admin, json!({"payment_method": "card", "discount": discount, "lines": [{"medicine_id": a, "quantity": 1}]})).await;
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["field"].as_str()),
            (422, Some(field)),
            "{discount}: {}",
            r.body
        );
    }
    // Bad lines: zero, negative, huge quantities, unknown medicines, no lines.
    for lines in [
        json!([{"medicine_id": a, "quantity": 0}]),
        json!([{"medicine_id": a, "quantity": -2}]),
        json!([{"medicine_id": a, "quantity": 10_000_000}]),
        json!([]),
    ] {
        assert_eq!(
            shop.sell(&admin, lines.clone()).await.status.as_u16(),
            422,
            "{lines}"
        );
    }
    assert_eq!(
        shop.sell(&admin, json!([{"medicine_id": 999_999, "quantity": 1}]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    shop.assert_ledger_agrees().await;
}

#[tokio::test]
async fn rule_6_cash_needs_enough_money_and_gets_change() {
    let shop = Shop::new().await;
    let m = shop.medicine("Vitamin C", "33.40").await;
    shop.receive(m, &[("V", 100, 10)]).await;
    let s = shop.app.login("staff").await;
    let sale = |received: Option<&str>| json!({"payment_method": "cash", "amount_received": received, "lines": [{"medicine_id": m, "quantity": 1}]});
    let r = shop
        .app
        .post("/api/v1/sales", &s, sale(Some("33.39")))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("amount_received"))
    );
    let r = shop.app.post("/api/v1/sales", &s, sale(None)).await;
    assert_eq!(r.body["error"]["field"], "amount_received");
    let inv = shop
        .app
        .expect(
            201,
            shop.app.post("/api/v1/sales", &s, sale(Some("50"))).await,
        )
        .await;
    assert_eq!(dec(&inv["change_due"]), d("16.60"));
    assert_eq!(dec(&inv["amount_received"]), d("50.00"));
    let card = shop.app.expect(201, shop.app.post("/api/v1/sales", &s, json!({"payment_method": "card", "amount_received": "99", "lines": [{"medicine_id": m, "quantity": 1}]})).await).await;
    assert_eq!(
        (dec(&card["change_due"]), dec(&card["amount_received"])),
        (d("0"), d("33.40"))
    );
    assert_eq!(shop.stock(m).await, 8);
}

#[tokio::test]
async fn rule_7_returns_never_exceed_what_was_sold() {
    let shop = Shop::new().await;
    let m = shop.medicine("Ibuprofen", "8.00").await;
    shop.receive(m, &[("I-1", 100, 2), ("I-2", 200, 10)]).await;
    let s = shop.app.login("pharmacist").await;
    let inv = shop.app.expect(201, shop.app.post("/api/v1/sales", &s, json!({"payment_method": "card", "discount": "4.00", "lines": [{"medicine_id": m, "quantity": 5}]})).await).await;
    let (id, line) = (
        inv["id"].as_i64().unwrap(),
        inv["lines"][0]["id"].as_i64().unwrap(),
    );
    let ret = |q: i64, restock: bool| json!({"reason": "unused", "lines": [{"invoice_line_id": line, "quantity": q, "restock": restock}]});
    let r = shop
        .app
        .expect(
            201,
            shop.app
                .post(&format!("/api/v1/invoices/{id}/returns"), &s, ret(3, true))
                .await,
        )
        .await;
    assert_eq!(r["lines"][0]["returned"], 3);
    // 3 of 5 units of a 40.00 line with 4.00 discount: 3 × 8 × 36/40 = 21.60.
    assert_eq!(dec(&r["returns"][0]["refund"]), d("21.60"));
    let over = shop
        .app
        .post(&format!("/api/v1/invoices/{id}/returns"), &s, ret(3, true))
        .await;
    assert_eq!(
        (over.status, over.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("over_return"))
    );
    let r = shop
        .app
        .expect(
            201,
            shop.app
                .post(&format!("/api/v1/invoices/{id}/returns"), &s, ret(2, false))
                .await,
        )
        .await;
    assert_eq!(r["lines"][0]["returned"], 5);
    assert_eq!(
        dec(&r["refunded"]),
        dec(&r["total"]),
        "all units back: the whole amount paid, no more"
    );
    let over = shop
        .app
        .post(&format!("/api/v1/invoices/{id}/returns"), &s, ret(1, true))
        .await;
    assert_eq!(over.status, StatusCode::CONFLICT);
    // 2 + 10 − 5 + 3 restocked; the 2 damaged units were not.
    assert_eq!(shop.stock(m).await, 10);
    shop.assert_ledger_agrees().await;
    // A line of another invoice cannot be returned here.
    let other = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 1}]))
                .await,
        )
        .await;
    let foreign = json!({"reason": "x", "lines": [{"invoice_line_id": other["lines"][0]["id"], "quantity": 1}]});
    assert_eq!(
        shop.app
            .post(&format!("/api/v1/invoices/{id}/returns"), &s, foreign)
            .await
            .status
            .as_u16(),
        422
    );
}

#[tokio::test]
async fn rule_8_receipts_are_checked_and_total_their_lines() {
    let shop = Shop::new().await;
    let m = shop.medicine("Omeprazole", "6.00").await;
    let body = |lines: Value| json!({"supplier_id": shop.supplier, "invoice_no": "R-1", "invoice_date": days(0), "lines": lines});
    let line = |q: i64, cost: &str, made: Option<String>, exp: i64| json!({"medicine_id": m, "batch_no": "O-1", "quantity": q, "unit_cost": cost, "manufactured_on": made, "expires_on": days(exp)});
    for (bad, field) in [
        (line(0, "1.00", None, 100), "lines[0].quantity"),
        (line(-5, "1.00", None, 100), "lines[0].quantity"),
        (line(5, "-1.00", None, 100), "lines[0].unit_cost"),
        (line(5, "1.00", Some(days(100)), 50), "lines[0].expires_on"),
    ] {
        let r = shop
            .app
            .post("/api/v1/supplier-invoices", &shop.boss, body(json!([bad])))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["field"].as_str()),
            (422, Some(field)),
            "{}",
            r.body
        );
    }
    let ok = shop
        .app
        .expect(201, shop.app.post("/api/v1/supplier-invoices", &shop.boss, body(json!([line(4, "2.25", Some(days(-30)), 300), {"medicine_id": m, "batch_no": "O-2", "quantity": 3, "unit_cost": "1.10", "expires_on": days(400)}]))).await)
        .await;
    assert_eq!(dec(&ok["total"]), d("12.30"));
    let dup = shop
        .app
        .post(
            "/api/v1/supplier-invoices",
            &shop.boss,
            body(json!([line(1, "1.00", None, 300)])),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("invoice_no"))
    );
    // Topping up a known batch: its expiry must agree.
    let again = json!({"supplier_id": shop.supplier, "invoice_no": "R-2", "invoice_date": days(0), "lines": [line(1, "1.00", None, 301)]});
    assert_eq!(
        shop.app
            .post("/api/v1/supplier-invoices", &shop.boss, again)
            .await
            .status,
        StatusCode::CONFLICT
    );
    let again = json!({"supplier_id": shop.supplier, "invoice_no": "R-3", "invoice_date": days(0), "lines": [line(6, "2.25", None, 300)]});
    shop.app
        .expect(
            201,
            shop.app
                .post("/api/v1/supplier-invoices", &shop.boss, again)
                .await,
        )
        .await;
    assert_eq!(shop.stock(m).await, 4 + 3 + 6);
    shop.assert_ledger_agrees().await;
}

#[tokio::test]
async fn rule_9_posted_invoices_are_never_edited() {
    let shop = Shop::new().await;
    let m = shop.medicine("Zinc", "5.00").await;
    shop.receive(m, &[("Z", 100, 10)]).await;
    let s = shop.app.login("admin").await;
    let inv = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 4}]))
                .await,
        )
        .await;
    let id = inv["id"].as_i64().unwrap();
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let r = shop
            .app
            .call(
                method.clone(),
                &format!("/api/v1/invoices/{id}"),
                Some(&s),
                Some(json!({"total": "0"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let voided = shop
        .app
        .expect(
            200,
            shop.app
                .post(
                    &format!("/api/v1/invoices/{id}/void"),
                    &s,
                    json!({"reason": "mistake"}),
                )
                .await,
        )
        .await;
    assert_eq!(voided["status"], "voided");
    assert_eq!(voided["total"], inv["total"], "the amounts stay as posted");
    assert_eq!(shop.stock(m).await, 10, "a void restocks");
    let logged: i64 = shop
        .app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM stock_movements WHERE reference = $1",
            &[&format!("VOID INV-{}", inv["number"])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1, "and the restock is in the ledger");
    assert_eq!(
        shop.app
            .post(
                &format!("/api/v1/invoices/{id}/void"),
                &s,
                json!({"reason": "again"})
            )
            .await
            .status,
        StatusCode::CONFLICT
    );
    let r = shop.app.post(&format!("/api/v1/invoices/{id}/returns"), &s, json!({"reason": "x", "lines": [{"invoice_line_id": inv["lines"][0]["id"], "quantity": 1}]})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let fresh = shop
        .app
        .expect(
            201,
            shop.sell(&s, json!([{"medicine_id": m, "quantity": 1}]))
                .await,
        )
        .await;
    let r = shop
        .app
        .post(
            &format!("/api/v1/invoices/{}/void", fresh["id"]),
            &s,
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("reason")),
        "a void needs a reason"
    );
    shop.assert_ledger_agrees().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_11_a_retried_sale_makes_one_invoice() {
    let shop = Shop::new().await;
    let m = shop.medicine("ORS", "1.50").await;
    shop.receive(m, &[("O", 100, 100)]).await;
    let s = shop.app.login("staff").await;
    let body = json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 2}]});
    let post = |key: &'static str, body: Value| {
        let (app, s) = (&shop.app, &s);
        async move {
            app.call_with(
                Method::POST,
                "/api/v1/sales",
                Some(s),
                Some(body),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = post("sale-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = post("sale-1", body.clone()).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(shop.stock(m).await, 98, "stock taken once");
    let other = post(
        "sale-1",
        json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 3}]}),
    )
    .await;
    assert_eq!(
        (other.status.as_u16(), other.body["error"]["field"].as_str()),
        (422, Some("Idempotency-Key"))
    );
    // Ten retries racing each other: one invoice.
    let shop = std::sync::Arc::new(shop);
    assert_eq!(racing_retries(&shop, &s, &body, "sale-2", 10).await, 1);
    assert_eq!(shop.stock(m).await, 96);
    let n: i64 = shop
        .app
        .db()
        .await
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn the_database_refuses_an_invoice_without_a_number() {
    let shop = Shop::new().await;
    let db = shop.app.db().await;
    let user: i64 = db
        .query_one("SELECT id FROM users WHERE username = 'staff'", &[])
        .await
        .unwrap()
        .get(0);
    let err = db
        .execute(
            "INSERT INTO invoices (billed_by, payment_method, subtotal, discount, tax_rate, tax, total, amount_received, change_due)
             VALUES ($1, 'card', 0, 0, 0, 0, 0, 0, 0)",
            &[&user],
        )
        .await
        .expect_err("an unnumbered invoice must not commit");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::NOT_NULL_VIOLATION),
        "{err:?}"
    );
    let n: i64 = db
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_11_a_retry_racing_its_original_for_the_last_units_gets_the_sale() {
    let tenant = apotheca_testkit::TestTenant::new("acme").await;
    let settings = apotheca_worker::settings::WorkerSettings {
        pool_size: 8,
        ..Default::default()
    };
    let shop =
        std::sync::Arc::new(Shop::with(TestApp::with_settings(tenant, settings).await).await);
    let m = shop.medicine("Last box", "9.00").await;
    shop.receive(m, &[("L", 100, 2)]).await;
    let s = shop.app.login("staff").await;
    let body = json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 2}]});
    assert_eq!(racing_retries(&shop, &s, &body, "last", 6).await, 1);
    assert_eq!(shop.stock(m).await, 0);
    // Another cashier reusing the key gets a refusal, not that sale.
    let other = shop.app.login("admin").await;
    let r = shop
        .app
        .call_with(
            Method::POST,
            "/api/v1/sales",
            Some(&other),
            Some(body),
            &[("idempotency-key", "last")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("Idempotency-Key")),
        "{}",
        r.body
    );
}
