//! The tenant's change channel, named after the schema, on which writes announce what they
//! changed (`auth`: logins; `data`: stock and medicines). Under control, control listens on
//! every live tenant's channel on one connection and relays what it hears over each worker's
//! control channel ([`heard`]); a worker on its own listens itself ([`listen`]).
//! A worker with the tenant's change marker (`readcache::Marker`) announces its own data
//! writes there instead, and hears on the channel only what others (the CLI) announce.
//! Workers keep caches only while they listen; an announcement, or a lost connection, makes
//! every worker of the tenant forget what it kept. Any role may NOTIFY any channel, so a
//! stray announcement can only cost cache misses, never serve wrong data.

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, GenericClient, NoTls};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Logins changed: sessions ended, users or tokens changed.
pub const AUTH: &str = "auth";
/// Stock or medicines changed.
pub const DATA: &str = "data";

/// Announces `what` on the tenant's channel, when the caller's transaction commits.
pub async fn announce(
    db: &impl GenericClient,
    schema: &str,
    what: &str,
) -> Result<(), tokio_postgres::Error> {
    db.execute("SELECT pg_notify($1, $2)", &[&schema, &what])
        .await?;
    Ok(())
}

/// Route layer for the routes whose writes change what the read cache keeps: after each
/// successful write (its transaction has committed by then), forgets this worker's kept reads
/// and tells the tenant's other workers to do the same. A failed announcement is logged: the
/// write stands, and the other workers' entries expire on their own.
pub async fn announce_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let wrote = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(req).await;
    if wrote && response.status().is_success() {
        data_changed(&state).await;
    }
    response
}

/// After a committed write of stock, medicines, suppliers or settings: forgets this
/// worker's kept reads and tells the tenant's other workers to do the same, by the change
/// marker, else on the channel (the HTML pages call it themselves: their successful writes
/// answer with a redirect).
pub async fn data_changed(state: &AppState) {
    if state.read_cache.changed() {
        return;
    }
    let announced = async {
        announce(&**state.db().await?, &state.schema, DATA).await?;
        Ok::<_, crate::http::error::ApiError>(())
    };
    if let Err(e) = announced.await {
        tracing::warn!(error = %e.message, "could not announce a change; caches expire on their own");
    }
}

/// A notice control relayed from the tenant's channel (the worker under control does not
/// listen itself: one connection in control serves every worker).
pub fn heard(state: &AppState, notice: apotheca_protocol::channel::Notice) {
    use apotheca_protocol::channel::Notice;
    match notice {
        Notice::Listening => set_live(state, true),
        Notice::Deaf => set_live(state, false),
        Notice::Changed(what) => forget(state, &what),
    }
}

/// Forgets what an announcement concerns.
fn forget(state: &AppState, what: &str) {
    match what {
        AUTH => state.auth_cache.clear(),
        DATA => state.read_cache.clear(),
        _ => {
            state.auth_cache.clear();
            state.read_cache.clear();
        }
    }
}

fn set_live(state: &AppState, live: bool) {
    state.auth_cache.set_live(live);
    state.read_cache.set_live(live);
}

/// Listens until `stop`, reconnecting with backoff.
pub async fn listen(state: AppState, url: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut conn)) => {
                let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                let sql = format!(
                    "LISTEN {}",
                    apotheca_common::names::quote_ident(&state.schema)
                );
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
                    set_live(&state, true);
                    backoff = Duration::from_millis(100);
                    loop {
                        tokio::select! {
                            msg = messages.next() => match msg {
                                Some(Ok(AsyncMessage::Notification(n))) => forget(&state, n.payload()),
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => break,
                            },
                            _ = stop.changed() => {
                                set_live(&state, false);
                                return;
                            }
                        }
                    }
                }
                set_live(&state, false);
                tracing::warn!(
                    "lost the change listener; reading from the database until it is back"
                );
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
