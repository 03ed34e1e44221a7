//! Box-wide admission: how many requests the workers of every tenant work on at once
//! (`[proxy] max_active`), the others waiting in arrival order. Each pharmacy is a process and a
//! PostgreSQL backend of its own, so on a small box a burst spread over many pharmacies makes
//! more runnable processes than there are cores: a backend that holds the WAL write lock, or a
//! row lock a sale waits for, is then preempted, and everyone behind it waits for it to be
//! scheduled again (measured in `docs/density.md`: at 16 requests at once over 200 pharmacies
//! on 2 cores, backends waited up to 134 ms for a core and the mixed load's p99 was 100–250 ms;
//! at 4 at once, 15–20 ms for the same throughput). Waiting here instead keeps the cores on a
//! few requests at a time and serves the rest first come, first served.
//!
//! A slot is held at most `[proxy] active_hold_ms`: a request still at its worker after that
//! (a long report, a slow client upload on the worker's side) lets the next one in, so a few
//! slow requests never hold up every pharmacy on the box.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

pub struct Active {
    slots: Arc<Semaphore>,
    hold: Duration,
}

/// A request's box-wide slot: given back when this is dropped, or after the hold, whichever
/// comes first.
pub struct ActiveSlot {
    _done: oneshot::Sender<()>,
}

impl Active {
    /// `max` slots (at least one), each held at most `hold`.
    pub fn new(max: usize, hold: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.max(1))),
            hold,
        }
    }

    /// The default `[proxy] max_active`: three requests per core of this host.
    pub fn default_max() -> usize {
        3 * std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Waits (at most `wait`) for a slot; `None` when none came free in time.
    pub async fn enter(&self, wait: Duration) -> Option<ActiveSlot> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(wait, self.slots.clone().acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        let (done, finished) = oneshot::channel::<()>();
        let hold = self.hold;
        tokio::spawn(async move {
            // Ends when the slot is dropped (the sender with it) or the hold is over.
            let _ = tokio::time::timeout(hold, finished).await;
            drop(permit);
        });
        Some(ActiveSlot { _done: done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_box_queues_the_next_request_until_one_is_done() {
        let active = Active::new(1, Duration::from_secs(60));
        let first = active.enter(Duration::from_millis(10)).await.unwrap();
        assert!(active.enter(Duration::from_millis(50)).await.is_none());
        drop(first);
        assert!(active.enter(Duration::from_secs(5)).await.is_some());
    }

    #[tokio::test]
    async fn a_slot_held_past_the_hold_lets_the_next_request_in() {
        let active = Active::new(1, Duration::from_millis(50));
        let _slow = active.enter(Duration::from_millis(10)).await.unwrap();
        // Still held by the slow request, but only for its hold.
        assert!(active.enter(Duration::from_secs(5)).await.is_some());
    }
}
