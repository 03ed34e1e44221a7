//! How a tenant's workers are brought towards what it should have: spawns for missing
//! capacity, one-at-a-time replacements, drains after the grace, kills at deadlines. Pure
//! decisions: it returns [`Action`]s for the supervisor to carry out.

use std::time::Duration;

use tokio::time::Instant;

use super::tenant::{Action, Status, Tenant};
use super::worker::{Phase, Retire, Worker, WorkerId};
use super::Tuning;

impl Tenant {
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
        // A backoff that has run out is over (and no longer a deadline to wake up for).
        if self.restart_at.is_some_and(|at| now >= at) {
            self.restart_at = None;
        }
        // A worker that failed (killed for not being ready, or stopping unasked) is a crash
        // once reaped, and the crash sets the backoff: nothing starts before that.
        let crash_pending = self.workers.iter().any(|w| {
            w.failure.is_some() || matches!(w.phase, Phase::Draining { unasked: true, .. })
        });
        let can_start =
            !shutting_down && !self.crash_looping && !crash_pending && self.restart_at.is_none();
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
