//! The scaling policy: how busy a worker is (from its load reports), and when a tenant gets
//! one more worker or one fewer. Run on every policy tick, before [`Tenant::reconcile`]
//! turns the new target into spawns and drains.
//!
//! - Up: when the ready workers have carried, on average, at least the tenant's max in-flight
//!   per worker for `scale_up_after`, one more (up to max), and the clock starts again.
//! - Down to min: after `idle_timeout` with nothing in flight and nothing served (0 = scale to
//!   zero).
//! - Down by one: when the load would fit in one worker fewer at half their limit, for
//!   `idle_timeout`.

use apotheca_protocol::channel::Load;
use tokio::time::Instant;

use super::tenant::{Status, Tenant};
use super::Tuning;

/// Mean requests in flight between two reports (time spent in requests over the time
/// between them, both by the worker's clock), or at least what is in flight now: a slow
/// request counts only when it ends.
pub fn concurrency(previous: Option<Load>, load: Load) -> f64 {
    let in_flight = load.in_flight as f64;
    let Some(before) = previous else {
        return in_flight;
    };
    let wall_us = load.clock_us.saturating_sub(before.clock_us) as f64;
    if wall_us <= 0.0 {
        return in_flight;
    }
    let busy_us = load.busy_us.saturating_sub(before.busy_us) as f64;
    (busy_us / wall_us).max(in_flight)
}

/// Moves the tenant's target by its load; the caller reconciles afterwards.
pub fn evaluate(t: &mut Tenant, now: Instant, tuning: &Tuning) {
    if t.status != Status::Active {
        t.hot_since = None;
        t.cool_since = None;
        return;
    }
    let (min, max) = (t.policy.min_workers, t.policy.max_workers);
    let limit = f64::from(t.policy.max_in_flight);
    let idle_timeout = std::time::Duration::from_secs(t.policy.idle_timeout_secs);
    let ready: Vec<f64> = t
        .workers
        .iter()
        .filter(|w| w.is_ready() && !w.killed)
        .map(|w| w.concurrency)
        .collect();
    if now.duration_since(t.last_busy) >= idle_timeout {
        if t.target > min {
            tracing::info!(schema = %t.schema, to = min, "idle: scaling down");
        }
        t.target = min;
        t.hot_since = None;
        t.cool_since = None;
        return;
    }
    if ready.is_empty() {
        t.hot_since = None;
        t.cool_since = None;
        return;
    }
    let total: f64 = ready.iter().sum();
    let n = ready.len() as f64;
    let starting = t.workers.iter().any(|w| w.is_live() && !w.is_ready());
    if total / n >= limit {
        // The clock runs from when the last added worker could take its share.
        let since = match t.hot_since {
            Some(since) if !starting => since,
            _ => *t.hot_since.insert(now),
        };
        if now.duration_since(since) >= tuning.scale_up_after && t.target < max {
            t.target += 1;
            tracing::info!(schema = %t.schema, to = t.target, in_flight = total, "busy: scaling up");
            t.hot_since = Some(now);
        }
        t.cool_since = None;
        return;
    }
    t.hot_since = None;
    if ready.len() > 1 && t.target > min && total <= (n - 1.0) * limit / 2.0 {
        let since = *t.cool_since.get_or_insert(now);
        if now.duration_since(since) >= idle_timeout {
            t.target = (t.target - 1).max(min);
            tracing::info!(schema = %t.schema, to = t.target, in_flight = total, "light load: scaling down");
            t.cool_since = Some(now);
        }
    } else {
        t.cool_since = None;
    }
}
