//! The worker's side of the process contract with control (`docs/architecture.md`, "The
//! control↔worker channel"), speaking [`apotheca_protocol::channel`]'s messages: `ready`
//! once it listens, `load` every report interval; it obeys `drain` and hands the change feed
//! to [`crate::changes`].
//!
//! The end of the channel (EOF, or a failed write) means control is gone: the worker goes on
//! serving what the proxy still sends it (control may be restarting, and the proxy keeps the
//! endpoints it last heard of) until it has been idle for [`ORPHAN_IDLE`], at most
//! [`ORPHAN_MAX`], then drains and exits by itself, so a killed control never leaves orphans
//! serving on. Draining at once would close the proxy's idle keep-alive connections while it
//! may be sending a sale on one (a sale is never sent twice, so that would fail it); once the
//! next daemon's endpoints reach the proxy, nothing is sent here any more.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use apotheca_protocol::channel::{ControlMessage, Notice, WorkerMessage};

use crate::stats::Stats;

/// The worker's end of the channel.
pub struct Channel {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Channel {
    /// Takes over the inherited descriptor `fd`. It must be a stream socket (control makes a
    /// socketpair); anything else is refused here, before the worker does any work.
    pub fn inherit(fd: i32) -> std::io::Result<Self> {
        use nix::sys::stat::{fstat, SFlag};
        // SAFETY: only looked at; if `fd` is not open, fstat fails with EBADF.
        let stat = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
            .map_err(std::io::Error::from)?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not a socket"),
            ));
        }
        // SAFETY: the descriptor is open (fstat succeeded) and was handed to this process for
        // this use only; from here on this Channel owns and closes it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let std_stream = std::os::unix::net::UnixStream::from(owned);
        std_stream.set_nonblocking(true)?;
        let (read, write) = UnixStream::from_std(std_stream)?.into_split();
        Ok(Self {
            reader: BufReader::new(read),
            writer: write,
        })
    }

    /// Says `ready <address>`.
    pub async fn ready(&mut self, address: &str) -> std::io::Result<()> {
        let line = format!(
            "{}\n",
            WorkerMessage::Ready {
                address: address.to_owned()
            }
        );
        self.writer.write_all(line.as_bytes()).await
    }

    /// Reports load every `interval` and listens for control's messages. Returns when control
    /// asks for a drain, or, once it is gone (EOF, a read or write error, a message it cannot
    /// have sent), when the worker has been orphaned long enough ([`orphaned`]): either way
    /// the worker should stop.
    /// Relayed change notices go to `feed` as they come.
    pub async fn supervise(
        self,
        stats: &Stats,
        interval: Duration,
        feed: &(dyn Fn(Notice) + Send + Sync),
    ) -> &'static str {
        let why = self.follow(stats, interval, feed).await;
        if why == DRAIN {
            return why;
        }
        // Nobody relays the tenant's changes any more: no cache may be trusted.
        feed(Notice::Deaf);
        tracing::warn!("{why}: serving on until idle (at most {ORPHAN_MAX:?})");
        orphaned(stats, ORPHAN_IDLE, ORPHAN_MAX).await;
        why
    }

    async fn follow(
        self,
        stats: &Stats,
        interval: Duration,
        feed: &(dyn Fn(Notice) + Send + Sync),
    ) -> &'static str {
        let Self { reader, mut writer } = self;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // `next_line` is cancel-safe: a line half read when the tick fires is kept.
        let mut lines = reader.lines();
        loop {
            tokio::select! {
                read = lines.next_line() => {
                    match read {
                        Ok(None) | Err(_) => return "control closed the channel",
                        Ok(Some(line)) => match ControlMessage::parse(line.trim_end()) {
                            Ok(ControlMessage::Drain) => return DRAIN,
                            Ok(ControlMessage::Feed(notice)) => feed(notice),
                            Err(e) => {
                                tracing::error!(error = %e, "unreadable message from control");
                                return "control sent an unreadable message";
                            }
                        },
                    }
                }
                _ = ticks.tick() => {
                    let report = WorkerMessage::Load(stats.load());
                    if writer.write_all(format!("{report}\n").as_bytes()).await.is_err() {
                        return "control stopped reading the channel";
                    }
                }
            }
        }
    }
}

const DRAIN: &str = "control asked for a drain";

/// An orphan stops once no request came or was in flight for this long.
pub const ORPHAN_IDLE: Duration = Duration::from_secs(1);
/// An orphan stops after this long whatever its traffic: control did not come back.
pub const ORPHAN_MAX: Duration = Duration::from_secs(30);

/// Returns once nothing was in flight and no request was answered for `idle`, or after `max`.
pub async fn orphaned(stats: &Stats, idle: Duration, max: Duration) {
    let until = tokio::time::Instant::now() + max;
    let step = (idle / 10).max(Duration::from_millis(10));
    let mut last = (stats.served(), tokio::time::Instant::now());
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(step).await;
        let now = tokio::time::Instant::now();
        let served = stats.served();
        if served != last.0 || stats.in_flight() > 0 {
            last = (served, now);
        } else if now.duration_since(last.1) >= idle {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_orphan_stops_once_idle_or_at_its_limit() {
        let stats = Stats::default();
        let started = tokio::time::Instant::now();
        orphaned(&stats, Duration::from_millis(50), Duration::from_secs(60)).await;
        let idle_after = started.elapsed();
        assert!(idle_after >= Duration::from_millis(50), "{idle_after:?}");
        assert!(idle_after < Duration::from_secs(30), "{idle_after:?}");
        // A request in flight keeps it serving, up to the limit.
        let busy = stats.begin();
        let started = tokio::time::Instant::now();
        orphaned(
            &stats,
            Duration::from_millis(50),
            Duration::from_millis(400),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        drop(busy);
    }
}
