//! The worker's side of the process contract with control (ARCHITECTURE.md, "Process
//! contract"), and the messages both sides speak. Control hands the worker one end of a stream
//! socketpair (`--control-fd N`); over it, one line per message:
//!
//! - worker → control: `ready <address>` once it listens and the database answered, then
//!   `load <in_flight> <served> <rss_bytes> <busy_us> <clock_us>` every report interval;
//! - control → worker: `drain` (stop accepting, finish what is in flight, exit 0); and the
//!   tenant's change feed, which control follows for all its workers on one connection
//!   (`crate::changes`): `listening` (control hears the tenant's channel: the worker may keep
//!   caches), `deaf` (it lost it: forget them, keep none), `changed <what>` (an announcement
//!   on the channel: forget what it concerns).
//!
//! The end of the channel (EOF, or a failed write) means control is gone: the worker goes on
//! serving what the proxy still sends it (control may be restarting, and the proxy keeps the
//! endpoints it last heard of) until it has been idle for [`ORPHAN_IDLE`], at most
//! [`ORPHAN_MAX`], then drains and exits by itself, so a killed control never leaves orphans
//! serving on. Draining at once would close the proxy's idle keep-alive connections while it
//! may be sending a sale on one (a sale is never sent twice, so that would fail it); once the
//! next daemon's endpoints reach the proxy, nothing is sent here any more.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::stats::Stats;

/// One load report: what control scales and guards memory on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Requests being answered right now.
    pub in_flight: u64,
    /// Requests answered since the worker started.
    pub served: u64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Time spent answering requests since the worker started, summed over requests: its
    /// growth over an interval divided by the interval is the mean number of requests in
    /// flight, which a single sample of `in_flight` only guesses at.
    pub busy_us: u64,
    /// The worker's own clock when it made the report (microseconds since it started). The
    /// busy time is divided by this clock's interval, not by the interval between the
    /// reports' arrivals: on a loaded box reports queue and then arrive together, and a
    /// second's busy time over the millisecond between two arrivals looked like a thousand
    /// requests in flight (and scaled tenants up for nothing).
    pub clock_us: u64,
}

/// What a worker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMessage {
    Ready { address: String },
    Load(Load),
}

/// What control says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    Drain,
    /// The tenant's change feed, relayed.
    Feed(Notice),
}

/// What control hears on a tenant's change channel, relayed to its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Control listens on the tenant's channel: caches may be kept.
    Listening,
    /// It stopped (lost its connection): caches must be forgotten and not kept.
    Deaf,
    /// An announcement (its payload: `auth`, `data`, anything else meaning both).
    Changed(String),
}

impl fmt::Display for WorkerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready { address } => write!(f, "ready {address}"),
            Self::Load(l) => write!(
                f,
                "load {} {} {} {} {}",
                l.in_flight, l.served, l.rss_bytes, l.busy_us, l.clock_us
            ),
        }
    }
}

impl WorkerMessage {
    pub fn parse(line: &str) -> Result<Self, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ready" if !rest.is_empty() => Ok(Self::Ready {
                address: rest.to_owned(),
            }),
            "load" => {
                let numbers: Vec<u64> = rest
                    .split(' ')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("bad load report {line:?}"))?;
                match numbers[..] {
                    [in_flight, served, rss_bytes, busy_us, clock_us] => Ok(Self::Load(Load {
                        in_flight,
                        served,
                        rss_bytes,
                        busy_us,
                        clock_us,
                    })),
                    _ => Err(format!("bad load report {line:?}")),
                }
            }
            _ => Err(format!("unknown message {line:?}")),
        }
    }
}

impl fmt::Display for ControlMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drain => f.write_str("drain"),
            Self::Feed(Notice::Listening) => f.write_str("listening"),
            Self::Feed(Notice::Deaf) => f.write_str("deaf"),
            // A payload is one line of it at most (NOTIFY payloads may hold anything).
            Self::Feed(Notice::Changed(what)) => {
                write!(f, "changed {}", what.lines().next().unwrap_or_default())
            }
        }
    }
}

impl ControlMessage {
    pub fn parse(line: &str) -> Result<Self, String> {
        match line {
            "drain" => Ok(Self::Drain),
            "listening" => Ok(Self::Feed(Notice::Listening)),
            "deaf" => Ok(Self::Feed(Notice::Deaf)),
            _ => match line.strip_prefix("changed ") {
                Some(what) => Ok(Self::Feed(Notice::Changed(what.to_owned()))),
                None => Err(format!("unknown message {line:?}")),
            },
        }
    }
}

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

    #[test]
    fn messages_round_trip() {
        for m in [
            WorkerMessage::Ready {
                address: "unix:/run/a b.sock".into(),
            },
            WorkerMessage::Load(Load {
                in_flight: 3,
                served: 40,
                rss_bytes: 7_000_000,
                busy_us: 12,
                clock_us: 1_000_000,
            }),
        ] {
            assert_eq!(WorkerMessage::parse(&m.to_string()), Ok(m));
        }
        for m in [
            ControlMessage::Drain,
            ControlMessage::Feed(Notice::Listening),
            ControlMessage::Feed(Notice::Deaf),
            ControlMessage::Feed(Notice::Changed("data".into())),
        ] {
            assert_eq!(ControlMessage::parse(&m.to_string()), Ok(m));
        }
        assert_eq!(
            ControlMessage::Feed(Notice::Changed("a\nb".into())).to_string(),
            "changed a"
        );
        assert!(WorkerMessage::parse("ready").is_err());
        assert!(WorkerMessage::parse("load 1 2 3").is_err());
        assert!(WorkerMessage::parse("load 1 2 3 x").is_err());
        assert!(ControlMessage::parse("drain now").is_err());
    }
}
