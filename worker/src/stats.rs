//! The worker's own load figures: requests in flight, requests served, time spent answering
//! them, resident memory (and handing free memory back). Read by `/_apotheca/stats` and reported to control
//! ([`crate::channel`], [`apotheca_protocol::channel::Load`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use apotheca_protocol::channel::Load;

#[derive(Debug)]
pub struct Stats {
    in_flight: AtomicU64,
    served: AtomicU64,
    busy_us: AtomicU64,
    /// When the worker started: the clock its reports carry.
    started: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            served: AtomicU64::new(0),
            busy_us: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

/// Counts a request as in flight until dropped.
pub struct InFlight<'a> {
    stats: &'a Stats,
    started: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.busy_us.fetch_add(us, Ordering::Relaxed);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.served.fetch_add(1, Ordering::Relaxed);
    }
}

impl Stats {
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: self,
            started: Instant::now(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Microseconds spent answering requests, summed over the requests that finished.
    pub fn busy_us(&self) -> u64 {
        self.busy_us.load(Ordering::Relaxed)
    }

    /// Everything at once, with the current RSS: what the worker reports to control.
    pub fn load(&self) -> Load {
        Load {
            in_flight: self.in_flight(),
            served: self.served(),
            rss_bytes: rss_bytes(),
            busy_us: self.busy_us(),
            clock_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// Gives the memory the allocator holds free back to the kernel (glibc's `malloc_trim`: the
/// free pages of every arena, not only the top of the heap). A no-op on other allocators.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it touches no live allocation.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Resident set size in bytes, from /proc/self/statm (0 where that is unavailable).
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page
}
