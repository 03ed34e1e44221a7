//! The control↔worker channel's messages (`docs/architecture.md`, "The control↔worker
//! channel"): control hands each worker one end of a stream socketpair (`--control-fd N`);
//! over it, one line per message:
//!
//! - worker → control: `ready <address>` once it listens and the database answered, then
//!   `load <in_flight> <served> <rss_bytes> <busy_us> <clock_us>` every report interval;
//! - control → worker: `drain` (stop accepting, finish what is in flight, exit 0); and the
//!   tenant's change feed, which control follows for all its workers on one connection:
//!   `listening` (control hears the tenant's channel: the worker may keep caches), `deaf` (it
//!   lost it: forget them, keep none), `changed <what>` (an announcement on the channel:
//!   forget what it concerns).
//!
//! Both ends' runtimes are their own (`worker/src/channel.rs`, `control/src/serve/link.rs`);
//! this module is only the language they speak.

use std::fmt;

/// A line that is no message of the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("unknown message {0:?}")]
    Unknown(String),
    #[error("bad load report {0:?}")]
    BadLoad(String),
}

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
    pub fn parse(line: &str) -> Result<Self, BadMessage> {
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
                    .map_err(|_| BadMessage::BadLoad(line.to_owned()))?;
                match numbers[..] {
                    [in_flight, served, rss_bytes, busy_us, clock_us] => Ok(Self::Load(Load {
                        in_flight,
                        served,
                        rss_bytes,
                        busy_us,
                        clock_us,
                    })),
                    _ => Err(BadMessage::BadLoad(line.to_owned())),
                }
            }
            _ => Err(BadMessage::Unknown(line.to_owned())),
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
    pub fn parse(line: &str) -> Result<Self, BadMessage> {
        match line {
            "drain" => Ok(Self::Drain),
            "listening" => Ok(Self::Feed(Notice::Listening)),
            "deaf" => Ok(Self::Feed(Notice::Deaf)),
            _ => match line.strip_prefix("changed ") {
                Some(what) => Ok(Self::Feed(Notice::Changed(what.to_owned()))),
                None => Err(BadMessage::Unknown(line.to_owned())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
