//! The resilience suite's process failures, with real sales (`POST /api/v1/sales` with an API
//! token and an `Idempotency-Key`) through the real proxy, daemon and workers: a worker killed
//! with SIGKILL under load (only the sales in flight on it may fail, it is replaced, stock and
//! ledger agree), the control daemon killed and started again, or handing over on SIGQUIT to
//! a new one, under load (no failed sale: the old workers serve on until idle, sales in the gap
//! wait for the new daemon's workers, no old worker outlives that), and the proxy upgraded on SIGQUIT under load (no failed
//! sale). After each run every sale that got no answer is posted again with its key, and the
//! tenant's schema is audited against what the clients were told (`apotheca_testkit::system::pharmacy`).

use apotheca_testkit::system::daemon::{alive, ready_pids, signal, wait_gone, Daemon, PATIENCE};
use apotheca_testkit::system::pharmacy::{
    assert_agrees, audit, settle, summary, Attempt, Sales, Shop,
};
use apotheca_testkit::system::proxy::Proxy;
use apotheca_testkit::system::Apotheca;
use nix::sys::signal::Signal;
use tokio::time::Instant;

/// Units of each medicine received: more than any run sells.
const STOCK: i64 = 1_000_000;

/// The lines of a log that tell of trouble: answers 5xx, warnings and errors.
fn trouble(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("status=5") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A pharmacy with three medicines behind a daemon with real workers and the proxy.
async fn open(a: &Apotheca, schema: &str, env: &[(&str, &str)]) -> (Daemon, Proxy, Shop) {
    a.create_pharmacy(schema).await;
    let d = a.serve(env).await;
    let p = a.proxy(&d, &[]).await;
    let shop = Shop::open(p.http, schema, 3, STOCK).await;
    (d, p, shop)
}

/// Posts again every sale that got no answer, then audits the schema against every answer.
async fn check_books(a: &Apotheca, shop: &Shop, attempts: Vec<Attempt>) {
    let settled = settle(shop, attempts).await;
    let db = a.db.client().await;
    let books = audit(&db, &shop.schema).await;
    assert_agrees(&books, &settled, STOCK, &shop.medicines);
}

#[tokio::test]
async fn a_worker_killed_during_sales_fails_only_its_own_and_the_books_agree() {
    let a = Apotheca::migrated().await;
    a.create_pharmacy("alpha").await;
    a.ok(&["scale", "--schema", "alpha", "--min", "2", "--max", "2"])
        .await;
    let d = a.serve(&[]).await;
    let p = a.proxy(&d, &[]).await;
    let shop = Shop::open(p.http, "alpha", 3, STOCK).await;
    let before = d
        .wait_for("alpha", "at two ready workers", |t| {
            ready_pids(t).len() == 2
        })
        .await;
    let victim = ready_pids(&before)[0];

    const CLIENTS: usize = 6;
    let load = Sales::start(&shop, CLIENTS);
    load.wait_more(100).await;
    signal(victim, Signal::SIGKILL);
    // Reaped by control: every thread of it has exited, so its sockets are closed and nothing
    // more can reach it. (A zombie leader alone is not enough: its other threads may still be
    // exiting with the descriptors open.)
    d.wait_for("alpha", "rid of the killed worker", |t| {
        t["workers"]
            .as_array()
            .is_some_and(|w| w.iter().all(|w| w["pid"] != victim))
    })
    .await;
    let dead_at = Instant::now();
    assert!(!alive(victim));
    d.wait_for("alpha", "replaced", |t| {
        let pids = ready_pids(t);
        pids.len() == 2 && !pids.contains(&victim)
    })
    .await;
    load.wait_more(100).await;
    let attempts = load.finish().await;
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.posted()).collect();
    println!(
        "a worker killed during sales: {} sales, answers {}; failed {:?}",
        attempts.len(),
        summary(&attempts),
        failed.iter().map(|a| &a.outcome).collect::<Vec<_>>()
    );
    // Only sales that were in flight when the worker died: each client has one at a time,
    // each failure is the proxy's 502 (the sale was sent and is not retried), none hangs.
    assert!(failed.len() <= CLIENTS, "{}", summary(&attempts));
    for f in &failed {
        assert_eq!(f.outcome, Ok(502), "{f:?}\n{}", p.log_tail());
        assert!(
            f.started < dead_at,
            "a sale started after the worker died failed: {f:?}"
        );
    }
    check_books(&a, &shop, attempts).await;
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

/// The old daemon's workers, and how the restart of control went: every sale answered.
async fn restart_control_under_sales(planned: bool) {
    let a = Apotheca::migrated().await;
    let (d, p, shop) = open(&a, "alpha", &[]).await;
    let old_alpha = d.ready_pids("alpha").await;
    let old_public = d.ready_pids("public").await;
    assert_eq!(old_alpha.len(), 1);

    let load = Sales::start(&shop, 4);
    load.wait_more(50).await;
    let stopped = Instant::now();
    let mut d = d;
    signal(
        d.pid(),
        if planned {
            Signal::SIGQUIT
        } else {
            Signal::SIGKILL
        },
    );
    let status = tokio::time::timeout(PATIENCE, d.child.wait())
        .await
        .expect("the daemon did not exit")
        .unwrap();
    assert_eq!(status.success(), planned, "{status:?}\n{}", d.log_tail());
    let d = a.serve(&[]).await;
    let gap = stopped.elapsed();
    // No worker of the old daemon outlives it, and the new one serves alpha with its own.
    wait_gone(&old_alpha).await;
    wait_gone(&old_public).await;
    let new = d
        .wait_for("alpha", "served by the new daemon", |t| {
            !ready_pids(t).is_empty()
        })
        .await;
    assert!(ready_pids(&new).iter().all(|pid| !old_alpha.contains(pid)));
    load.wait_more(50).await;
    let attempts = load.finish().await;
    let slowest = attempts
        .iter()
        .map(|a| a.ended - a.started)
        .max()
        .unwrap_or_default();
    println!(
        "control {} under sales: down for {gap:?}, {} sales, answers {}, slowest {slowest:?}",
        if planned {
            "handed over (SIGQUIT) and started"
        } else {
            "killed and started"
        },
        attempts.len(),
        summary(&attempts)
    );
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.posted()).collect();
    assert!(
        failed.is_empty(),
        "sales that failed across the restart: {failed:#?}\nproxy:\n{}\ndaemons:\n{}",
        trouble(&p.log),
        trouble(&d.log)
    );
    check_books(&a, &shop, attempts).await;
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn control_killed_and_started_again_under_sales_fails_none() {
    restart_control_under_sales(false).await;
}

#[tokio::test]
async fn control_handing_over_on_sigquit_to_a_new_daemon_under_sales_fails_none() {
    restart_control_under_sales(true).await;
}

#[tokio::test]
async fn a_proxy_upgrade_during_sales_fails_none() {
    let a = Apotheca::migrated().await;
    let (d, mut old, shop) = open(&a, "alpha", &[]).await;
    let load = Sales::start(&shop, 4);
    load.wait_more(50).await;
    signal(old.pid(), Signal::SIGQUIT);
    let new = old.upgrade().await;
    let status = old.wait().await;
    assert!(status.success(), "{status:?}\n{}", old.log_tail());
    // Only the successor is left to answer these.
    load.wait_more(50).await;
    let attempts = load.finish().await;
    println!(
        "a proxy upgrade during sales: {} sales, answers {}",
        attempts.len(),
        summary(&attempts)
    );
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.posted()).collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", new.log_tail());
    check_books(&a, &shop, attempts).await;
    assert!(new.stop().await.success());
    assert!(d.stop().await.success());
}
