//! Answers of the hottest reads (the medicines list and page, the counter search), kept as
//! ready-made JSON and served without touching the database. Every write through the routes
//! that change stock, medicines, suppliers or settings is announced (`changes::data_changed`,
//! the sale queue), and every worker of the tenant then forgets all it kept; nothing is kept
//! while this worker is not listening on the tenant's channel, and nothing for longer than
//! `[worker] read_cache_secs`. A read that raced a write is not stored (generations).
//!
//! Concurrent misses of one answer make it once: the first request makes it and the others
//! wait for that one (when nothing was cleared since it began), so an expiry or a write under
//! load costs one query and one connection, not one per waiting request (each of which could
//! also open a pool connection: hundreds of ms on a busy box).
//!
//! Each answer is kept for a random part of that time, between half and all of it, so answers
//! made at the same moment (every tenant's, after a warm-up or a restart) do not all expire,
//! and get made again, in the same instant of every period.
//!
//! Workers announce their own writes with the tenant's change [`Marker`], a small file beside
//! their sockets that each write stamps with a new value and each cached read compares: a
//! PostgreSQL NOTIFY wakes every listening connection of the database, all tenants' workers,
//! which made each sale cost O(tenants) backend wake-ups. Writers outside the workers (the
//! CLI) still announce on the channel, and so do workers that have no marker.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

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

/// The tenant's change marker: eight bytes in a file shared by the tenant's workers. A write
/// stamps it with a fresh random value once committed; a reader that finds another value than
/// it last saw forgets what it kept.
#[derive(Debug)]
pub struct Marker {
    file: File,
}

impl Marker {
    /// Opens (creating, readable by this user only) the marker at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        Ok(Self { file })
    }

    /// The current stamp (0 before the first write); None when it cannot be read.
    pub fn read(&self) -> Option<u64> {
        let mut stamp = [0u8; 8];
        match self.file.read_at(&mut stamp, 0) {
            Ok(8) => Some(u64::from_le_bytes(stamp)),
            Ok(0) => Some(0),
            _ => None,
        }
    }

    /// Stamps a new value (never 0: that is "never written").
    pub fn stamp(&self) -> std::io::Result<()> {
        let stamp = rand::random::<u64>().max(1);
        self.file.write_all_at(&stamp.to_le_bytes(), 0)
    }
}

pub struct ReadCache {
    /// Each answer with the moment it expires.
    entries: Mutex<HashMap<String, (Bytes, Instant)>>,
    gate: Gate,
    /// Zero: the cache is off.
    ttl: Duration,
    marker: Option<Marker>,
    /// The marker's stamp when the entries were last checked against it.
    seen: AtomicU64,
    /// Answers being made, by key.
    making: Mutex<HashMap<String, Made>>,
    makers: AtomicU64,
}

/// An answer being made: the generation it began in, its maker's id, where it will be.
type Made = (u64, u64, watch::Receiver<Option<Bytes>>);

/// What a request that missed does: wait for the answer another request is making, or make it.
enum Miss<'a> {
    Wait(watch::Receiver<Option<Bytes>>),
    Make(Making<'a>),
}

/// The right to make an answer; others wait for it until it is dropped.
struct Making<'a> {
    cache: &'a ReadCache,
    key: String,
    id: u64,
    done: watch::Sender<Option<Bytes>>,
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        if let Ok(mut making) = self.cache.making.lock() {
            if making
                .get(&self.key)
                .is_some_and(|(_, id, _)| *id == self.id)
            {
                making.remove(&self.key);
            }
        }
    }
}

impl ReadCache {
    pub fn new(ttl: Duration, marker: Option<Marker>) -> Self {
        let seen = marker.as_ref().and_then(Marker::read).unwrap_or(0);
        Self {
            entries: Mutex::default(),
            gate: Gate::default(),
            ttl,
            marker,
            seen: AtomicU64::new(seen),
            making: Mutex::default(),
            makers: AtomicU64::new(0),
        }
    }

    /// After a miss in `generation`: the answer being made for `key` since then, or the right
    /// to make it.
    fn miss(&self, key: &str, generation: u64) -> Option<Miss<'_>> {
        let mut making = self.making.lock().ok()?;
        if let Some((began, _, done)) = making.get(key) {
            if *began == generation {
                return Some(Miss::Wait(done.clone()));
            }
        }
        let id = self.makers.fetch_add(1, Ordering::Relaxed);
        let (done, waiting) = watch::channel(None);
        making.insert(key.to_owned(), (generation, id, waiting));
        Some(Miss::Make(Making {
            cache: self,
            key: key.to_owned(),
            id,
            done,
        }))
    }

    /// Whether the tenant's workers announce their writes with a marker (else on the channel).
    pub fn has_marker(&self) -> bool {
        self.marker.is_some()
    }

    /// After a committed write: forgets what this worker kept and stamps the marker, so that
    /// the tenant's other workers do too. False when there is no marker or it cannot be
    /// written (the caller then announces on the channel).
    pub fn changed(&self) -> bool {
        self.clear();
        match &self.marker {
            Some(marker) => match marker.stamp() {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot stamp the change marker");
                    false
                }
            },
            None => false,
        }
    }

    /// Whether another worker wrote since the entries were last checked (then they are
    /// forgotten); an unreadable marker counts as a write.
    fn stale(&self) -> bool {
        let Some(marker) = &self.marker else {
            return false;
        };
        let now = marker.read();
        if now.is_some_and(|now| now == self.seen.load(Ordering::Acquire)) {
            return false;
        }
        self.clear();
        if let Some(now) = now {
            self.seen.store(now, Ordering::Release);
        }
        true
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        if self.ttl.is_zero() || !self.gate.live() || self.stale() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (body, expires) = entries.get(key)?;
        (Instant::now() < *expires).then(|| body.clone())
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
            entries.insert(key, (body, Instant::now() + self.life()));
        }
    }

    /// How long the next answer is kept: a random part of the TTL, from half to all of it.
    fn life(&self) -> Duration {
        self.ttl.mul_f64(rand::random_range(0.5..=1.0))
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

/// The kept answer for `key`, or `make`'s, serialised once and kept; while one request makes
/// it, the others that miss it wait for that answer.
pub async fn respond<T, F, Fut>(state: &AppState, key: &str, make: F) -> ApiResult<Response>
where
    T: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let cache = &state.read_cache;
    if let Some(body) = cache.get(key) {
        return Ok(json(body));
    }
    let generation = cache.gate.generation();
    let making = if cache.ttl.is_zero() || !cache.gate.live() {
        None
    } else {
        match cache.miss(key, generation) {
            Some(Miss::Wait(mut done)) => {
                // Made in this generation: what a fresh read would give. If its maker failed,
                // this request makes its own answer (without holding others up).
                if let Ok(body) = done.wait_for(Option::is_some).await {
                    if let Some(body) = body.clone() {
                        return Ok(json(body));
                    }
                }
                None
            }
            Some(Miss::Make(making)) => Some(making),
            None => None,
        }
    };
    let value = make().await?;
    let body = Bytes::from(serde_json::to_vec(&value).map_err(|_| ApiError::internal())?);
    cache.put(generation, key.to_owned(), body.clone());
    if let Some(making) = making {
        making.done.send_replace(Some(body.clone()));
    }
    Ok(json(body))
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_made_together_do_not_expire_together() {
        let cache = ReadCache::new(Duration::from_secs(4), None);
        let lives: Vec<Duration> = (0..100).map(|_| cache.life()).collect();
        assert!(lives
            .iter()
            .all(|l| (Duration::from_secs(2)..=Duration::from_secs(4)).contains(l)));
        let early = lives
            .iter()
            .filter(|l| **l < Duration::from_secs(3))
            .count();
        assert!(
            (10..=90).contains(&early),
            "{early} of 100 in the first half"
        );
    }
}
