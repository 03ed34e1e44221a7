//! The tenants' change feed for every worker of this daemon, on one database connection.
//!
//! Writes announce on their tenant's channel (named after the schema) what they changed
//! (`worker::changes`), and a worker may keep caches only while it hears that channel. Each
//! worker used to LISTEN on a connection of its own: a PostgreSQL backend per live pharmacy
//! for that alone (3.1 MiB PSS each, measured by `bench/density.sh`: half of what a live
//! pharmacy cost the database), and every NOTIFY woke as many backends as there were workers.
//! Here one task LISTENs on the channel of every tenant that has had a worker, and the
//! supervisor relays what it hears over each worker's control channel: `listening` once the
//! LISTEN is in place, `changed <what>` per announcement, `deaf` to every worker when the
//! connection is lost (they forget their caches and keep none until `listening` again, after
//! the reconnect has listened anew).

use std::collections::BTreeSet;
use std::time::Duration;

use apotheca_common::names::quote_ident;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::supervisor::Msg;
use apotheca_tenancy::db::Database;

/// What the feed tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The schema's channel is listened to (again, after a reconnect).
    Listening(String),
    /// The connection is lost: no channel is heard until `Listening` comes again.
    Lost,
    /// An announcement on the schema's channel.
    Changed { schema: String, what: String },
}

/// The supervisor's side: asks for a schema's channel; `Msg::Feed` answers.
pub struct Feed {
    asks: mpsc::UnboundedSender<String>,
}

impl Feed {
    /// Starts the task; what it hears goes to `to` (the supervisor's inbox).
    pub fn start(db: Database, to: mpsc::Sender<Msg>) -> Self {
        let (asks, asked) = mpsc::unbounded_channel();
        tokio::spawn(run(db, asked, to));
        Self { asks }
    }

    /// Asks to hear `schema`'s channel (answered with `Listening` once it is, also when it was
    /// already); false when the task is gone.
    pub fn listen(&self, schema: &str) -> bool {
        self.asks.send(schema.to_owned()).is_ok()
    }
}

/// LISTEN statements for `schemas`, in batches (one round trip per thousand).
async fn listen_all<'a>(
    client: &tokio_postgres::Client,
    schemas: impl IntoIterator<Item = &'a String>,
) -> Result<(), tokio_postgres::Error> {
    let schemas: Vec<_> = schemas.into_iter().collect();
    for chunk in schemas.chunks(1000) {
        let sql: String = chunk
            .iter()
            .map(|s| format!("LISTEN {};", quote_ident(s)))
            .collect();
        client.batch_execute(&sql).await?;
    }
    Ok(())
}

async fn run(db: Database, mut asked: mpsc::UnboundedReceiver<String>, to: mpsc::Sender<Msg>) {
    let mut schemas = BTreeSet::new();
    let mut backoff = Duration::from_millis(100);
    let tell = |event| to.send(Msg::Feed(event));
    loop {
        match db.connect_driven().await {
            Ok((client, mut conn)) => {
                let (heard, mut notes) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = message {
                            let note = (n.channel().to_owned(), n.payload().to_owned());
                            if heard.send(note).is_err() {
                                return;
                            }
                        }
                    }
                });
                let lost: Result<bool, tokio_postgres::Error> = async {
                    listen_all(&client, &schemas).await?;
                    backoff = Duration::from_millis(100);
                    for schema in &schemas {
                        if tell(FeedEvent::Listening(schema.clone())).await.is_err() {
                            return Ok(true);
                        }
                    }
                    loop {
                        tokio::select! {
                            note = notes.recv() => match note {
                                Some((schema, what)) => {
                                    if tell(FeedEvent::Changed { schema, what }).await.is_err() {
                                        return Ok(true);
                                    }
                                }
                                // The driver ended: the connection is gone.
                                None => return Ok(false),
                            },
                            ask = asked.recv() => match ask {
                                Some(schema) => {
                                    if schemas.insert(schema.clone()) {
                                        listen_all(&client, [&schema]).await?;
                                    }
                                    if tell(FeedEvent::Listening(schema)).await.is_err() {
                                        return Ok(true);
                                    }
                                }
                                None => return Ok(true),
                            },
                        }
                    }
                }
                .await;
                driver.abort();
                match lost {
                    // The supervisor is gone: nobody to tell.
                    Ok(true) => return,
                    Ok(false) => tracing::warn!("lost the tenants' change feed; reconnecting"),
                    Err(e) => {
                        tracing::warn!(error = %e, "the tenants' change feed failed; reconnecting")
                    }
                }
                if tell(FeedEvent::Lost).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the tenants' change feed"),
        }
        // Asks that come meanwhile are listened to once connected again.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                ask = asked.recv() => match ask {
                    Some(schema) => {
                        schemas.insert(schema);
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
