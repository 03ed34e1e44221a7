//! Who is logged in, remembered between requests so a request costs no authentication
//! query. An entry is trusted only while this worker listens on its tenant's channel
//! (`changes`), where every change that can end a login (logout, password change or reset,
//! deactivation, a role change, a revoked token) is announced; on any announcement, or when
//! listening stops, the whole cache is forgotten. Entries also expire after a short time, which bounds what a change
//! made outside the app (by hand in SQL) can miss.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::auth::Auth;
use crate::readcache::Gate;

/// How long an entry is trusted at most.
const TTL: Duration = Duration::from_secs(30);

/// A remembered login.
#[derive(Debug, Clone)]
pub struct Entry {
    pub auth: Auth,
    /// The session's CSRF secret (sessions only).
    pub csrf_secret: Option<Vec<u8>>,
    /// When the session (or token) stops being valid by itself.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    stored: Instant,
}

#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    gate: Gate,
}

impl AuthCache {
    pub fn get(&self, token_hash: &[u8]) -> Option<Entry> {
        if !self.gate.live() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(token_hash)?;
        let fresh = entry.stored.elapsed() < TTL && entry.expires_at > chrono::Utc::now();
        fresh.then(|| entry.clone())
    }

    /// The generation to pass to `put`, read before the database lookup.
    pub fn generation(&self) -> u64 {
        self.gate.generation()
    }

    pub fn put(
        &self,
        generation: u64,
        token_hash: Vec<u8>,
        auth: Auth,
        csrf_secret: Option<Vec<u8>>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) {
        if !self.gate.live() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if !self.gate.current(generation) {
                return;
            }
            // Bounded: a flood of distinct tokens cannot grow the worker without limit.
            if entries.len() >= 10_000 {
                entries.clear();
            }
            let now = Instant::now();
            entries.insert(
                token_hash,
                Entry {
                    auth,
                    csrf_secret,
                    expires_at,
                    stored: now,
                },
            );
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
