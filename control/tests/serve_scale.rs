//! Load and replacement under `apotheca serve`: scaling up under concurrent requests and back
//! down when idle, a rolling restart under continuous requests with no failed request, and
//! the memory guard replacing workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apotheca_testkit::system::daemon::{get, ready_pids, Daemon};
use apotheca_testkit::system::Apotheca;
use http_body_util::BodyExt;
use hyper::Method;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Not sent (the worker was leaving): tried again on a current endpoint, as the proxy
    /// does for an idempotent request.
    retried: AtomicU64,
    failed: AtomicU64,
    /// Moments a client found no endpoint at all.
    no_endpoint: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// Keeps `endpoints` current from the daemon's watch stream, as the proxy will.
async fn follow_endpoints(d: &Daemon, schema: &str, endpoints: Arc<Mutex<Vec<String>>>) {
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/v1/endpoints/watch")
        .header("host", "control")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let schema = schema.to_owned();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut pending = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(at) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=at).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                let list = if let Some(snapshot) = v.get("snapshot") {
                    Some(&snapshot[&schema])
                } else if v["schema"] == schema.as_str() {
                    Some(&v["endpoints"])
                } else {
                    None
                };
                if let Some(list) = list {
                    let list: Vec<String> = list
                        .as_array()
                        .map(|a| a.iter().map(|e| e.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default();
                    *endpoints.lock().unwrap() = list;
                }
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    first_rx.await.unwrap();
}

/// `clients` loops of health checks (a database round trip each) until `stop`.
fn start_clients(
    clients: usize,
    endpoints: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (endpoints, stop, tally) = (endpoints.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let pick = {
                            let list = endpoints.lock().unwrap();
                            (!list.is_empty()).then(|| list[n % list.len()].clone())
                        };
                        let Some(endpoint) = pick else {
                            tally.no_endpoint.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        match get(&endpoint, "/_apotheca/health").await {
                            Ok((200, _)) => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(e) if attempts < 5 => {
                                tally.retried.fetch_add(1, Ordering::Relaxed);
                                tally.errors.lock().unwrap().push(format!("retried: {e}"));
                                n += 1;
                            }
                            other => {
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                                tally
                                    .errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("{endpoint}: {other:?}"));
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn concurrent_load_scales_up_and_idle_scales_back_down() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = a
        .serve(&[("APOTHECA_CONTROL__SERVE__SCALE_UP_AFTER_MS", "400")])
        .await;
    a.ok(&[
        "scale",
        "--schema",
        "alpha",
        "--max",
        "3",
        "--max-inflight",
        "1",
        "--idle-timeout",
        "2s",
    ])
    .await;
    d.wait_for("alpha", "policy applied", |t| {
        t["policy"]["max_in_flight"] == 1
    })
    .await;
    d.wake("alpha").await;
    let endpoints = Arc::new(Mutex::new(Vec::new()));
    follow_endpoints(&d, "alpha", endpoints.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(16, endpoints, stop.clone(), tally.clone());
    let busy = d
        .wait_for("alpha", "scaled up to 3", |t| ready_pids(t).len() == 3)
        .await;
    assert_eq!(busy["target"], 3, "{busy}");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(tally.ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        tally.errors.lock().unwrap()
    );
    // Never above max, and all the way down once idle.
    let idle = d
        .wait_for("alpha", "scaled back to zero", |t| {
            assert!(t["workers"].as_array().unwrap().len() <= 3, "{t}");
            t["workers"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(idle["restarts"], 0, "{idle}");
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn a_rolling_restart_under_continuous_requests_fails_none() {
    let a = Apotheca::migrated().await;
    a.create("bravo").await;
    let d = a.serve(&[]).await;
    a.ok(&["scale", "--schema", "bravo", "--min", "2", "--max", "2"])
        .await;
    let before = d
        .wait_for("bravo", "two ready workers", |t| ready_pids(t).len() == 2)
        .await;
    let old = ready_pids(&before);
    let endpoints = Arc::new(Mutex::new(Vec::new()));
    follow_endpoints(&d, "bravo", endpoints.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(4, endpoints.clone(), stop.clone(), tally.clone());
    let warm = tally.ok.load(Ordering::Relaxed);
    let out = a.ok(&["restart", "--schema", "bravo"]).await;
    assert!(out.contains("bravo: replaced 2 worker(s)"), "{out}");
    // Keep going a little on the new workers.
    let done = tally.ok.load(Ordering::Relaxed);
    while tally.ok.load(Ordering::Relaxed) < done + 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let retried = tally.retried.load(Ordering::Relaxed);
    eprintln!("rolling restart: {ok} requests answered, {retried} retried, {failed} failed");
    assert!(ok > warm + 50);
    assert_eq!(failed, 0, "{:?}", tally.errors.lock().unwrap());
    assert_eq!(
        tally.no_endpoint.load(Ordering::Relaxed),
        0,
        "a moment without any worker"
    );
    let after = d.tenant("bravo").await;
    let new = ready_pids(&after);
    assert_eq!(new.len(), 2, "{after}");
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    assert_eq!(after["restarts"], 0, "{after}");
    assert_eq!(endpoints.lock().unwrap().len(), 2);
    // --all restarts the public site too.
    let out = a.ok(&["restart", "--all", "--json"]).await;
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schemas: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["schema"].as_str().unwrap())
        .collect();
    assert_eq!(schemas, ["bravo", "public"]);
    assert!(d.stop().await.success());
}

#[tokio::test]
async fn the_memory_guard_replaces_workers_above_the_limit() {
    let a = Apotheca::migrated().await;
    a.create("charlie").await;
    // Every worker is above 1 MB: each is replaced as soon as it reports.
    let d = a
        .serve(&[("APOTHECA_CONTROL__SERVE__MAX_WORKER_RSS_MB", "1")])
        .await;
    let first = d.wake("charlie").await;
    let t = d
        .wait_for("charlie", "replaced for its memory", |t| {
            t["last_exit"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("above the limit"))
        })
        .await;
    assert_eq!(t["last_exit"]["crash"], false, "{t}");
    assert_eq!(t["restarts"], 0, "{t}");
    let now = d.wake("charlie").await;
    assert_ne!(now, first);
    let (status, body) = d.call(Method::GET, "/v1/endpoints").await;
    assert_eq!(status, 200);
    assert!(body["charlie"].is_array(), "{body}");
    assert!(d.stop().await.success());
}
