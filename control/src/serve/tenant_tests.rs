//! The supervision rules without processes: each test plays events into a [`Tenant`] and
//! checks the actions it asks for.

use std::time::Duration;

use apotheca_protocol::channel::Load;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::serve::scaling;

fn tuning() -> Tuning {
    Tuning {
        ready_timeout: Duration::from_secs(5),
        report_interval: Duration::from_secs(1),
        scale_up_after: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1000),
        crash_loop_crashes: 3,
        crash_loop_window: Duration::from_secs(60),
        max_rss_bytes: 100 << 20,
        drain_grace: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(15),
        shutdown_timeout: Duration::from_secs(20),
    }
}

fn policy(min: u32, max: u32) -> Policy {
    Policy {
        min_workers: min,
        max_workers: max,
        idle_timeout_secs: 10,
        max_in_flight: 4,
    }
}

fn tenant(min: u32, max: u32, now: Instant) -> Tenant {
    Tenant::new("acme", Status::Active, policy(min, max), "url".into(), now)
}

/// Carries out the spawns a reconcile asked for, as the supervisor would; returns the ids.
fn spawn(t: &mut Tenant, actions: &[Action], next: &mut WorkerId, now: Instant) -> Vec<WorkerId> {
    let mut ids = vec![];
    for a in actions {
        if *a == Action::Spawn {
            let id = *next;
            *next += 1;
            t.workers.push(Worker::new(
                id,
                1000 + id as i32,
                format!("/w/{id}.sock").into(),
                now,
                tuning().ready_timeout,
            ));
            ids.push(id);
        }
    }
    ids
}

/// Reconciles and carries out the spawns.
fn step(t: &mut Tenant, next: &mut WorkerId, now: Instant) -> Vec<WorkerId> {
    let actions = t.reconcile(now, &tuning(), false);
    spawn(t, &actions, next, now)
}

/// A tenant of 0 to `max` workers woken at `now`, its one worker ready: the tenant, that
/// worker and the next worker id.
fn woken(max: u32, now: Instant) -> (Tenant, WorkerId, WorkerId) {
    let mut t = tenant(0, max, now);
    let mut next = 1;
    let (reply, _answer) = oneshot::channel();
    t.wake(now, reply);
    let id = step(&mut t, &mut next, now)[0];
    t.on_ready(id, now);
    (t, id, next)
}

fn count(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    actions.iter().filter(|a| f(a)).count()
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let t = tuning();
    let ms: Vec<u128> = (1..=6).map(|n| backoff(n, &t).as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
}

#[test]
fn a_wake_starts_one_worker_and_is_answered_when_it_is_ready() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(0, 4, now);
    let mut next = 1;
    assert!(
        t.reconcile(now, &t_, false).is_empty(),
        "a cold tenant with min 0 starts nothing"
    );
    let (reply, mut answer) = oneshot::channel();
    t.wake(now, reply);
    let actions = t.reconcile(now, &t_, false);
    assert_eq!(actions, [Action::Spawn]);
    let ids = spawn(&mut t, &actions, &mut next, now);
    assert!(
        t.reconcile(now, &t_, false).is_empty(),
        "one starting worker is enough"
    );
    assert!(answer.try_recv().is_err(), "not answered before ready");
    t.on_ready(ids[0], now);
    assert_eq!(answer.try_recv().unwrap().unwrap(), ["unix:/w/1.sock"]);
    assert_eq!(t.endpoints(), ["unix:/w/1.sock"]);
}

#[test]
fn crashes_back_off_then_mark_a_crash_loop_until_restart() {
    let mut now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 2, now);
    let mut next = 1;
    for n in 1..=3 {
        let actions = t.reconcile(now, &t_, false);
        assert_eq!(actions, [Action::Spawn], "crash {n}");
        let id = spawn(&mut t, &actions, &mut next, now)[0];
        t.on_ready(id, now);
        let w = t.on_exit(id, "killed by SIGKILL", now, &t_, false).unwrap();
        assert_eq!(w.id, id);
        assert_eq!(t.restarts, n);
        let exit = t.last_exit.clone().unwrap();
        assert!(exit.crash && exit.reason == "killed by SIGKILL", "{exit:?}");
        if n < 3 {
            let delay = backoff(n as usize, &t_);
            assert_eq!(t.last_backoff, Some(delay));
            assert!(
                t.reconcile(now, &t_, false).is_empty(),
                "no restart during the backoff"
            );
            assert_eq!(
                t.next_deadline(),
                Some(now + delay),
                "woken up when it ends"
            );
            now += delay;
        }
    }
    assert!(t.crash_looping);
    assert_eq!(t.next_deadline(), None, "nothing left to wake up for");
    now += Duration::from_secs(5);
    assert!(
        t.reconcile(now, &t_, false).is_empty(),
        "a crash-looping tenant is not restarted"
    );
    let (reply, mut answer) = oneshot::channel();
    t.wake(now, reply);
    assert!(matches!(
        answer.try_recv().unwrap(),
        Err(WakeError::CrashLooping { .. })
    ));
    let (reply, mut answer) = oneshot::channel();
    t.restart(reply);
    assert_eq!(answer.try_recv().unwrap().unwrap(), (0, vec![]));
    assert!(!t.crash_looping);
    assert_eq!(t.reconcile(now, &t_, false), [Action::Spawn]);
}

#[test]
fn a_backoff_that_ran_out_is_no_deadline_any_more() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 1, now);
    let mut next = 1;
    let id = step(&mut t, &mut next, now)[0];
    t.on_ready(id, now);
    t.on_exit(id, "killed by SIGKILL", now, &t_, false);
    let later = now + t_.backoff_initial;
    let new = step(&mut t, &mut next, later)[0];
    t.on_ready(new, later);
    // A deadline in the past would wake the supervisor in a loop.
    assert_eq!(t.next_deadline(), None);
    assert!(t.reconcile(later, &t_, false).is_empty());
}

#[test]
fn crashes_outside_the_window_do_not_add_up() {
    let mut now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 1, now);
    let mut next = 1;
    for _ in 0..5 {
        let actions = t.reconcile(now, &t_, false);
        let id = spawn(&mut t, &actions, &mut next, now)[0];
        t.on_ready(id, now);
        t.on_exit(id, "exited with status 1", now, &t_, false);
        assert_eq!(t.last_backoff, Some(t_.backoff_initial));
        now += t_.crash_loop_window + Duration::from_secs(1);
    }
    assert!(!t.crash_looping);
}

#[test]
fn a_worker_not_ready_in_time_is_killed_as_a_failed_start() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 1, now);
    let mut next = 1;
    let id = step(&mut t, &mut next, now)[0];
    let late = now + t_.ready_timeout;
    assert_eq!(t.reconcile(late, &t_, false), [Action::Kill(id)]);
    assert!(t.reconcile(late, &t_, false).is_empty(), "killed once");
    t.on_exit(id, "killed by SIGKILL", late, &t_, false);
    let exit = t.last_exit.unwrap();
    assert!(
        exit.crash && exit.reason.contains("not ready within 5000 ms"),
        "{exit:?}"
    );
    assert_eq!(t.restarts, 1);
}

#[test]
fn a_rolling_restart_replaces_one_worker_at_a_time() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(2, 2, now);
    let mut next = 1;
    let old = step(&mut t, &mut next, now);
    assert_eq!(old.len(), 2);
    old.iter().for_each(|id| t.on_ready(*id, now));
    let (reply, mut answer) = oneshot::channel();
    t.restart(reply);
    let new1 = step(&mut t, &mut next, now);
    assert_eq!(new1.len(), 1, "one new worker at a time");
    assert!(
        step(&mut t, &mut next, now).is_empty(),
        "no second one while it starts"
    );
    assert_eq!(t.endpoints().len(), 2, "the old ones serve meanwhile");
    t.on_ready(new1[0], now);
    // The first old one is unpublished (told to drain after the grace), the next new one
    // starts; two workers are published throughout.
    let new2 = step(&mut t, &mut next, now);
    assert_eq!(new2.len(), 1);
    assert_eq!(t.endpoints(), ["unix:/w/2.sock", "unix:/w/3.sock"]);
    let later = now + t_.drain_grace;
    assert_eq!(t.reconcile(later, &t_, false), [Action::Drain(old[0])]);
    t.on_exit(old[0], "exited with status 0", later, &t_, false);
    assert!(!t.last_exit.clone().unwrap().crash);
    assert!(
        answer.try_recv().is_err(),
        "not done while an old worker runs"
    );
    t.on_ready(new2[0], later);
    assert!(t.reconcile(later, &t_, false).is_empty());
    assert_eq!(t.endpoints(), ["unix:/w/3.sock", "unix:/w/4.sock"]);
    let (replaced, pids) = answer.try_recv().unwrap().unwrap();
    assert_eq!((replaced, pids), (2, vec![1003, 1004]));
    let end = later + t_.drain_grace;
    assert_eq!(t.reconcile(end, &t_, false), [Action::Drain(old[1])]);
    assert_eq!(t.restarts, 0);
}

#[test]
fn reports_that_arrive_together_are_not_taken_for_a_rush() {
    // A loaded box: the worker reported each second, but control read the reports 1 ms
    // apart. Each second had one request's worth of busy time: concurrency 1, not 1,000.
    let mut now = Instant::now();
    let t_ = tuning();
    let (mut t, id, _) = woken(2, now);
    let mut load = Load::default();
    for _ in 0..10 {
        load.busy_us += 1_000_000;
        load.served += 1;
        load.clock_us += 1_000_000;
        now += Duration::from_millis(1);
        t.on_load(id, load, now, &t_);
        assert!(
            t.workers[0].concurrency <= 1.0,
            "{}",
            t.workers[0].concurrency
        );
    }
    now += Duration::from_secs(5);
    scaling::evaluate(&mut t, now, &t_);
    assert_eq!(t.target, 1);
}

#[test]
fn load_scales_up_to_max_then_idle_scales_to_zero() {
    let mut now = Instant::now();
    let t_ = tuning();
    let (mut t, id, mut next) = woken(2, now);
    let mut load = Load::default();
    // One report a second by the worker's clock, as by control's.
    let report = |t: &mut Tenant, id, load: &mut Load, now, busy: u64| {
        load.busy_us += busy;
        load.served += 10;
        load.clock_us += 1_000_000;
        t.on_load(id, *load, now, &t_);
    };
    report(&mut t, id, &mut load, now, 0);
    // 5 requests in flight on average, the limit is 4.
    for _ in 0..2 {
        now += Duration::from_secs(1);
        report(&mut t, id, &mut load, now, 5_000_000);
        scaling::evaluate(&mut t, now, &t_);
    }
    assert_eq!(t.target, 1, "not hot for long enough yet");
    now += Duration::from_secs(1);
    report(&mut t, id, &mut load, now, 5_000_000);
    scaling::evaluate(&mut t, now, &t_);
    assert_eq!(t.target, 2);
    let second = step(&mut t, &mut next, now);
    assert_eq!(second.len(), 1);
    t.on_ready(second[0], now);
    for _ in 0..5 {
        now += Duration::from_secs(1);
        report(&mut t, id, &mut load, now, 10_000_000);
        scaling::evaluate(&mut t, now, &t_);
    }
    assert_eq!(t.target, 2, "never above max");
    // Quiet from now on: nothing served, nothing in flight.
    now += Duration::from_secs(11);
    t.on_load(id, load, now, &t_);
    scaling::evaluate(&mut t, now, &t_);
    assert_eq!(t.target, 0);
    assert!(
        t.reconcile(now, &t_, false).is_empty(),
        "unpublished, draining after the grace"
    );
    assert!(t.endpoints().is_empty());
    let actions = t.reconcile(now + t_.drain_grace, &t_, false);
    assert_eq!(count(&actions, |a| matches!(a, Action::Drain(_))), 2);
}

#[test]
fn the_memory_guard_replaces_a_fat_worker_new_one_first() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 1, now);
    let mut next = 1;
    let fat = step(&mut t, &mut next, now)[0];
    t.on_ready(fat, now);
    let load = Load {
        rss_bytes: 200 << 20,
        ..Load::default()
    };
    t.on_load(fat, load, now, &t_);
    let actions = t.reconcile(now, &t_, false);
    assert_eq!(actions, [Action::Spawn]);
    assert_eq!(
        t.endpoints().len(),
        1,
        "the fat one serves until its replacement is ready"
    );
    let new = spawn(&mut t, &actions, &mut next, now)[0];
    t.on_ready(new, now);
    assert!(t.reconcile(now, &t_, false).is_empty());
    assert_eq!(t.endpoints(), ["unix:/w/2.sock"]);
    assert_eq!(
        t.reconcile(now + t_.drain_grace, &t_, false),
        [Action::Drain(fat)]
    );
    t.on_exit(fat, "exited with status 0", now, &t_, false);
    let exit = t.last_exit.unwrap();
    assert!(
        !exit.crash && exit.reason.contains("RSS 200 MB"),
        "{exit:?}"
    );
}

#[test]
fn suspension_drains_and_refuses_wakes_until_resumed() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 2, now);
    let mut next = 1;
    let id = step(&mut t, &mut next, now)[0];
    t.on_ready(id, now);
    t.update(Status::Suspended, policy(1, 2), "url".into());
    t.reconcile(now, &t_, false);
    assert!(t.endpoints().is_empty());
    let (reply, mut answer) = oneshot::channel();
    t.wake(now, reply);
    assert_eq!(answer.try_recv().unwrap(), Err(WakeError::Suspended));
    // A worker that exits on its own while unpublished is no crash.
    t.on_exit(id, "exited with status 0", now, &t_, false);
    assert_eq!(t.restarts, 0);
    t.update(Status::Active, policy(1, 2), "url".into());
    assert_eq!(t.reconcile(now, &t_, false), [Action::Spawn]);
}

#[test]
fn a_worker_that_closes_its_channel_unasked_counts_as_a_crash() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(1, 1, now);
    let mut next = 1;
    let id = step(&mut t, &mut next, now)[0];
    t.on_ready(id, now);
    t.on_channel_closed(id, now, &t_);
    assert!(t.endpoints().is_empty());
    t.on_exit(id, "exited with status 0", now, &t_, false);
    let exit = t.last_exit.unwrap();
    assert!(exit.crash, "{exit:?}");
}

#[test]
fn stopping_drains_ready_workers_at_once_and_kills_starting_ones() {
    let now = Instant::now();
    let t_ = tuning();
    let mut t = tenant(2, 2, now);
    let mut next = 1;
    let ids = step(&mut t, &mut next, now);
    t.on_ready(ids[0], now);
    let actions = t.reconcile(now, &t_, true);
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions.contains(&Action::Drain(ids[0])) && actions.contains(&Action::Kill(ids[1])));
    t.on_exit(ids[1], "killed by SIGKILL", now, &t_, true);
    t.on_exit(ids[0], "exited with status 0", now, &t_, true);
    assert_eq!(t.restarts, 0);
}

#[test]
fn requests_are_counted_over_the_last_minute() {
    let start = Instant::now();
    let t_ = tuning();
    let mut t = tenant(0, 2, start);
    let mut next = 1;
    let (reply, _answer) = oneshot::channel();
    t.wake(start, reply);
    let ids = step(&mut t, &mut next, start);
    t.on_ready(ids[0], start);
    assert_eq!((t.requests_last_minute(start), t.last_request), (0, None));
    let load = |served| Load {
        served,
        ..Load::default()
    };
    // The first report counts what the worker served since it started.
    t.on_load(ids[0], load(5), start, &t_);
    let later = start + Duration::from_secs(30);
    t.on_load(ids[0], load(12), later, &t_);
    assert_eq!(t.requests_last_minute(later), 12);
    assert!(t.last_request.is_some());
    let status = t.status(later);
    assert_eq!(status.requests_last_minute, 12);
    assert!(status.last_request_at_unix_ms.is_some());
    // A minute after the first report only the second one is left; then none.
    assert_eq!(t.requests_last_minute(start + Duration::from_secs(61)), 7);
    let quiet = start + Duration::from_secs(91);
    t.on_load(ids[0], load(12), quiet, &t_);
    assert_eq!(t.requests_last_minute(quiet), 0);
    assert!(t.served_recently.is_empty());
}
