//! The worker's database pool when the database has no connection to spare.

mod support;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::Request;
use support::TestApp;
use tower::ServiceExt;

/// With the tenant role allowed a single connection, which the worker already holds, requests
/// that need more at once wait for that one instead of failing with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_the_connections_a_full_database_left_the_worker() {
    let a = TestApp::new("acme").await;
    let s = a.login("admin").await;
    let role: String = a
        .db()
        .await
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let admin = a.tenant.db.client().await;
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 1"))
        .await
        .unwrap();
    // The pool keeps the one connection it has; every other is refused by the server now.
    a.state.close_idle(std::time::Duration::ZERO, true);
    assert_eq!(a.state.pool.status().size, 1, "{:?}", a.state.pool.status());

    let requests = (0..8).map(|_| {
        let router = a.router.clone();
        let cookie = s.cookie.clone();
        tokio::spawn(async move {
            let req = Request::get("/api/v1/suppliers")
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status.unwrap(), 200);
    }
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1"))
        .await
        .unwrap();
}

/// After a burst has opened several connections, requests one at a time keep taking the
/// connection just given back (one warm backend), not each of the others in turn; closing
/// the idle ones keeps that one.
#[tokio::test]
async fn one_request_at_a_time_keeps_to_one_connection() {
    let a = TestApp::new("acme").await;
    let burst: Vec<_> = futures::future::join_all((0..3).map(|_| a.state.db()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut opened = HashSet::new();
    for db in &burst {
        opened.insert(backend(db).await);
    }
    assert_eq!(opened.len(), 3, "the burst did not open three connections");
    drop(burst);
    let mut used = HashSet::new();
    for _ in 0..6 {
        used.insert(backend(&a.state.db().await.unwrap()).await);
    }
    assert_eq!(
        used.len(),
        1,
        "one request at a time used backends {used:?}"
    );
    a.state.close_idle(std::time::Duration::ZERO, true);
    assert_eq!(a.state.pool.status().size, 1, "{:?}", a.state.pool.status());
    let kept = backend(&a.state.db().await.unwrap()).await;
    assert!(used.contains(&kept), "kept backend {kept}, used {used:?}");
}

/// A login past its time is looked up again after its request, on the connection the request
/// gave back, not beside it: beside it, the lookup and the request's own work wanted a
/// connection at once and the pool opened a second backend for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_login_is_looked_up_on_the_connection_its_request_gave_back() {
    let (a, s) = one_connection_short_logins().await;
    let suppliers = || a.get("/api/v1/suppliers", &s);
    for round in 0..3 {
        // Past the login's fresh time (at most 1 s), within its grace.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(suppliers().await.status, 200);
        // Until the lookup behind it has given its connection back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let idle = loop {
            let status = a.state.pool.status();
            if status.size > 0 && status.available == status.size {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "busy: {status:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert_eq!(idle.size, 1, "round {round}: {idle:?}");
    }
}

/// A request that comes while the lookup behind an earlier one holds the worker's only
/// connection waits for it, instead of having the pool open a second backend (at 1,000 live
/// pharmacies on a saturated box, that gave 600 of them a second one: a pharmacy's sale came
/// right after its list, whose stale login was being looked up again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_the_connection_a_lookup_behind_holds() {
    let (a, s) = one_connection_short_logins().await;
    let suppliers = || a.get("/api/v1/suppliers", &s);
    // The session's last use is due to be written again, and its row is locked: the lookup
    // behind the next request holds its connection until the lock goes.
    let mut admin = a.tenant.db.client().await;
    let schema = &a.tenant.schema;
    admin
        .batch_execute(&format!(
            "UPDATE \"{schema}\".sessions SET last_seen_at = now() - interval '2 minutes'"
        ))
        .await
        .unwrap();
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute(&format!("SELECT 1 FROM \"{schema}\".sessions FOR UPDATE"))
        .await
        .unwrap();
    // Past the login's fresh time (at most 1 s), within its grace.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(suppliers().await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (next, ()) = tokio::join!(suppliers(), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let status = a.state.pool.status();
        assert_eq!(
            (status.size, status.available),
            (1, 0),
            "the lookup holds the one connection; the request waits for it"
        );
        lock.commit().await.unwrap();
    });
    assert_eq!(next.status, 200);
    assert_eq!(a.state.pool.status().size, 1, "{:?}", a.state.pool.status());
}

/// A quiet worker's connections are all closed once idle long enough, the last one too
/// (a quiet pharmacy holds no backend), unless it is asked to keep that one; the next request
/// opens one again.
#[tokio::test]
async fn a_quiet_worker_closes_its_last_connection_unless_asked_to_keep_it() {
    let a = TestApp::new("acme").await;
    let s = a.login("admin").await;
    let suppliers = || a.get("/api/v1/suppliers", &s);
    assert_eq!(suppliers().await.status, 200);
    assert!(a.state.pool.status().size >= 1);
    a.state
        .close_idle(std::time::Duration::from_secs(3600), false);
    assert!(a.state.pool.status().size >= 1, "not idle that long yet");
    a.state.close_idle(std::time::Duration::ZERO, true);
    assert_eq!(
        a.state.pool.status().size,
        1,
        "the last one kept when asked"
    );
    a.state.close_idle(std::time::Duration::ZERO, false);
    assert_eq!(a.state.pool.status().size, 0, "{:?}", a.state.pool.status());
    assert_eq!(suppliers().await.status, 200);
    assert_eq!(a.state.pool.status().size, 1);
}

/// A worker whose logins are fresh for at most 1 s (its cache live), a pharmacist logged in
/// and one request served, left with one connection.
async fn one_connection_short_logins() -> (TestApp, support::Session) {
    let settings = apotheca_worker::settings::WorkerSettings {
        login_cache_secs: 1,
        ..Default::default()
    };
    let a = TestApp::with_settings(apotheca_testkit::TestTenant::new("acme").await, settings).await;
    a.state.auth_cache.set_live(true);
    let s = a.login("pharmacist").await;
    assert_eq!(a.get("/api/v1/suppliers", &s).await.status, 200);
    a.state.close_idle(std::time::Duration::ZERO, true);
    assert_eq!(a.state.pool.status().size, 1, "{:?}", a.state.pool.status());
    (a, s)
}

/// The PostgreSQL backend serving `db`.
async fn backend(db: &deadpool_postgres::Object) -> i32 {
    db.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}
