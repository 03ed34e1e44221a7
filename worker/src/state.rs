//! What every request handler shares: the tenant's schema, its database pool, settings, load
//! figures, the login and read caches, the sale queue.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::authcache::AuthCache;
use crate::http::error::{ApiError, ApiResult};
use crate::readcache::ReadCache;
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
    /// The public site's recent sign-up attempts per client address.
    pub signups: crate::pages::site::Attempts,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A lazy pool of at most `pool_size` connections as the tenant's role.
    pub fn new(schema: &str, url: &str, settings: WorkerSettings) -> Result<Self, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("invalid database URL: {e}"))?;
        config.application_name(format!("apotheca-worker {schema}"));
        config.connect_timeout(std::time::Duration::from_secs(5));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("database pool: {e}"))?;
        let read_cache = ReadCache::new(std::time::Duration::from_secs(settings.read_cache_secs));
        Ok(Self(Arc::new(Inner {
            schema: schema.to_owned(),
            pool,
            settings,
            stats: Stats::default(),
            auth_cache: AuthCache::default(),
            read_cache,
            sale_queue: SaleQueue::default(),
            signups: Default::default(),
        })))
    }

    /// A handle that does not keep the state alive (for background tasks).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(Self)
    }

    pub async fn db(&self) -> ApiResult<Object> {
        self.pool.get().await.map_err(ApiError::from)
    }
}
