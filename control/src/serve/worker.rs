//! One worker process as the supervisor tracks it: its phase (starting, ready, draining),
//! whether it is being replaced and why, and its last load report.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use apotheca_protocol::channel::Load;
use tokio::time::Instant;

use apotheca_protocol::api::{unix_ms, WorkerStatus};

pub type WorkerId = u64;

/// Where a worker is in its life.
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
    /// It has reported its load at least once (`load` is its last report).
    pub reported: bool,
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
            reported: false,
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

    /// What `apotheca status` shows of it.
    pub fn status(&self, now: Instant) -> WorkerStatus {
        WorkerStatus {
            pid: self.pid,
            state: self.state_name().to_owned(),
            address: self.address(),
            started_at_unix_ms: unix_ms(self.started_wall),
            uptime_ms: now.duration_since(self.started).as_millis() as u64,
            ready_after_ms: self
                .ready_at
                .map(|at| at.duration_since(self.started).as_millis() as u64),
            in_flight: self.load.in_flight,
            served: self.load.served,
            rss_bytes: self.load.rss_bytes,
            concurrency: (self.concurrency * 100.0).round() / 100.0,
        }
    }
}
