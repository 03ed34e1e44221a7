//! Medicines (list, search, filters, detail, add, edit), the counter search and its badges,
//! customers and their purchase history, alerts, and who may use each.

mod support;

use serde_json::{json, Value};
use support::{Session, TestApp};

/// Creates a medicine through the API and returns its id.
async fn medicine(app: &TestApp, s: &Session, body: Value) -> i64 {
    let created = app
        .expect(201, app.post("/api/v1/medicines", s, body).await)
        .await;
    created["id"].as_i64().unwrap()
}

/// A batch expiring `days` from today (negative: already expired).
async fn batch(app: &TestApp, medicine: i64, no: &str, days: i32, quantity: i32) -> i64 {
    app.db()
        .await
        .query_one(
            "INSERT INTO batches (medicine_id, batch_no, expires_on, quantity_on_hand, unit_cost)
             VALUES ($1, $2, current_date + $3::int, $4, 1.25) RETURNING id",
            &[&medicine, &no, &days, &quantity],
        )
        .await
        .unwrap()
        .get(0)
}

async fn field_error(app: &TestApp, s: &Session, path: &str, body: Value, field: &str) {
    let r = app.post(path, s, body.clone()).await;
    assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.body);
    assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn medicines_create_list_search_filter_edit() {
    let app = TestApp::new("acme").await;
    let s = app.login("pharmacist").await;

    let created = app
        .expect(
            201,
            app.post(
                "/api/v1/medicines",
                &s,
                json!({"name": "  Paracetamol ", "brand": "Calpol", "generic_name": "Acetaminophen",
                       "dosage_form": "Tablet", "strength": "500 mg", "sale_price": "12.50",
                       "reorder_level": 10}),
            )
            .await,
        )
        .await;
    assert_eq!(created["name"], "Paracetamol");
    assert_eq!(created["dosage_form"], "tablet");
    assert_eq!(created["sale_price"], "12.50");
    assert_eq!(created["prescription_only"], false);
    assert_eq!(created["active"], true);
    assert_eq!(created["stock"], 0);
    let para = created["id"].as_i64().unwrap();
    let amox = medicine(
        &app,
        &s,
        json!({"name": "Amoxicillin", "dosage_form": "capsule", "sale_price": 8,
               "reorder_level": 20, "prescription_only": true}),
    )
    .await;
    let syrup = medicine(
        &app,
        &s,
        json!({"name": "Benadryl", "generic_name": "Diphenhydramine", "dosage_form": "syrup",
               "sale_price": "95", "reorder_level": 5}),
    )
    .await;

    // Validation names the field.
    let m = "/api/v1/medicines";
    let ok = json!({"name": "X", "dosage_form": "tablet", "sale_price": "1"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    field_error(&app, &s, m, with("name", json!("  ")), "name").await;
    field_error(&app, &s, m, with("name", json!("n".repeat(201))), "name").await;
    field_error(&app, &s, m, with("brand", json!("b".repeat(201))), "brand").await;
    field_error(&app, &s, m, with("dosage_form", Value::Null), "dosage_form").await;
    field_error(
        &app,
        &s,
        m,
        json!({"dosage_form": "tablet", "sale_price": "1"}),
        "name",
    )
    .await;
    field_error(
        &app,
        &s,
        m,
        with("dosage_form", json!("pill")),
        "dosage_form",
    )
    .await;
    field_error(
        &app,
        &s,
        m,
        with("strength", json!("s".repeat(101))),
        "strength",
    )
    .await;
    field_error(
        &app,
        &s,
        m,
        with("sale_price", json!("1.005")),
        "sale_price",
    )
    .await;
    field_error(&app, &s, m, with("sale_price", json!("-1")), "sale_price").await;
    field_error(&app, &s, m, with("sale_price", json!("ten")), "sale_price").await;
    field_error(&app, &s, m, with("sale_price", Value::Null), "sale_price").await;
    field_error(
        &app,
        &s,
        m,
        with("reorder_level", json!(-1)),
        "reorder_level",
    )
    .await;
    field_error(
        &app,
        &s,
        m,
        with("reorder_level", json!(1_000_001)),
        "reorder_level",
    )
    .await;

    // Stock: Paracetamol 5 + 3 unexpired (one batch near expiry), 7 expired (today counts as
    // expired); Amoxicillin 100 far from expiry, from a supplier; Benadryl none.
    let db = app.db().await;
    let supplier: i64 = db
        .query_one(
            "INSERT INTO suppliers (name) VALUES ('Himalaya Traders') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    batch(&app, para, "P-FAR", 200, 5).await;
    let near = batch(&app, para, "P-NEAR", 20, 3).await;
    batch(&app, para, "P-OLD", 0, 7).await;
    batch(&app, para, "P-EMPTY", 5, 0).await;
    let amox_batch = batch(&app, amox, "A-1", 300, 100).await;
    db.execute(
        "UPDATE batches SET supplier_id = $1 WHERE id = $2",
        &[&supplier, &amox_batch],
    )
    .await
    .unwrap();

    let all = app
        .expect(200, app.get("/api/v1/medicines", &s).await)
        .await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["page"], 1);
    assert_eq!(names(&all), ["Amoxicillin", "Benadryl", "Paracetamol"]);
    let p = &all["items"][2];
    assert_eq!(p["stock"], 8, "{p}");
    assert_eq!(p["expired_stock"], 7);
    let next: String = db
        .query_one("SELECT (current_date + 20)::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        p["next_expiry"],
        next.as_str(),
        "the empty batch is skipped"
    );
    assert_eq!(all["items"][1]["next_expiry"], Value::Null);

    let list = |query: &str| {
        let app = &app;
        let s = &s;
        let path = format!("/api/v1/medicines?{query}");
        async move { app.expect(200, app.get(&path, s).await).await }
    };
    // Prefix search on name, generic name and brand; case-insensitive; LIKE characters are
    // literal; a middle-of-word match is not a prefix match.
    assert_eq!(names(&list("q=PARA").await), ["Paracetamol"]);
    assert_eq!(names(&list("q=acet").await), ["Paracetamol"]);
    assert_eq!(names(&list("q=calp").await), ["Paracetamol"]);
    assert_eq!(names(&list("q=diphen").await), ["Benadryl"]);
    assert_eq!(list("q=%25").await["total"], 0);
    assert_eq!(list("q=_mox").await["total"], 0);
    assert_eq!(list("q=cetamol").await["total"], 0);
    // Filters.
    assert_eq!(names(&list("dosage_form=capsule").await), ["Amoxicillin"]);
    assert_eq!(
        names(&list(&format!("supplier_id={supplier}")).await),
        ["Amoxicillin"]
    );
    assert_eq!(
        names(&list("low_stock=true").await),
        ["Benadryl", "Paracetamol"]
    );
    assert_eq!(names(&list("expiring=true").await), ["Paracetamol"]);
    assert_eq!(names(&list("expired=true").await), ["Paracetamol"]);
    assert_eq!(
        names(&list("low_stock=true&q=ben").await),
        ["Benadryl"],
        "filters combine"
    );
    // Pagination.
    let page2 = list("per_page=1&page=2").await;
    assert_eq!(page2["total"], 3);
    assert_eq!(page2["page"], 2);
    assert_eq!(names(&page2), ["Benadryl"]);
    let past = list("page=9").await;
    assert_eq!(
        (
            past["total"].as_i64(),
            past["items"].as_array().map(Vec::len)
        ),
        (Some(3), Some(0))
    );
    // Bad filters are 422, never 500.
    let r = app.get("/api/v1/medicines?dosage_form=pill", &s).await;
    assert_eq!(r.status.as_u16(), 422);
    assert_eq!(r.body["error"]["field"], "dosage_form");
    let r = app.get("/api/v1/medicines?supplier_id=abc", &s).await;
    assert_eq!(r.status.as_u16(), 422);
    let r = app
        .get(&format!("/api/v1/medicines?q={}", "a".repeat(201)), &s)
        .await;
    assert_eq!(r.status.as_u16(), 422);

    // Detail: all batches with the expired flag and supplier, and the ledger.
    // (Citus takes no subquery in INSERT ... VALUES: the user is looked up first.)
    let pharmacist = app.user_id("pharmacist").await;
    db.execute(
        "INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id)
         VALUES ($1, 3, 'receipt', 'GRN-1', $2)",
        &[&near, &pharmacist],
    )
    .await
    .unwrap();
    let d = app
        .expect(200, app.get(&format!("/api/v1/medicines/{para}"), &s).await)
        .await;
    assert_eq!(d["medicine"]["name"], "Paracetamol");
    assert_eq!(d["medicine"]["stock"], 8);
    let batches = d["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 4);
    assert_eq!(batches[0]["batch_no"], "P-OLD");
    assert_eq!(batches[0]["expired"], true);
    assert_eq!(batches[1]["expired"], false);
    assert_eq!(d["ledger"][0]["batch_no"], "P-NEAR");
    assert_eq!(d["ledger"][0]["quantity"], 3);
    assert_eq!(d["ledger"][0]["reason"], "receipt");
    assert_eq!(d["ledger"][0]["reference"], "GRN-1");
    assert_eq!(d["ledger"][0]["username"], "pharmacist");
    let d = app
        .expect(200, app.get(&format!("/api/v1/medicines/{amox}"), &s).await)
        .await;
    assert_eq!(d["batches"][0]["supplier_name"], "Himalaya Traders");
    assert_eq!(
        app.get("/api/v1/medicines/999999", &s)
            .await
            .status
            .as_u16(),
        404
    );

    // Edit: only the fields given change; "" clears an optional text; deactivate.
    let e = app
        .expect(
            200,
            app.patch(
                &format!("/api/v1/medicines/{para}"),
                &s,
                json!({"sale_price": "13", "brand": "", "active": false}),
            )
            .await,
        )
        .await;
    assert_eq!(e["sale_price"], "13.00");
    assert_eq!(e["brand"], Value::Null);
    assert_eq!(e["active"], false);
    assert_eq!(e["generic_name"], "Acetaminophen");
    assert_eq!(e["reorder_level"], 10);
    assert_eq!(e["stock"], 8);
    assert_eq!(names(&list("active=false").await), ["Paracetamol"]);
    assert_eq!(list("active=true").await["total"], 2);
    assert_eq!(list("").await["total"], 3, "all by default");
    let path = format!("/api/v1/medicines/{para}");
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"dosage_form": "pill"}), "dosage_form"),
        (json!({"sale_price": "1.001"}), "sale_price"),
        (json!({"reorder_level": -5}), "reorder_level"),
    ] {
        let r = app.patch(&path, &s, body).await;
        assert_eq!(r.status.as_u16(), 422);
        assert_eq!(r.body["error"]["field"], field);
    }
    assert_eq!(
        app.patch("/api/v1/medicines/999999", &s, json!({"name": "Y"}))
            .await
            .status
            .as_u16(),
        404
    );
    let syrup_now = app
        .expect(
            200,
            app.patch(&format!("/api/v1/medicines/{syrup}"), &s, json!({}))
                .await,
        )
        .await;
    assert_eq!(
        syrup_now["name"], "Benadryl",
        "an empty edit changes nothing"
    );
    // No DELETE: deactivate instead.
    let r = app
        .call(
            axum::http::Method::DELETE,
            &format!("/api/v1/medicines/{syrup}"),
            Some(&s),
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 405);
}

#[tokio::test]
async fn counter_search_stock_and_badges() {
    let app = TestApp::new("acme").await;
    let admin = app.login("admin").await;
    let staff = app.login("staff").await;
    let body = |name: &str| json!({"name": name, "dosage_form": "tablet", "sale_price": "2.00"});
    let critical = medicine(&app, &admin, body("Cetirizine")).await;
    let warning = medicine(&app, &admin, body("Cefixime")).await;
    let fine = medicine(&app, &admin, body("Ceftriaxone")).await;
    let only_expired = medicine(&app, &admin, body("Cephalexin")).await;
    let inactive = medicine(&app, &admin, body("Cetrimide")).await;
    batch(&app, critical, "C1", 10, 4).await;
    batch(&app, critical, "C2", 200, 6).await;
    batch(&app, warning, "W1", 60, 2).await;
    batch(&app, fine, "F1", 120, 9).await;
    batch(&app, only_expired, "X1", -3, 50).await;
    batch(&app, inactive, "I1", 100, 1).await;
    app.expect(
        200,
        app.patch(
            &format!("/api/v1/medicines/{inactive}"),
            &admin,
            json!({"active": false}),
        )
        .await,
    )
    .await;

    let found = app
        .expect(200, app.get("/api/v1/counter/search?q=ce", &staff).await)
        .await;
    let items = found["items"].as_array().unwrap();
    let by_name = |n: &str| {
        items
            .iter()
            .find(|i| i["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing: {found}"))
    };
    assert_eq!(items.len(), 4, "the inactive medicine is not offered");
    let c = by_name("Cetirizine");
    assert_eq!(c["stock"], 10);
    assert_eq!(c["days_to_expiry"], 10);
    assert_eq!(c["badge"], "critical");
    assert_eq!(c["out_of_stock"], false);
    assert_eq!(c["sale_price"], "2.00");
    assert_eq!(by_name("Cefixime")["badge"], "warning");
    assert_eq!(by_name("Ceftriaxone")["badge"], Value::Null);
    assert_eq!(by_name("Ceftriaxone")["days_to_expiry"], 120);
    let x = by_name("Cephalexin");
    assert_eq!(x["stock"], 0, "expired batches are not stock");
    assert_eq!(x["out_of_stock"], true);
    assert_eq!(x["next_expiry"], Value::Null);
    assert_eq!(x["badge"], Value::Null);

    let narrow = app
        .expect(200, app.get("/api/v1/counter/search?q=CEF", &staff).await)
        .await;
    assert_eq!(names(&narrow), ["Cefixime", "Ceftriaxone"]);

    // At least two characters; at most 20 results.
    for q in ["", "?q=", "?q=c", "?q=%20c%20"] {
        let r = app.get(&format!("/api/v1/counter/search{q}"), &staff).await;
        assert_eq!(r.status.as_u16(), 422, "{q}");
        assert_eq!(r.body["error"]["field"], "q");
    }
    app.db()
        .await
        .execute(
            "INSERT INTO medicines (name, dosage_form, sale_price)
             SELECT 'Zinc ' || g, 'tablet', 1 FROM generate_series(1, 25) g",
            &[],
        )
        .await
        .unwrap();
    let many = app
        .expect(200, app.get("/api/v1/counter/search?q=zi", &staff).await)
        .await;
    assert_eq!(many["items"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn customers_and_purchase_history() {
    let app = TestApp::new("acme").await;
    let staff = app.login("staff").await;
    let admin = app.login("admin").await;
    let c = "/api/v1/customers";

    let ram = app
        .expect(
            201,
            app.post(
                c,
                &staff,
                json!({"name": " Ram Shrestha ", "phone": "+977 984-1234567",
                       "email": "ram@example.com", "address": "Thamel"}),
            )
            .await,
        )
        .await;
    assert_eq!(ram["name"], "Ram Shrestha");
    assert_eq!(ram["phone"], "+9779841234567");
    let ram_id = ram["id"].as_i64().unwrap();
    let sita = app
        .expect(201, app.post(c, &staff, json!({"name": "Sita"})).await)
        .await;
    assert_eq!(sita["phone"], Value::Null);
    let sita_id = sita["id"].as_i64().unwrap();
    app.expect(
        201,
        app.post(c, &staff, json!({"name": "Hari", "phone": ""}))
            .await,
    )
    .await;

    // The same number written differently is a duplicate.
    let r = app
        .post(
            c,
            &staff,
            json!({"name": "Other", "phone": "+9779841234567"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "phone");
    let r = app
        .patch(
            &format!("{c}/{sita_id}"),
            &staff,
            json!({"phone": "+977-9841234567"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 409);
    assert_eq!(r.body["error"]["field"], "phone");
    field_error(&app, &staff, c, json!({"name": ""}), "name").await;
    field_error(
        &app,
        &staff,
        c,
        json!({"name": "A", "phone": "12ab"}),
        "phone",
    )
    .await;
    field_error(
        &app,
        &staff,
        c,
        json!({"name": "A", "email": "nope"}),
        "email",
    )
    .await;
    field_error(
        &app,
        &staff,
        c,
        json!({"name": "A", "address": "x".repeat(501)}),
        "address",
    )
    .await;

    // Search by name prefix or phone prefix.
    let found = app.get(&format!("{c}?q=ra"), &staff).await.body;
    assert_eq!(names(&found), ["Ram Shrestha"]);
    let found = app.get(&format!("{c}?q=%2B977%20984"), &staff).await.body;
    assert_eq!(names(&found), ["Ram Shrestha"]);
    let all = app.get(&format!("{c}?per_page=2"), &staff).await.body;
    assert_eq!(all["total"], 3);
    assert_eq!(names(&all), ["Hari", "Ram Shrestha"]);

    // Edit.
    let e = app
        .expect(
            200,
            app.patch(
                &format!("{c}/{sita_id}"),
                &staff,
                json!({"phone": "9800000001", "email": "sita@example.com"}),
            )
            .await,
        )
        .await;
    assert_eq!(e["name"], "Sita");
    assert_eq!(e["phone"], "9800000001");
    let e = app
        .expect(
            200,
            app.patch(&format!("{c}/{sita_id}"), &staff, json!({"email": ""}))
                .await,
        )
        .await;
    assert_eq!(e["email"], Value::Null);
    assert_eq!(e["phone"], "9800000001");
    assert_eq!(
        app.patch(&format!("{c}/999999"), &staff, json!({"name": "Z"}))
            .await
            .status
            .as_u16(),
        404
    );
    assert_eq!(
        app.get(&format!("{c}/999999"), &staff)
            .await
            .status
            .as_u16(),
        404
    );

    // History: staff see only what they billed; others see all, newest first.
    let db = app.db().await;
    for (number, user, days_ago, total) in [
        (1_i64, "staff", 3, "100.00"),
        (2, "admin", 2, "250.00"),
        (3, "staff", 1, "40.50"),
    ] {
        // (Citus takes no subquery in INSERT ... VALUES: the user is looked up first.)
        let billed_by = app.user_id(user).await;
        db.execute(
            "INSERT INTO invoices (number, created_at, customer_id, customer_name, billed_by,
                                   payment_method, subtotal, discount, tax_rate, tax, total,
                                   amount_received, change_due)
             VALUES ($1, now() - make_interval(days => $2), $3, 'Ram Shrestha', $4, 'cash',
                     $5::text::numeric, 0, 0, 0, $5::text::numeric, $5::text::numeric, 0)",
            &[&number, &days_ago, &ram_id, &billed_by, &total],
        )
        .await
        .unwrap();
    }
    let mine = app
        .expect(200, app.get(&format!("{c}/{ram_id}"), &staff).await)
        .await;
    assert_eq!(mine["customer"]["name"], "Ram Shrestha");
    let numbers = |v: &Value| -> Vec<i64> {
        v["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["number"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&mine), [3, 1]);
    assert_eq!(mine["invoices"][0]["total"], "40.50");
    assert_eq!(mine["invoices"][0]["status"], "completed");
    let every = app
        .expect(200, app.get(&format!("{c}/{ram_id}"), &admin).await)
        .await;
    assert_eq!(numbers(&every), [3, 2, 1]);
}

#[tokio::test]
async fn alerts_counts_and_lists() {
    let app = TestApp::new("acme").await;
    let s = app.login("staff").await;
    let admin = app.login("admin").await;
    let body = |name: &str, reorder: i64| json!({"name": name, "dosage_form": "tablet", "sale_price": "1", "reorder_level": reorder});
    let empty = medicine(&app, &admin, body("Aspirin", 10)).await;
    let expired_only = medicine(&app, &admin, body("Brufen", 10)).await;
    let low = medicine(&app, &admin, body("Cetamol", 10)).await;
    let plenty = medicine(&app, &admin, body("Digene", 10)).await;
    let retired = medicine(&app, &admin, body("Eno", 10)).await;
    batch(&app, expired_only, "B-OLD", -1, 4).await;
    batch(&app, expired_only, "B-TODAY", 0, 2).await;
    batch(&app, low, "C-NEAR", 15, 6).await;
    batch(&app, plenty, "D-MID", 60, 50).await;
    batch(&app, plenty, "D-FAR", 400, 50).await;
    batch(&app, plenty, "D-GONE", 5, 0).await;
    app.patch(
        &format!("/api/v1/medicines/{retired}"),
        &admin,
        json!({"active": false}),
    )
    .await;

    let a = app.expect(200, app.get("/api/v1/alerts", &s).await).await;
    assert_eq!(
        a["counts"],
        json!({"expired": 2, "out_of_stock": 2, "low_stock": 1, "expiring": 2}),
        "{a}"
    );
    assert_eq!(a["expired"][0]["batch_no"], "B-OLD");
    assert_eq!(a["expired"][0]["quantity"], 4);
    assert_eq!(a["expired"][0]["medicine_name"], "Brufen");
    assert_eq!(a["expired"][1]["batch_no"], "B-TODAY");
    let ids = |list: &Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m["medicine_id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&a["out_of_stock"]),
        [empty, expired_only],
        "inactive medicines are left out"
    );
    assert_eq!(ids(&a["low_stock"]), [low]);
    assert_eq!(a["low_stock"][0]["stock"], 6);
    assert_eq!(a["expiring"][0]["batch_no"], "C-NEAR");
    assert_eq!(a["expiring"][0]["days_left"], 15);
    assert_eq!(a["expiring"][0]["quantity"], 6);
    assert_eq!(a["expiring"][1]["batch_no"], "D-MID");

    // ?days= narrows the window; out of range is refused.
    let a = app
        .expect(200, app.get("/api/v1/alerts?days=30", &s).await)
        .await;
    assert_eq!(a["counts"]["expiring"], 1);
    assert_eq!(a["expiring"].as_array().unwrap().len(), 1);
    for bad in ["0", "3651", "soon"] {
        let r = app.get(&format!("/api/v1/alerts?days={bad}"), &s).await;
        assert_eq!(r.status.as_u16(), 422, "{bad}");
        assert_eq!(r.body["error"]["field"], "days");
    }
    // The settings' window applies by default.
    let db = app.db().await;
    db.execute("UPDATE settings SET near_expiry_days = 10", &[])
        .await
        .unwrap();
    let counts = apotheca_worker::api::alerts::counts(&**db).await.unwrap();
    assert_eq!(
        serde_json::to_value(counts).unwrap(),
        json!({"expired": 2, "out_of_stock": 2, "low_stock": 1, "expiring": 0})
    );
}

#[tokio::test]
async fn access_by_role() {
    let app = TestApp::new("acme").await;
    let staff = app.login("staff").await;
    let pharmacist = app.login("pharmacist").await;
    let id = medicine(
        &app,
        &pharmacist,
        json!({"name": "Omeprazole", "dosage_form": "capsule", "sale_price": "5"}),
    )
    .await;
    let one = format!("/api/v1/medicines/{id}");
    assert_eq!(app.get("/api/v1/medicines", &staff).await.status, 403);
    assert_eq!(app.get(&one, &staff).await.status, 403);
    assert_eq!(
        app.post(
            "/api/v1/medicines",
            &staff,
            json!({"name": "X", "dosage_form": "tablet", "sale_price": "1"})
        )
        .await
        .status,
        403
    );
    assert_eq!(
        app.patch(&one, &staff, json!({"active": false}))
            .await
            .status,
        403
    );
    for path in [
        "/api/v1/counter/search?q=om",
        "/api/v1/customers",
        "/api/v1/alerts",
    ] {
        assert_eq!(app.get(path, &staff).await.status, 200, "{path}");
        assert_eq!(app.get(path, &pharmacist).await.status, 200, "{path}");
    }
    assert_eq!(app.get(&one, &pharmacist).await.status, 200);
    // Without a login: 401.
    let r = app
        .call(axum::http::Method::GET, "/api/v1/alerts", None, None)
        .await;
    assert_eq!(r.status, 401);
}
