//! Continuous clients through the proxy: the login page asked for in loops on fresh connections,
//! counting answers by status and by the proxy process that gave them, for tests that change
//! the proxy under load (a worker killed, an upgrade).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::daemon::PATIENCE;
use super::proxy::request;

/// What continuous clients saw: answers by status (and which proxy process gave them, by
/// request-id prefix), and requests that got no answer.
#[derive(Default)]
pub struct Seen {
    pub statuses: BTreeMap<u16, u64>,
    pub by_process: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` loops of requests for `host`'s login page on fresh connections to `port`.
    pub fn start(port: u16, host: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, seen, host) = (stop.clone(), seen.clone(), host.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = request(port, hyper::Method::GET, "/login", &[("host", &host)], "")
                            .await;
                        let mut seen = seen.lock().unwrap();
                        match r {
                            Ok(r) => {
                                *seen.statuses.entry(r.status).or_default() += 1;
                                let process = r
                                    .header("x-request-id")
                                    .and_then(|id| id.split_once('-'))
                                    .map_or("?", |(p, _)| p)
                                    .to_owned();
                                *seen.by_process.entry(process).or_default() += 1;
                            }
                            Err(e) => seen.errors.push(e),
                        }
                    }
                })
            })
            .collect();
        Self { stop, seen, tasks }
    }

    pub fn count(&self, status: u16) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .statuses
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `n` more answers with `status` came (at most [`PATIENCE`]).
    pub async fn wait_more(&self, status: u16, n: u64) {
        let from = self.count(status);
        let started = tokio::time::Instant::now();
        while self.count(status) < from + n {
            let seen = self.seen.lock().unwrap();
            assert!(
                started.elapsed() < PATIENCE,
                "not {n} more {status} answers in {PATIENCE:?}: {:?}, errors {:?}",
                seen.statuses,
                seen.errors
            );
            drop(seen);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}
