//! The layered settings loader shared by every binary: defaults (the `Default` of each
//! binary's typed struct) → `apotheca.toml` (from `--config`, `APOTHECA_CONFIG`, or the working
//! folder when present) → `APOTHECA_*` environment variables (`__` separates sections, e.g.
//! `APOTHECA_DATABASE__URL`). Also the sections more than one binary reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The file read when neither `--config` nor `APOTHECA_CONFIG` names one.
pub const DEFAULT_FILE: &str = "apotheca.toml";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid settings: {0}")]
    Invalid(#[from] config::ConfigError),
}

/// Settings as loaded, with the file they came from (for `--validate-config` and logs).
#[derive(Debug)]
pub struct Loaded<T> {
    pub settings: T,
    pub file: Option<PathBuf>,
}

/// Loads `T` from the layers. `explicit` is `--config`; when absent `APOTHECA_CONFIG`, then
/// `./apotheca.toml` if it exists. An explicitly named file that does not exist is an error.
pub fn load<T: DeserializeOwned>(explicit: Option<&Path>) -> Result<Loaded<T>, SettingsError> {
    let env_file = std::env::var_os("APOTHECA_CONFIG").map(PathBuf::from);
    let file = match explicit.map(Path::to_path_buf).or(env_file) {
        Some(path) if !path.is_file() => return Err(SettingsError::Missing(path)),
        Some(path) => Some(path),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    // Every setting lives in a section, so a settings variable always has `__`; others, such
    // as APOTHECA_CONFIG, configure something else.
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("APOTHECA_") && k.contains("__"))
        .collect();
    let settings = build(file.as_deref(), env)?;
    Ok(Loaded { settings, file })
}

/// The layers over `T`'s defaults: the file, then the given environment.
fn build<T: DeserializeOwned>(
    file: Option<&Path>,
    env: HashMap<String, String>,
) -> Result<T, SettingsError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    // No try_parsing: values stay strings until a field asks for a number or a bool, so a
    // secret like "0123" is not turned into 123.
    builder = builder.add_source(
        config::Environment::with_prefix("APOTHECA")
            .prefix_separator("_")
            .separator("__")
            .ignore_empty(true)
            .source(Some(env)),
    );
    Ok(builder.build()?.try_deserialize()?)
}

/// `[database]`: where the durable truth lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Admin connection URL. Empty: use the private cluster of `[private_db]`.
    /// `--database-url` and `DATABASE_URL` take precedence over it.
    pub url: Option<String>,
    /// Whether the database is a Citus coordinator's (tenant schemas distributed over its
    /// worker nodes). Unset: detected (the `citus` extension in the database); `true` or
    /// `false`: checked, and a database that is not so is refused.
    pub citus: Option<bool>,
}

impl DatabaseSettings {
    /// The configured URL in precedence order: command line (which clap already merged with
    /// `DATABASE_URL`), then this section. `None` means "use the private cluster".
    pub fn resolve(&self, cli: Option<&str>) -> Option<String> {
        let given = |u: &&str| !u.trim().is_empty();
        cli.filter(given)
            .or(self.url.as_deref().filter(given))
            .map(str::to_owned)
    }
}

/// `[private_db]`: the cluster Apotheca starts itself when no database is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivateDbSettings {
    /// PGDATA of the private cluster.
    pub data_dir: PathBuf,
    /// Holds the Unix socket, the server log and the generated superuser password.
    pub run_dir: PathBuf,
    /// Also listen on 127.0.0.1 at this port (off when unset: Unix socket only).
    pub tcp_port: Option<u16>,
    /// The OS user PostgreSQL runs as when Apotheca runs as root (PostgreSQL refuses root).
    pub os_user: String,
    /// `max_connections` of the cluster: a live pharmacy's worker holds one connection (up to
    /// `[worker] pool_size` while busy), plus control and the proxy: 1,200 leaves room for 1,000
    /// live pharmacies. A slot costs PostgreSQL about 20 KB of shared memory until used.
    pub max_connections: u32,
    /// `shared_buffers` of the cluster.
    pub shared_buffers: String,
    /// Trade crash safety for speed (fsync off): for throwaway test clusters only.
    pub unsafe_fast: bool,
    /// Folder of `initdb`, `postgres` and `pg_ctl`; found under /usr/lib/postgresql when unset.
    pub bin_dir: Option<PathBuf>,
    /// Make a new cluster a Citus coordinator with this many worker nodes (0: plain
    /// PostgreSQL). Read only when the cluster is created: an existing one keeps what it was
    /// created as (recorded in `run_dir`). Needs the Citus extension installed.
    pub citus_nodes: u32,
}

impl Default for PrivateDbSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("var/pg"),
            run_dir: PathBuf::from("var/run"),
            tcp_port: None,
            os_user: "postgres".to_owned(),
            max_connections: 1200,
            shared_buffers: "256MB".to_owned(),
            unsafe_fast: false,
            bin_dir: None,
            citus_nodes: 0,
        }
    }
}

/// `[log]`: how a binary writes its logs (the filter comes from `RUST_LOG`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        database: DatabaseSettings,
        log: LogSettings,
        private_db: PrivateDbSettings,
    }

    #[test]
    fn file_layer_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(
            &path,
            "[log]\nformat = \"json\"\n[private_db]\ntcp_port = 5999\n",
        )
        .unwrap();
        let loaded: Loaded<Sample> = load(Some(&path)).unwrap();
        assert_eq!(loaded.settings.log.format, LogFormat::Json);
        assert_eq!(loaded.settings.private_db.tcp_port, Some(5999));
        assert_eq!(loaded.settings.private_db.os_user, "postgres");

        std::fs::write(&path, "[log]\nfromat = \"json\"\n").unwrap();
        let err = load::<Sample>(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("fromat"), "{err}");

        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            load::<Sample>(Some(&missing)),
            Err(SettingsError::Missing(_))
        ));
    }

    #[test]
    fn database_url_precedence() {
        let file = DatabaseSettings {
            url: Some("postgres://file".into()),
            ..DatabaseSettings::default()
        };
        assert_eq!(
            file.resolve(Some("postgres://cli")).as_deref(),
            Some("postgres://cli")
        );
        assert_eq!(file.resolve(None).as_deref(), Some("postgres://file"));
        assert_eq!(DatabaseSettings::default().resolve(None), None);
        assert_eq!(
            DatabaseSettings {
                url: Some(" ".into()),
                ..DatabaseSettings::default()
            }
            .resolve(None),
            None
        );
        // An empty DATABASE_URL does not hide the file's URL.
        assert_eq!(file.resolve(Some("")).as_deref(), Some("postgres://file"));
    }

    #[test]
    fn environment_values_stay_strings_until_typed() {
        let env = HashMap::from([
            (
                "APOTHECA_PRIVATE_DB__TCP_PORT".to_owned(),
                "55432".to_owned(),
            ),
            (
                "APOTHECA_PRIVATE_DB__UNSAFE_FAST".to_owned(),
                "true".to_owned(),
            ),
            ("APOTHECA_DATABASE__URL".to_owned(), "0123".to_owned()),
        ]);
        let s: Sample = build(None, env).unwrap();
        assert_eq!(s.private_db.tcp_port, Some(55432));
        assert!(s.private_db.unsafe_fast);
        // A numeric-looking string keeps its leading zero (secrets, passwords).
        assert_eq!(s.database.url.as_deref(), Some("0123"));
    }
}
