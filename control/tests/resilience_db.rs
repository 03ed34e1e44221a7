//! PostgreSQL restarted under sales, on a cluster of this test's own (the run's cluster is
//! shared): the workers, the daemon and the proxy recover without a restart of their own — the
//! same processes post sales again, the proxy's route map and the daemon's tenant follower
//! hear of changes again (their LISTEN connections came back) — every sale was answered, none
//! hung, and the books agree with every answer once the sales without one are posted again.

use std::time::Duration;

use apotheca_testkit::system::daemon::ready_pids;
use apotheca_testkit::system::pharmacy::{assert_agrees, audit, settle, summary, Sales, Shop};
use apotheca_testkit::system::Apotheca;
use apotheca_testkit::{OwnCluster, TestDb};
use tokio::time::Instant;

const STOCK: i64 = 1_000_000;

#[tokio::test]
async fn a_postgresql_restart_under_sales_is_survived_by_every_process() {
    let own = OwnCluster::start(100).await;
    let a = Apotheca::on(TestDb::migrated_on(own.cluster.clone()).await);
    a.create_pharmacy("alpha").await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;
    let shop = Shop::open(p.http, "alpha", 3, STOCK).await;
    let workers = d.ready_pids("alpha").await;
    let public = d.ready_pids("public").await;
    let (daemon, proxy) = (d.pid(), p.pid());

    let load = Sales::start(&shop, 4);
    load.wait_more(30).await;
    let down = Instant::now();
    own.restart().await;
    let restarted = down.elapsed();
    let up = Instant::now();
    load.wait_more(30).await;
    let recovered = up.elapsed();
    let attempts = load.finish().await;
    println!(
        "PostgreSQL restarted under sales: down for {restarted:?}, sales again after {recovered:?}; \
         {} sales, answers {}",
        attempts.len(),
        summary(&attempts)
    );
    // Each sale got an answer in time; those the outage failed were answered 503 (try again).
    for at in attempts.iter().filter(|at| !at.posted()) {
        assert_eq!(at.outcome, Ok(503), "{at:?}\n{}", d.log_tail());
    }
    // The same processes serve: none was restarted.
    assert_eq!(d.ready_pids("alpha").await, workers);
    assert_eq!(d.ready_pids("public").await, public);
    assert_eq!((d.pid(), p.pid()), (daemon, proxy));
    assert!(d.child.id().is_some() && p.child.id().is_some());

    // Their LISTEN connections are back: a new domain routes, a new tenant is followed.
    a.ok(&[
        "add-domain",
        "--schema",
        "alpha",
        "--domain",
        "again.localhost",
    ])
    .await;
    let routed = p.wait_route("again.localhost", Ok("alpha")).await;
    a.create("beta").await;
    let followed = Instant::now();
    d.wait_for("beta", "known to the daemon", |t| t["schema"] == "beta")
        .await;
    println!(
        "after the restart: a new domain routed in {routed:?}, a new tenant followed in {:?}",
        followed.elapsed()
    );
    assert!(routed < Duration::from_secs(30));

    let settled = settle(&shop, attempts).await;
    let db = a.db.client().await;
    let books = audit(&db, "alpha").await;
    assert_agrees(&books, &settled, STOCK, &shop.medicines);
    assert!(ready_pids(&d.tenant("alpha").await) == workers);
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
    drop(db);
    drop(a);
}
