//! Answers of the hottest reads (the medicines list and page, the counter search), kept as
//! ready-made JSON and served without touching the database. Every write through the routes
//! that change stock, medicines, suppliers or settings is announced (`changes::data_changed`,
//! the sale queue), and every worker of the tenant then forgets all it kept; nothing is kept
//! while this worker is not listening on the tenant's channel. A read that raced a write is
//! not stored (generations).
//!
//! An answer is fresh for up to `[worker] read_cache_secs`. For as long again it is stale:
//! a request then gets it at once and one request per answer has it made again behind the
//! answer, so that time passing never holds a request up on the database (on a saturated box
//! at 200 tenants, each expiry held every request of its tenant for the one query, up to
//! 600 ms: most of the list's p99). A change made by hand in SQL therefore shows from the
//! second request after `read_cache_secs`; a write through the workers still drops
//! everything at once, never answered from the old copy. Past both, a request makes the
//! answer itself.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most answers kept at once, and most bytes (keys and answers): a day of distinct searches
/// cannot grow the worker. Past either, answers past their stale time are dropped, and if
/// that is not enough, all of them.
const MAX_ENTRIES: usize = 2_000;
const MAX_BYTES: usize = 4 << 20;

/// The kept answers, each with the end of its fresh time, and their size in bytes.
#[derive(Default)]
struct Entries {
    map: HashMap<String, (Bytes, Instant)>,
    bytes: usize,
}

impl Entries {
    fn clear(&mut self) {
        // A new map: `clear` would keep the table's capacity.
        self.map = HashMap::new();
        self.bytes = 0;
    }

    /// Drops what is past its stale time; an empty map is made anew (its table freed).
    fn sweep(&mut self, ttl: Duration) {
        let now = Instant::now();
        let mut freed = 0;
        self.map.retain(|k, (b, fresh)| {
            let keep = now < *fresh + ttl;
            if !keep {
                freed += k.len() + b.len();
            }
            keep
        });
        self.bytes -= freed;
        if self.map.is_empty() {
            self.clear();
        }
    }

    /// Keeps `body` for `key`, making room first.
    fn insert(&mut self, key: String, body: Bytes, fresh_until: Instant, ttl: Duration) {
        if let Some((old, _)) = self.map.remove(&key) {
            self.bytes -= key.len() + old.len();
        }
        let size = key.len() + body.len();
        if size > MAX_BYTES / 4 {
            return;
        }
        if self.map.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES {
            self.sweep(ttl);
            if self.map.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES {
                self.clear();
            }
        }
        self.bytes += size;
        self.map.insert(key, (body, fresh_until));
    }
}

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
    /// Each answer with the moment it stops being fresh.
    entries: Mutex<Entries>,
    gate: Gate,
    /// Zero: the cache is off.
    ttl: Duration,
    marker: Option<Marker>,
    /// The marker's stamp when the entries were last checked against it.
    seen: AtomicU64,
    /// Answers being made, by key.
    making: Arc<Mutex<HashMap<String, Made>>>,
    makers: AtomicU64,
}

/// What the cache has for a key.
enum Kept {
    Fresh(Bytes),
    /// Past its time, within as long again: answered, and made again behind it.
    Stale(Bytes),
    Nothing,
}

/// An answer being made: the generation it began in, its maker's id, where it will be.
type Made = (u64, u64, watch::Receiver<Option<Bytes>>);

/// What a request that missed does: wait for the answer another request is making, or make it.
enum Miss {
    Wait(watch::Receiver<Option<Bytes>>),
    Make(Making),
}

/// The right to make an answer; others wait for it until it is dropped.
struct Making {
    making: Arc<Mutex<HashMap<String, Made>>>,
    key: String,
    id: u64,
    done: watch::Sender<Option<Bytes>>,
}

impl Drop for Making {
    fn drop(&mut self) {
        if let Ok(mut making) = self.making.lock() {
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
            making: Arc::default(),
            makers: AtomicU64::new(0),
        }
    }

    /// After a miss in `generation`: the answer being made for `key` since then, or the right
    /// to make it.
    fn miss(&self, key: &str, generation: u64) -> Option<Miss> {
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
            making: self.making.clone(),
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
    fn written_elsewhere(&self) -> bool {
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

    fn get(&self, key: &str) -> Kept {
        if self.ttl.is_zero() || !self.gate.live() || self.written_elsewhere() {
            return Kept::Nothing;
        }
        let Ok(entries) = self.entries.lock() else {
            return Kept::Nothing;
        };
        match entries.map.get(key) {
            Some((body, fresh)) => {
                let now = Instant::now();
                if now < *fresh {
                    Kept::Fresh(body.clone())
                } else if now < *fresh + self.ttl {
                    Kept::Stale(body.clone())
                } else {
                    Kept::Nothing
                }
            }
            None => Kept::Nothing,
        }
    }

    fn put(&self, generation: u64, key: String, body: Bytes) {
        if self.ttl.is_zero() || !self.gate.live() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if !self.gate.current(generation) {
                return;
            }
            entries.insert(key, body, Instant::now() + self.life(), self.ttl);
        }
    }

    /// How long the next answer is kept: a random part of the TTL, from half to all of it.
    fn life(&self) -> Duration {
        self.ttl.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// Makes every kept answer due now, as its fresh time passing would: still given at once
    /// while the next one is made behind a request. For tests and tools that must not wait
    /// `read_cache_secs` to see it.
    pub fn make_due(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let now = Instant::now();
            for (_, fresh) in entries.map.values_mut() {
                *fresh = (*fresh).min(now);
            }
        }
    }

    /// Drops the answers past their stale time (a quiet worker's memory goes back).
    pub fn sweep(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.sweep(self.ttl);
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

/// The kept answer for `key`, or `make`'s, serialised once and kept; while one request makes
/// it, the others that miss it wait for that answer. A stale answer is given at once, and
/// `make` runs behind it (once per answer at a time).
pub async fn respond<T, F, Fut>(state: &AppState, key: &str, make: F) -> ApiResult<Response>
where
    T: Serialize,
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<T>> + Send + 'static,
{
    let cache = &state.read_cache;
    match cache.get(key) {
        Kept::Fresh(body) => return Ok(json(body)),
        Kept::Stale(body) => {
            let generation = cache.gate.generation();
            // Being made already (behind another stale answer, or by a request that found
            // nothing after a clear): that one will do.
            if let Some(Miss::Make(making)) = cache.miss(key, generation) {
                let state = state.clone();
                tokio::spawn(async move {
                    // Skipped (no connection idle for long) or failed (logged where it arose):
                    // the next stale request tries again.
                    let owned = state.clone();
                    state
                        .behind(async move {
                            if let Ok(body) = serialised(make(owned.clone())).await {
                                owned
                                    .read_cache
                                    .put(generation, making.key.clone(), body.clone());
                                making.done.send_replace(Some(body));
                            }
                        })
                        .await;
                });
            }
            return Ok(json(body));
        }
        Kept::Nothing => {}
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
    let body = serialised(make(state.clone())).await?;
    cache.put(generation, key.to_owned(), body.clone());
    if let Some(making) = making {
        making.done.send_replace(Some(body.clone()));
    }
    Ok(json(body))
}

/// `made`'s answer as JSON.
async fn serialised<T: Serialize>(made: impl Future<Output = ApiResult<T>>) -> ApiResult<Bytes> {
    let value = made.await?;
    Ok(Bytes::from(
        serde_json::to_vec(&value).map_err(|_| ApiError::internal())?,
    ))
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_fresh_then_stale_for_as_long_again_then_gone() {
        let cache = ReadCache::new(Duration::from_millis(100), None);
        cache.set_live(true);
        cache.put(
            cache.gate.generation(),
            "k".into(),
            Bytes::from_static(b"1"),
        );
        assert!(matches!(cache.get("k"), Kept::Fresh(_)));
        // Fresh for 50-100 ms, stale until 100 ms after that.
        std::thread::sleep(Duration::from_millis(110));
        assert!(matches!(cache.get("k"), Kept::Stale(_)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(cache.get("k"), Kept::Nothing));
        // A clear drops a stale answer too.
        cache.put(
            cache.gate.generation(),
            "k".into(),
            Bytes::from_static(b"2"),
        );
        std::thread::sleep(Duration::from_millis(110));
        cache.clear();
        assert!(matches!(cache.get("k"), Kept::Nothing));
    }

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

    /// The bytes of what `entries` keeps, counted anew.
    fn counted(entries: &Entries) -> usize {
        entries
            .map
            .iter()
            .map(|(k, (b, _))| k.len() + b.len())
            .sum()
    }

    #[test]
    fn what_is_kept_stays_within_its_bytes_and_entries() {
        let ttl = Duration::from_secs(60);
        let mut entries = Entries::default();
        let later = Instant::now() + ttl;
        // A day of distinct searches, each answer 10 KB.
        for i in 0..5_000 {
            entries.insert(format!("q{i}"), Bytes::from(vec![b'x'; 10_000]), later, ttl);
            assert!(entries.bytes <= MAX_BYTES && entries.map.len() <= MAX_ENTRIES);
        }
        assert_eq!(entries.bytes, counted(&entries));
        // Replacing an answer counts it once; one too big is not kept.
        entries.insert("q4999".into(), Bytes::from(vec![b'y'; 10]), later, ttl);
        assert_eq!(entries.bytes, counted(&entries));
        entries.insert("big".into(), Bytes::from(vec![b'z'; MAX_BYTES]), later, ttl);
        assert!(!entries.map.contains_key("big"));
        // Past the limit, answers past their stale time go first.
        let mut entries = Entries::default();
        let dead = Instant::now() - 2 * ttl;
        entries.insert(
            "old".into(),
            Bytes::from(vec![b'o'; MAX_BYTES / 6]),
            dead,
            ttl,
        );
        for i in 0..4 {
            entries.insert(
                format!("new{i}"),
                Bytes::from(vec![b'n'; MAX_BYTES / 6]),
                later,
                ttl,
            );
        }
        entries.insert(
            "last".into(),
            Bytes::from(vec![b'l'; MAX_BYTES / 6]),
            later,
            ttl,
        );
        assert!(!entries.map.contains_key("old"));
        assert_eq!(entries.map.len(), 5);
    }
}
