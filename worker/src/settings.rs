//! `apotheca-worker`'s typed settings.

use apotheca_common::settings::{DatabaseSettings, LogSettings};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub worker: WorkerSettings,
    /// Sections of the other binaries, accepted so one file serves all.
    pub private_db: Option<IgnoredAny>,
    pub control: Option<IgnoredAny>,
    pub proxy: Option<IgnoredAny>,
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Database connections per worker (opened lazily).
    pub pool_size: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { pool_size: 4 }
    }
}
