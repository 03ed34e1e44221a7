//! Where each tenant's requests go: its ready workers' sockets (from control's endpoint feed,
//! and from the answer to a wake), each with its requests in flight, so the least busy one
//! is chosen, and its idle keep-alive connections; and each tenant's admission — an in-flight cap and a bounded queue — so one hot
//! tenant cannot take every slot of the proxy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::WorkerConn;

/// Idle connections kept per worker.
const MAX_IDLE_CONNS: usize = 256;

/// One worker's socket, its requests in flight through this proxy and its idle connections.
pub struct Endpoint {
    pub path: PathBuf,
    in_flight: AtomicUsize,
    /// Idle connections, each with the thread it was made on.
    idle: Mutex<Vec<(std::thread::ThreadId, WorkerConn)>>,
}

impl Endpoint {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            in_flight: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most recently used idle connection of this thread that is not too old. Each
    /// thread runs its own runtime, whose I/O driver a connection is registered with: one
    /// used from another thread would have every event relayed across threads.
    pub fn take_idle(&self) -> Option<WorkerConn> {
        let here = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, conn)| !conn.expired());
        let at = idle.iter().rposition(|(thread, _)| *thread == here)?;
        Some(idle.remove(at).1)
    }

    /// A connection whose last answer was read to the end, for the next request.
    pub fn put_idle(&self, conn: WorkerConn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNS {
            idle.push((std::thread::current().id(), conn.idle()));
        }
    }
}

/// A request's hold on an endpoint, released when dropped.
pub struct Using(Arc<Endpoint>);

impl Using {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for Using {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tenant's workers and admission.
pub struct Upstream {
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    slots: Mutex<Option<(usize, Arc<Semaphore>)>>,
    queued: AtomicUsize,
    /// Held by the one request that asks control to wake the tenant; the others wait here.
    pub waking: tokio::sync::Mutex<()>,
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// In-flight cap reached and the queue full.
    Full,
    /// Waited in the queue past the deadline.
    Timeout,
}

impl Upstream {
    fn new() -> Self {
        Self {
            endpoints: RwLock::new(Vec::new()),
            slots: Mutex::new(None),
            queued: AtomicUsize::new(0),
            waking: tokio::sync::Mutex::new(()),
        }
    }

    pub fn has_endpoints(&self) -> bool {
        !self.endpoints.read().map(|e| e.is_empty()).unwrap_or(true)
    }

    /// The least busy endpoint not in `skip`, held for this request.
    pub fn pick(&self, skip: &[PathBuf]) -> Option<Using> {
        let endpoints = self.endpoints.read().ok()?;
        let best = endpoints
            .iter()
            .filter(|e| !skip.contains(&e.path))
            .min_by_key(|e| e.in_flight())?
            .clone();
        best.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Using(best))
    }

    /// Replaces the endpoint list, keeping the counters of endpoints that stay.
    pub fn set(&self, paths: &[PathBuf]) {
        let Ok(mut endpoints) = self.endpoints.write() else {
            return;
        };
        let kept: Vec<Arc<Endpoint>> = paths
            .iter()
            .map(|p| {
                endpoints
                    .iter()
                    .find(|e| &e.path == p)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(p.clone())))
            })
            .collect();
        *endpoints = kept;
    }

    /// A slot for one request: at once while fewer than `max` are in flight, else after
    /// waiting in a queue of at most `queue` requests for at most `wait`.
    pub async fn admit(
        &self,
        max: usize,
        queue: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Refused> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match &*slots {
                Some((m, s)) if *m == max => s.clone(),
                // First use, or the limit changed: a new semaphore (requests holding permits
                // of the old one finish against it).
                _ => {
                    let s = Arc::new(Semaphore::new(max.max(1)));
                    *slots = Some((max, s.clone()));
                    s
                }
            }
        };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        let waited = tokio::time::timeout(wait, semaphore.acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::Timeout),
        }
    }
}

/// Every tenant's upstream, by schema.
#[derive(Default)]
pub struct Upstreams {
    by_schema: RwLock<HashMap<Arc<str>, Arc<Upstream>>>,
}

impl Upstreams {
    pub fn get(&self, schema: &str) -> Arc<Upstream> {
        if let Some(u) = self
            .by_schema
            .read()
            .ok()
            .and_then(|m| m.get(schema).cloned())
        {
            return u;
        }
        let mut map = self.by_schema.write().unwrap_or_else(|p| p.into_inner());
        map.entry(Arc::from(schema))
            .or_insert_with(|| Arc::new(Upstream::new()))
            .clone()
    }

    /// A whole snapshot from control: tenants missing from it have no ready worker.
    pub fn replace_all(&self, snapshot: &HashMap<String, Vec<PathBuf>>) {
        let known: Vec<Arc<str>> = self
            .by_schema
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for schema in known {
            if !snapshot.contains_key(&*schema) {
                self.get(&schema).set(&[]);
            }
        }
        for (schema, paths) in snapshot {
            self.get(schema).set(paths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_busy_and_releases() {
        let u = Upstream::new();
        u.set(&["/a".into(), "/b".into()]);
        let first = u.pick(&[]).unwrap();
        let second = u.pick(&[]).unwrap();
        assert_ne!(first.endpoint().path, second.endpoint().path);
        drop(first);
        let third = u.pick(&[]).unwrap();
        assert_eq!(third.endpoint().in_flight(), 1);
        assert!(u.pick(&["/a".into(), "/b".into()]).is_none());
        // Replacing the list keeps the counters of the endpoints that stay.
        let busy = third.endpoint().path.clone();
        u.set(&[busy.clone(), "/c".into()]);
        assert_eq!(u.pick(&[]).unwrap().endpoint().path, PathBuf::from("/c"));
    }

    #[tokio::test]
    async fn admits_up_to_the_cap_then_queues_then_refuses() {
        let u = Arc::new(Upstream::new());
        let wait = Duration::from_secs(5);
        let held = u.admit(1, 1, wait).await.unwrap();
        let queued = {
            let u = u.clone();
            tokio::spawn(async move { u.admit(1, 1, wait).await.map(|_| ()) })
        };
        while u.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(u.admit(1, 1, wait).await.err(), Some(Refused::Full));
        drop(held);
        assert_eq!(queued.await.unwrap(), Ok(()));
        let _held = u.admit(1, 1, wait).await.unwrap();
        assert_eq!(
            u.admit(1, 1, Duration::from_millis(10)).await.err(),
            Some(Refused::Timeout)
        );
    }
}
