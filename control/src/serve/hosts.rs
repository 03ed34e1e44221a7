//! This host among the Apotheca hosts that share one database (`public.hosts`,
//! `docs/multi-host.md`): recorded when the daemon starts, a beat every `heartbeat_secs` with
//! the tenants it has ready workers for, the hosts whose beat stopped marked gone (by whichever
//! host notices first), and a clean stop recorded. `apotheca status --cluster` reads the table.
//! A failing database only delays the beats: the daemon serves on, and says so in its log.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::supervisor::Msg;
use apotheca_tenancy::db::Database;

/// Who this host is and how often it beats.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub every: Duration,
    pub gone_after: Duration,
}

/// Records this host as started (a row it had before, from an earlier run, is taken over).
/// A host of the same name that beat within `gone_after` is another daemon, or this one
/// restarted quickly: logged, since two live hosts of one name would overwrite each other's
/// beats.
pub async fn register(
    client: &tokio_postgres::Client,
    host: &Host,
) -> Result<(), tokio_postgres::Error> {
    let gone = host.gone_after.as_secs_f64();
    let clash = client
        .query_opt(
            "SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM public.hosts
             WHERE name = $1 AND stopped_at IS NULL AND gone_at IS NULL
               AND heartbeat_at > now() - make_interval(secs => $2)",
            &[&host.name, &gone],
        )
        .await?;
    if let Some(row) = clash {
        let ago: f64 = row.get(0);
        tracing::warn!(
            host = %host.name,
            beat_secs_ago = ago,
            "a host of this name beat moments ago: another daemon with the same [control.serve] host_name, or this one restarted"
        );
    }
    client
        .execute(
            "INSERT INTO public.hosts (name, address, version) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET address = $2, version = $3, started_at = now(),
                 heartbeat_at = now(), workers = '{}', stopped_at = NULL, gone_at = NULL",
            &[&host.name, &host.address, &env!("CARGO_PKG_VERSION")],
        )
        .await?;
    Ok(())
}

/// Beats until `stop`, then records the stop.
pub async fn beat(
    db: Database,
    host: Host,
    to: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(host.every) => {}
            _ = stop.changed() => break,
        }
        let Some(workers) = ready_workers(&to).await else {
            break;
        };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match db.connect().await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "host beat: cannot reach the database");
                    continue;
                }
            };
        }
        let Some(c) = &client else { continue };
        if let Err(e) = one_beat(c, &host, &workers).await {
            tracing::warn!(error = %e, "host beat failed");
        }
    }
    let stopped = async {
        let c = match client {
            Some(c) if !c.is_closed() => c,
            _ => db.connect().await.map_err(|e| e.to_string())?,
        };
        c.execute(
            "UPDATE public.hosts SET stopped_at = now(), workers = '{}' WHERE name = $1",
            &[&host.name],
        )
        .await
        .map_err(|e| e.to_string())
    };
    if let Err(e) = stopped.await {
        tracing::warn!(error = %e, "could not record this host's stop");
    }
}

/// Schema → ready workers, from the supervisor; None once it is gone.
async fn ready_workers(to: &mpsc::Sender<Msg>) -> Option<BTreeMap<String, usize>> {
    let (reply, answer) = oneshot::channel();
    to.send(Msg::Status { reply }).await.ok()?;
    let report = answer.await.ok()?;
    Some(
        report
            .tenants
            .iter()
            .map(|t| {
                let ready = t.workers.iter().filter(|w| w.state == "ready").count();
                (t.schema.clone(), ready)
            })
            .filter(|(_, ready)| *ready > 0)
            .collect(),
    )
}

async fn one_beat(
    c: &tokio_postgres::Client,
    host: &Host,
    workers: &BTreeMap<String, usize>,
) -> Result<(), tokio_postgres::Error> {
    let workers = serde_json::json!(workers);
    c.execute(
        "UPDATE public.hosts SET heartbeat_at = now(), workers = $2, gone_at = NULL WHERE name = $1",
        &[&host.name, &workers],
    )
    .await?;
    let gone = c
        .query(
            "UPDATE public.hosts SET gone_at = now(), workers = '{}'
             WHERE gone_at IS NULL AND stopped_at IS NULL AND name <> $1
               AND heartbeat_at < now() - make_interval(secs => $2)
             RETURNING name, extract(epoch FROM now() - heartbeat_at)::float8",
            &[&host.name, &host.gone_after.as_secs_f64()],
        )
        .await?;
    for row in gone {
        let (name, ago): (String, f64) = (row.get(0), row.get(1));
        tracing::warn!(host = %name, beat_secs_ago = ago, "a host stopped beating: marked gone");
    }
    Ok(())
}

/// A host as `apotheca status --cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostRow {
    pub name: String,
    pub address: String,
    pub version: String,
    /// live, stopped or gone
    pub state: &'static str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub beat_secs_ago: f64,
    /// Schema → ready workers at its last beat (none once it stopped or is gone).
    pub workers: BTreeMap<String, u64>,
}

/// Every host recorded, by name; one without a beat for `gone_after` counts as gone even
/// before another host marked it.
pub async fn list(
    client: &tokio_postgres::Client,
    gone_after: Duration,
) -> Result<Vec<HostRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT name, address, version, started_at, heartbeat_at,
                    extract(epoch FROM now() - heartbeat_at)::float8, workers,
                    stopped_at IS NOT NULL, gone_at IS NOT NULL
             FROM public.hosts ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let ago: f64 = r.get(5);
            let (stopped, gone): (bool, bool) = (r.get(7), r.get(8));
            let state = if stopped {
                "stopped"
            } else if gone || ago > gone_after.as_secs_f64() {
                "gone"
            } else {
                "live"
            };
            let workers: serde_json::Value = r.get(6);
            let workers = match state {
                "live" => serde_json::from_value(workers).unwrap_or_default(),
                _ => BTreeMap::new(),
            };
            HostRow {
                name: r.get(0),
                address: r.get(1),
                version: r.get(2),
                state,
                started_at: r.get(3),
                heartbeat_at: r.get(4),
                beat_secs_ago: ago,
                workers,
            }
        })
        .collect())
}
