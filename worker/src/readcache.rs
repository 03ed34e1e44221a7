//! Answers of the hottest reads (the medicines list and page, the counter search), kept as
//! ready-made JSON and served without touching the database. Every write through the routes
//! that change stock, medicines, suppliers or settings is announced on the tenant's channel
//! (`changes::announce_writes`), and every worker then forgets
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

/// What the worker's caches share: whether they may be used at all (the change listener is
/// connected) and a generation that every clear bumps, so that a result computed before a
/// clear is never stored after it.
#[derive(Debug, Default)]
pub struct Gate {
    generation: AtomicU64,
    live: AtomicBool,
}

impl Gate {
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether nothing was cleared since `generation` was read.
    pub fn current(&self, generation: u64) -> bool {
        self.generation() == generation
    }

    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }
}

pub struct ReadCache {
    entries: Mutex<HashMap<String, (Bytes, Instant)>>,
    gate: Gate,
    /// Zero: the cache is off.
    ttl: Duration,
}

impl ReadCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            gate: Gate::default(),
            ttl,
        }
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        if self.ttl.is_zero() || !self.gate.live() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (body, stored) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| body.clone())
    }

    fn put(&self, generation: u64, key: String, body: Bytes) {
        if self.ttl.is_zero() || !self.gate.live() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if !self.gate.current(generation) {
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
            self.gate.bump();
            entries.clear();
        }
    }

    /// Turns caching on (the listener is connected) or off; either way, forgets everything.
    pub fn set_live(&self, live: bool) {
        self.clear();
        self.gate.set_live(live);
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
    let generation = state.read_cache.gate.generation();
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
