//! What the daemon reads from the database: tenants with their status, worker policy and the
//! role URL their workers log in with; the public site's role; and the follower, which
//! LISTENs on `apotheca_tenants` and re-reads a tenant whenever a notification names it (a
//! payload is a hint, never the truth), re-reading everything after each (re)connection.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, GenericClient};

use super::supervisor::Msg;
use super::tenant::Status;
use crate::error::Result;
use apotheca_protocol::api::{Policy, StoredPolicy};
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::TenantRoleSettings;
use apotheca_tenancy::roles::{self, Secret};
use apotheca_tenancy::tenants::{self, Event, NOTIFY_CHANNEL};

/// A tenant as the daemon needs it.
#[derive(Clone)]
pub struct TenantRow {
    pub schema: String,
    pub status: Status,
    pub policy: Policy,
    /// Holds the role's password.
    pub db_url: String,
}

/// A tenant's policy as the database keeps it, in the API's unsigned numbers (the table's
/// CHECKs keep every one at 0 or more).
pub fn stored(p: &tenants::Policy) -> StoredPolicy {
    let n = |v: i32| u32::try_from(v).unwrap_or(0);
    StoredPolicy {
        min_workers: n(p.min_workers),
        max_workers: n(p.max_workers),
        idle_timeout_secs: u64::from(n(p.idle_timeout_secs)),
        max_inflight_per_worker: n(p.max_inflight_per_worker),
        queue_length: n(p.queue_length),
    }
}

/// Reads tenants and makes their role URLs.
#[derive(Clone)]
pub struct Catalog {
    pub db: Database,
    secret: Secret,
}

impl Catalog {
    pub fn new(db: Database, secret: Secret) -> Self {
        Self { db, secret }
    }

    fn row(&self, t: tenants::Runnable) -> TenantRow {
        let p = stored(&t.policy);
        TenantRow {
            db_url: self
                .db
                .role_url(&t.db_role, &roles::role_password(&self.secret, &t.db_role)),
            schema: t.schema,
            status: if t.active {
                Status::Active
            } else {
                Status::Suspended
            },
            // At least one worker, a second of idleness and a request in flight, whatever
            // the row says.
            policy: Policy {
                min_workers: p.min_workers,
                max_workers: p.max_workers.max(1),
                idle_timeout_secs: p.idle_timeout_secs.max(1),
                max_in_flight: p.max_inflight_per_worker.max(1),
            },
        }
    }

    pub async fn load_all(&self, client: &impl GenericClient) -> Result<Vec<TenantRow>> {
        let all = tenants::runnable_all(client).await?;
        Ok(all.into_iter().map(|t| self.row(t)).collect())
    }

    pub async fn load_one(
        &self,
        client: &impl GenericClient,
        schema: &str,
    ) -> Result<Option<TenantRow>> {
        let one = tenants::runnable(client, schema).await?;
        Ok(one.map(|t| self.row(t)))
    }

    /// Creates or refreshes the public site's role (one transaction, under the lock that
    /// also guards the tenant group, so two daemons starting at once do not race) and
    /// returns the URL its workers log in with.
    pub async fn public_role_url(&self, limits: &TenantRoleSettings) -> Result<String> {
        let mut client = self.db.connect().await?;
        let (role, password) =
            roles::ensure_public_role(&mut client, self.db.name(), &self.secret, limits).await?;
        Ok(self.db.role_url(&role, &password))
    }
}

/// Follows tenant changes until `stop`: LISTEN, then a full read (so nothing notified in
/// between is missed), then one re-read per notification; reconnects with backoff.
pub async fn follow(catalog: Catalog, to: mpsc::Sender<Msg>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            r = follow_once(&catalog, &to) => r,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok(()) => return, // the supervisor is gone
            Err(e) => {
                tracing::warn!(error = %e, "tenant follower: lost the database; reconnecting")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn follow_once(catalog: &Catalog, to: &mpsc::Sender<Msg>) -> Result<()> {
    let (client, mut connection) = catalog.db.connect_driven().await?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if notes_tx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await?;
        let rows = catalog.load_all(&client).await?;
        tracing::debug!(tenants = rows.len(), "tenant follower: in sync");
        if to.send(Msg::Sync { rows }).await.is_err() {
            return Ok(());
        }
        while let Some(payload) = notes.recv().await {
            let msg = match serde_json::from_str::<Event>(&payload) {
                Ok(event) => Msg::Tenant {
                    row: catalog.load_one(&client, &event.schema).await?,
                    schema: event.schema,
                },
                // Not one of ours: read everything again rather than guess.
                Err(_) => Msg::Sync {
                    rows: catalog.load_all(&client).await?,
                },
            };
            if to.send(msg).await.is_err() {
                return Ok(());
            }
        }
        Err(crate::error::ControlError::Other(
            "the LISTEN connection closed".into(),
        ))
    }
    .await;
    driver.abort();
    result
}
