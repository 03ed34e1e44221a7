//! `apotheca`'s typed settings: the sections it reads from `apotheca.toml` and the environment.

use std::path::PathBuf;

use apotheca_common::settings::{DatabaseSettings, LogSettings, PrivateDbSettings};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub private_db: PrivateDbSettings,
    pub log: LogSettings,
    pub control: ControlSettings,
    /// Read by apotheca-worker and apotheca-proxy; accepted here so one file serves all.
    #[serde(skip_serializing)]
    pub worker: Option<IgnoredAny>,
    #[serde(skip_serializing)]
    pub proxy: Option<IgnoredAny>,
}

impl Settings {
    /// What the types cannot say: values PostgreSQL would refuse only half-way through a
    /// create-tenant.
    pub fn check(&self) -> Result<(), String> {
        let role = &self.control.tenant_role;
        for (key, value) in [
            ("statement_timeout", &role.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                &role.idle_in_transaction_session_timeout,
            ),
        ] {
            if !is_pg_duration(value) {
                return Err(format!(
                    "[control.tenant_role] {key} = {value:?} is not a duration like \"30s\", \"500ms\" or \"2min\""
                ));
            }
        }
        if role.connection_limit < 1 {
            return Err("[control.tenant_role] connection_limit must be at least 1".into());
        }
        if !self.control.tenant_url.contains("{domain}") {
            return Err("[control] tenant_url must contain {domain}".into());
        }
        Ok(())
    }
}

/// A PostgreSQL time setting: digits and an optional unit.
fn is_pg_duration(value: &str) -> bool {
    let unit_at = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(unit_at);
    !digits.is_empty() && ["", "us", "ms", "s", "min", "h", "d"].contains(&unit)
}

/// `[control]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Control's own files (the generated server secret when `secret_key` is unset).
    pub state_dir: PathBuf,
    /// The server secret tenant role passwords are derived from (HMAC-SHA256 of the schema).
    /// Unset: generated once into `<state_dir>/secret`. Changing it changes every tenant
    /// role's password.
    pub secret_key: Option<String>,
    /// Schemas migrated at once by `migrate-schemas` (0: the number of cores).
    pub migrate_jobs: usize,
    /// Spare tenant schemas kept ready so `create-tenant` is a rename (0 turns the pool off).
    /// `migrate-schemas`, `prepare-spares` and `up` top the pool up to this many.
    pub spare_schemas: usize,
    /// How a tenant is reached in a browser, printed by `create-tenant`; `{domain}` is replaced.
    pub tenant_url: String,
    pub tenant_role: TenantRoleSettings,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("var"),
            secret_key: None,
            migrate_jobs: 0,
            spare_schemas: 4,
            tenant_url: "http://{domain}:8080/".to_owned(),
            tenant_role: TenantRoleSettings::default(),
        }
    }
}

/// `[control.tenant_role]`: limits set on every tenant's PostgreSQL role when it is created.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantRoleSettings {
    pub statement_timeout: String,
    pub idle_in_transaction_session_timeout: String,
    /// Most connections the role may hold at once (all of the tenant's workers together).
    pub connection_limit: i32,
}

impl Default for TenantRoleSettings {
    fn default() -> Self {
        Self {
            statement_timeout: "30s".to_owned(),
            idle_in_transaction_session_timeout: "60s".to_owned(),
            connection_limit: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_role_settings() {
        let mut s = Settings::default();
        assert!(s.check().is_ok());
        s.control.tenant_role.statement_timeout = "30 seconds".into();
        assert!(s.check().unwrap_err().contains("statement_timeout"));
        s.control.tenant_role.statement_timeout = "2min".into();
        s.control.tenant_role.connection_limit = 0;
        assert!(s.check().is_err());
        assert!(is_pg_duration("0") && is_pg_duration("500ms") && !is_pg_duration("s"));
    }
}
