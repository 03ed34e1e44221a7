//! What the daemon keeps of its API beside the shared types ([`apotheca_protocol::api`]): why a
//! wake or a restart gave no ready worker, and the status report as Prometheus text.

use apotheca_protocol::api::{StatusReport, TenantStatus};

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

/// The report as Prometheus text (control's `GET /metrics`, which the proxy's admin listener
/// passes on): totals, and per tenant its workers and their memory.
pub fn prometheus(report: &StatusReport) -> String {
    use std::fmt::Write;
    let t = &report.totals;
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
        for t in &report.tenants {
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
