//! Many pharmacies under random traffic for a while, through the real proxy, daemon and
//! workers, on a cluster of the test's own: `APOTHECA_SOAK_TENANTS` pharmacies (200) with
//! little stock each, `APOTHECA_SOAK_SECS` seconds (60) of clients picking a pharmacy and an
//! action at random — a sale of one or two lines (often more than is left: refused whole), a
//! retry of an earlier sale with its key, the medicines list. Then every sale either fully
//! committed or not at all: for every pharmacy, stock = batches = ledger, every sale answered
//! 200/201 is exactly one invoice with all its lines, every sale refused left nothing, and
//! each medicine's stock is what was received less what the posted sales took.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apotheca_testkit::system::pharmacy::{
    assert_agrees, attempt, audit, fresh_key, settle, summary, Attempt, Shop,
};
use apotheca_testkit::system::Apotheca;
use apotheca_testkit::{OwnCluster, TestDb};
use futures::StreamExt;
use hyper::Method;
use tokio::time::Instant;

/// Units of each medicine each pharmacy receives: the traffic sells most of it.
const STOCK: i64 = 60;
const CLIENTS: usize = 16;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// One client's random action on a random pharmacy.
async fn act(shops: &[Shop], earlier: &Mutex<Vec<(usize, Attempt)>>) -> Option<(usize, Attempt)> {
    let i = rand::random_range(0..shops.len());
    let shop = &shops[i];
    let m = |k: usize| shop.medicines[k % shop.medicines.len()];
    let roll = rand::random_range(0..100);
    if roll < 10 {
        let r = shop.send(Method::GET, "/api/v1/medicines", &[], "").await;
        let r = r.unwrap_or_else(|e| panic!("the medicines of {}: {e}", shop.schema));
        assert_eq!(r.status, 200, "{}", r.text());
        return None;
    }
    if roll < 20 {
        // The same sale again with its key: the same answer, never a second invoice.
        let again = {
            let earlier = earlier.lock().unwrap();
            (!earlier.is_empty()).then(|| earlier[rand::random_range(0..earlier.len())].clone())
        };
        if let Some((j, first)) = again {
            return Some((j, attempt(&shops[j], first.key, first.lines).await));
        }
    }
    let first = rand::random_range(0..shop.medicines.len());
    let lines = if roll < 60 {
        vec![(m(first), rand::random_range(1..=4))]
    } else {
        vec![
            (m(first), rand::random_range(1..=3)),
            (m(first + 1), rand::random_range(1..=8)),
        ]
    };
    Some((i, attempt(shop, fresh_key("soak"), lines).await))
}

#[tokio::test]
async fn many_pharmacies_under_random_traffic_commit_every_sale_whole_or_not_at_all() {
    let tenants = knob("APOTHECA_SOAK_TENANTS", 200) as usize;
    let secs = knob("APOTHECA_SOAK_SECS", 60);
    // Each worker: a pool of 2 (and once one LISTEN connection, now control's); control and
    // the proxy a few more.
    let own = OwnCluster::start(u32::try_from(tenants * 3 + 100).unwrap()).await;
    let a = Apotheca::on(TestDb::migrated_on(own.cluster.clone()).await);
    let setup = Instant::now();
    let schemas: Vec<String> = (0..tenants).map(|i| format!("soak_{i:03}")).collect();
    futures::stream::iter(&schemas)
        .for_each_concurrent(2, |s| a.create_pharmacy(s))
        .await;
    let d = a.serve(&[("APOTHECA_WORKER__POOL_SIZE", "2")]).await;
    let p = a.proxy(&d, &[]).await;
    let shops: Vec<Shop> = futures::stream::iter(&schemas)
        .map(|s| Shop::open(p.http, s, 3, STOCK))
        .buffered(4)
        .collect()
        .await;
    println!("{tenants} pharmacies open in {:?}", setup.elapsed());

    let shops = Arc::new(shops);
    let stop = Arc::new(AtomicBool::new(false));
    let earlier: Arc<Mutex<Vec<(usize, Attempt)>>> = Arc::default();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (shops, stop, earlier) = (shops.clone(), stop.clone(), earlier.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match act(&shops, &earlier).await {
                        Some(done) => earlier.lock().unwrap().push(done),
                        None => reads += 1,
                    }
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for c in clients {
        reads += c.await.unwrap();
    }
    let ran = started.elapsed();
    let all: Vec<(usize, Attempt)> = std::mem::take(&mut *earlier.lock().unwrap());
    let attempts: Vec<Attempt> = all.iter().map(|(_, a)| a.clone()).collect();
    println!(
        "{ran:?} of random traffic over {tenants} pharmacies: {reads} reads, {} sales, answers {}",
        attempts.len(),
        summary(&attempts)
    );
    // Every sale got an answer in time: posted, refused whole (4xx), or at worst busy (503,
    // posted again below); never another 5xx.
    for at in &attempts {
        match at.outcome {
            Ok(200 | 201 | 503) => {}
            Ok(s) if (400..500).contains(&s) => {}
            _ => panic!("{at:?}\n{}", p.log_tail()),
        }
    }
    assert!(
        attempts.iter().filter(|a| a.posted()).count() >= tenants,
        "too little traffic to judge: {}",
        summary(&attempts)
    );

    let db = a.db.client().await;
    let mut refused = 0;
    for (i, shop) in shops.iter().enumerate() {
        let mine: Vec<Attempt> = all
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, a)| a.clone())
            .collect();
        let settled = settle(shop, mine).await;
        refused += settled.iter().filter(|a| !a.posted()).count();
        let books = audit(&db, &shop.schema).await;
        assert_agrees(&books, &settled, STOCK, &shop.medicines);
    }
    println!("books of {tenants} pharmacies agree; {refused} sales refused whole");
    assert!(
        refused > 0,
        "no sale ran out of stock: the test judged nothing refused"
    );
    assert!(p.stop().await.success());
    assert!(d.stop().await.success());
    drop(db);
    drop(a);
}
