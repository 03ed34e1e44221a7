//! Telling the service manager about the daemon (systemd's `Type=notify`, `sd_notify(3)`),
//! when it was started with `NOTIFY_SOCKET` (a socket path, or `@name` in the abstract
//! namespace, which systemd itself uses): one datagram per change. `READY=1` once [`Readiness::ready`] first holds — the API socket is bound
//! before the supervisor starts, so it answers by then —, a `STATUS=` line whenever what
//! `systemctl status` should show changes, `STOPPING=1` when the drain starts, and, when the
//! unit sets `WatchdogSec=` (`WATCHDOG_USEC`), `WATCHDOG=1` at half that period for as long as
//! the supervisor keeps ticking: a stuck supervisor stops the pings and systemd restarts the
//! daemon. Without `NOTIFY_SOCKET` this does nothing.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::readiness::Readiness;

/// Whether a service manager asked to be told.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// `NOTIFY_SOCKET` as an address: `@name` is abstract, anything else a path.
fn address(value: &OsStr) -> std::io::Result<SocketAddr> {
    match value.as_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(value),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract @name",
        )),
    }
}

/// Sends `lines` (`KEY=value` each) as one datagram to the service manager.
fn notify(lines: &[String]) -> std::io::Result<()> {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    socket.connect_addr(&address(&value)?)?;
    let mut message = lines.join("\n");
    message.push('\n');
    let sent = socket.send(message.as_bytes())?;
    if sent != message.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

/// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID` unset or ours).
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .is_none_or(|pid| pid.parse() == Ok(std::process::id()));
    (for_us && usec > 0).then(|| Duration::from_micros(usec))
}

/// The variables that are the service manager's business with this process only: workers
/// never inherit them.
pub const ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Follows the supervisor's readiness until it ends (after the drain).
/// `report_interval` is the supervisor's tick, which the watchdog pings depend on.
pub async fn run(mut readiness: watch::Receiver<Readiness>, report_interval: Duration) {
    if !enabled() {
        return;
    }
    let mut notifier = Notifier::default();
    let watchdog = watchdog_period();
    // The beat moves once per tick; a ping goes out while it moved within this long.
    let stale_after = watchdog.map(|d| (d / 2).max(report_interval * 3));
    if let Some(d) = watchdog {
        if report_interval * 3 > d / 2 {
            tracing::warn!(
                watchdog_ms = d.as_millis() as u64,
                report_interval_ms = report_interval.as_millis() as u64,
                "WatchdogSec is short for [control.serve] report_interval_ms: a stuck supervisor is noticed late"
            );
        }
    }
    let mut ping = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_beat, mut beat_moved) = (0, Instant::now());
    loop {
        tokio::select! {
            changed = readiness.changed() => {
                if changed.is_err() {
                    // The supervisor is done: every worker stopped.
                    notifier.send(&["STATUS=stopped: every worker drained".to_owned()]);
                    return;
                }
                let now = readiness.borrow_and_update().clone();
                if now.beat != last_beat {
                    (last_beat, beat_moved) = (now.beat, Instant::now());
                }
                notifier.follow(&now);
            }
            _ = ping.tick(), if watchdog.is_some() => {
                match stale_after {
                    Some(limit) if beat_moved.elapsed() > limit => tracing::warn!(
                        since_ms = beat_moved.elapsed().as_millis() as u64,
                        "the supervisor has not ticked: no watchdog ping"
                    ),
                    _ => notifier.send(&["WATCHDOG=1".to_owned()]),
                }
            }
        }
    }
}

/// What was already said, so each state goes out once and the status only when it changes.
#[derive(Default)]
struct Notifier {
    ready: bool,
    stopping: bool,
    status: String,
    failed: bool,
}

impl Notifier {
    fn follow(&mut self, now: &Readiness) {
        let status = now.status_line();
        let mut states = Vec::with_capacity(3);
        if now.stopping && !self.stopping {
            self.stopping = true;
            states.push("STOPPING=1".to_owned());
        } else if !now.stopping && now.ready() && !self.ready {
            self.ready = true;
            tracing::info!("ready: told the service manager");
            states.push("READY=1".to_owned());
        }
        if status != self.status {
            states.push(format!("STATUS={status}"));
        }
        if !states.is_empty() {
            self.send(&states);
        }
        self.status = status;
    }

    fn send(&mut self, states: &[String]) {
        match notify(states) {
            Ok(()) => self.failed = false,
            // Said once per run of failures, not on every tick.
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = address(OsStr::new("@systemd/notify")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"systemd/notify"[..]));
        let p = address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address(OsStr::new("relative/notify")).is_err());
        assert!(address(OsStr::new("vsock:2:1234")).is_err());
    }
}
