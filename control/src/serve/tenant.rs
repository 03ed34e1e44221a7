//! One tenant under supervision: its workers and their phases, its policy, crash history,
//! backoff and crash-loop mark, and the requests waiting on it. Everything here is
//! bookkeeping and decisions, no I/O: [`Tenant::reconcile`] ([`super::reconcile`]) says what
//! to do (spawn, drain, kill) and the supervisor does it, so the rules can be tested without
//! processes. Load-based scaling lives in [`super::scaling`], workers in [`super::worker`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use apotheca_protocol::channel::Load;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::status::{RestartReply, WakeError};
use super::worker::{Phase, Retire, Worker, WorkerId};
use super::Tuning;
use apotheca_protocol::api::{unix_ms, ExitRecord, Policy, TenantStatus};

/// Whether the tenant may run, as the database says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
    /// Gone from the database; its workers drain, then the tenant is forgotten.
    Deleted,
}

/// What the supervisor must do for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn,
    Drain(WorkerId),
    Kill(WorkerId),
}

pub type WakeReply = Result<Vec<String>, WakeError>;

/// What "requests in the last minute" counts over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

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
    /// Requests served within the last [`RATE_WINDOW`]: (report time, requests since that
    /// worker's previous report). The operator console's request rate.
    pub served_recently: VecDeque<(Instant, u64)>,
    /// When it last served a request or had one in flight (since the daemon started).
    pub last_request: Option<SystemTime>,
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
            served_recently: VecDeque::new(),
            last_request: None,
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

    pub(super) fn answer_restarts(&mut self) {
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
        let previous = w.reported.then_some(w.load);
        w.concurrency = super::scaling::concurrency(previous, load);
        let busy = load.in_flight > 0 || previous.is_some_and(|p| load.served > p.served);
        // A worker's first report counts everything it served since it started.
        let served = load.served.saturating_sub(previous.map_or(0, |p| p.served));
        w.load = load;
        w.reported = true;
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
        if served > 0 {
            self.served_recently.push_back((now, served));
        }
        if served > 0 || load.in_flight > 0 {
            self.last_request = Some(SystemTime::now());
        }
        self.forget_old_requests(now);
    }

    fn forget_old_requests(&mut self, now: Instant) {
        while self
            .served_recently
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.served_recently.pop_front();
        }
    }

    /// Requests served within the last [`RATE_WINDOW`].
    pub fn requests_last_minute(&self, now: Instant) -> u64 {
        self.served_recently
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum()
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

    /// What `apotheca status` shows of it.
    pub fn status(&self, now: Instant) -> TenantStatus {
        TenantStatus {
            schema: self.schema.clone(),
            state: self.state_name(now).to_owned(),
            target: self.target,
            workers: self.workers.iter().map(|w| w.status(now)).collect(),
            restarts: self.restarts,
            crash_looping: self.crash_looping,
            last_backoff_ms: self.last_backoff.map(|d| d.as_millis() as u64),
            restart_in_ms: self
                .restart_at
                .filter(|at| *at > now)
                .map(|at| at.duration_since(now).as_millis() as u64),
            last_exit: self.last_exit.clone(),
            policy: self.policy.clone(),
            requests_last_minute: self.requests_last_minute(now),
            last_request_at_unix_ms: self.last_request.map(unix_ms),
            // The supervisor knows this (the other hosts).
            shared_with: Vec::new(),
            // The API adds this (the database knows it).
            node: None,
        }
    }

    fn state_name(&self, now: Instant) -> &'static str {
        match self.status {
            Status::Suspended => return "suspended",
            Status::Deleted => return "deleted",
            Status::Active => {}
        }
        if self.crash_looping {
            "crash-looping"
        } else if self.workers.iter().any(|w| w.is_ready()) {
            "running"
        } else if self.restart_at.is_some_and(|at| at > now) {
            "backoff"
        } else if self.workers.iter().any(|w| w.is_live()) {
            "starting"
        } else {
            "cold"
        }
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
