//! What every request handler shares: the tenant's schema, its database pool, settings, load
//! figures, the login and read caches, the sale queue.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::authcache::AuthCache;

use crate::readcache::{Marker, ReadCache};
use crate::sale_queue::SaleQueue;
use crate::settings::WorkerSettings;
use crate::stats::Stats;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub schema: String,
    pub pool: Pool,
    pub settings: WorkerSettings,
    pub stats: Stats,
    /// Logins remembered between requests (live only while the change listener runs).
    pub auth_cache: AuthCache,
    /// Ready answers of the hottest reads (likewise).
    pub read_cache: ReadCache,
    /// Sales waiting to be posted, in batches.
    pub sale_queue: SaleQueue,
    /// Set when the database refused this worker another connection: until then requests
    /// wait for the connections it has (see [`AppState::db`]).
    held_until: Mutex<Option<Instant>>,
    /// Pieces of work behind requests running now ([`AppState::behind`]).
    behind: AtomicUsize,
}

tokio::task_local! {
    /// Set while work behind a request runs ([`AppState::behind`]).
    static BEHIND: ();
}

/// How long requests wait for the worker's own connections after the database refused it another.
const HOLD_POOL: Duration = Duration::from_secs(5);
/// How long work behind a request waits for one of the worker's connections to be idle
/// before it is skipped ([`AppState::idle_connection`]).
const BEHIND_WAIT: Duration = Duration::from_secs(10);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A lazy pool of at most `pool_size` connections as the tenant's role; writes are
    /// announced on the tenant's channel.
    pub fn new(schema: &str, url: &str, settings: WorkerSettings) -> Result<Self, String> {
        Self::with_marker(schema, url, settings, None)
    }

    /// As [`AppState::new`], with the tenant's change marker shared by its workers, through
    /// which this worker announces its writes instead.
    pub fn with_marker(
        schema: &str,
        url: &str,
        settings: WorkerSettings,
        marker: Option<Marker>,
    ) -> Result<Self, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("invalid database URL: {e}"))?;
        config.application_name(format!("apotheca-worker {schema}"));
        config.connect_timeout(std::time::Duration::from_secs(5));
        // Every statement here is prepared once per connection and run many times with
        // parameters that do not change its best plan (ids, arrays of ids, small tables):
        // planning each run anew (PostgreSQL's custom plans, which it keeps choosing for the
        // sale's one big statement) was a fifth of the database's time per sale. Citus cannot
        // plan some of them without the values: there PostgreSQL's default.
        if !settings.citus {
            config.options("-c plan_cache_mode=force_generic_plan");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Last in, first out: the connection just given back is the next one taken, so a
        // worker that needs one connection at a time keeps using one PostgreSQL backend whose
        // caches are warm, and the others go idle and are closed (`close_idle`), that one
        // too once the worker is quiet. First in, first out (deadpool's default) rotated
        // every request over all of them: at 200 tenants that was hundreds of backends kept
        // busy and cold (see bench/RESULTS.md).
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("database pool: {e}"))?;
        let auth_cache = AuthCache::new(Duration::from_secs(settings.login_cache_secs));
        let read_cache = ReadCache::new(
            std::time::Duration::from_secs(settings.read_cache_secs),
            marker,
        );
        Ok(Self(Arc::new(Inner {
            schema: schema.to_owned(),
            pool,
            settings,
            stats: Stats::default(),
            auth_cache,
            read_cache,
            sale_queue: SaleQueue::default(),
            held_until: Mutex::new(None),
            behind: AtomicUsize::new(0),
        })))
    }

    /// A handle that does not keep the state alive (for background tasks).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(Self)
    }

    /// A connection of the pool. When the database refuses another one (its
    /// `max_connections`, or the tenant role's connection limit, is reached) while this worker
    /// holds some, the request waits for one of those (up to 10 s) instead of failing, and for
    /// a while requests wait for an idle connection before asking the pool, which would try
    /// to open more. Likewise while work behind a request runs: it holds a connection for a
    /// query or two, and a request that came meanwhile (a pharmacy's sale right after its
    /// list, whose stale login is being looked up again) waits for it rather than open a
    /// second backend.
    pub async fn db(&self) -> apotheca_pharmacy::Result<Object> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Work behind a request never waits for other such work (nor for itself).
            let foreground = BEHIND.try_with(|_| ()).is_err();
            let behind_runs = || {
                foreground && self.behind.load(Ordering::Relaxed) > 0 && self.pool.status().size > 0
            };
            self.wait_for_idle(deadline, || self.held() || behind_runs())
                .await;
            match self.pool.get().await {
                Ok(db) => return Ok(db),
                Err(PoolError::Backend(e))
                    if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS)
                        && self.pool.status().size > 0
                        && Instant::now() < deadline =>
                {
                    if let Ok(mut held) = self.held_until.lock() {
                        if held.is_none() {
                            tracing::warn!(connections = self.pool.status().size, error = %e,
                                "the database has no connection to spare; sharing this worker's");
                        }
                        *held = Some(Instant::now() + HOLD_POOL);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// For work done behind a request (a cached answer or a login looked up again, a
    /// session's or token's last use): whether it may go ahead. It waits until one of the
    /// worker's connections is idle and takes that one, never having the pool open another
    /// while requests hold the worker's own (a new PostgreSQL backend is an authentication,
    /// cold caches and every statement prepared again: tens of ms, hundreds on a saturated
    /// box). None idle within [`BEHIND_WAIT`]: `false`, and the work is skipped (what it
    /// would renew stays stale, and the next request tries again). With no connection yet,
    /// at once. Waiting only 1 s, then opening one, gave 600 of 1,000 live pharmacies a
    /// second backend when the box was saturated (`bench/density.sh`).
    async fn idle_connection(&self) -> bool {
        let deadline = Instant::now() + BEHIND_WAIT;
        self.wait_for_idle(deadline, || self.pool.status().size > 0)
            .await;
        self.pool.status().size == 0 || self.pool.status().available > 0
    }

    /// Runs `work`, which is done behind a request, on a connection that is idle now
    /// ([`AppState::idle_connection`]), or skips it; meanwhile requests wait for the
    /// connection it holds instead of opening another ([`AppState::db`]).
    pub async fn behind(&self, work: impl Future<Output = ()>) {
        struct Running<'a>(&'a AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !self.idle_connection().await {
            return;
        }
        self.behind.fetch_add(1, Ordering::Relaxed);
        let _running = Running(&self.behind);
        BEHIND.scope((), work).await;
    }

    /// Waits while `wait()` holds, none of the pool's connections is idle and `deadline` is
    /// ahead (deadpool gives no way to wait for one without asking it to open another):
    /// looks again after 2 ms, then less often, up to every 10 ms.
    async fn wait_for_idle(&self, deadline: Instant, wait: impl Fn() -> bool) {
        let mut pause = Duration::from_millis(2);
        while wait() && self.pool.status().available == 0 && Instant::now() < deadline {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Whether requests wait for the connections the worker has (see [`AppState::db`]).
    fn held(&self) -> bool {
        let Ok(mut held) = self.held_until.lock() else {
            return false;
        };
        match *held {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *held = None;
                false
            }
            None => false,
        }
    }

    /// Closes the pool's connections idle for longer than `idle`, but with `keep_last` the
    /// one used last: a tenant's burst leaves the worker `pool_size` connections, and
    /// hundreds of quiet tenants' workers would otherwise each keep theirs (a PostgreSQL
    /// backend of about 4 MB) for good. The one used last is the one the next request takes
    /// (last in, first out) and has the warmest backend. A connection taken or given back
    /// between the two passes only moves which one stays: one in use stays anyway, one given
    /// back is not idle.
    pub fn close_idle(&self, idle: Duration, keep_last: bool) {
        let mut freshest = (usize::MAX, Duration::MAX);
        let mut at = 0;
        self.pool.retain(|_, metrics| {
            if metrics.last_used() < freshest.1 {
                freshest = (at, metrics.last_used());
            }
            at += 1;
            true
        });
        let mut at = 0;
        self.pool.retain(|_, metrics| {
            let keep = (keep_last && at == freshest.0) || metrics.last_used() < idle;
            at += 1;
            keep
        });
    }
}
