//! Many tenants under one `apotheca serve`, and tenants that change while it runs: 50 cold
//! tenants woken at once all become ready, and tenants created, suspended and deleted
//! meanwhile are picked up through LISTEN/NOTIFY.

use apotheca_common::names::{DomainName, SchemaName};
use apotheca_migrations::MigrationSet;
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::Secret;
use apotheca_tenancy::tenants::Provisioner;
use apotheca_testkit::system::daemon::{assert_serves, ready_pids, sockets_in, wait_gone};
use apotheca_testkit::system::Apotheca;

/// Creates tenants through control's own code (one process, one connection: quicker than 50
/// CLI runs), with the secret the test daemon uses.
async fn create_many(a: &Apotheca, schemas: &[String]) {
    let db = Database::from_url(a.db.url(), None).unwrap();
    let secret = Secret::from_key("test-secret");
    let set = MigrationSet::embedded().unwrap();
    let limits = Default::default();
    let p = Provisioner {
        db: &db,
        secret: &secret,
        migrations: &set,
        role_limits: &limits,
    };
    let mut client = db.connect().await.unwrap();
    for s in schemas {
        let schema = SchemaName::parse(s).unwrap();
        let domain = DomainName::parse(&format!("{s}.localhost")).unwrap();
        p.create(&mut client, s, &schema, &domain, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn fifty_cold_tenants_woken_at_once_all_become_ready() {
    let a = Apotheca::migrated().await;
    let schemas: Vec<String> = (1..=50).map(|i| format!("t{i:02}")).collect();
    create_many(&a, &schemas).await;
    let d = a.serve(&[]).await;
    let wakes = schemas.iter().map(|s| {
        let d = &d;
        async move { (s.clone(), d.wake(s).await) }
    });
    let woken = futures::future::join_all(wakes).await;
    for (schema, endpoints) in &woken {
        assert_eq!(endpoints.len(), 1, "{schema}");
    }
    let answers = woken.iter().map(|(s, e)| assert_serves(&e[0], s));
    futures::future::join_all(answers).await;
    let status = d.status().await;
    let running = status["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["schema"] != "public")
        .filter(|t| t["state"] == "running" && ready_pids(t).len() == 1)
        .count();
    assert_eq!(running, 50, "{status:#}");
    let mut pids: Vec<i32> = vec![];
    for t in status["tenants"].as_array().unwrap() {
        pids.extend(ready_pids(t));
    }
    assert!(d.stop().await.success());
    wait_gone(&pids).await;
}

#[tokio::test]
async fn tenants_created_suspended_and_deleted_while_running_are_followed() {
    let a = Apotheca::migrated().await;
    let d = a.serve(&[]).await;
    // Created after the daemon started: known through the notification.
    a.create("late").await;
    d.wait_for("late", "known", |t| t["state"] == "cold").await;
    assert_serves(&d.wake("late").await[0], "late").await;
    a.ok(&["scale", "--schema", "late", "--min", "1", "--max", "2"])
        .await;
    d.wait_for("late", "min 1", |t| t["policy"]["min_workers"] == 1)
        .await;

    a.ok(&["suspend-tenant", "--schema", "late"]).await;
    let t = d
        .wait_for("late", "suspended and drained", |t| {
            t["state"] == "suspended" && t["workers"].as_array().unwrap().is_empty()
        })
        .await;
    assert!(t["last_exit"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("drained (tenant suspended)"));
    a.ok(&["resume-tenant", "--schema", "late"]).await;
    // min 1: it comes back by itself.
    let t = d
        .wait_for("late", "running again", |t| ready_pids(t).len() == 1)
        .await;
    let pid = ready_pids(&t)[0];

    a.ok(&["delete-tenant", "--schema", "late", "--yes"]).await;
    let started = tokio::time::Instant::now();
    loop {
        let (status, _) = d.call(hyper::Method::GET, "/v1/tenants/late").await;
        if status == 404 {
            break;
        }
        assert!(
            started.elapsed() < apotheca_testkit::system::daemon::PATIENCE,
            "still known"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    wait_gone(&[pid]).await;
    let (status, body) = d.call(hyper::Method::POST, "/v1/tenants/late/wake").await;
    assert_eq!(status, 404, "{body}");
    // Only the public site's socket is left.
    assert_eq!(sockets_in(&d.worker_dir).len(), 1);

    // Created a moment ago and woken before its notification could arrive: looked up.
    a.create("quick").await;
    let (status, body) = d.call(hyper::Method::POST, "/v1/tenants/quick/wake").await;
    assert_eq!(status, 200, "{body}\n{}", d.log_tail());
    assert_serves(body["endpoints"][0].as_str().unwrap(), "quick").await;
    assert!(d.stop().await.success());
}
