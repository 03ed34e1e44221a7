//! Who is logged in, remembered between requests so a request costs no authentication
//! query. An entry is trusted only while this worker listens on its tenant's channel
//! (`changes`), where every change that can end a login (logout, password change or reset,
//! deactivation, a role change, a revoked token) is announced; on any announcement, or when
//! listening stops, the whole cache is forgotten.
//!
//! An entry is fresh for a random half to all of `[worker] login_cache_secs`, so that logins
//! remembered at the same
//! moment (every tenant's, after a warm-up or a restart) are not all looked up again in the
//! same instant. For up to [`GRACE`] after that it is stale: it still lets a request in, and
//! one request at a time has it looked up again behind it (and forgotten at once if the login
//! is gone), so that time passing never holds requests up on the database — at 200 tenants a
//! tenant's requests that all missed together each queried, up to 700 ms on a saturated box.
//! What a change made outside the app (by hand in SQL) can miss is thus bounded by
//! `login_cache_secs` and one lookup; the expiry a session or token has by itself is always
//! checked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::auth::Auth;
use crate::readcache::Gate;

/// How long after its fresh time a stale entry may still be used while it is looked up again (longer
/// only while the lookups fail, e.g. the database is unreachable).
const GRACE: Duration = Duration::from_secs(10);

/// Most logins remembered at once (about 300 bytes each): a pharmacy has tens of users, and
/// a day's sessions and tokens are a few hundred.
const MAX_ENTRIES: usize = 2_000;

/// A remembered login.
#[derive(Debug, Clone)]
pub struct Entry {
    pub auth: Auth,
    /// The session's CSRF secret (sessions only).
    pub csrf_secret: Option<Vec<u8>>,
    /// When the session (or token) stops being valid by itself.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Until when it is fresh.
    fresh_until: Instant,
}

/// What the cache has for a login.
pub enum Cached {
    Fresh(Entry),
    /// Past its fresh time, within [`GRACE`]: usable while it is looked up again.
    Stale(Entry),
    Nothing,
}

pub struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    /// How long an entry is fresh at most; zero: nothing is remembered.
    ttl: Duration,
    gate: Gate,
    /// Logins being looked up again behind a stale entry.
    refreshing: Arc<Mutex<HashSet<Vec<u8>>>>,
}

/// The right to look a login up again; released when dropped.
pub struct Refreshing {
    set: Arc<Mutex<HashSet<Vec<u8>>>>,
    token_hash: Vec<u8>,
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.token_hash);
        }
    }
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
            gate: Gate::default(),
            refreshing: Arc::default(),
        }
    }

    pub fn get(&self, token_hash: &[u8]) -> Cached {
        if !self.gate.live() {
            return Cached::Nothing;
        }
        let Ok(entries) = self.entries.lock() else {
            return Cached::Nothing;
        };
        let Some(entry) = entries.get(token_hash) else {
            return Cached::Nothing;
        };
        if entry.expires_at <= chrono::Utc::now() {
            return Cached::Nothing;
        }
        let now = Instant::now();
        if now < entry.fresh_until {
            Cached::Fresh(entry.clone())
        } else if now < entry.fresh_until + GRACE {
            Cached::Stale(entry.clone())
        } else {
            Cached::Nothing
        }
    }

    /// The right to look `token_hash` up again behind its stale entry, unless a lookup is
    /// already under way.
    pub fn refresh(&self, token_hash: &[u8]) -> Option<Refreshing> {
        let mut set = self.refreshing.lock().ok()?;
        set.insert(token_hash.to_vec()).then(|| Refreshing {
            set: self.refreshing.clone(),
            token_hash: token_hash.to_vec(),
        })
    }

    /// Drops one login (it was found gone).
    pub fn forget(&self, token_hash: &[u8]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(token_hash);
        }
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
        if self.ttl.is_zero() || !self.gate.live() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if !self.gate.current(generation) {
                return;
            }
            // Bounded: a flood of distinct tokens cannot grow the worker without limit. Full,
            // it drops the logins past their grace first, and if that is not enough, all.
            if entries.len() >= MAX_ENTRIES {
                drop_past_grace(&mut entries);
                if entries.len() >= MAX_ENTRIES {
                    *entries = HashMap::new();
                }
            }
            entries.insert(
                token_hash,
                Entry {
                    auth,
                    csrf_secret,
                    expires_at,
                    fresh_until: Instant::now() + self.ttl.mul_f64(rand::random_range(0.5..=1.0)),
                },
            );
        }
    }

    /// Makes every remembered login due now, as its fresh time passing would: still letting
    /// a request in while it is looked up again behind it. For tests and tools that must not
    /// wait `login_cache_secs` to see it.
    pub fn make_due(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let now = Instant::now();
            for entry in entries.values_mut() {
                entry.fresh_until = entry.fresh_until.min(now);
            }
        }
    }

    /// Drops the logins past their grace (a quiet worker's memory goes back).
    pub fn sweep(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            drop_past_grace(&mut entries);
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

/// Forgets the logins past their grace; an emptied map is made anew (its table freed).
fn drop_past_grace(entries: &mut HashMap<Vec<u8>, Entry>) {
    let now = Instant::now();
    entries.retain(|_, e| now < e.fresh_until + GRACE);
    if entries.is_empty() {
        *entries = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apotheca_pharmacy::accounts::Role;

    fn auth() -> Auth {
        Auth {
            user_id: 1,
            username: "a".into(),
            role: Role::Staff,
            session_id: None,
            behind: None,
        }
    }

    #[test]
    fn one_lookup_at_a_time_behind_a_stale_login_and_none_when_off() {
        let cache = AuthCache::new(Duration::from_secs(30));
        cache.set_live(true);
        let far = chrono::Utc::now() + chrono::Duration::hours(1);
        cache.put(cache.generation(), b"t".to_vec(), auth(), None, far);
        assert!(matches!(cache.get(b"t"), Cached::Fresh(_)));
        let first = cache.refresh(b"t").expect("the first may look it up");
        assert!(
            cache.refresh(b"t").is_none(),
            "a second while the first runs"
        );
        drop(first);
        assert!(cache.refresh(b"t").is_some(), "again once it is done");
        cache.forget(b"t");
        assert!(matches!(cache.get(b"t"), Cached::Nothing));
        // A login past its own expiry is never used, fresh or not.
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        cache.put(cache.generation(), b"u".to_vec(), auth(), None, past);
        assert!(matches!(cache.get(b"u"), Cached::Nothing));

        let off = AuthCache::new(Duration::ZERO);
        off.set_live(true);
        off.put(off.generation(), b"t".to_vec(), auth(), None, far);
        assert!(matches!(off.get(b"t"), Cached::Nothing));
    }
}
