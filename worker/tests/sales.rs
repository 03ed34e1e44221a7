//! Sales posted in batches: each sale of a batch is judged alone, in order; the answer to a
//! sale is the invoice as it reads back; one sale's failure in the database never fails the
//! sales that happened to share its batch.

mod support;

use apotheca_pharmacy::sale::{post_batch, Frame, Pending, Posted, SaleRequest, Writes};
use apotheca_pharmacy::Error;
use apotheca_testkit::TestTenant;
use apotheca_worker::settings::WorkerSettings;
use serde_json::{json, Value};
use support::{Session, TestApp};

async fn medicine(app: &TestApp, name: &str, price: &str, stock: i32) -> i64 {
    app.db()
        .await
        .query_one(
            "WITH m AS (INSERT INTO medicines (name, dosage_form, sale_price)
                        VALUES ($1, 'tablet', $2::text::numeric) RETURNING id),
                  b AS (INSERT INTO batches (medicine_id, batch_no, expires_on, quantity_on_hand, unit_cost)
                        SELECT id, 'B-' || id, current_date + 300, $3, 1.00 FROM m RETURNING id),
                  l AS (INSERT INTO stock_movements (batch_id, quantity, reason) SELECT id, $3, 'receipt' FROM b)
             SELECT id FROM m",
            &[&name, &price, &stock],
        )
        .await
        .unwrap()
        .get(0)
}

fn request(lines: &[(i64, i64)], customer_id: Option<i64>) -> SaleRequest {
    serde_json::from_value(json!({
        "payment_method": "card",
        "customer_id": customer_id,
        "lines": lines.iter().map(|(m, q)| json!({"medicine_id": m, "quantity": q})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

async fn stock(app: &TestApp, medicine: i64) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT sum(quantity_on_hand)::bigint FROM batches WHERE medicine_id = $1",
            &[&medicine],
        )
        .await
        .unwrap()
        .get(0)
}

async fn ledger_disagreements(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM batches b WHERE b.quantity_on_hand <>
                 (SELECT coalesce(sum(m.quantity), 0) FROM stock_movements m WHERE m.batch_id = b.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// "t" when `db` has no transaction open.
async fn outside_a_transaction(db: &tokio_postgres::Client) -> String {
    let rows = db
        .simple_query("SELECT now() = statement_timestamp()")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

/// The invoice as `GET /invoices/{id}` shows it.
async fn read_back(app: &TestApp, s: &Session, id: i64) -> Value {
    app.expect(200, app.get(&format!("/api/v1/invoices/{id}"), s).await)
        .await
}

/// How the worker writes on this run's cluster (one statement per table on Citus).
fn writes() -> Writes {
    if apotheca_testkit::citus() {
        Writes::PerTable
    } else {
        Writes::Together
    }
}

#[tokio::test]
async fn each_sale_of_a_batch_is_judged_alone_in_order_written_together() {
    judged_alone_in_order(Writes::Together).await;
}

/// The same batch written one statement per table (Citus's shape, and seed-data's) makes the
/// same invoices, numbers, stock and ledger.
#[tokio::test]
async fn each_sale_of_a_batch_is_judged_alone_in_order_written_per_table() {
    judged_alone_in_order(Writes::PerTable).await;
}

async fn judged_alone_in_order(writes: Writes) {
    let app = TestApp::new("acme").await;
    let boss = app.login("pharmacist").await;
    let a = medicine(&app, "Amoxicillin 250", "3.10", 5).await;
    let b = medicine(&app, "Brufen 400", "1.25", 3).await;
    let staff = app.user_id("staff").await;
    let sale = |lines: &[(i64, i64)], customer: Option<i64>, key: Option<&str>| {
        Pending::new(staff, "staff", &request(lines, customer), key).unwrap()
    };
    let sales = vec![
        sale(&[(a, 3)], None, None),          // 0: made, number 1
        sale(&[(a, 3)], None, None),          // 1: only 2 of A left
        sale(&[(b, 1)], Some(999_999), None), // 2: no such customer
        sale(&[(a, 2), (b, 1)], None, None),  // 3: made, number 2
        sale(&[(b, 1)], None, Some("k-1")),   // 4: made, number 3
        sale(&[(b, 1)], None, Some("k-1")),   // 5: the same sale again: 4's invoice
        sale(&[(b, 2)], None, Some("k-1")),   // 6: the key reused for another sale
        sale(&[(999_999, 1)], None, None),    // 7: no such medicine
    ];
    let mut db = app.db().await;
    let tx = db.transaction().await.unwrap();
    let answers = post_batch(&tx, &sales, Frame::Caller, writes)
        .await
        .expect("the batch posts");
    tx.commit().await.unwrap();
    drop(db);

    let mut made = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        match (i, answer) {
            (0 | 3 | 4, Ok(Posted::New(invoice))) => made.push(invoice),
            (1, Err(e)) => assert_eq!(e.conflict_code(), Some("insufficient_stock")),
            (2, Err(Error::NotFound { field, .. })) => {
                assert_eq!(field.as_deref(), Some("customer_id"))
            }
            (5, Ok(Posted::Earlier(id))) => assert_eq!(*id, made[2].id),
            (6, Err(Error::Invalid { field, .. })) => assert_eq!(field, "Idempotency-Key"),
            (7, Err(Error::NotFound { .. })) => {}
            (i, other) => panic!("sale {i}: unexpected {other:?}"),
        }
    }
    let numbers: Vec<i64> = made.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [1, 2, 3], "numbered in order, gap-free");
    assert_eq!(stock(&app, a).await, 0);
    assert_eq!(stock(&app, b).await, 1);
    assert_eq!(ledger_disagreements(&app).await, 0);
    let references: Vec<String> = apotheca_testkit::column(
        &**app.db().await,
        "SELECT reference FROM stock_movements WHERE reason = 'sale' ORDER BY reference",
    )
    .await;
    assert_eq!(references, ["INV-1", "INV-2", "INV-2", "INV-3"]);
    // What the batch answered is what reads back.
    for invoice in made {
        assert_eq!(
            serde_json::to_value(invoice).unwrap(),
            read_back(&app, &boss, invoice.id).await
        );
    }
}

#[tokio::test]
async fn the_answer_to_a_sale_is_the_invoice_as_it_reads_back() {
    let app = TestApp::new("acme").await;
    let boss = app.login("pharmacist").await;
    app.db()
        .await
        .execute("UPDATE settings SET tax_rate = 0.13", &[])
        .await
        .unwrap();
    let a = medicine(&app, "Cetirizine 10", "0.85", 40).await;
    let b = medicine(&app, "Dolo 650", "2.35", 40).await;
    let customer = app
        .expect(
            201,
            app.post(
                "/api/v1/customers",
                &boss,
                json!({"name": "Sita Sharma", "phone": "+977 9800000000"}),
            )
            .await,
        )
        .await["id"]
        .clone();
    let cashier = app.login("staff").await;
    let posted = app
        .expect(
            201,
            app.post(
                "/api/v1/sales",
                &cashier,
                json!({"payment_method": "cash", "customer_id": customer, "discount": 1,
                       "amount_received": 50, "lines": [
                    {"medicine_id": a, "quantity": 3}, {"medicine_id": b, "quantity": 7},
                    {"medicine_id": a, "quantity": 2}]}),
            )
            .await,
        )
        .await;
    assert_eq!(posted["billed_by_username"], "staff");
    assert_eq!(
        posted["lines"].as_array().unwrap().len(),
        2,
        "lines merged per medicine"
    );
    assert_eq!(
        posted,
        read_back(&app, &boss, posted["id"].as_i64().unwrap()).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_sale_failing_in_the_database_never_fails_the_others() {
    let app = std::sync::Arc::new(TestApp::new("acme").await);
    let good = medicine(&app, "Good medicine", "1.00", 1000).await;
    let bad = medicine(&app, "Cursed medicine", "1.00", 1000).await;
    // A failure only the database knows about: a trigger the worker cannot foresee.
    // One statement at a time, and on Citus with its leave for triggers (as migrations run).
    let admin = app.tenant.db.client().await;
    if apotheca_testkit::citus() {
        admin
            .batch_execute("SET citus.enable_unsafe_triggers = on")
            .await
            .unwrap();
    }
    for sql in [
        "CREATE FUNCTION acme.refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'cursed'; END $$"
            .to_owned(),
        format!(
            "CREATE TRIGGER refuse_cursed BEFORE INSERT ON acme.invoice_lines
             FOR EACH ROW WHEN (NEW.medicine_id = {bad}) EXECUTE FUNCTION acme.refuse_cursed()"
        ),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let cashier = app.login("staff").await;
    // Sent all at once, so the sale queue batches them together.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (app, s) = (app.clone(), cashier.clone());
            let m = if i % 10 == 5 { bad } else { good };
            tokio::spawn(async move {
                let r = app
                    .post(
                        "/api/v1/sales",
                        &s,
                        json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 1}]}),
                    )
                    .await;
                (m, r.status.as_u16())
            })
        })
        .collect();
    for t in tasks {
        let (m, status) = t.await.unwrap();
        if m == bad {
            assert_eq!(status, 500, "the cursed sale fails");
        } else {
            assert_eq!(status, 201, "a good sale never fails with a bad one");
        }
    }
    assert_eq!(stock(&app, good).await, 1000 - 36);
    assert_eq!(stock(&app, bad).await, 1000);
    assert_eq!(ledger_disagreements(&app).await, 0);
    let numbers: Vec<i64> = apotheca_testkit::column(
        &**app.db().await,
        "SELECT number FROM invoices ORDER BY number",
    )
    .await;
    assert_eq!(numbers, (1..=36).collect::<Vec<_>>(), "gap-free");
}

#[tokio::test]
async fn a_batch_in_its_own_transaction_is_committed_with_its_write() {
    let app = TestApp::new("acme").await;
    let a = medicine(&app, "Amoxicillin 250", "3.10", 10).await;
    let staff = app.user_id("staff").await;
    let sales: Vec<Pending> = [3, 20, 4]
        .iter()
        .map(|q| Pending::new(staff, "staff", &request(&[(a, *q)], None), None).unwrap())
        .collect();
    let db = app.db().await;
    let answers = post_batch(&db, &sales, Frame::Own, writes())
        .await
        .expect("the batch posts");
    assert!(matches!(answers[0], Ok(Posted::New(_))));
    assert_eq!(
        answers[1].as_ref().unwrap_err().conflict_code(),
        Some("insufficient_stock")
    );
    assert!(matches!(answers[2], Ok(Posted::New(_))));
    // Committed, and its locks gone: another session sees the sales and can lock the batch.
    let other = apotheca_testkit::connect_url(&app.tenant.role_url)
        .await
        .unwrap();
    let row = other
        .query_one(
            "SELECT (SELECT count(*) FROM invoices),
                    (SELECT quantity_on_hand FROM batches WHERE medicine_id = $1 FOR UPDATE NOWAIT)",
            &[&a],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (2, 3));
    // And the connection is outside any transaction again: a simple query then runs in a
    // transaction of its own, which starts when the query arrives.
    assert_eq!(
        outside_a_transaction(&db).await,
        "t",
        "a transaction was left open"
    );
    drop(db);
    // Nothing to write (every sale refused): the transaction is still ended, its locks with it.
    let refused = [Pending::new(staff, "staff", &request(&[(a, 99)], None), None).unwrap()];
    let db = app.db().await;
    let answers = post_batch(&db, &refused, Frame::Own, writes())
        .await
        .expect("the batch is judged");
    assert_eq!(
        answers[0].as_ref().unwrap_err().conflict_code(),
        Some("insufficient_stock")
    );
    assert_eq!(outside_a_transaction(&db).await, "t");
    other
        .query_one(
            "SELECT quantity_on_hand FROM batches WHERE medicine_id = $1 FOR UPDATE NOWAIT",
            &[&a],
        )
        .await
        .expect("the batch is not locked any more");
}

/// A sale whose transaction fails in the database before its write (here its batch lock is not
/// granted in time) gives back a connection with no transaction open: the next sale, on the
/// same one connection, goes through.
#[tokio::test]
async fn a_sale_failing_in_its_reads_leaves_its_connection_clean() {
    let tenant = TestTenant::new("acme").await;
    // The role's own lock timeout, before the worker connects: on Citus a session's SET stays
    // on the coordinator, while the lock is waited for on the node (a role's settings reach
    // both).
    tenant
        .db
        .client()
        .await
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I SET lock_timeout = ''200ms''',
                 (SELECT db_role FROM public.tenants WHERE schema_name = 'acme')); END $$",
        )
        .await
        .unwrap();
    let settings = WorkerSettings {
        pool_size: 1,
        sale_writers: 1,
        login_slow_after: 100,
        login_refuse_after: 1000,
        ..WorkerSettings::default()
    };
    let app = TestApp::with_settings(tenant, settings).await;
    let cashier = app.login("staff").await;
    let a = medicine(&app, "Amoxicillin 250", "3.10", 10).await;
    let locker = apotheca_testkit::connect_url(&app.tenant.role_url)
        .await
        .unwrap();
    locker
        .batch_execute("BEGIN; SELECT * FROM batches FOR UPDATE")
        .await
        .unwrap();
    let sale = json!({"payment_method": "card", "lines": [{"medicine_id": a, "quantity": 2}]});
    let busy = app.post("/api/v1/sales", &cashier, sale.clone()).await;
    assert_eq!(busy.status.as_u16(), 503, "{:?}", busy.body);
    locker.batch_execute("COMMIT").await.unwrap();
    app.expect(201, app.post("/api/v1/sales", &cashier, sale).await)
        .await;
    assert_eq!(stock(&app, a).await, 8);
    assert_eq!(ledger_disagreements(&app).await, 0);
}
