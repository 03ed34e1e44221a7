//! One tenant under supervision: its workers and their phases, its policy, crash history,
//! backoff and crash-loop mark, and the requests waiting on it. Everything here is
//! bookkeeping and decisions, no I/O: [`Tenant::reconcile`] says what to do (spawn, drain,
//! kill) and the supervisor does it, so the rules can be tested without processes.
//! Load-based scaling lives in [`super::scaling`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use apotheca_worker::channel::Load;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::status::{ExitRecord, Policy, RestartReply, WakeError};
use super::Tuning;

pub type WorkerId = u64;

/// Whether the tenant may run, as the database says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
    /// Gone from the database; its workers drain, then the tenant is forgotten.
    Deleted,
}

#[derive(Debug)]
pub enum Phase {
    /// Spawned, not ready yet; killed (a failed start) if still so at `deadline`.
    Starting { deadline: Instant },
    /// Ready and published.
    Ready,
    /// Unpublished; told to drain at `drain_at` (after the grace), killed at `kill_at`.
    /// `unasked`: it stopped on its own (closed the channel), so its exit is a crash.
    Draining {
        reason: String,
        drain_at: Instant,
        drain_sent: bool,
        kill_at: Instant,
        unasked: bool,
    },
}

/// Why a worker is being replaced (a new one first, then it drains).
#[derive(Debug, Clone, PartialEq)]
pub enum Retire {
    Restart,
    Memory { rss_bytes: u64 },
}

#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    pub pid: i32,
    pub socket: PathBuf,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub ready_at: Option<Instant>,
    pub phase: Phase,
    pub retire: Option<Retire>,
    pub load: Load,
    /// Mean requests in flight over the last report interval.
    pub concurrency: f64,
    pub reported_at: Option<Instant>,
    /// Control sent it SIGKILL.
    pub killed: bool,
    /// Why it failed, when control killed it for failing (not ready in time): its exit is a
    /// crash with this reason.
    pub failure: Option<String>,
}

impl Worker {
    pub fn new(
        id: WorkerId,
        pid: i32,
        socket: PathBuf,
        now: Instant,
        ready_timeout: Duration,
    ) -> Self {
        Self {
            id,
            pid,
            socket,
            started: now,
            started_wall: SystemTime::now(),
            ready_at: None,
            phase: Phase::Starting {
                deadline: now + ready_timeout,
            },
            retire: None,
            load: Load::default(),
            concurrency: 0.0,
            reported_at: None,
            killed: false,
            failure: None,
        }
    }

    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Starting or ready: counted as capacity.
    pub fn is_live(&self) -> bool {
        !self.killed && !matches!(self.phase, Phase::Draining { .. })
    }

    pub fn state_name(&self) -> &'static str {
        match (&self.phase, &self.retire) {
            (_, _) if self.killed => "killed",
            (Phase::Starting { .. }, _) => "starting",
            (Phase::Ready, None) => "ready",
            (Phase::Ready, Some(_)) => "retiring",
            (Phase::Draining { .. }, _) => "draining",
        }
    }
}

/// What the supervisor must do for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn,
    Drain(WorkerId),
    Kill(WorkerId),
}

pub type WakeReply = Result<Vec<String>, WakeError>;

pub struct Tenant {
    pub schema: String,
    pub status: Status,
    pub policy: Policy,
    /// The role URL its workers log in with (holds a password: never shown).
    pub db_url: String,
    pub workers: Vec<Worker>,
    /// How many workers the tenant should have now, within its policy's min and max.
    pub target: u32,
    pub restarts: u64,
    pub crashes: VecDeque<Instant>,
    pub restart_at: Option<Instant>,
    pub last_backoff: Option<Duration>,
    pub crash_looping: bool,
    pub last_exit: Option<ExitRecord>,
    /// The last time it had work (a request in flight or served, or a wake).
    pub last_busy: Instant,
    pub hot_since: Option<Instant>,
    pub cool_since: Option<Instant>,
    pub wake_waiters: Vec<oneshot::Sender<WakeReply>>,
    pub restart_waiters: Vec<(usize, oneshot::Sender<RestartReply>)>,
}

impl Tenant {
    pub fn new(schema: &str, status: Status, policy: Policy, db_url: String, now: Instant) -> Self {
        Self {
            schema: schema.to_owned(),
            status,
            target: policy.min_workers,
            policy,
            db_url,
            workers: Vec::new(),
            restarts: 0,
            crashes: VecDeque::new(),
            restart_at: None,
            last_backoff: None,
            crash_looping: false,
            last_exit: None,
            last_busy: now,
            hot_since: None,
            cool_since: None,
            wake_waiters: Vec::new(),
            restart_waiters: Vec::new(),
        }
    }

    pub fn worker_mut(&mut self, id: WorkerId) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    /// What the database says now.
    pub fn update(&mut self, status: Status, policy: Policy, db_url: String) {
        if self.status != Status::Active && status == Status::Active {
            self.target = policy.min_workers;
        }
        self.status = status;
        self.policy = policy;
        self.db_url = db_url;
        self.target = self
            .target
            .clamp(self.policy.min_workers, self.policy.max_workers);
        if status != Status::Active {
            let error = match status {
                Status::Suspended => WakeError::Suspended,
                _ => WakeError::Unknown,
            };
            self.fail_wakes(&error);
        }
    }

    /// The addresses of the workers the proxy may send to.
    pub fn endpoints(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|w| w.is_ready() && !w.killed)
            .map(Worker::address)
            .collect()
    }

    /// Asks for at least one ready worker; `reply` is answered once there is one.
    pub fn wake(&mut self, now: Instant, reply: oneshot::Sender<WakeReply>) {
        match self.status {
            Status::Active => {}
            Status::Suspended => return drop(reply.send(Err(WakeError::Suspended))),
            Status::Deleted => return drop(reply.send(Err(WakeError::Unknown))),
        }
        self.last_busy = now;
        self.target = self.target.max(1).min(self.policy.max_workers);
        let endpoints = self.endpoints();
        if !endpoints.is_empty() {
            let _ = reply.send(Ok(endpoints));
        } else if self.crash_looping {
            let _ = reply.send(Err(self.crash_loop_error()));
        } else {
            // Requests that gave up meanwhile.
            self.wake_waiters.retain(|w| !w.is_closed());
            self.wake_waiters.push(reply);
        }
    }

    fn crash_loop_error(&self) -> WakeError {
        WakeError::CrashLooping {
            schema: self.schema.clone(),
            last_exit: self.last_exit.as_ref().map(|e| e.reason.clone()),
        }
    }

    pub fn fail_wakes(&mut self, error: &WakeError) {
        for w in self.wake_waiters.drain(..) {
            let _ = w.send(Err(error.clone()));
        }
    }

    /// An operator's restart: forgets the crash-loop mark and the backoff, and replaces every
    /// running worker one at a time. `reply` is answered once none of them is left.
    pub fn restart(&mut self, reply: oneshot::Sender<RestartReply>) {
        self.crash_looping = false;
        self.crashes.clear();
        self.restart_at = None;
        let mut marked = 0;
        for w in self.workers.iter_mut().filter(|w| w.is_live()) {
            w.retire = Some(Retire::Restart);
            marked += 1;
        }
        self.restart_waiters.push((marked, reply));
        self.answer_restarts();
    }

    fn answer_restarts(&mut self) {
        let replacing = self
            .workers
            .iter()
            .any(|w| w.is_live() && w.retire == Some(Retire::Restart));
        if replacing && !self.crash_looping {
            return;
        }
        let workers: Vec<i32> = self
            .workers
            .iter()
            .filter(|w| w.is_live())
            .map(|w| w.pid)
            .collect();
        let error = self.crash_loop_error();
        for (replaced, reply) in self.restart_waiters.drain(..) {
            let answer = if replacing {
                Err(error.clone())
            } else {
                Ok((replaced, workers.clone()))
            };
            let _ = reply.send(answer);
        }
    }

    pub fn on_ready(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.worker_mut(id) else { return };
        if matches!(w.phase, Phase::Starting { .. }) && !w.killed {
            w.phase = Phase::Ready;
            w.ready_at = Some(now);
            let endpoints = self.endpoints();
            for waiter in self.wake_waiters.drain(..) {
                let _ = waiter.send(Ok(endpoints.clone()));
            }
        }
    }

    /// A load report: the worker's mean concurrency since its last report, activity, and
    /// the memory guard.
    pub fn on_load(&mut self, id: WorkerId, load: Load, now: Instant, tuning: &Tuning) {
        let schema = &self.schema;
        let Some(w) = self.workers.iter_mut().find(|w| w.id == id) else {
            return;
        };
        let previous = w.reported_at.map(|at| (at, w.load));
        w.concurrency = super::scaling::concurrency(previous, load, now);
        let busy = load.in_flight > 0 || previous.is_some_and(|(_, p)| load.served > p.served);
        w.load = load;
        w.reported_at = Some(now);
        let over = tuning.max_rss_bytes > 0 && load.rss_bytes > tuning.max_rss_bytes;
        if over && w.retire.is_none() && w.is_ready() {
            tracing::warn!(
                %schema,
                pid = w.pid,
                rss_mb = load.rss_bytes / 1_048_576,
                limit_mb = tuning.max_rss_bytes / 1_048_576,
                "worker above the memory limit: replacing it"
            );
            w.retire = Some(Retire::Memory {
                rss_bytes: load.rss_bytes,
            });
        }
        if busy {
            self.last_busy = now;
        }
    }

    /// The worker closed its channel: it is stopping, asked or not. (One still starting is
    /// left to its exit, which makes it a failed start, or to its start deadline.)
    pub fn on_channel_closed(&mut self, id: WorkerId, now: Instant, tuning: &Tuning) {
        let Some(w) = self.worker_mut(id) else { return };
        if matches!(w.phase, Phase::Ready) && !w.killed {
            w.phase = Phase::Draining {
                reason: "it stopped on its own".into(),
                drain_at: now,
                drain_sent: true,
                kill_at: now + tuning.drain_timeout,
                unasked: true,
            };
        }
    }

    /// A spawn that failed before any process ran: a failed start, like a crash.
    pub fn start_failed(&mut self, reason: String, now: Instant, tuning: &Tuning) {
        self.crashed(reason, now, tuning);
    }

    /// The worker's process was reaped (`how`: "exited with status 0", "killed by SIGKILL").
    /// Returns it, so the supervisor can clean up after it.
    pub fn on_exit(
        &mut self,
        id: WorkerId,
        how: &str,
        now: Instant,
        tuning: &Tuning,
        shutting_down: bool,
    ) -> Option<Worker> {
        let at = self.workers.iter().position(|w| w.id == id)?;
        let w = self.workers.remove(at);
        let (reason, crash) = match (&w.failure, &w.phase) {
            (Some(failure), _) => (failure.clone(), true),
            // It closed its channel first, as any dying process does: the exit tells why.
            (None, Phase::Draining { unasked: true, .. }) => (how.to_owned(), true),
            (None, Phase::Draining { reason, .. }) => (format!("drained ({reason}): {how}"), false),
            (None, _) if w.killed => (format!("stopped while starting: {how}"), false),
            (None, Phase::Starting { .. }) => (format!("{how} before it was ready"), true),
            (None, Phase::Ready) => (how.to_owned(), true),
        };
        let crash = crash && !shutting_down;
        if crash {
            self.crashed(reason, now, tuning);
        } else {
            self.last_exit = Some(ExitRecord::new(reason, false));
        }
        self.answer_restarts();
        Some(w)
    }

    fn crashed(&mut self, reason: String, now: Instant, tuning: &Tuning) {
        tracing::warn!(schema = %self.schema, %reason, "worker crashed");
        self.restarts += 1;
        self.last_exit = Some(ExitRecord::new(reason, true));
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > tuning.crash_loop_window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() >= tuning.crash_loop_crashes as usize {
            tracing::error!(
                schema = %self.schema,
                crashes = self.crashes.len(),
                "crash-looping: not restarting until `apotheca restart --schema {}`",
                self.schema
            );
            self.crash_looping = true;
            self.restart_at = None;
            if self.endpoints().is_empty() {
                let error = self.crash_loop_error();
                self.fail_wakes(&error);
            }
            self.answer_restarts();
        } else {
            let delay = backoff(self.crashes.len(), tuning);
            self.last_backoff = Some(delay);
            self.restart_at = Some(now + delay);
        }
    }

    /// Brings the workers towards what the tenant should have now; returns what to do.
    /// Replacements (restart, memory) go one at a time, each new worker ready before an old
    /// one drains; a crash-looping tenant starts nothing but keeps what still runs.
    pub fn reconcile(&mut self, now: Instant, tuning: &Tuning, shutting_down: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        let wanted = if shutting_down || self.status != Status::Active {
            0
        } else {
            self.target
                .clamp(self.policy.min_workers, self.policy.max_workers) as usize
        };
        let grace = if shutting_down {
            Duration::ZERO
        } else {
            tuning.drain_grace
        };
        // A worker that failed (killed for not being ready, or stopping unasked) is a crash
        // once reaped, and the crash sets the backoff: nothing starts before that.
        let crash_pending = self.workers.iter().any(|w| {
            w.failure.is_some() || matches!(w.phase, Phase::Draining { unasked: true, .. })
        });
        let can_start = !shutting_down
            && !self.crash_looping
            && !crash_pending
            && self.restart_at.is_none_or(|at| now >= at);
        let live = |w: &&Worker| w.is_live();
        let fresh: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(live)
            .filter(|w| w.retire.is_none())
            .map(|w| w.id)
            .collect();
        let retiring: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(live)
            .filter(|w| w.retire.is_some())
            .map(|w| w.id)
            .collect();
        let mut leaving: Vec<(WorkerId, String)> = Vec::new();
        if wanted == 0 {
            let why = match (shutting_down, self.status) {
                (true, _) => "control is stopping",
                (_, Status::Suspended) => "tenant suspended",
                (_, Status::Deleted) => "tenant deleted",
                _ => "idle",
            };
            leaving.extend(
                fresh
                    .iter()
                    .chain(&retiring)
                    .map(|id| (*id, why.to_owned())),
            );
        } else {
            let starting_fresh = fresh
                .iter()
                .filter(|id| self.workers.iter().any(|w| w.id == **id && !w.is_ready()))
                .count();
            if fresh.len() < wanted && can_start {
                let n = if retiring.is_empty() {
                    wanted - fresh.len()
                } else if starting_fresh == 0 {
                    1
                } else {
                    0
                };
                actions.extend(std::iter::repeat_n(Action::Spawn, n));
            }
            if fresh.len() > wanted {
                let mut extra = self.scale_down_order(&fresh);
                extra.truncate(fresh.len() - wanted);
                leaving.extend(extra.into_iter().map(|id| (id, "scaled down".to_owned())));
            }
            // Each fresh worker that is ready stands in for one retiring worker.
            let ready_fresh = fresh.len() - starting_fresh;
            let replaced = (ready_fresh + retiring.len()).saturating_sub(wanted);
            for id in retiring.iter().take(replaced) {
                let why = match self
                    .workers
                    .iter()
                    .find(|w| w.id == *id)
                    .and_then(|w| w.retire.clone())
                {
                    Some(Retire::Memory { rss_bytes }) => {
                        format!("replaced: RSS {} MB above the limit", rss_bytes / 1_048_576)
                    }
                    _ => "replaced by a restart".to_owned(),
                };
                leaving.push((*id, why));
            }
        }
        for (id, reason) in leaving {
            let Some(w) = self.worker_mut(id) else {
                continue;
            };
            if w.is_ready() {
                w.phase = Phase::Draining {
                    reason,
                    drain_at: now + grace,
                    drain_sent: false,
                    kill_at: now + grace + tuning.drain_timeout,
                    unasked: false,
                };
            } else {
                // Not serving yet: nothing to finish.
                w.killed = true;
                actions.push(Action::Kill(id));
            }
        }
        for w in &mut self.workers {
            if w.killed {
                continue;
            }
            match &mut w.phase {
                Phase::Starting { deadline } if now >= *deadline => {
                    w.failure = Some(format!(
                        "not ready within {} ms (killed)",
                        tuning.ready_timeout.as_millis()
                    ));
                    w.killed = true;
                    actions.push(Action::Kill(w.id));
                }
                Phase::Draining {
                    drain_at,
                    drain_sent,
                    kill_at,
                    ..
                } => {
                    if now >= *kill_at {
                        w.killed = true;
                        actions.push(Action::Kill(w.id));
                    } else if !*drain_sent && now >= *drain_at {
                        *drain_sent = true;
                        actions.push(Action::Drain(w.id));
                    }
                }
                _ => {}
            }
        }
        self.answer_restarts();
        actions
    }

    /// Which fresh workers leave first on a scale-down: those still starting, then the least
    /// busy, then the youngest.
    fn scale_down_order(&self, fresh: &[WorkerId]) -> Vec<WorkerId> {
        let mut ws: Vec<&Worker> = self
            .workers
            .iter()
            .filter(|w| fresh.contains(&w.id))
            .collect();
        ws.sort_by(|a, b| {
            a.is_ready()
                .cmp(&b.is_ready())
                .then(a.concurrency.total_cmp(&b.concurrency))
                .then(b.started.cmp(&a.started))
        });
        ws.into_iter().map(|w| w.id).collect()
    }

    /// The next moment something is due without any event: a start deadline, a drain after
    /// its grace, a kill, a restart after backoff.
    pub fn next_deadline(&self) -> Option<Instant> {
        let workers = self
            .workers
            .iter()
            .filter(|w| !w.killed)
            .filter_map(|w| match &w.phase {
                Phase::Starting { deadline } => Some(*deadline),
                Phase::Draining {
                    drain_at,
                    drain_sent,
                    kill_at,
                    ..
                } => Some(if *drain_sent { *kill_at } else { *drain_at }),
                Phase::Ready => None,
            });
        workers.chain(self.restart_at).min()
    }
}

/// The delay before restarting after the `n`th crash within the window: the initial backoff,
/// doubled for each earlier crash, at most the maximum.
pub fn backoff(n: usize, tuning: &Tuning) -> Duration {
    let doublings = n.saturating_sub(1).min(30) as u32;
    tuning
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(tuning.backoff_max)
}

#[cfg(test)]
#[path = "tenant_tests.rs"]
mod tests;
