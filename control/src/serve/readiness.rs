//! Whether the daemon is ready to serve, as the supervisor sees it: the tenants are known (the
//! first full read of the catalog arrived) and every active tenant, the public site included,
//! has its `min_workers` ready. A tenant that crash-loops does not hold the daemon back (it
//! will not get better by waiting; `status` and the STATUS line name it). Pure bookkeeping,
//! published by the supervisor on a watch channel; [`super::systemd`] tells the service
//! manager.

use std::collections::BTreeMap;

use super::tenant::{Status, Tenant};

/// How many tenants a STATUS line names before it only counts the rest.
const NAMED: usize = 5;

/// One look at every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The catalog's first full read arrived: every tenant's policy is known.
    pub synced: bool,
    /// Active tenants with fewer ready workers than their `min_workers` (not crash-looping).
    pub waiting: Vec<String>,
    /// Tenants marked crash-looping (left alone until `apotheca restart`).
    pub crash_looping: Vec<String>,
    /// Active tenants, the public site included.
    pub tenants: usize,
    /// Ready workers of every tenant.
    pub workers: usize,
    /// The daemon is draining its workers to stop.
    pub stopping: bool,
    /// It was ready once (READY=1 went out): later shortfalls are a tenant starting, not the
    /// daemon.
    pub serving: bool,
    /// Counts the supervisor's periodic ticks: a number that stops moving means a stuck
    /// supervisor (the watchdog stops pinging).
    pub beat: u64,
}

impl Readiness {
    pub fn assess<'a>(
        tenants: impl IntoIterator<Item = &'a Tenant>,
        synced: bool,
        stopping: bool,
        beat: u64,
    ) -> Self {
        let mut r = Self {
            synced,
            stopping,
            beat,
            ..Self::default()
        };
        for t in tenants {
            let ready = t
                .workers
                .iter()
                .filter(|w| w.is_ready() && !w.killed)
                .count();
            r.workers += ready;
            if t.status != Status::Active {
                continue;
            }
            r.tenants += 1;
            if t.crash_looping {
                r.crash_looping.push(t.schema.clone());
            } else if ready < t.policy.min_workers as usize {
                r.waiting.push(t.schema.clone());
            }
        }
        r
    }

    /// Ready to serve: what `READY=1` means.
    pub fn ready(&self) -> bool {
        self.synced && self.waiting.is_empty()
    }

    /// Serving now: ready once, and not draining to stop (`GET /v1/ready`, which a balancer
    /// checks through the proxy's `/ready`).
    pub fn serving_now(&self) -> bool {
        !self.stopping && (self.serving || self.ready())
    }

    /// The service manager's one-line status (`systemctl status`).
    pub fn status_line(&self) -> String {
        let mut line = if self.stopping {
            format!("stopping: draining, {} worker(s) ready", self.workers)
        } else if self.serving || self.ready() {
            let mut line = format!(
                "serving: {} tenant(s), {} worker(s) ready",
                self.tenants, self.workers
            );
            if !self.waiting.is_empty() {
                line.push_str(&format!("; starting workers of {}", names(&self.waiting)));
            }
            line
        } else if !self.synced {
            "starting: reading the tenants".to_owned()
        } else {
            format!(
                "starting: waiting for the minimum workers of {} ({} of {} tenant(s) ready)",
                names(&self.waiting),
                self.tenants - self.waiting.len(),
                self.tenants
            )
        };
        if !self.crash_looping.is_empty() {
            line.push_str(&format!("; crash-looping: {}", names(&self.crash_looping)));
        }
        line
    }
}

fn names(schemas: &[String]) -> String {
    let mut s = schemas[..schemas.len().min(NAMED)].join(", ");
    if schemas.len() > NAMED {
        s.push_str(&format!(" and {} more", schemas.len() - NAMED));
    }
    s
}

/// The supervisor's side: assesses after every event until the daemon was ready once, and
/// after that on its ticks (the status line's counts) and while stopping, so a daemon with
/// thousands of tenants does not walk them all on every load report.
pub struct Publisher {
    tx: tokio::sync::watch::Sender<Readiness>,
    ready_once: bool,
    beat: u64,
}

impl Default for Publisher {
    fn default() -> Self {
        Self {
            tx: tokio::sync::watch::channel(Readiness::default()).0,
            ready_once: false,
            beat: 0,
        }
    }
}

impl Publisher {
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Readiness> {
        self.tx.subscribe()
    }

    /// After an event (`tick`: the periodic one).
    pub fn update(
        &mut self,
        tenants: &BTreeMap<String, Tenant>,
        synced: bool,
        stopping: bool,
        tick: bool,
    ) {
        if tick {
            self.beat += 1;
        }
        if self.ready_once && !tick && !stopping {
            return;
        }
        let mut now = Readiness::assess(tenants.values(), synced, stopping, self.beat);
        self.ready_once |= now.ready();
        now.serving = self.ready_once;
        self.tx.send_if_modified(|r| {
            let changed = *r != now;
            *r = now;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apotheca_protocol::api::Policy;
    use tokio::time::Instant;

    fn tenant(schema: &str, min: u32) -> Tenant {
        let policy = Policy {
            min_workers: min,
            max_workers: 4,
            idle_timeout_secs: 300,
            max_in_flight: 32,
        };
        Tenant::new(
            schema,
            Status::Active,
            policy,
            String::new(),
            Instant::now(),
        )
    }

    #[test]
    fn ready_once_synced_and_every_minimum_is_met() {
        let public = tenant("public", 1);
        let idle = tenant("idle", 0);
        let mut suspended = tenant("away", 2);
        suspended.status = Status::Suspended;
        let mut broken = tenant("broken", 1);
        broken.crash_looping = true;
        let all = [&public, &idle, &suspended, &broken];

        let r = Readiness::assess(all, false, false, 0);
        assert!(!r.ready());
        assert_eq!(
            r.status_line(),
            "starting: reading the tenants; crash-looping: broken"
        );

        let r = Readiness::assess(all, true, false, 0);
        assert!(!r.ready(), "public has no worker yet");
        assert_eq!(r.waiting, ["public"]);
        assert_eq!(r.tenants, 3);
        assert!(
            r.status_line().starts_with(
                "starting: waiting for the minimum workers of public (2 of 3 tenant(s) ready)"
            ),
            "{}",
            r.status_line()
        );

        // A tenant that scales to zero, a suspended one and a crash-looping one hold
        // nothing back.
        let r = Readiness::assess([&idle, &suspended, &broken], true, false, 0);
        assert!(r.ready());
        assert_eq!(
            r.status_line(),
            "serving: 2 tenant(s), 0 worker(s) ready; crash-looping: broken"
        );
        let r = Readiness::assess([&idle], true, true, 0);
        assert_eq!(r.status_line(), "stopping: draining, 0 worker(s) ready");
    }

    #[test]
    fn long_lists_are_cut() {
        let list: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        assert_eq!(names(&list), "t0, t1, t2, t3, t4 and 3 more");
        assert_eq!(names(&list[..2]), "t0, t1");
    }

    #[test]
    fn after_ready_only_ticks_and_stopping_publish() {
        let mut p = Publisher::default();
        let rx = p.subscribe();
        let mut tenants = BTreeMap::new();
        tenants.insert("idle".to_owned(), tenant("idle", 0));
        p.update(&tenants, true, false, false);
        assert!(rx.borrow().ready());
        tenants.insert("new".to_owned(), tenant("new", 1));
        p.update(&tenants, true, false, false);
        assert_eq!(
            rx.borrow().tenants,
            1,
            "an ordinary event after ready: not assessed"
        );
        p.update(&tenants, true, false, true);
        assert_eq!((rx.borrow().tenants, rx.borrow().beat), (2, 1));
        assert!(!rx.borrow().ready() && rx.borrow().serving);
        assert_eq!(
            rx.borrow().status_line(),
            "serving: 2 tenant(s), 0 worker(s) ready; starting workers of new"
        );
        p.update(&tenants, true, true, false);
        assert!(rx.borrow().stopping);
    }
}
