//! The supervisor: one task that owns every tenant's state and every worker process, fed by
//! one queue (worker channels, API requests, catalog changes, shutdown) plus SIGCHLD and its
//! own timers. Owning everything in one place means no locks and no races between, say, a
//! wake and a reap: each message is handled to the end, then the touched tenants are
//! reconciled (spawn, drain, kill) and the endpoints the proxy sees are republished. Before
//! a tenant's workers are spawned its role's settings are re-asserted ([`RoleChecks`]): the
//! spawn waits for that answer (a message like any other), then goes ahead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use apotheca_protocol::channel::{ControlMessage, Notice, WorkerMessage};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::catalog::TenantRow;
use super::feed::{Feed, FeedEvent};
use super::link::{Link, LinkEvent};
use super::process::{self, WorkerCommand};
use super::readiness::{Publisher, Readiness};
use super::role_check::RoleChecks;
use super::status::{RestartReply, WakeError};
use super::tenant::{Action, Status, Tenant, WakeReply};
use super::worker::{Worker, WorkerId};
use super::{scaling, Tuning};
use apotheca_protocol::api::{StatusReport, Totals};

/// The most messages handled at once before the supervisor looks at every tenant again.
const BATCH: usize = 256;

/// Every ready endpoint by schema: what the proxy routes to.
pub type Endpoints = Arc<BTreeMap<String, Vec<String>>>;

/// What the supervisor is told.
pub enum Msg {
    Worker {
        id: WorkerId,
        event: LinkEvent,
    },
    Wake {
        schema: String,
        reply: oneshot::Sender<WakeReply>,
    },
    Restart {
        schema: String,
        reply: oneshot::Sender<RestartReply>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    /// One tenant as the database has it now (`None`: gone).
    Tenant {
        schema: String,
        row: Option<TenantRow>,
    },
    /// Every tenant: after (re)connecting to the database.
    Sync {
        rows: Vec<TenantRow>,
    },
    /// Drain everything and stop; `force`: kill what is left now.
    Shutdown {
        force: bool,
    },
    /// Stop at once, leaving every worker to the next daemon: their channels close, so each
    /// serves on until idle, then drains and exits by itself (the worker's `channel`).
    Handover,
    /// The tenant's role settings were checked (and put back if changed): its workers may
    /// start.
    RolesChecked {
        schema: String,
    },
    /// The tenants' change feed ([`Feed`]): relayed to the workers concerned.
    Feed(FeedEvent),
    /// The other live hosts that have worker processes of `schema` now (none: it is this
    /// host's alone), from [`super::hosts`].
    Shared {
        schema: String,
        hosts: Vec<String>,
    },
    /// [`super::hosts`] read the other hosts' rows for the first time (the `Shared` messages
    /// that follow from them came first).
    ClusterKnown,
}

/// Where a tenant's role check stands, for its next spawns.
enum RoleCheck {
    Asked,
    /// Done then: spawns soon after need no new check.
    Done(Instant),
}

/// How long after a role check spawns go ahead without another (those of one reconcile, or
/// of a scale-up right after).
const ROLE_CHECK_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Supervisor {
    tuning: Tuning,
    command: WorkerCommand,
    worker_dir: PathBuf,
    socket: PathBuf,
    tenants: BTreeMap<String, Tenant>,
    owners: HashMap<WorkerId, String>,
    links: HashMap<WorkerId, Link>,
    next_id: WorkerId,
    events: mpsc::Sender<Msg>,
    endpoints: watch::Sender<Endpoints>,
    started: Instant,
    stopping: Option<Instant>,
    /// The shutdown deadline passed and whatever was left got SIGKILL.
    killed_all: bool,
    /// The catalog's first full read arrived.
    synced: bool,
    readiness: Publisher,
    /// Every worker was left to the next daemon.
    handed_over: bool,
    /// `None`: workers start without a role check (no database to check with).
    role_checks: Option<RoleChecks>,
    role_checked: HashMap<String, RoleCheck>,
    /// `None`: no feed (no database); workers then keep no caches.
    feed: Option<Feed>,
    /// The schemas whose channel the feed listens to now.
    heard: HashSet<String>,
    /// Where this host tells the others which tenants it runs workers for
    /// ([`super::hosts`]); none: one host alone.
    cluster: Option<mpsc::UnboundedSender<(String, bool)>>,
    /// Tenants with worker processes on other live hosts too, and those hosts: their workers
    /// here keep no caches, since a write there is not announced here.
    shared: HashMap<String, Vec<String>>,
    /// Tenants with worker processes here, as the other hosts were told.
    running_here: HashSet<String>,
    /// With other hosts: whether what they serve is known yet (their rows read once). Until
    /// then no worker keeps caches.
    cluster_known: bool,
}

impl Supervisor {
    /// `public` is the public site, supervised like a tenant.
    pub fn new(
        tuning: Tuning,
        command: WorkerCommand,
        worker_dir: PathBuf,
        socket: PathBuf,
        public: Tenant,
        events: mpsc::Sender<Msg>,
        endpoints: watch::Sender<Endpoints>,
    ) -> Self {
        let mut tenants = BTreeMap::new();
        tenants.insert(public.schema.clone(), public);
        Self {
            tuning,
            command,
            worker_dir,
            socket,
            tenants,
            owners: HashMap::new(),
            links: HashMap::new(),
            next_id: 1,
            events,
            endpoints,
            started: Instant::now(),
            stopping: None,
            killed_all: false,
            synced: false,
            readiness: Publisher::default(),
            handed_over: false,
            role_checks: None,
            role_checked: HashMap::new(),
            feed: None,
            heard: HashSet::new(),
            cluster: None,
            shared: HashMap::new(),
            running_here: HashSet::new(),
            cluster_known: true,
        }
    }

    /// Tells the other hosts, through `cluster`, when a tenant gets its first worker process
    /// here and when it loses its last ([`super::hosts`]).
    pub fn with_cluster(mut self, cluster: mpsc::UnboundedSender<(String, bool)>) -> Self {
        self.cluster = Some(cluster);
        self.cluster_known = false;
        self
    }

    /// Whether `schema`'s workers may keep caches: its changes are heard, and no other host
    /// serves it (as far as is known).
    fn may_cache(&self, schema: &str) -> bool {
        self.heard.contains(schema)
            && (schema == "public" || (self.cluster_known && !self.shared.contains_key(schema)))
    }

    /// Re-asserts each tenant's role settings before its workers start (see [`RoleChecks`]).
    pub fn with_role_checks(mut self, checks: RoleChecks) -> Self {
        self.role_checks = Some(checks);
        self
    }

    /// Relays the tenants' change feed to their workers (see [`Feed`]).
    pub fn with_feed(mut self, feed: Feed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Sends `notice` to every worker of `schema`.
    fn relay(&self, schema: &str, notice: Notice) {
        let Some(t) = self.tenants.get(schema) else {
            return;
        };
        for w in &t.workers {
            if let Some(link) = self.links.get(&w.id) {
                link.send(ControlMessage::Feed(notice.clone()));
            }
        }
    }

    /// Whether the daemon is ready to serve, published as it changes (see [`Readiness`]).
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.readiness.subscribe()
    }

    /// Runs until a shutdown has drained (or killed) every worker.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Msg>) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let mut tick = tokio::time::interval(self.tuning.report_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.reconcile_all();
        let mut inbox_open = true;
        loop {
            if self.handed_over {
                return Ok(());
            }
            if let Some(since) = self.stopping {
                if self.owners.is_empty() {
                    tracing::info!(
                        took_ms = since.elapsed().as_millis() as u64,
                        "every worker stopped"
                    );
                    return Ok(());
                }
            }
            let deadline = self.next_deadline();
            let mut ticked = false;
            tokio::select! {
                msg = inbox.recv(), if inbox_open => match msg {
                    Some(msg) => {
                        self.handle(msg);
                        // What else is waiting, before the next deadline and readiness are
                        // worked out again: both look at every tenant, and a thousand workers
                        // report every second.
                        for _ in 1..BATCH {
                            match inbox.try_recv() {
                                Ok(msg) => self.handle(msg),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every sender is gone: nobody can ask for anything any more.
                    None => {
                        inbox_open = false;
                        self.handle(Msg::Shutdown { force: false });
                    }
                },
                _ = sigchld.recv() => self.reap_all(),
                _ = tick.tick() => {
                    ticked = true;
                    // Signals can coalesce; a sweep now and then reaps whatever was missed.
                    self.reap_all();
                    let now = Instant::now();
                    for t in self.tenants.values_mut() {
                        scaling::evaluate(t, now, &self.tuning);
                    }
                    self.reconcile_all();
                }
                () = sleep_until(deadline) => {
                    let overdue = self
                        .stopping
                        .is_some_and(|since| since.elapsed() >= self.tuning.shutdown_timeout);
                    if overdue && !self.killed_all {
                        self.kill_everything("the shutdown deadline passed");
                    }
                    self.reconcile_all();
                }
            }
            self.readiness
                .update(&self.tenants, self.synced, self.stopping.is_some(), ticked);
        }
    }

    fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Worker { id, event } => {
                let Some(schema) = self.owners.get(&id).cloned() else {
                    return;
                };
                let Some(t) = self.tenants.get_mut(&schema) else {
                    return;
                };
                match event {
                    LinkEvent::Message(WorkerMessage::Ready { address }) => {
                        if let Some(w) = t.worker_mut(id) {
                            if address != w.address() {
                                tracing::warn!(%schema, pid = w.pid, %address, "worker announced an unexpected address");
                            }
                            tracing::info!(%schema, pid = w.pid, ms = w.started.elapsed().as_millis() as u64, "worker ready");
                        }
                        t.on_ready(id, now);
                    }
                    LinkEvent::Message(WorkerMessage::Load(load)) => {
                        t.on_load(id, load, now, &self.tuning)
                    }
                    LinkEvent::Closed(error) => {
                        if let Some(e) = error {
                            tracing::warn!(%schema, error = %e, "unreadable worker channel");
                        }
                        t.on_channel_closed(id, now, &self.tuning);
                    }
                }
                self.reconcile(&schema);
            }
            Msg::Wake { schema, reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(WakeError::ShuttingDown));
                    return;
                }
                match self.tenants.get_mut(&schema) {
                    Some(t) => {
                        t.wake(now, reply);
                        self.reconcile(&schema);
                    }
                    None => drop(reply.send(Err(WakeError::Unknown))),
                }
            }
            Msg::Restart { schema, reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(WakeError::ShuttingDown));
                    return;
                }
                match self.tenants.get_mut(&schema) {
                    Some(t) if t.status != Status::Deleted => {
                        tracing::info!(%schema, "rolling restart");
                        t.restart(reply);
                        self.reconcile(&schema);
                    }
                    _ => drop(reply.send(Err(WakeError::Unknown))),
                }
            }
            Msg::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Msg::RolesChecked { schema } => {
                self.role_checked
                    .insert(schema.clone(), RoleCheck::Done(now));
                self.reconcile(&schema);
            }
            Msg::Feed(FeedEvent::Listening(schema)) => {
                self.heard.insert(schema.clone());
                if self.may_cache(&schema) {
                    self.relay(&schema, Notice::Listening);
                }
            }
            Msg::ClusterKnown => {
                if !self.cluster_known {
                    self.cluster_known = true;
                    let open: Vec<String> = self
                        .heard
                        .iter()
                        .filter(|s| self.may_cache(s))
                        .cloned()
                        .collect();
                    for schema in open {
                        self.relay(&schema, Notice::Listening);
                    }
                }
            }
            Msg::Shared { schema, hosts } => {
                // Said only of tenants with workers here: the others' tenants are known so
                // that a worker started here for one of them keeps no caches from the start.
                let here = self.running_here.contains(&schema);
                if hosts.is_empty() {
                    if self.shared.remove(&schema).is_some() {
                        if here {
                            tracing::info!(%schema, "no other host serves this tenant: caches back on");
                        }
                        if self.may_cache(&schema) {
                            self.relay(&schema, Notice::Listening);
                        }
                    }
                } else {
                    if !self.shared.contains_key(&schema) {
                        if here {
                            tracing::info!(%schema, ?hosts, "another host serves this tenant too: its workers here keep no caches");
                        }
                        self.relay(&schema, Notice::Deaf);
                    }
                    self.shared.insert(schema, hosts);
                }
            }
            Msg::Feed(FeedEvent::Changed { schema, what }) => {
                self.relay(&schema, Notice::Changed(what));
            }
            Msg::Feed(FeedEvent::Lost) => {
                for schema in std::mem::take(&mut self.heard) {
                    self.relay(&schema, Notice::Deaf);
                }
            }
            Msg::Tenant { schema, row } => {
                self.apply_row(&schema, row, now);
                self.reconcile(&schema);
            }
            Msg::Sync { rows } => {
                self.synced = true;
                let mut seen: HashSet<String> = HashSet::with_capacity(rows.len());
                for row in rows {
                    let schema = row.schema.clone();
                    self.apply_row(&schema, Some(row), now);
                    seen.insert(schema);
                }
                let gone: Vec<String> = self
                    .tenants
                    .keys()
                    .filter(|s| s.as_str() != "public" && !seen.contains(*s))
                    .cloned()
                    .collect();
                for schema in gone {
                    self.apply_row(&schema, None, now);
                }
                self.reconcile_all();
            }
            Msg::Handover => {
                tracing::info!(
                    workers = self.owners.len(),
                    "handing over: closing every worker's channel, they serve on until idle"
                );
                for t in self.tenants.values_mut() {
                    t.fail_wakes(&WakeError::ShuttingDown);
                }
                // Dropping a link closes its channel; the workers are not ours to reap now.
                self.links.clear();
                self.owners.clear();
                self.handed_over = true;
            }
            Msg::Shutdown { force } => {
                if self.stopping.is_none() {
                    tracing::info!(
                        workers = self.owners.len(),
                        "stopping: draining every worker"
                    );
                    self.stopping = Some(now);
                    for t in self.tenants.values_mut() {
                        t.fail_wakes(&WakeError::ShuttingDown);
                    }
                }
                if force && !self.killed_all {
                    self.kill_everything("a second stop signal");
                }
                self.reconcile_all();
            }
        }
    }

    fn apply_row(&mut self, schema: &str, row: Option<TenantRow>, now: Instant) {
        match (row, self.tenants.get_mut(schema)) {
            (Some(row), Some(t)) => t.update(row.status, row.policy, row.db_url),
            (Some(row), None) => {
                tracing::info!(schema, "new tenant");
                let t = Tenant::new(schema, row.status, row.policy, row.db_url, now);
                self.tenants.insert(schema.to_owned(), t);
            }
            (None, Some(t)) if t.status != Status::Deleted => {
                tracing::info!(schema, "tenant deleted: draining its workers");
                let (policy, url) = (t.policy.clone(), t.db_url.clone());
                t.update(Status::Deleted, policy, url);
                t.restart_waiters
                    .drain(..)
                    .for_each(|(_, r)| drop(r.send(Err(WakeError::Unknown))));
            }
            (None, _) => {}
        }
    }

    fn reconcile_all(&mut self) {
        let schemas: Vec<String> = self.tenants.keys().cloned().collect();
        for schema in schemas {
            self.reconcile(&schema);
        }
    }

    /// Carries out what the tenant needs, then forgets a deleted tenant with no workers left
    /// and republishes its endpoints if they changed.
    fn reconcile(&mut self, schema: &str) {
        let now = Instant::now();
        let stopping = self.stopping.is_some();
        let Some(t) = self.tenants.get_mut(schema) else {
            return;
        };
        let mut actions = t.reconcile(now, &self.tuning, stopping);
        // A spawn that fails is a failed start; reconciling again applies its backoff.
        while !actions.is_empty() {
            let mut again = false;
            for action in actions {
                again |= self.act(schema, action, now);
            }
            let Some(t) = self.tenants.get_mut(schema) else {
                return;
            };
            actions = if again {
                t.reconcile(now, &self.tuning, stopping)
            } else {
                vec![]
            };
        }
        if let Some(t) = self.tenants.get(schema) {
            if t.status == Status::Deleted && t.workers.is_empty() {
                self.tenants.remove(schema);
            }
        }
        self.publish(schema);
        self.announce(schema);
    }

    /// Tells the other hosts when `schema` gets its first worker process here (not its first
    /// ready one) and when its last one exits, draining ones included: each of them may write.
    fn announce(&mut self, schema: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let running = self
            .tenants
            .get(schema)
            .is_some_and(|t| !t.workers.is_empty());
        if schema == "public" || running == self.running_here.contains(schema) {
            return;
        }
        let _ = cluster.send((schema.to_owned(), running));
        if running {
            self.running_here.insert(schema.to_owned());
        } else {
            self.running_here.remove(schema);
        }
    }

    /// Returns true when the tenant must be reconciled again (a spawn failed).
    fn act(&mut self, schema: &str, action: Action, now: Instant) -> bool {
        match action {
            Action::Spawn => {
                if !self.role_checked_for_spawn(schema, now) {
                    // Spawned once the check answers (`Msg::RolesChecked`).
                    return false;
                }
                let id = self.next_id;
                self.next_id += 1;
                let socket = self.socket_path(schema, id);
                let Some(t) = self.tenants.get_mut(schema) else {
                    return false;
                };
                match self.command.spawn(schema, &socket, &t.db_url) {
                    Ok(spawned) => {
                        tracing::debug!(schema, pid = spawned.pid, "worker spawned");
                        t.workers.push(Worker::new(
                            id,
                            spawned.pid,
                            socket,
                            now,
                            self.tuning.ready_timeout,
                        ));
                        self.owners.insert(id, schema.to_owned());
                        let link = Link::start(id, spawned.channel, self.events.clone());
                        // The tenant's changes: heard already, or asked for (the answer
                        // reaches this worker too).
                        if self.heard.contains(schema) {
                            if self.may_cache(schema) {
                                link.send(ControlMessage::Feed(Notice::Listening));
                            }
                        } else if let Some(feed) = &self.feed {
                            feed.listen(schema);
                        }
                        self.links.insert(id, link);
                        false
                    }
                    Err(e) => {
                        let reason =
                            format!("cannot start {}: {e}", self.command.program.display());
                        t.start_failed(reason, now, &self.tuning);
                        true
                    }
                }
            }
            Action::Drain(id) => {
                if let Some(link) = self.links.get(&id) {
                    link.send(ControlMessage::Drain);
                }
                false
            }
            Action::Kill(id) => {
                if let Some(w) = self
                    .tenants
                    .get(schema)
                    .and_then(|t| t.workers.iter().find(|w| w.id == id))
                {
                    process::kill_group(w.pid);
                }
                false
            }
        }
    }

    /// Whether the tenant's role settings were checked just now, so a worker may start; if
    /// not, asks for a check (once).
    fn role_checked_for_spawn(&mut self, schema: &str, now: Instant) -> bool {
        let Some(checks) = &self.role_checks else {
            return true;
        };
        match self.role_checked.get(schema) {
            Some(RoleCheck::Done(at)) if now.saturating_duration_since(*at) < ROLE_CHECK_FRESH => {
                true
            }
            Some(RoleCheck::Asked) => false,
            _ => {
                if !checks.ask(schema) {
                    tracing::warn!(
                        schema,
                        "the role check is gone; starting the worker without it"
                    );
                    return true;
                }
                self.role_checked
                    .insert(schema.to_owned(), RoleCheck::Asked);
                false
            }
        }
    }

    /// `<worker_dir>/<schema>.<daemon pid>.<id>.sock`, or `w<pid>.<id>.sock` when that would
    /// not fit in a Unix socket address (108 bytes). The daemon's pid keeps the names of two
    /// runs apart: a worker of the last run may still be draining, and removes its socket
    /// file when it exits.
    fn socket_path(&self, schema: &str, id: WorkerId) -> PathBuf {
        let pid = std::process::id();
        let named = self.worker_dir.join(format!("{schema}.{pid}.{id}.sock"));
        if named.as_os_str().len() < 100 {
            named
        } else {
            self.worker_dir.join(format!("w{pid}.{id}.sock"))
        }
    }

    fn reap_all(&mut self) {
        let now = Instant::now();
        let stopping = self.stopping.is_some();
        let pids: Vec<(WorkerId, i32)> = self
            .owners
            .iter()
            .filter_map(|(id, schema)| {
                let t = self.tenants.get(schema)?;
                Some((*id, t.workers.iter().find(|w| w.id == *id)?.pid))
            })
            .collect();
        for (id, pid) in pids {
            let Some(how) = process::reap(pid) else {
                continue;
            };
            let Some(schema) = self.owners.remove(&id) else {
                continue;
            };
            self.links.remove(&id);
            if let Some(t) = self.tenants.get_mut(&schema) {
                if let Some(w) = t.on_exit(id, &how, now, &self.tuning, stopping) {
                    tracing::info!(%schema, pid, %how, "worker exited");
                    process::remove_socket(&w.socket);
                }
            }
            self.reconcile(&schema);
        }
    }

    fn kill_everything(&mut self, why: &str) {
        self.killed_all = true;
        for t in self.tenants.values_mut() {
            for w in t.workers.iter_mut().filter(|w| !w.killed) {
                tracing::warn!(schema = %t.schema, pid = w.pid, "{why}: killing the worker");
                w.killed = true;
                process::kill_group(w.pid);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tenants = self.tenants.values().filter_map(Tenant::next_deadline);
        let stop = self
            .stopping
            .filter(|_| !self.killed_all)
            .map(|since| since + self.tuning.shutdown_timeout);
        tenants.chain(stop).min()
    }

    fn publish(&mut self, schema: &str) {
        let now: Vec<String> = self
            .tenants
            .get(schema)
            .map(Tenant::endpoints)
            .unwrap_or_default();
        let before = self
            .endpoints
            .borrow()
            .get(schema)
            .cloned()
            .unwrap_or_default();
        if now != before {
            self.endpoints.send_modify(|map| {
                let map = Arc::make_mut(map);
                if now.is_empty() {
                    map.remove(schema);
                } else {
                    map.insert(schema.to_owned(), now);
                }
            });
        }
    }

    fn status(&self) -> StatusReport {
        let now = Instant::now();
        let tenants: Vec<_> = self
            .tenants
            .values()
            .map(|t| {
                let mut status = t.status(now);
                status.shared_with = self.shared.get(&t.schema).cloned().unwrap_or_default();
                status
            })
            .collect();
        StatusReport {
            totals: Totals::of(&tenants),
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            socket: self.socket.display().to_string(),
            worker_dir: self.worker_dir.display().to_string(),
            tenants,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
