//! A tenant's worker policy (min and max workers, idle timeout, max in-flight per worker):
//! changed in one transaction with a NOTIFY, which a running daemon follows at once.

use tokio_postgres::Client;

use super::{notify, unknown, Policy};
use crate::error::{Error, Result};

/// The parts of a policy to change; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub struct PolicyChange {
    pub min_workers: Option<u16>,
    pub max_workers: Option<u16>,
    pub idle_timeout_secs: Option<u64>,
    pub max_inflight_per_worker: Option<u16>,
}

impl PolicyChange {
    pub fn is_empty(&self) -> bool {
        self.min_workers.is_none()
            && self.max_workers.is_none()
            && self.idle_timeout_secs.is_none()
            && self.max_inflight_per_worker.is_none()
    }
}

impl PolicyChange {
    /// What can be refused without the database.
    pub fn check(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::invalid(
                "nothing to change: give --min, --max, --idle-timeout or --max-inflight",
            ));
        }
        if self.max_workers == Some(0) || self.max_inflight_per_worker == Some(0) {
            return Err(Error::invalid(
                "--max and --max-inflight must be at least 1",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_workers, self.max_workers) {
            if min > max {
                return Err(Error::invalid(format!("--min {min} is above --max {max}")));
            }
        }
        match self.idle_timeout_secs {
            Some(0) => Err(Error::invalid("--idle-timeout must be at least 1s")),
            Some(s) if i32::try_from(s).is_err() => Err(Error::invalid(format!(
                "--idle-timeout of {s} s is too long"
            ))),
            _ => Ok(()),
        }
    }
}

/// Applies `change` and returns the policy now in force. Refused (exit 2, nothing changed)
/// when min would exceed max or a value is out of range.
pub async fn set(client: &mut Client, schema: &str, change: &PolicyChange) -> Result<Policy> {
    change.check()?;
    let idle = change.idle_timeout_secs.and_then(|s| i32::try_from(s).ok());
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT min_workers, max_workers, idle_timeout_secs, max_inflight_per_worker, queue_length
             FROM public.tenants WHERE schema_name = $1 FOR UPDATE",
            &[&schema],
        )
        .await?
        .ok_or_else(|| unknown(schema))?;
    let policy = Policy {
        min_workers: change.min_workers.map_or(row.get(0), i32::from),
        max_workers: change.max_workers.map_or(row.get(1), i32::from),
        idle_timeout_secs: idle.unwrap_or(row.get(2)),
        max_inflight_per_worker: change.max_inflight_per_worker.map_or(row.get(3), i32::from),
        queue_length: row.get(4),
    };
    if policy.min_workers > policy.max_workers {
        return Err(Error::invalid(format!(
            "min workers ({}) would be above max workers ({})",
            policy.min_workers, policy.max_workers
        )));
    }
    tx.execute(
        "UPDATE public.tenants SET min_workers = $2, max_workers = $3, idle_timeout_secs = $4,
                max_inflight_per_worker = $5
         WHERE schema_name = $1",
        &[
            &schema,
            &policy.min_workers,
            &policy.max_workers,
            &policy.idle_timeout_secs,
            &policy.max_inflight_per_worker,
        ],
    )
    .await?;
    notify(&tx, "policy_changed", schema).await?;
    tx.commit().await?;
    Ok(policy)
}
