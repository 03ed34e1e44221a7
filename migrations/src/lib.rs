//! The migration files and their identity: `NNNN_name.sql` parsed into a [`Migration`]
//! (version, name, SHA-256 checksum, SQL), grouped into a [`MigrationSet`] for the public
//! schema (`shared/`) and for every tenant schema (`tenant/`). The set is embedded into the
//! binaries at build time; tests may load one from a folder instead. Applying them is control's job;
//! [`statements`] cuts a file into its statements for a server that needs them one by one (Citus).

use std::borrow::Cow;
use std::path::Path;

use sha2::{Digest, Sha256};

mod statements;

pub use statements::{statements, SplitError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration file {0:?} is not named NNNN_name.sql (four or more digits, an underscore, a name of lowercase letters, digits and '_')")]
    BadName(String),
    #[error("migration files {0:?} and {1:?} have the same version")]
    DuplicateVersion(String, String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The runner's own records table (version, name, checksum, applied at, duration per
/// schema). Created before any migration runs, since it records the first one too.
pub const RECORDS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS public.apotheca_migrations (
    schema_name text NOT NULL,
    version     integer NOT NULL,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL,
    PRIMARY KEY (schema_name, version)
);";

/// One SQL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    /// The part of the file name after the version, without `.sql`.
    pub name: String,
    /// Hex SHA-256 of the file's bytes: an applied file must never change.
    pub checksum: String,
    pub sql: Cow<'static, str>,
}

impl Migration {
    pub fn parse(file_name: &str, sql: Cow<'static, str>) -> Result<Self, MigrationError> {
        let bad = || MigrationError::BadName(file_name.to_owned());
        let stem = file_name.strip_suffix(".sql").ok_or_else(bad)?;
        let (digits, name) = stem.split_once('_').ok_or_else(bad)?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || !name_ok {
            return Err(bad());
        }
        let version = digits.parse().map_err(|_| bad())?;
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        Ok(Self {
            version,
            name: name.to_owned(),
            checksum,
            sql,
        })
    }

    /// The file name it came from, for messages.
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }
}

/// The migrations of the public schema and of tenant schemas, each sorted by version.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub shared: Vec<Migration>,
    pub tenant: Vec<Migration>,
}

impl MigrationSet {
    /// The files built into this binary.
    pub fn embedded() -> Result<Self, MigrationError> {
        let parse = |files: &[(&'static str, &'static str)]| {
            checked(
                files
                    .iter()
                    .map(|(name, sql)| Migration::parse(name, Cow::Borrowed(*sql)))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
        Ok(Self {
            shared: parse(embedded::SHARED)?,
            tenant: parse(embedded::TENANT)?,
        })
    }

    /// Reads `<dir>/shared/*.sql` and `<dir>/tenant/*.sql` (a missing sub-folder is empty).
    pub fn from_dir(dir: &Path) -> Result<Self, MigrationError> {
        Ok(Self {
            shared: read_dir(&dir.join("shared"))?,
            tenant: read_dir(&dir.join("tenant"))?,
        })
    }

    /// The newest tenant migration: the schema version a worker of this build expects.
    pub fn tenant_version(&self) -> i32 {
        self.tenant.last().map_or(0, |m| m.version)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<Migration>, MigrationError> {
    let io = |source| MigrationError::Io {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_none_or(|x| x != "sql") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let sql = std::fs::read_to_string(&path).map_err(|source| MigrationError::Io {
            path: path.display().to_string(),
            source,
        })?;
        out.push(Migration::parse(&name, Cow::Owned(sql))?);
    }
    checked(out)
}

fn checked(mut list: Vec<Migration>) -> Result<Vec<Migration>, MigrationError> {
    list.sort_by_key(|m| m.version);
    for pair in list.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(MigrationError::DuplicateVersion(
                pair[0].file_name(),
                pair[1].file_name(),
            ));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_parse() {
        let set = MigrationSet::embedded().unwrap();
        assert!(!set.shared.is_empty() && !set.tenant.is_empty());
        assert_eq!(set.tenant_version(), set.tenant.last().unwrap().version);
    }

    #[test]
    fn names_and_checksums() {
        let m = Migration::parse("0007_add_x.sql", Cow::Borrowed("SELECT 1;")).unwrap();
        assert_eq!((m.version, m.name.as_str()), (7, "add_x"));
        assert_eq!(m.file_name(), "0007_add_x.sql");
        // sha256("SELECT 1;")
        assert_eq!(m.checksum, hex::encode(Sha256::digest(b"SELECT 1;")));
        let other = Migration::parse("0007_add_x.sql", Cow::Borrowed("SELECT 2;")).unwrap();
        assert_ne!(m.checksum, other.checksum);
        for bad in [
            "7_x.sql",
            "0007.sql",
            "0007_X.sql",
            "0007_x.txt",
            "abcd_x.sql",
            "0007_.sql",
        ] {
            assert!(Migration::parse(bad, Cow::Borrowed("")).is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenant")).unwrap();
        std::fs::write(dir.path().join("tenant/0002_b.sql"), "SELECT 2;").unwrap();
        std::fs::write(dir.path().join("tenant/0001_a.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("tenant/README.md"), "ignored").unwrap();
        let set = MigrationSet::from_dir(dir.path()).unwrap();
        assert!(set.shared.is_empty());
        assert_eq!(
            set.tenant.iter().map(|m| m.version).collect::<Vec<_>>(),
            [1, 2]
        );
        std::fs::write(dir.path().join("tenant/0002_c.sql"), "SELECT 3;").unwrap();
        assert!(matches!(
            MigrationSet::from_dir(dir.path()),
            Err(MigrationError::DuplicateVersion(..))
        ));
    }
}
