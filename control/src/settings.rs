//! `apotheca`'s typed settings: the sections it reads from `apotheca.toml` and the environment.

use std::path::PathBuf;

use apotheca_common::settings::{DatabaseSettings, LogSettings, PrivateDbSettings};
use apotheca_tenancy::roles::TenantRoleSettings;
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
    /// Only the listeners, for `apotheca up` to print where the proxy serves; the proxy
    /// checks the whole section.
    #[serde(skip_serializing)]
    pub proxy: ProxyView,
}

/// What `apotheca up` reads of `[proxy]` (the proxy's own defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProxyView {
    pub http_listen: String,
    pub https_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub admin_listen: Option<String>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, IgnoredAny>,
}

impl Default for ProxyView {
    fn default() -> Self {
        Self {
            http_listen: "127.0.0.1:8080".to_owned(),
            https_listen: None,
            tls_cert: None,
            admin_listen: Some("127.0.0.1:9180".to_owned()),
            _rest: Default::default(),
        }
    }
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
        if apotheca_common::names::DomainName::parse(&format!("a.{}", self.control.signup_domain))
            .is_err()
        {
            return Err("[control] signup_domain must be a host name such as example.com".into());
        }
        if !(1..=24 * 30).contains(&self.control.operator_session_hours) {
            return Err("[control] operator_session_hours must be 1 to 720".into());
        }
        if self.control.import_max_bytes == 0 {
            return Err("[control] import_max_bytes must be more than 0".into());
        }
        self.control.serve.check()
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
    /// The public site's sign-up creates pharmacies at `<subdomain>.<signup_domain>`.
    pub signup_domain: String,
    /// An operator console login lasts this long (hours), then the operator logs in again.
    pub operator_session_hours: u64,
    /// The largest file the operator console's "Import a pharmacy" takes (bytes). Uploads
    /// also pass the proxy's `[proxy] max_upload_bytes`; bigger pharmacies are imported with
    /// `apotheca import pharmacy-app` on the host.
    pub import_max_bytes: u64,
    pub tenant_role: TenantRoleSettings,
    pub serve: ServeSettings,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("var"),
            secret_key: None,
            migrate_jobs: 0,
            spare_schemas: 4,
            tenant_url: "http://{domain}:8080/".to_owned(),
            signup_domain: "localhost".to_owned(),
            operator_session_hours: 8,
            import_max_bytes: 64 * 1024 * 1024,
            tenant_role: TenantRoleSettings::default(),
            serve: ServeSettings::default(),
        }
    }
}

/// `[control.serve]`: the daemon, `apotheca serve`, and how it supervises workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// The daemon's API (HTTP/1.1 + JSON on a Unix socket, mode 0600), used by the proxy and
    /// by `apotheca wake|status|restart`.
    pub socket: PathBuf,
    /// One Unix socket per worker is made here.
    pub worker_dir: PathBuf,
    /// The worker program. Unset: `apotheca-worker` beside the `apotheca` binary, else on PATH.
    pub worker_bin: Option<PathBuf>,
    /// A worker that has not said "ready" by then is killed and counts as a failed start.
    pub ready_timeout_ms: u64,
    /// How long a wake request waits for a ready worker before answering 503.
    pub wake_timeout_ms: u64,
    /// How often workers report their load (in flight, served, RSS).
    pub report_interval_ms: u64,
    /// A tenant is given one more worker (up to its max) when its workers have carried, on
    /// average, at least its max in-flight per worker for this long.
    pub scale_up_after_ms: u64,
    /// The first restart after a crash waits this long; each further crash within
    /// `crash_loop_window_secs` doubles it, up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// A tenant whose workers crash this many times within `crash_loop_window_secs` is marked
    /// crash-looping and not restarted until `apotheca restart --schema S`.
    pub crash_loop_crashes: u32,
    pub crash_loop_window_secs: u64,
    /// Memory guard: a worker whose RSS goes above this is replaced (a new one first, then the
    /// old one drains). 0 turns the guard off.
    pub max_worker_rss_mb: u64,
    /// A worker leaving (scale-down, restart, memory) first disappears from the endpoints
    /// the proxy is told about, and is told to drain this much later.
    pub drain_grace_ms: u64,
    /// A draining worker still running after this long is killed (keep it above
    /// `[worker] shutdown_timeout_secs`).
    pub drain_timeout_secs: u64,
    /// On SIGTERM the daemon drains every worker and waits at most this long before killing
    /// the rest (a second SIGTERM kills at once).
    pub shutdown_timeout_secs: u64,
    /// Workers of the public site (schema `public`): always at least 1.
    pub public_min_workers: u32,
    pub public_max_workers: u32,
    /// This host's name among the hosts that share the database (`public.hosts`,
    /// `apotheca status --cluster`): letters, digits, `.`, `_`, `-`. Unset: the machine's.
    pub host_name: Option<String>,
    /// Where this host's proxy is reached, shown beside its name (e.g. `10.0.0.5:8080`).
    pub host_address: String,
    /// The daemon records a beat, with the tenants it has ready workers for, this often.
    pub heartbeat_secs: u64,
    /// A host without a beat for this long is marked gone.
    pub host_gone_secs: u64,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("var/run/apotheca.sock"),
            worker_dir: PathBuf::from("var/run/workers"),
            worker_bin: None,
            ready_timeout_ms: 10_000,
            wake_timeout_ms: 15_000,
            report_interval_ms: 1_000,
            scale_up_after_ms: 2_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            crash_loop_crashes: 5,
            crash_loop_window_secs: 60,
            max_worker_rss_mb: 256,
            drain_grace_ms: 100,
            drain_timeout_secs: 15,
            shutdown_timeout_secs: 20,
            public_min_workers: 1,
            public_max_workers: 2,
            host_name: None,
            host_address: String::new(),
            heartbeat_secs: 2,
            host_gone_secs: 10,
        }
    }
}

impl ServeSettings {
    fn check(&self) -> Result<(), String> {
        let at_least = |key: &str, value: u64, min: u64| {
            if value < min {
                Err(format!("[control.serve] {key} must be at least {min}"))
            } else {
                Ok(())
            }
        };
        at_least("ready_timeout_ms", self.ready_timeout_ms, 100)?;
        at_least("wake_timeout_ms", self.wake_timeout_ms, 100)?;
        at_least("report_interval_ms", self.report_interval_ms, 10)?;
        at_least("backoff_initial_ms", self.backoff_initial_ms, 1)?;
        at_least(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_initial_ms,
        )?;
        at_least("crash_loop_crashes", self.crash_loop_crashes.into(), 1)?;
        at_least("crash_loop_window_secs", self.crash_loop_window_secs, 1)?;
        at_least("drain_timeout_secs", self.drain_timeout_secs, 1)?;
        at_least("public_min_workers", self.public_min_workers.into(), 1)?;
        at_least(
            "public_max_workers",
            self.public_max_workers.into(),
            self.public_min_workers.into(),
        )?;
        if self.report_interval_ms > 3_600_000 {
            return Err("[control.serve] report_interval_ms must be at most 3600000".into());
        }
        at_least("heartbeat_secs", self.heartbeat_secs, 1)?;
        at_least(
            "host_gone_secs",
            self.host_gone_secs,
            3 * self.heartbeat_secs,
        )?;
        if self.host_address.len() > 200 {
            return Err("[control.serve] host_address must be at most 200 characters".into());
        }
        if let Some(name) = &self.host_name {
            if !valid_host_name(name) {
                return Err(format!(
                    "[control.serve] host_name {name:?}: use 1 to 63 letters, digits, '.', '_' or '-', a letter or digit first"
                ));
            }
        }
        Ok(())
    }

    /// `host_name`, else the machine's host name (cut to what `public.hosts` takes).
    pub fn host_name(&self) -> String {
        if let Some(name) = &self.host_name {
            return name.clone();
        }
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name: String = machine
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
            .take(63)
            .collect();
        if valid_host_name(&name) {
            name
        } else {
            "localhost".to_owned()
        }
    }
}

/// A name `public.hosts` takes.
pub fn valid_host_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
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

    #[test]
    fn checks_serve_settings() {
        let mut s = Settings::default();
        s.control.serve.public_min_workers = 0;
        assert!(s.check().unwrap_err().contains("public_min_workers"));
        s.control.serve.public_min_workers = 3;
        assert!(s.check().unwrap_err().contains("public_max_workers"));
        s.control.serve.public_max_workers = 3;
        s.control.serve.backoff_max_ms = 10;
        assert!(s.check().unwrap_err().contains("backoff_max_ms"));
    }
}
