//! Bringing a pharmacy's data from the Django pharmacy app that Apotheca replaces
//! (`apotheca import`, `docs/import.md`). It owns the way there, in three steps that know
//! nothing of each other's storage:
//!
//! - [`source`]: read one pharmacy's database (a SQLite file, a PostgreSQL schema, a
//!   `dumpdata` JSON) into a [`Snapshot`] of the app's rows ([`app`]);
//! - [`plan`]: map those rows to Apotheca's, checking every value against the tenant schema's
//!   rules and writing each decision into the [`Report`] ([`report`]);
//! - [`write`]: write the plan into a tenant's schema, in the transaction that created the
//!   tenant (the caller's), so that a failure leaves nothing.

pub mod app;
pub mod plan;
pub mod report;
pub mod source;
pub mod write;

use std::path::PathBuf;
use std::str::FromStr;

pub use app::Snapshot;
pub use plan::Plan;
pub use report::Report;
pub use source::SourceError;

/// Where one pharmacy's database is (`--from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:PATH`
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: the app's tables in schema `public`.
    Postgres(String),
    /// `dumpdata:PATH`
    Dumpdata(PathBuf),
}

impl FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("dumpdata:") {
            return Ok(Self::Dumpdata(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err(format!(
            "--from {s:?}: give sqlite:PATH, a postgres:// URL, or dumpdata:PATH"
        ))
    }
}

impl std::fmt::Display for Location {
    /// The source as the report names it (a URL without its password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Dumpdata(p) => write!(f, "dumpdata:{}", p.display()),
            Self::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `url` with its password, if any, as `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_owned(),
    }
}

/// Reads the pharmacy at `from` whole; one without a single row of the app's is refused
/// (another program's database, a dump of other apps).
pub async fn read(from: &Location) -> Result<Snapshot, SourceError> {
    let tables = match from {
        Location::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || source::sqlite::read(&path))
                .await
                .map_err(|e| SourceError::Invalid(format!("reading the SQLite file: {e}")))??
        }
        Location::Dumpdata(path) => {
            let bytes = tokio::fs::read(path).await.map_err(|e| SourceError::Io {
                what: path.display().to_string(),
                source: e,
            })?;
            source::dumpdata::read(&source::dumpdata::decode(&bytes)?)?
        }
        Location::Postgres(url) => {
            let (mut client, connection) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            let task = tokio::spawn(connection);
            let tables = source::postgres::read(&mut client, "public").await;
            drop(client);
            let _ = task.await;
            tables?
        }
    };
    if tables.values().all(|t| t.rows.is_empty()) {
        return Err(SourceError::Invalid(format!(
            "{from} holds no row of the pharmacy app's tables: is it the app's database, or a dumpdata of it?"
        )));
    }
    Ok(source::snapshot(&tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            "sqlite:/a/b.sqlite3".parse(),
            Ok(Location::Sqlite("/a/b.sqlite3".into()))
        );
        assert_eq!(
            "dumpdata:x.json".parse(),
            Ok(Location::Dumpdata("x.json".into()))
        );
        let pg: Location = "postgresql://app:s3cret@db:5432/pharmacy".parse().unwrap();
        assert_eq!(pg.to_string(), "postgresql://app:***@db:5432/pharmacy");
        assert!("mysql://x".parse::<Location>().is_err());
        assert!("/just/a/path".parse::<Location>().is_err());
    }
}
