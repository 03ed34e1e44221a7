//! Control's API (HTTP/1.1 + JSON on its Unix socket, `docs/daemon.md`), as types every side
//! shares: the daemon serialises them; the `apotheca wake|status|restart` commands, the proxy
//! and the operator console read them back.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
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
    /// Other live hosts with ready workers of this tenant (its workers here keep no caches
    /// meanwhile).
    #[serde(default)]
    pub shared_with: Vec<String>,
    /// On Citus, the worker node its schema lives on (`name:port`, as `pg_dist_node` names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
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

/// A tenant as the operator console shows it (`GET /v1/console/tenants[/{schema}]`): the
/// database's record and what the supervisor says of it now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleTenant {
    pub schema: String,
    pub name: String,
    /// active or suspended (the database).
    pub status: String,
    /// What the supervisor says: cold, starting, running, backoff, crash-looping, ...
    pub state: String,
    /// Primary first.
    pub domains: Vec<String>,
    /// Ready workers.
    pub workers: usize,
    pub requests_last_minute: u64,
    /// Since the daemon started; none: no request since then.
    pub last_request_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub migration_version: Option<i32>,
    pub policy: StoredPolicy,
}

impl ConsoleTenant {
    pub fn active(&self) -> bool {
        self.status == "active"
    }

    /// The domains after the primary (the ones that could take its place).
    pub fn others(&self) -> &[String] {
        self.domains.get(1..).unwrap_or_default()
    }
}

/// A tenant's worker policy as the database keeps it (`apotheca scale`, the console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub min_workers: u32,
    pub max_workers: u32,
    pub idle_timeout_secs: u64,
    pub max_inflight_per_worker: u32,
    pub queue_length: u32,
}

/// One line of `GET /v1/endpoints/watch`: first a snapshot of every tenant's ready workers,
/// then one line per tenant whose ready workers changed (an empty list: none left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeedLine {
    Snapshot {
        snapshot: BTreeMap<String, Vec<String>>,
    },
    Change {
        schema: String,
        endpoints: Vec<String>,
    },
}

/// An import's report as the operator console reads it (`apotheca_import::Report`,
/// serialised by control).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportReport {
    pub schema: String,
    pub dry_run: bool,
    /// Entity → counts.
    pub counts: BTreeMap<String, ImportCounts>,
    pub anomalies: Vec<ImportAnomaly>,
    /// Tables of the app's that the source does not have.
    pub missing_tables: Vec<String>,
}

/// Rows of one kind: read from the source, written, folded into another, not imported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportCounts {
    pub read: usize,
    pub written: usize,
    pub merged: usize,
    pub skipped: usize,
}

/// Something in the source that needed a decision, and what was done about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportAnomaly {
    pub table: String,
    pub id: i64,
    pub problem: String,
    pub action: String,
}

/// An upload waiting for the operator's confirmation (`/v1/console/imports/{token}`), with
/// its dry run's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingImport {
    pub token: String,
    pub schema: String,
    pub domain: String,
    /// The name the pharmacy would get.
    pub name: String,
    pub filename: String,
    pub bytes: u64,
    pub report: ImportReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_lines_read_back() {
        for line in [
            FeedLine::Snapshot {
                snapshot: [("acme".to_owned(), vec!["unix:/run/a.sock".to_owned()])].into(),
            },
            FeedLine::Change {
                schema: "acme".into(),
                endpoints: vec![],
            },
        ] {
            let text = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<FeedLine>(&text).unwrap(), line);
        }
    }
}
