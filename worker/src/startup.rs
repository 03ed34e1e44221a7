//! The checks a worker makes before it serves: it is logged in as a tenant role whose
//! `search_path` is exactly its schema, and that schema carries the migrations this build expects.
//! They run on the pool's first connection, which then serves the first request: a cold
//! wake opens one backend, not two (a connection is a SCRAM exchange and a new backend,
//! about 10 ms on an idle box and several times that on a busy one).

use apotheca_common::names::quote_ident;
use apotheca_migrations::MigrationSet;
use deadpool_postgres::{Pool, PoolError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the database: {0}")]
    Connect(PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("the role's search_path is {actual:?}, not {expected:?}: connect as the tenant's own role (`apotheca db url --schema {schema}`)")]
    SearchPath {
        actual: String,
        expected: String,
        schema: String,
    },
    #[error("schema {schema} is at migration {actual:04} but this worker expects {expected:04}: run `apotheca migrate-schemas` (or deploy the matching worker)")]
    Version {
        schema: String,
        actual: i32,
        expected: i32,
    },
    #[error("the built-in migrations are unreadable: {0}")]
    Migrations(#[from] apotheca_migrations::MigrationError),
}

impl StartupError {
    /// 2: misconfiguration the operator must fix; 1: the database failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::SearchPath { .. } | Self::Version { .. } => 2,
            _ => 1,
        }
    }
}

/// Runs the checks on a connection of `pool` (kept by the pool afterwards) and returns the
/// schema's migration version.
pub async fn check(pool: &Pool, schema: &str) -> Result<i32, StartupError> {
    let client = pool.get().await.map_err(StartupError::Connect)?;
    let search_path: String = client.query_one("SHOW search_path", &[]).await?.get(0);
    if search_path != quote_ident(schema) && search_path != schema {
        return Err(StartupError::SearchPath {
            actual: search_path,
            expected: schema.to_owned(),
            schema: schema.to_owned(),
        });
    }
    let (version, expected) = if schema == "public" {
        let v: Option<i32> = client
            .query_one(
                "SELECT max(version) FROM public.apotheca_migrations WHERE schema_name = 'public'",
                &[],
            )
            .await?
            .get(0);
        (
            v.unwrap_or(0),
            MigrationSet::embedded()?
                .shared
                .last()
                .map_or(0, |m| m.version),
        )
    } else {
        let v: i32 = client
            .query_one("SELECT public.apotheca_tenant_migration_version()", &[])
            .await?
            .get(0);
        (v, MigrationSet::embedded()?.tenant_version())
    };
    drop(client);
    if version != expected {
        return Err(StartupError::Version {
            schema: schema.to_owned(),
            actual: version,
            expected,
        });
    }
    Ok(version)
}
