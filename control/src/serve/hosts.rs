//! This host among the Apotheca hosts that share one database (`public.hosts`,
//! `docs/multi-host.md`): recorded when the daemon starts, a beat every `heartbeat_secs` with
//! the tenants it runs workers for, the hosts whose beat stopped marked gone (by whichever
//! host notices first), old rows of the cross-host attempt limits deleted about once a
//! minute, and a clean stop recorded. `apotheca status --cluster` reads the table.
//!
//! A write drops the read caches of the tenant's workers on this host only (a file beside
//! their sockets). So a tenant that has worker processes on another live host too keeps no
//! caches here while it does: the hosts say on [`CHANNEL`] when a tenant gets its first worker
//! process on them and loses its last, and each beat reads the same from the rows; the
//! supervisor is told ([`Msg::Shared`]) and tells the tenant's workers. A failing database
//! only delays the beats: the daemon serves on, and says so in its log.

use std::collections::{BTreeMap, BTreeSet};
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

/// Records this host as started (a row it had before, from an earlier run, is taken over; its
/// tenants stay until the first beat: workers a handed-over or crashed daemon left may still
/// serve them).
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
                 heartbeat_at = now(), stopped_at = NULL, gone_at = NULL",
            &[&host.name, &host.address, &env!("CARGO_PKG_VERSION")],
        )
        .await?;
    Ok(())
}

/// The channel on which hosts say when a tenant gets its first worker process on them
/// (`live <host> <schema>`) and loses its last (`idle <host> <schema>`).
pub const CHANNEL: &str = "apotheca_hosts";

/// What this host knows of the others, and what it told its supervisor.
#[derive(Default)]
struct Cluster {
    /// Tenants with worker processes here.
    live_here: BTreeSet<String>,
    /// Tenant → the other live hosts with worker processes of it.
    others: BTreeMap<String, BTreeSet<String>>,
    /// Tenant → the hosts the supervisor was last told of.
    told: BTreeMap<String, Vec<String>>,
}

impl Cluster {
    /// Tells the supervisor of every tenant whose other hosts changed; false once it is gone.
    async fn tell(&mut self, to: &mpsc::Sender<Msg>) -> bool {
        let schemas: BTreeSet<String> = self
            .others
            .keys()
            .chain(self.told.keys())
            .cloned()
            .collect();
        for schema in schemas {
            let hosts: Vec<String> = self
                .others
                .get(&schema)
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default();
            if self
                .told
                .get(&schema)
                .map_or(hosts.is_empty(), |t| *t == hosts)
            {
                continue;
            }
            let msg = Msg::Shared {
                schema: schema.clone(),
                hosts: hosts.clone(),
            };
            if to.send(msg).await.is_err() {
                return false;
            }
            if hosts.is_empty() {
                self.told.remove(&schema);
            } else {
                self.told.insert(schema, hosts);
            }
        }
        self.others.retain(|_, h| !h.is_empty());
        true
    }
}

/// The connection the host's rows are written on, with what it hears on [`CHANNEL`].
struct Link {
    client: tokio_postgres::Client,
    heard: mpsc::UnboundedReceiver<String>,
    driver: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn open(db: &Database) -> Result<Self, String> {
        let (client, mut conn) = db.connect_driven().await.map_err(|e| e.to_string())?;
        let (tx, heard) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            heard,
            driver,
        })
    }

    async fn say(&self, what: &str, host: &str, schema: &str) -> Result<(), tokio_postgres::Error> {
        let payload = format!("{what} {host} {schema}");
        self.client
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map(|_| ())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Beats until the supervisor is gone, then records the stop (unless the workers were handed
/// over to the next daemon: they still serve, and it takes the row over). Between beats: tells
/// the other hosts when a tenant gets its first worker process here or loses its last
/// (`local`, from the supervisor), hears theirs, and tells the supervisor which tenants other
/// live hosts run too ([`Msg::Shared`]), and once that is first known ([`Msg::ClusterKnown`]);
/// each beat also reads it afresh from the hosts' rows. Every round with the database is
/// bounded in time: a connection that hangs is dropped and opened again.
pub async fn run(
    db: Database,
    host: Host,
    to: mpsc::Sender<Msg>,
    mut local: mpsc::UnboundedReceiver<(String, bool)>,
    handed_over: watch::Receiver<bool>,
) {
    let bound = host.every.max(Duration::from_secs(2));
    let mut link: Option<Link> = None;
    let mut cluster = Cluster::default();
    let mut known = false;
    let mut pruned: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(host.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let heard = async {
            match link.as_mut() {
                Some(l) => l.heard.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                let Some(workers) = running(&to).await else {
                    break;
                };
                let beat = tokio::time::timeout(bound, async {
                    let l = connected(&mut link, &db).await?;
                    one_beat(&l.client, &host, &workers).await.map_err(|e| e.to_string())
                })
                .await;
                if let Some(others) = settle(beat, "host beat", &mut link) {
                    cluster.others = others;
                    if !cluster.tell(&to).await {
                        break;
                    }
                    if !known {
                        known = true;
                        if to.send(Msg::ClusterKnown).await.is_err() {
                            break;
                        }
                    }
                }
                // After the beat, on its own: a slow or failing delete never holds up a beat.
                if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned = Some(tokio::time::Instant::now());
                    let done = tokio::time::timeout(bound, async {
                        let l = connected(&mut link, &db).await?;
                        prune_attempts(&l.client).await.map_err(|e| e.to_string())
                    })
                    .await;
                    settle(done, "deleting old attempts", &mut link);
                }
            }
            event = local.recv() => {
                let Some((schema, live)) = event else { break };
                if live {
                    cluster.live_here.insert(schema.clone());
                } else {
                    cluster.live_here.remove(&schema);
                }
                let told = tokio::time::timeout(bound, async {
                    let l = connected(&mut link, &db).await?;
                    went(l, &host, &schema, live).await.map_err(|e| e.to_string())
                })
                .await;
                if let Some(holders) = settle(told, "telling the other hosts", &mut link) {
                    if live {
                        cluster.others.entry(schema).or_default().extend(holders);
                    }
                }
                if !cluster.tell(&to).await {
                    break;
                }
            }
            payload = heard => {
                match payload {
                    Some(p) => heard_from(&mut cluster, link.as_ref(), &host, &p, bound).await,
                    // The connection ended: opened again at the next beat.
                    None => link = None,
                }
                if !cluster.tell(&to).await {
                    break;
                }
            }
        }
    }
    if *handed_over.borrow() {
        return;
    }
    let stopped = tokio::time::timeout(bound, async {
        let l = connected(&mut link, &db).await?;
        for schema in &cluster.live_here {
            let _ = l.say("idle", &host.name, schema).await;
        }
        l.client
            .execute(
                "UPDATE public.hosts SET stopped_at = now(), workers = '{}' WHERE name = $1",
                &[&host.name],
            )
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    settle(stopped, "recording this host's stop", &mut link);
}

/// The link, opened (again) when there is none or it closed.
async fn connected<'a>(link: &'a mut Option<Link>, db: &Database) -> Result<&'a Link, String> {
    if link.as_ref().is_none_or(|l| l.client.is_closed()) {
        *link = Some(Link::open(db).await?);
    }
    link.as_ref().ok_or_else(|| "no connection".to_owned())
}

/// What a bounded database round of the loop gave: its value, else the failure logged and the
/// link dropped (opened again by the next round).
fn settle<T>(
    outcome: Result<Result<T, String>, tokio::time::error::Elapsed>,
    what: &str,
    link: &mut Option<Link>,
) -> Option<T> {
    match outcome {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{what} failed");
            *link = None;
            None
        }
        Err(_) => {
            tracing::warn!("{what}: the database did not answer in time");
            *link = None;
            None
        }
    }
}

/// Records that `schema` got its first worker process here (`live`) or lost its last, and says
/// so on [`CHANNEL`]; for a tenant gone live, the other live hosts that run it too.
async fn went(
    l: &Link,
    host: &Host,
    schema: &str,
    live: bool,
) -> Result<Vec<String>, tokio_postgres::Error> {
    l.client
        .execute(
            "UPDATE public.hosts SET workers = CASE WHEN $3 THEN workers || jsonb_build_object($2::text, 1)
                                                   ELSE workers - $2::text END
             WHERE name = $1",
            &[&host.name, &schema, &live],
        )
        .await?;
    l.say(if live { "live" } else { "idle" }, &host.name, schema)
        .await?;
    if !live {
        return Ok(Vec::new());
    }
    let rows = l
        .client
        .query(
            "SELECT name FROM public.hosts
             WHERE name <> $1 AND workers ? $2 AND stopped_at IS NULL AND gone_at IS NULL
               AND heartbeat_at > now() - make_interval(secs => $3)",
            &[&host.name, &schema, &host.gone_after.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Another host's `live` or `idle`. A host that newly serves a tenant this host serves too is
/// answered with this host's own `live`, so it learns at once as well.
async fn heard_from(
    cluster: &mut Cluster,
    link: Option<&Link>,
    host: &Host,
    payload: &str,
    bound: Duration,
) {
    let mut words = payload.split(' ');
    let (Some(what), Some(other), Some(schema), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return;
    };
    if other == host.name {
        return;
    }
    match what {
        "live" => {
            let news = cluster
                .others
                .entry(schema.to_owned())
                .or_default()
                .insert(other.to_owned());
            if news && cluster.live_here.contains(schema) {
                if let Some(l) = link {
                    let _ = tokio::time::timeout(bound, l.say("live", &host.name, schema)).await;
                }
            }
        }
        "idle" => {
            if let Some(h) = cluster.others.get_mut(schema) {
                h.remove(other);
            }
        }
        _ => {}
    }
}

/// How often a host deletes the attempt limits' old rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes sign-up attempts and operator login failures older than an hour, the longest window
/// that counts them (`migrations/shared/0004_attempts.sql`).
async fn prune_attempts(c: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(
        "DELETE FROM public.signup_attempts WHERE at < now() - interval '1 hour';
         DELETE FROM public.operator_login_failures WHERE at < now() - interval '1 hour';",
    )
    .await
}

/// Tenant → its worker processes here (starting, ready, retiring or draining: any of them may
/// write), from the supervisor; None once it is gone. The public site runs on every host and
/// is left out.
async fn running(to: &mpsc::Sender<Msg>) -> Option<BTreeMap<String, usize>> {
    let (reply, answer) = oneshot::channel();
    to.send(Msg::Status { reply }).await.ok()?;
    let report = answer.await.ok()?;
    Some(
        report
            .tenants
            .iter()
            .filter(|t| t.schema != "public" && !t.workers.is_empty())
            .map(|t| (t.schema.clone(), t.workers.len()))
            .collect(),
    )
}

/// Records the beat and marks the hosts whose beat stopped as gone; the tenants the other live
/// hosts have ready workers for, by tenant.
async fn one_beat(
    c: &tokio_postgres::Client,
    host: &Host,
    workers: &BTreeMap<String, usize>,
) -> Result<BTreeMap<String, BTreeSet<String>>, tokio_postgres::Error> {
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
    let rows = c
        .query(
            "SELECT name, w.schema FROM public.hosts, jsonb_object_keys(workers) AS w(schema)
             WHERE name <> $1 AND stopped_at IS NULL AND gone_at IS NULL
               AND heartbeat_at > now() - make_interval(secs => $2)",
            &[&host.name, &host.gone_after.as_secs_f64()],
        )
        .await?;
    let mut others: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        others.entry(r.get(1)).or_default().insert(r.get(0));
    }
    Ok(others)
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
