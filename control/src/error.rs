//! The control library's error type and how each kind maps to an exit status:
//! 2 for bad input (nothing was changed), 1 for everything else.

use apotheca_common::devdb::DevDbError;
use apotheca_common::names::NameError;
use apotheca_common::settings::SettingsError;
pub use apotheca_tenancy::error::db_message;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The user asked for something invalid; nothing was created or changed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    DevDb(#[from] DevDbError),
    #[error(transparent)]
    Migrations(#[from] apotheca_migrations::MigrationError),
    /// Provisioning, migrating, roles, operators (`apotheca-tenancy`).
    #[error(transparent)]
    Tenancy(#[from] apotheca_tenancy::Error),
    /// Too many password hashes at once in this process; nothing was changed.
    #[error(transparent)]
    Busy(#[from] apotheca_pharmacy::accounts::Busy),
    /// The daemon could not be asked (not running, gone mid-answer, unreadable).
    #[error(transparent)]
    Call(#[from] apotheca_protocol::client::CallError),
    /// The daemon's own refusal (a crash-looping or suspended tenant, a timeout).
    #[error("{0}")]
    Daemon(String),
    /// A file, socket, signal or program of the machine's failed us.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A pharmacy's database to import could not be read (`apotheca import`).
    #[error(transparent)]
    Source(#[from] apotheca_import::SourceError),
    /// A value could not be written as JSON (`--json`).
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

impl ControlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Name(_) | Self::Settings(_) => 2,
            Self::Tenancy(e) if e.is_bad_input() => 2,
            Self::Source(apotheca_import::SourceError::Invalid(_)) => 2,
            _ => 1,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    /// An I/O failure, with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;
