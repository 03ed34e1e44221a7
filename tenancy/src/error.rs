//! The tenancy core's error: what went wrong provisioning, migrating or naming tenants, and
//! whether the caller asked for something invalid ([`Error::is_bad_input`]: nothing was
//! changed) or something failed on the way.

use std::path::PathBuf;

use apotheca_common::devdb::DevDbError;
use apotheca_common::names::NameError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something invalid; nothing was created or changed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("building the database pool: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    #[error(transparent)]
    DevDb(#[from] DevDbError),
    #[error(transparent)]
    Migrations(#[from] apotheca_migrations::MigrationError),
    /// Migrations whose applied files changed; nothing was run.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// A schema's recorded migrations do not fit this build's (a gap, an unknown version).
    #[error("{0}")]
    Plan(String),
    /// One migration file failed in a schema (its transaction was rolled back).
    #[error("{file}: {message}")]
    Migration { file: String, message: String },
    /// Some schemas failed to migrate (the summary was already printed).
    #[error("{0} schema(s) failed to migrate")]
    MigrationsFailed(usize),
    /// The database's rows say something they never should (a row the schema's CHECKs
    /// should have refused, a schema listed but missing).
    #[error("{0}")]
    Inconsistent(String),
    /// The server secret tenant role passwords are derived from.
    #[error("server secret {}: {source}", path.display())]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server secret differs from the one the database's tenants were made with.
    #[error("{0}")]
    WrongSecret(&'static str),
    /// An outside program (pg_dump) could not run or failed.
    #[error("{0}")]
    Tool(String),
    /// Too many password hashes at once in this process; nothing was changed.
    #[error(transparent)]
    Busy(#[from] apotheca_pharmacy::accounts::Busy),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    /// The caller's mistake (an invalid request or name): nothing was changed.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Name(_))
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
