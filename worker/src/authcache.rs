//! Who is logged in, remembered between requests so a request costs no authentication
//! query. An entry is trusted only while this worker listens on its tenant's channel, where
//! every change that can end a login (logout, password change or reset, deactivation, a role
//! change, a revoked token) is announced; on any announcement, or when listening stops, the
//! whole cache is forgotten. Entries also expire after a short time, which bounds what a change
//! made outside the app (by hand in SQL) can miss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, GenericClient, NoTls};

use crate::http::auth::Auth;

/// How long an entry is trusted at most.
const TTL: Duration = Duration::from_secs(30);
/// The payload announcing a change to logins.
pub const AUTH_CHANGED: &str = "auth";

/// A remembered login.
#[derive(Debug, Clone)]
pub struct Entry {
    pub auth: Auth,
    /// The session's CSRF secret (sessions only).
    pub csrf_secret: Option<Vec<u8>>,
    /// When the session (or token) stops being valid by itself.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// When `last_seen_at` / `last_used_at` was last written for it.
    pub touched: Instant,
    stored: Instant,
}

#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    /// Whether the change listener is connected: without it, nothing is cached.
    live: AtomicBool,
}

impl AuthCache {
    pub fn get(&self, token_hash: &[u8]) -> Option<Entry> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(token_hash)?;
        let fresh = entry.stored.elapsed() < TTL && entry.expires_at > chrono::Utc::now();
        fresh.then(|| entry.clone())
    }

    pub fn put(
        &self,
        token_hash: Vec<u8>,
        auth: Auth,
        csrf_secret: Option<Vec<u8>>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
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
                    touched: now,
                    stored: now,
                },
            );
        }
    }

    /// Records that the entry's last-seen time was written now, with its new expiry.
    pub fn touched(&self, token_hash: &[u8], expires_at: chrono::DateTime<chrono::Utc>) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some(e) = entries.get_mut(token_hash) {
                e.touched = Instant::now();
                e.expires_at = expires_at;
            }
        }
    }

    pub fn forget(&self, token_hash: &[u8]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(token_hash);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    fn set_live(&self, live: bool) {
        self.clear();
        self.live.store(live, Ordering::Release);
    }

    /// Listens on the tenant's channel until `stop`, reconnecting with backoff; clears the
    /// cache on every announcement and whenever the connection is lost.
    pub async fn listen(
        &self,
        url: &str,
        schema: &str,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match tokio_postgres::connect(url, NoTls).await {
                Ok((client, mut conn)) => {
                    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    let sql = format!("LISTEN {}", apotheca_common::names::quote_ident(schema));
                    let listen = client.batch_execute(&sql);
                    tokio::pin!(listen);
                    // The connection must be driven while LISTEN runs.
                    let subscribed = loop {
                        tokio::select! {
                            r = &mut listen => break r.is_ok(),
                            m = messages.next() => if !matches!(m, Some(Ok(_))) { break false },
                        }
                    };
                    if subscribed {
                        self.set_live(true);
                        backoff = Duration::from_millis(100);
                        loop {
                            tokio::select! {
                                msg = messages.next() => match msg {
                                    Some(Ok(AsyncMessage::Notification(_))) => self.clear(),
                                    Some(Ok(_)) => {}
                                    Some(Err(_)) | None => break,
                                },
                                _ = stop.changed() => {
                                    self.set_live(false);
                                    return;
                                }
                            }
                        }
                    }
                    self.set_live(false);
                    tracing::warn!("lost the change listener; logins are checked in the database until it is back");
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the change listener"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Announces, when the caller's transaction commits, that logins of this tenant changed.
pub async fn announce(db: &impl GenericClient, schema: &str) -> Result<(), tokio_postgres::Error> {
    db.execute("SELECT pg_notify($1, $2)", &[&schema, &AUTH_CHANGED])
        .await?;
    Ok(())
}
