//! Tenant database roles: their names, their passwords (derived from the server secret, never
//! stored), and the DDL that creates them and grants exactly their own schema's tables.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use apotheca_common::names::{quote_ident, quote_literal, SchemaName};
use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::error::{ControlError, Result};
use crate::settings::{ControlSettings, TenantRoleSettings};

/// The server secret tenant role passwords are derived from.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `secret_key` from the settings, else `<state_dir>/secret`, generated (mode 0600) the
    /// first time.
    pub fn load(settings: &ControlSettings) -> Result<Self> {
        if let Some(key) = settings
            .secret_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            return Ok(Self(key.trim().as_bytes().to_vec()));
        }
        let path = settings.state_dir.join("secret");
        let io = |e: std::io::Error| {
            ControlError::Other(format!("server secret {}: {e}", path.display()))
        };
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(Self(s.trim().as_bytes().to_vec())),
            Ok(_) => {
                return Err(ControlError::Other(format!(
                    "server secret {} is empty",
                    path.display()
                )))
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        fs::create_dir_all(&settings.state_dir).map_err(io)?;
        let key = Alphanumeric.sample_string(&mut rand::rng(), 48);
        // create_new: if another process won the race, use its secret.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(key.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "generated the server secret");
                Ok(Self(key.into_bytes()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Self(
                fs::read_to_string(&path)
                    .map_err(io)?
                    .trim()
                    .as_bytes()
                    .to_vec(),
            )),
            Err(e) => Err(io(e)),
        }
    }

    #[cfg(test)]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

/// The role of `schema` in `database`. Roles are cluster-wide, so the name carries a hash of
/// both: two databases on one cluster (tests, staging beside production) never collide.
/// At most 2 + 48 + 1 + 8 = 59 characters, within PostgreSQL's 63.
pub fn role_name(database: &str, schema: &SchemaName) -> String {
    let digest = Sha256::digest(format!("{database}\0{schema}").as_bytes());
    let prefix: String = schema.as_str().chars().take(48).collect();
    format!("t_{prefix}_{}", &hex::encode(digest)[..8])
}

/// The role's password: HMAC-SHA256(secret, database and schema), hex.
pub fn role_password(secret: &Secret, database: &str, schema: &SchemaName) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(b"apotheca tenant role\0");
    mac.update(database.as_bytes());
    mac.update(b"\0");
    mac.update(schema.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Creates the role: it can log in and do nothing else; its `search_path` and timeouts are
/// fixed at the role level in this database. The password is sent only as a SCRAM verifier.
pub fn create_role_sql(
    role: &str,
    password: &str,
    schema: &SchemaName,
    database: &str,
    limits: &TenantRoleSettings,
) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let r = quote_ident(role);
    let db = quote_ident(database);
    format!(
        "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
         NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {verifier};\n\
         ALTER ROLE {r} IN DATABASE {db} SET search_path TO {schema};\n\
         ALTER ROLE {r} IN DATABASE {db} SET statement_timeout TO {st};\n\
         ALTER ROLE {r} IN DATABASE {db} SET idle_in_transaction_session_timeout TO {it};\n",
        limit = limits.connection_limit,
        verifier = quote_literal(&verifier),
        schema = schema.quoted(),
        st = quote_literal(&limits.statement_timeout),
        it = quote_literal(&limits.idle_in_transaction_session_timeout),
    )
}

/// Read/write on the schema's tables and sequences, no CREATE on it (so no DDL). Re-run after
/// every migration, so new tables are covered whoever created them.
pub fn grants_sql(role: &str, schema: &str) -> String {
    let r = quote_ident(role);
    let s = quote_ident(schema);
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};\n\
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r};\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_fit_and_differ_per_database() {
        let long = SchemaName::parse(&"a".repeat(63)).unwrap();
        assert!(role_name("apotheca", &long).len() <= 63);
        let acme = SchemaName::parse("acme").unwrap();
        assert!(role_name("db1", &acme).starts_with("t_acme_"));
        assert_ne!(role_name("db1", &acme), role_name("db2", &acme));
    }

    #[test]
    fn passwords_depend_on_secret_and_schema() {
        let acme = SchemaName::parse("acme").unwrap();
        let beta = SchemaName::parse("beta").unwrap();
        let s1 = Secret::from_bytes(b"one");
        let s2 = Secret::from_bytes(b"two");
        assert_eq!(
            role_password(&s1, "d", &acme),
            role_password(&s1, "d", &acme)
        );
        assert_ne!(
            role_password(&s1, "d", &acme),
            role_password(&s1, "d", &beta)
        );
        assert_ne!(
            role_password(&s1, "d", &acme),
            role_password(&s2, "d", &acme)
        );
    }

    #[test]
    fn role_sql_never_holds_the_password() {
        let acme = SchemaName::parse("acme").unwrap();
        let sql = create_role_sql(
            "t_acme_x",
            "hunter2hunter2",
            &acme,
            "apotheca",
            &Default::default(),
        );
        assert!(!sql.contains("hunter2"));
        assert!(sql.contains("SCRAM-SHA-256$"));
    }
}
