//! The host → tenant map: the whole of `public.domains` (with each tenant's status and limits)
//! in memory, swapped whole on every change, so a request never queries the database.
//!
//! The follower holds a LISTEN on control's `apotheca_tenants` channel and reloads the map on
//! every notification (several at once are one reload); a notification is only a hint, the
//! tables are the truth. On a lost connection it keeps the last good map, reconnects with
//! backoff, and reloads in full once it is back (changes made meanwhile are picked up then).
//!
//! A notification and the reload it causes are counted: a host the map does not know while
//! a reload it was notified of is still running may be one just added (the browser sent on by
//! the sign-up's redirect can be quicker than the reload), so [`Routes::caught_up`] lets such a
//! request wait for that reload instead of answering "no pharmacy here". The notification
//! itself can also be slower than the browser (PostgreSQL signals the listening backend, which
//! a busy box may not run at once), so [`Routes::sync`] first makes a round trip on the
//! listening connection: PostgreSQL sends a session the notifications committed before its
//! query ends, so every change committed before the request arrived has been heard after it.
//! One round trip at a time, shared by every request that asked meanwhile; an unknown host
//! thus costs at most an empty query, never a reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The channel control announces tenant and domain changes on.
pub const CHANNEL: &str = "apotheca_tenants";

/// What a domain leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub schema: Arc<str>,
    pub suspended: bool,
    /// Requests in flight at once for the whole tenant (workers × in flight per worker).
    pub max_in_flight: usize,
    /// Requests that may wait for a slot beyond that.
    pub queue_length: usize,
}

#[derive(Debug, Default)]
pub struct RouteMap {
    by_domain: HashMap<String, Tenant>,
}

impl RouteMap {
    pub fn get(&self, domain: &str) -> Option<&Tenant> {
        self.by_domain.get(domain)
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

/// The current map, read lock-free by every request.
#[derive(Default)]
pub struct Routes {
    current: ArcSwap<RouteMap>,
    /// Notifications received.
    heard: AtomicU64,
    /// Notifications the current map reflects (those heard before its reload began).
    covered: AtomicU64,
    reloaded: tokio::sync::Notify,
    /// Round trips asked for and done on the listening connection ([`Routes::sync`]).
    sync_asked: AtomicU64,
    sync_done: AtomicU64,
    ask_sync: tokio::sync::Notify,
    synced: tokio::sync::Notify,
}

impl Routes {
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteMap>> {
        self.current.load()
    }

    /// Waits (at most `within`) until the map reflects every notification heard so far; at
    /// once when it does.
    pub async fn caught_up(&self, within: Duration) {
        let want = self.heard.load(Ordering::Acquire);
        reached(&self.reloaded, &self.covered, want, within).await;
    }

    /// Waits (at most `within`) for a round trip on the listening connection that began after
    /// this call: then every notification committed before it has been heard (and
    /// [`Routes::caught_up`] waits for its reload). While the connection is down, the whole
    /// of `within`.
    pub async fn sync(&self, within: Duration) {
        let want = self.sync_asked.fetch_add(1, Ordering::AcqRel) + 1;
        self.ask_sync.notify_one();
        reached(&self.synced, &self.sync_done, want, within).await;
    }

    /// A reload that began when `heard` notifications had been received is in place.
    fn replace_covering(&self, map: RouteMap, heard: u64) {
        self.replace(map);
        self.covered.fetch_max(heard, Ordering::AcqRel);
        self.reloaded.notify_waiters();
    }

    fn replace(&self, map: RouteMap) {
        self.current.store(Arc::new(map));
    }

    /// The first load, before the proxy serves: retried until `deadline` passes.
    pub async fn load_first(&self, url: &str, deadline: Duration) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
                let conn = tokio::spawn(conn);
                let map = read(&client).await;
                drop(client);
                let _ = conn.await;
                map
            };
            match attempt.await {
                Ok(map) => {
                    tracing::info!(domains = map.len(), "routes loaded");
                    self.replace(map);
                    return Ok(());
                }
                Err(e) if started.elapsed() + backoff < deadline => {
                    tracing::warn!(error = %e, "cannot load the routes yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(format!("cannot load the routes from the database: {e}")),
            }
        }
    }

    /// Follows changes until the process ends.
    pub async fn follow(self: Arc<Self>, url: String) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow_once(&url).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the routes' change feed; serving the last map and reconnecting")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One connection's life: LISTEN, a full reload, then a reload per burst of notifications.
    async fn follow_once(self: &Arc<Self>, url: &str) -> Result<(), tokio_postgres::Error> {
        let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let routes = self.clone();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        routes.heard.fetch_add(1, Ordering::AcqRel);
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "routes connection failed");
                        return;
                    }
                }
            }
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            // Whatever changed while this connection was down.
            let heard = self.heard.load(Ordering::Acquire);
            self.replace_covering(read(&client).await?, heard);
            loop {
                tokio::select! {
                    notified = rx.recv() => {
                        if notified.is_none() {
                            return Ok(());
                        }
                        while rx.try_recv().is_ok() {}
                        // Read before the query: a notification after this one gets a reload
                        // of its own.
                        let heard = self.heard.load(Ordering::Acquire);
                        let map = read(&client).await?;
                        tracing::info!(domains = map.len(), "routes reloaded");
                        self.replace_covering(map, heard);
                    }
                    () = self.ask_sync.notified() => {
                        // Everyone who asked before the round trip began is served by it.
                        let asked = self.sync_asked.load(Ordering::Acquire);
                        client.batch_execute("").await?;
                        self.sync_done.fetch_max(asked, Ordering::AcqRel);
                        self.synced.notify_waiters();
                    }
                }
            }
        }
        .await;
        driver.abort();
        result
    }
}

/// Returns once `count` is at least `want` (checked again at each `changed` notification), or
/// after `within`.
async fn reached(changed: &tokio::sync::Notify, count: &AtomicU64, want: u64, within: Duration) {
    if count.load(Ordering::Acquire) >= want {
        return;
    }
    let _ = tokio::time::timeout(within, async {
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count.load(Ordering::Acquire) >= want {
                return;
            }
            notified.await;
        }
    })
    .await;
}

async fn read(client: &Client) -> Result<RouteMap, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT d.domain, t.schema_name, t.status = 'suspended',
                    (t.max_workers * t.max_inflight_per_worker)::bigint, t.queue_length::bigint
             FROM public.domains d JOIN public.tenants t ON t.id = d.tenant_id",
            &[],
        )
        .await?;
    let mut by_domain = HashMap::with_capacity(rows.len());
    let mut schemas: HashMap<String, Arc<str>> = HashMap::new();
    for row in rows {
        let schema: String = row.get(1);
        let schema = schemas
            .entry(schema.clone())
            .or_insert_with(|| Arc::from(schema.as_str()))
            .clone();
        by_domain.insert(
            row.get::<_, String>(0),
            Tenant {
                schema,
                suspended: row.get(2),
                max_in_flight: usize::try_from(row.get::<_, i64>(3)).unwrap_or(usize::MAX),
                queue_length: usize::try_from(row.get::<_, i64>(4)).unwrap_or(0),
            },
        );
    }
    Ok(RouteMap { by_domain })
}
