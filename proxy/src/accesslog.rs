//! The access log: one line per request (tenant, host, method, path, status, bytes, latency,
//! worker, request id, client address) on stderr, as text or JSON per `[log] format`. Lines are gathered in
//! memory and written together every 100 ms (or at 64 KiB, and at shutdown), not with a
//! system call per request; a line never straddles two writes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Written out once this much is waiting.
const FLUSH_AT: usize = 64 * 1024;

/// One request, as logged.
pub struct Entry<'a> {
    pub tenant: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub latency: Duration,
    pub worker: &'a str,
    pub request_id: &'a str,
    /// The client's address (a balancer's client, by the PROXY protocol or its
    /// `X-Forwarded-For`).
    pub client: Option<std::net::IpAddr>,
    pub error: Option<String>,
}

pub struct AccessLog {
    json: bool,
    pending: Mutex<String>,
}

impl AccessLog {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            pending: Mutex::new(String::with_capacity(FLUSH_AT)),
        }
    }

    pub fn log(&self, e: &Entry) {
        let ms = e.latency.as_secs_f64() * 1000.0;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if self.json {
            let mut v = serde_json::json!({
                "timestamp": timestamp().to_string(), "level": "INFO", "target": "access",
                "tenant": e.tenant, "host": e.host, "method": e.method, "path": e.path,
                "status": e.status, "bytes": e.bytes, "latency_ms": ms, "worker": e.worker,
                "request_id": e.request_id, "client": e.client.map(|ip| ip.to_string()),
            });
            if let Some(err) = &e.error {
                v["error"] = err.as_str().into();
            }
            let _ = write!(pending, "{v}");
        } else {
            // Straight into the batch: no line of its own to allocate.
            let _ = write!(
                pending,
                "{}  INFO access: tenant={} host={} method={} path={:?} status={} bytes={} latency_ms={ms:.3} worker={} request_id={} client=",
                timestamp(), e.tenant, e.host, e.method, e.path, e.status, e.bytes, e.worker, e.request_id
            );
            match e.client {
                Some(ip) => {
                    let _ = write!(pending, "{ip}");
                }
                None => pending.push('-'),
            }
            if let Some(err) = &e.error {
                let _ = write!(pending, " error={err:?}");
            }
        }
        pending.push('\n');
        let full = (pending.len() >= FLUSH_AT).then(|| std::mem::take(&mut *pending));
        drop(pending);
        if let Some(data) = full {
            write_out(&data);
        }
    }

    /// Writes out what is waiting.
    pub fn flush(&self) {
        let data = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !data.is_empty() {
            write_out(&data);
        }
    }

    /// Flushes every 100 ms until the process ends.
    pub async fn flush_periodically(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            self.flush();
        }
    }
}

/// Now, as `2026-12-02T14:05:09.123456Z` (chrono's `format` parses its pattern on every call,
/// which showed in the proxy's profile).
fn timestamp() -> Timestamp {
    Timestamp(chrono::Utc::now())
}

struct Timestamp(chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_micros().min(999_999)
        )
    }
}

fn write_out(data: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(data.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            tenant: "acme",
            host: "acme.localhost",
            method: "GET",
            path: "/a b",
            status: 200,
            bytes: 12,
            latency: Duration::from_micros(1500),
            worker: "acme.1.sock",
            request_id: "r-1",
            client: None,
            error: None,
        }
    }

    #[test]
    fn lines_wait_until_flushed() {
        let log = AccessLog::new(false);
        log.log(&entry());
        let pending = log.pending.lock().unwrap().clone();
        assert!(pending.ends_with('\n'));
        assert!(pending.contains("tenant=acme host=acme.localhost method=GET path=\"/a b\" status=200 bytes=12 latency_ms=1.500"));
        log.flush();
        assert!(log.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000678Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(Timestamp(t).to_string(), "2026-01-02T03:04:05.000678Z");
    }

    #[test]
    fn json_lines_are_json() {
        let log = AccessLog::new(true);
        log.log(&entry());
        let pending = log.pending.lock().unwrap().clone();
        let v: serde_json::Value = serde_json::from_str(pending.trim_end()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["tenant"], "acme");
    }
}
