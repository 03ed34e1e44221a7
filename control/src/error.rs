//! The control library's error type and how each kind maps to an exit status:
//! 2 for bad input (nothing was changed), 1 for everything else.

use apotheca_common::devdb::DevDbError;
use apotheca_common::names::NameError;
use apotheca_common::settings::SettingsError;

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
    /// Migrations whose applied files changed; nothing was run.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// Some schemas failed to migrate (the summary was already printed).
    #[error("{0} schema(s) failed to migrate")]
    MigrationsFailed(usize),
    /// Too many password hashes at once in this process; nothing was changed.
    #[error(transparent)]
    Busy(#[from] apotheca_pharmacy::accounts::Busy),
    #[error("{0}")]
    Other(String),
}

impl ControlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Name(_) | Self::Settings(_) => 2,
            _ => 1,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

/// PostgreSQL's own words (message, detail, hint) rather than tokio-postgres' "db error".
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                msg.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                msg.push_str(&format!(" hint: {hint}"));
            }
            msg
        }
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        }
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;
