//! What the daemon's API answers, as types both sides share: the daemon serialises them, the
//! `apotheca wake|status|restart` commands read them back.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A tenant's worker policy, as control applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub min_workers: u32,
    pub max_workers: u32,
    pub idle_timeout_secs: u64,
    pub max_in_flight: u32,
}

/// How a worker's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub reason: String,
    /// Unexpected (counted towards the crash loop), as opposed to drained on purpose.
    pub crash: bool,
    pub at_unix_ms: u64,
}

impl ExitRecord {
    pub fn new(reason: String, crash: bool) -> Self {
        Self {
            reason,
            crash,
            at_unix_ms: unix_ms(SystemTime::now()),
        }
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a wake (or a restart) could not give a ready worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    #[error("no such tenant")]
    Unknown,
    #[error("the tenant is suspended")]
    Suspended,
    #[error("the workers of {schema} crash-loop{}; fix the cause, then `apotheca restart --schema {schema}`", last_exit.as_ref().map(|e| format!(" (last: {e})")).unwrap_or_default())]
    CrashLooping {
        schema: String,
        last_exit: Option<String>,
    },
    #[error("control is shutting down")]
    ShuttingDown,
}

/// A finished rolling restart: how many workers it replaced, the pids running now.
pub type RestartReply = Result<(usize, Vec<i32>), WakeError>;

/// `POST /v1/tenants/{schema}/wake`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Woken {
    pub schema: String,
    /// `unix:/path` of every ready worker.
    pub endpoints: Vec<String>,
}

/// `POST /v1/tenants/{schema}/restart` (and one per tenant for `/v1/restart`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restarted {
    pub schema: String,
    pub replaced: usize,
    pub pids: Vec<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub pid: i32,
    /// starting, ready, retiring (ready, being replaced), draining, killed
    pub state: String,
    pub address: String,
    pub started_at_unix_ms: u64,
    pub uptime_ms: u64,
    /// From spawn to its ready line.
    pub ready_after_ms: Option<u64>,
    pub in_flight: u64,
    pub served: u64,
    pub rss_bytes: u64,
    /// Mean requests in flight over the last report interval.
    pub concurrency: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantStatus {
    pub schema: String,
    /// cold, starting, running, backoff, crash-looping, suspended, deleted
    pub state: String,
    pub target: u32,
    pub workers: Vec<WorkerStatus>,
    /// Unexpected exits (each one restarted, unless the tenant was marked crash-looping).
    pub restarts: u64,
    pub crash_looping: bool,
    /// The delay before the last restart after a crash.
    pub last_backoff_ms: Option<u64>,
    pub restart_in_ms: Option<u64>,
    pub last_exit: Option<ExitRecord>,
    pub policy: Policy,
    /// Requests its workers served over the last minute (from their load reports).
    #[serde(default)]
    pub requests_last_minute: u64,
    /// The last time it served a request or had one in flight, since the daemon started.
    #[serde(default)]
    pub last_request_at_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub uptime_ms: u64,
    pub socket: String,
    pub worker_dir: String,
    pub tenants: Vec<TenantStatus>,
    #[serde(default)]
    pub totals: Totals,
}

/// What this host's tenants add up to: what a hosting provider watches for density.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub tenants: usize,
    /// Tenants with at least one worker.
    pub live_tenants: usize,
    pub workers: usize,
    /// The workers' resident memory, summed.
    pub rss_bytes: u64,
    /// The database server's client connections now (every role and database), those of
    /// tenant roles (the workers'), and its `max_connections`; none when it did not answer.
    pub database: Option<DatabaseUse>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseUse {
    pub connections: u64,
    pub tenant_connections: u64,
    pub max_connections: u64,
}

impl Totals {
    /// The tenant and worker figures of `tenants` (the database's are asked separately).
    pub fn of(tenants: &[TenantStatus]) -> Self {
        Self {
            tenants: tenants.len(),
            live_tenants: tenants.iter().filter(|t| !t.workers.is_empty()).count(),
            workers: tenants.iter().map(|t| t.workers.len()).sum(),
            rss_bytes: tenants
                .iter()
                .flat_map(|t| &t.workers)
                .map(|w| w.rss_bytes)
                .sum(),
            database: None,
        }
    }
}

impl StatusReport {
    /// The report as Prometheus text (control's `GET /metrics`, which the proxy's admin
    /// listener passes on): totals, and per tenant its workers and their memory.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let t = &self.totals;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "apotheca_tenants",
            "Tenants control knows.",
            t.tenants as u64,
        );
        gauge(
            "apotheca_live_tenants",
            "Tenants with at least one worker.",
            t.live_tenants as u64,
        );
        gauge("apotheca_workers", "Worker processes.", t.workers as u64);
        gauge(
            "apotheca_workers_rss_bytes",
            "Resident memory of all workers.",
            t.rss_bytes,
        );
        if let Some(db) = t.database {
            gauge(
                "apotheca_database_connections",
                "Client connections of the database server.",
                db.connections,
            );
            gauge(
                "apotheca_database_tenant_connections",
                "Client connections of tenant roles (the workers').",
                db.tenant_connections,
            );
            gauge(
                "apotheca_database_max_connections",
                "The database server's max_connections.",
                db.max_connections,
            );
        }
        let mut per_tenant = |name: &str, help: &str, value: fn(&TenantStatus) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for t in &self.tenants {
                let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", t.schema, value(t));
            }
        };
        per_tenant(
            "apotheca_tenant_workers",
            "Worker processes of a tenant.",
            |t| t.workers.len() as u64,
        );
        per_tenant(
            "apotheca_tenant_worker_rss_bytes",
            "Resident memory of a tenant's workers, summed.",
            |t| t.workers.iter().map(|w| w.rss_bytes).sum(),
        );
        out
    }
}
