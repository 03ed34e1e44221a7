//! The read cache of a worker, with a second worker of the same tenant writing.

mod support;

use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use support::{Session, TestApp};
use tower::ServiceExt;

async fn get(router: &axum::Router, path: &str, s: &Session) -> Value {
    let req = Request::get(path)
        .header("cookie", &s.cookie)
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    serde_json::from_slice(
        &axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_worker_refreshes_the_reads_of_another() {
    let a = TestApp::new("acme").await;
    let b = apotheca_worker::state::AppState::new(
        &a.tenant.schema,
        &a.tenant.role_url,
        Default::default(),
    )
    .unwrap();
    refreshes(a, b).await;
}

/// Workers with the tenant's change marker (as control runs them, beside their sockets) tell
/// each other of their writes through it, without a NOTIFY: worker A sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_the_change_marker_refresh_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.changes");
    let a = TestApp::with_marker("acme", &path).await;
    let b = apotheca_worker::state::AppState::with_marker(
        &a.tenant.schema,
        &a.tenant.role_url,
        Default::default(),
        Some(apotheca_worker::readcache::Marker::open(&path).unwrap()),
    )
    .unwrap();
    assert!(a.state.read_cache.has_marker() && b.read_cache.has_marker());
    refreshes(a, b).await;
}

/// Worker B keeps the medicines list in memory, and shows a sale made through worker A.
async fn refreshes(a: TestApp, b: apotheca_worker::state::AppState) {
    let b_router = apotheca_worker::http::router(b.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(apotheca_worker::changes::listen(
        b.clone(),
        a.tenant.role_url.clone(),
        stopped,
    ));

    let s = a.login("pharmacist").await;
    let supplier = a
        .expect(
            201,
            a.post("/api/v1/suppliers", &s, json!({"name": "S"})).await,
        )
        .await["id"]
        .clone();
    let m = a
        .expect(
            201,
            a.post(
                "/api/v1/medicines",
                &s,
                json!({"name": "Aspirin", "dosage_form": "tablet", "sale_price": "1.00"}),
            )
            .await,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let receipt = json!({"supplier_id": supplier, "invoice_no": "1", "invoice_date": "2026-01-01",
                         "lines": [{"medicine_id": m, "batch_no": "B", "expires_on": "2099-01-01", "quantity": 10, "unit_cost": "0.50"}]});
    a.expect(201, a.post("/api/v1/supplier-invoices", &s, receipt).await)
        .await;
    let stock = |v: &Value| v["items"][0]["stock"].as_i64().unwrap();

    // Wait until B listens (its cache keeps the answer: a change behind the app's back is
    // not seen, which shows the answer came from memory). Each try changes the stock behind
    // the app's back to one more than B's last answer, whatever that was (an earlier try's
    // answer may be the one B keeps).
    let mut cached = false;
    for _ in 0..100 {
        let before = stock(&get(&b_router, "/api/v1/medicines", &s).await);
        a.db()
            .await
            .batch_execute(&format!(
                "UPDATE batches SET quantity_on_hand = {}",
                before + 1
            ))
            .await
            .unwrap();
        if stock(&get(&b_router, "/api/v1/medicines", &s).await) == before {
            cached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        cached,
        "worker B serves the list from memory once it listens"
    );
    a.db()
        .await
        .batch_execute("UPDATE batches SET quantity_on_hand = 10")
        .await
        .unwrap();

    // A sale through worker A: worker B's list shows the new stock at once.
    a.expect(
        201,
        a.post(
            "/api/v1/sales",
            &s,
            json!({"payment_method": "card", "lines": [{"medicine_id": m, "quantity": 3}]}),
        )
        .await,
    )
    .await;
    let mut fresh = false;
    for _ in 0..100 {
        if stock(&get(&b_router, "/api/v1/medicines", &s).await) == 7 {
            fresh = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(fresh, "worker B shows the sale's stock within 2 s");
    let counter = get(&b_router, "/api/v1/counter/search?q=asp", &s).await;
    assert_eq!(counter["items"][0]["stock"], 7);
    stop.send(true).unwrap();
    listener.await.unwrap();
}

/// Requests that miss the same answer at once make it once: one query, while the others wait
/// for its answer (without that each would run the query on a connection of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_of_one_answer_make_it_once() {
    let a = std::sync::Arc::new(TestApp::new("acme").await);
    a.state.read_cache.set_live(true);
    let s = a.login("pharmacist").await;
    let _ = get(&a.router, "/api/v1/medicines", &s).await;
    a.state.read_cache.clear();
    // The list's query waits for this lock, so every request below misses while it is held.
    let admin = a.tenant.db.client().await;
    admin
        .batch_execute("BEGIN; LOCK TABLE acme.medicines IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let asks: Vec<_> = (0..8)
        .map(|_| {
            let (a, s) = (a.clone(), s.clone());
            tokio::spawn(async move { get(&a.router, "/api/v1/medicines", &s).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waiting: i64 = a
        .tenant
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%FROM medicines%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin.batch_execute("COMMIT").await.unwrap();
    let mut answers = Vec::new();
    for ask in asks {
        answers.push(ask.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(waiting, 1, "queries waiting for the list's lock");
}

/// Past its time an answer is still given at once while the next one is made behind it, so a
/// request never waits on the database because time passed; a write still drops it at once.
/// The change by hand below is made while the list's query cannot run (its table is locked):
/// a request that waited for a fresh answer would wait for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_answer_is_given_at_once_and_made_again_behind_it() {
    let a = TestApp::new("acme").await;
    a.state.read_cache.set_live(true);
    let s = a.login("pharmacist").await;
    let medicine = json!({"name": "Aspirin", "dosage_form": "tablet", "sale_price": "1.00"});
    let id = a
        .expect(201, a.post("/api/v1/medicines", &s, medicine).await)
        .await["id"]
        .as_i64()
        .unwrap();
    let kept = get(&a.router, "/api/v1/medicines", &s).await;
    assert_eq!(kept["items"][0]["name"], "Aspirin");

    let admin = a.tenant.db.client().await;
    admin
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE acme.medicines IN ACCESS EXCLUSIVE MODE;
             UPDATE acme.medicines SET name = 'Renamed' WHERE id = {id}"
        ))
        .await
        .unwrap();
    // Past the answer's fresh time, within its stale time.
    a.state.read_cache.make_due();
    let stale = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        get(&a.router, "/api/v1/medicines", &s),
    )
    .await
    .expect("an expired answer is given at once, not after the query behind it");
    assert_eq!(stale, kept);
    admin.batch_execute("COMMIT").await.unwrap();

    // The answer made behind it has the change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = get(&a.router, "/api/v1/medicines", &s).await;
        if now["items"][0]["name"] == "Renamed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {now}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A write through the worker is never answered from a kept copy, stale or not.
    a.state.read_cache.make_due();
    let other = json!({"name": "Zinc", "dosage_form": "tablet", "sale_price": "2.00"});
    a.expect(201, a.post("/api/v1/medicines", &s, other).await)
        .await;
    let after = get(&a.router, "/api/v1/medicines", &s).await;
    assert_eq!(after["total"], 2, "{after}");
}

/// A remembered login past its time still lets a request in at once while it is looked up
/// again behind it; a token revoked by hand in SQL meanwhile is refused once that lookup has
/// seen it. The revocation is made while the lookup cannot run (its table is locked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_login_is_looked_up_behind_the_request_and_a_revoked_token_then_refused() {
    let settings = apotheca_worker::settings::WorkerSettings {
        login_slow_after: 100,
        login_refuse_after: 1000,
        ..Default::default()
    };
    let a = TestApp::with_settings(apotheca_testkit::TestTenant::new("acme").await, settings).await;
    a.state.auth_cache.set_live(true);
    let s = a.login("pharmacist").await;
    let token = a
        .expect(
            201,
            a.post("/api/v1/tokens", &s, json!({"name": "script"}))
                .await,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let me = || {
        a.call_with(
            axum::http::Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &headers,
        )
    };
    assert_eq!(me().await.status, 200);
    // The token's first use is written behind that request: wait for it, so that the lock
    // below holds up only the lookup this test is about.
    let admin = a.tenant.db.client().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !admin
        .query_one(
            "SELECT bool_and(last_used_at IS NOT NULL) FROM acme.api_tokens",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "its use never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    admin
        .batch_execute(
            "BEGIN; LOCK TABLE acme.api_tokens IN ACCESS EXCLUSIVE MODE;
             UPDATE acme.api_tokens SET revoked_at = now()",
        )
        .await
        .unwrap();
    // Past the login's fresh time, within its grace.
    a.state.auth_cache.make_due();
    let due = tokio::time::timeout(std::time::Duration::from_secs(3), me())
        .await
        .expect("a due login lets the request in at once, not after the lookup behind it");
    assert_eq!(due.status, 200);
    admin.batch_execute("COMMIT").await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = me().await;
        if now.status == 401 {
            break;
        }
        assert_eq!(now.status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
