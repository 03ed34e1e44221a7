//! Answers of the hottest reads (the medicines list and page, the counter search), kept as
//! ready-made JSON and served without touching the database. Every write that changes stock or
//! medicines is announced on the tenant's channel (`changes`), and every worker then forgets
//! all it kept; nothing is kept while this worker is not listening, and nothing for longer
//! than `[worker] read_cache_secs`. A read that raced a write is not stored (generations).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most answers kept at once (a flood of distinct queries cannot grow the worker).
const MAX_ENTRIES: usize = 2_000;

pub struct ReadCache {
    entries: Mutex<HashMap<String, (Bytes, Instant)>>,
    generation: AtomicU64,
    live: AtomicBool,
    /// Zero: the cache is off.
    ttl: Duration,
}

impl ReadCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            ttl,
        }
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        if self.ttl.is_zero() || !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (body, stored) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| body.clone())
    }

    fn put(&self, generation: u64, key: String, body: Bytes) {
        if self.ttl.is_zero() || !self.live.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (body, Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }

    /// Turns caching on (the listener is connected) or off; either way, forgets everything.
    pub fn set_live(&self, live: bool) {
        self.clear();
        self.live.store(live, Ordering::Release);
    }
}

/// The kept answer for `key`, or `make`'s, serialised once and kept.
pub async fn respond<T, F, Fut>(state: &AppState, key: &str, make: F) -> ApiResult<Response>
where
    T: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    if let Some(body) = state.read_cache.get(key) {
        return Ok(json(body));
    }
    let generation = state.read_cache.generation.load(Ordering::Acquire);
    let value = make().await?;
    let body = Bytes::from(serde_json::to_vec(&value).map_err(|_| ApiError::internal())?);
    state
        .read_cache
        .put(generation, key.to_owned(), body.clone());
    Ok(json(body))
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
