//! Tenant database roles: their names, their passwords (derived from the server secret, never
//! stored), the DDL that creates them and grants exactly their own schema's tables, and their
//! settings (`search_path`, timeouts), re-asserted before a worker starts
//! ([`reassert_settings`]): a role may change its own (`ALTER ROLE CURRENT_USER SET ...`),
//! which would keep its next worker from starting.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use apotheca_common::names::{quote_ident, quote_literal, SchemaName};
use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// `[control.tenant_role]`: limits set on every tenant's PostgreSQL role when it is created.
#[derive(Debug, Clone, serde::Deserialize)]
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
    /// first time. The file appears whole or not at all (written aside, then linked into
    /// place), so a concurrent reader never sees a half-written secret.
    pub fn load(secret_key: Option<&str>, state_dir: &Path) -> Result<Self> {
        if let Some(key) = secret_key.filter(|k| !k.trim().is_empty()) {
            return Ok(Self(key.trim().as_bytes().to_vec()));
        }
        let path = state_dir.join("secret");
        let io = |e: std::io::Error| Error::Secret {
            path: path.clone(),
            source: e,
        };
        let read = |path: &Path| -> Result<Self> {
            let key = fs::read_to_string(path).map_err(io)?;
            if key.trim().is_empty() {
                return Err(Error::Secret {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "it is empty"),
                });
            }
            Ok(Self(key.trim().as_bytes().to_vec()))
        };
        match fs::metadata(&path) {
            Ok(_) => return read(&path),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        fs::create_dir_all(state_dir).map_err(io)?;
        let key = Alphanumeric.sample_string(&mut rand::rng(), 48);
        let aside = state_dir.join(format!(".secret.{}", std::process::id()));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&aside)
                .map_err(io)?;
            f.write_all(key.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let linked = fs::hard_link(&aside, &path);
        let _ = fs::remove_file(&aside);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated the server secret");
                Ok(Self(key.into_bytes()))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
            Err(e) => Err(io(e)),
        }
    }

    /// Checks the secret against the database's record of it (recording it the first time):
    /// a different secret would derive wrong passwords for every existing tenant role.
    pub async fn verify(&self, client: &impl GenericClient) -> Result<()> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"apotheca secret check");
        let check = hex::encode(mac.finalize().into_bytes());
        // One statement: the value just recorded, or (the insert did nothing) the one on record.
        // When another process recorded it at the same moment, the insert waits for that one's
        // commit and does nothing, and this statement's snapshot is older than the row: read
        // it again in a statement of its own.
        let first = client
            .query_opt(
                "WITH ins AS (
                     INSERT INTO public.control_state (key, value) VALUES ('secret_check', $1)
                     ON CONFLICT (key) DO NOTHING RETURNING value)
                 SELECT value FROM ins
                 UNION ALL
                 SELECT value FROM public.control_state WHERE key = 'secret_check'
                 LIMIT 1",
                &[&check],
            )
            .await?;
        let recorded: String = match first {
            Some(row) => row.get(0),
            None => client
                .query_one(
                    "SELECT value FROM public.control_state WHERE key = 'secret_check'",
                    &[],
                )
                .await?
                .get(0),
        };
        if recorded != check {
            return Err(Error::WrongSecret(
                "the server secret is not the one this database's tenants were made with; \
                 set [control] secret_key (APOTHECA_CONTROL__SECRET_KEY) or run from the folder \
                 whose state_dir holds the right `secret` file",
            ));
        }
        Ok(())
    }

    /// A secret given directly (tests, and `[control] secret_key` callers).
    pub fn from_key(key: &str) -> Self {
        Self(key.as_bytes().to_vec())
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

/// The group every tenant role of `database` belongs to: it holds CONNECT on the database,
/// which PUBLIC no longer has, so tenant roles reach this database and no other.
pub fn group_role(database: &str) -> String {
    let digest = Sha256::digest(format!("{database}\0tenants").as_bytes());
    format!("apotheca_tenants_{}", &hex::encode(digest)[..8])
}

/// Whether `database` still lets PUBLIC in, or lacks the tenant group: what
/// [`database_access_sql`] mends. One cheap catalog query.
pub const DATABASE_ACCESS_NEEDED: &str = "
    SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
        OR EXISTS (SELECT 1 FROM pg_database d,
                          aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                   WHERE d.datname = current_database() AND a.grantee = 0)";

/// Creates the tenant group if missing, takes CONNECT and TEMP on the database from PUBLIC
/// and gives CONNECT to the group. (TEMP would let a tenant role create objects.)
pub fn database_access_sql(database: &str) -> String {
    let group = group_role(database);
    format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN
                 CREATE ROLE {g} NOLOGIN;
             END IF;
         END $$;
         REVOKE ALL ON DATABASE {db} FROM PUBLIC;
         GRANT CONNECT ON DATABASE {db} TO {g};",
        lit = quote_literal(&group),
        g = quote_ident(&group),
        db = quote_ident(database),
    )
}

/// The role's password: HMAC-SHA256(secret, role name), hex. The role name is stored with
/// the tenant, so the password survives a renamed or restored database.
pub fn role_password(secret: &Secret, role: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(b"apotheca tenant role\0");
    mac.update(role.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A tenant role before it may log in: what a schema's objects are granted to while they are
/// created. Spare schemas get one too, renamed and enabled when the spare is claimed.
pub fn create_dormant_role_sql(role: &str, database: &str) -> String {
    format!(
        "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION \
         NOBYPASSRLS IN ROLE {};\n",
        quote_ident(role),
        quote_ident(&group_role(database)),
    )
}

/// Read/write on every table and sequence the schema will ever hold, granted as each is
/// created (default privileges of the creating admin), so no grant ever has to scan the
/// catalog for "all tables in the schema" — a scan that grows with every tenant on the
/// server. Run before the schema's migrations. No CREATE on the schema: no DDL.
pub fn default_privileges_sql(role: &str, schema: &str) -> String {
    let r = quote_ident(role);
    let s = quote_ident(schema);
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r};\n\
         ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r};\n\
         ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r};\n"
    )
}

/// Lets the role log in to this database: password (sent only as a SCRAM verifier), its
/// `search_path` and timeouts fixed at the role level ([`settings_sql`]), a connection limit.
pub fn activate_role_sql(
    role: &str,
    password: &str,
    schema: &SchemaName,
    database: &str,
    limits: &TenantRoleSettings,
) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let r = quote_ident(role);
    format!(
        "ALTER ROLE {r} LOGIN CONNECTION LIMIT {limit} PASSWORD {verifier};\n{settings}",
        limit = limits.connection_limit,
        verifier = quote_literal(&verifier),
        settings = settings_sql(role, &schema.quoted(), database, limits),
    )
}

/// Creates or refreshes the public site's role ([`public_role_sql`]) in one transaction,
/// under the lock that also guards the tenant group (two daemons starting at once do not
/// race); its name and password.
pub async fn ensure_public_role(
    client: &mut tokio_postgres::Client,
    database: &str,
    secret: &Secret,
    limits: &TenantRoleSettings,
) -> Result<(String, String)> {
    let tx = client.transaction().await?;
    crate::migrate::ensure_database_access(&tx).await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, 1)",
        &[&crate::migrate::LOCK_NAMESPACE],
    )
    .await?;
    let role = public_role(database);
    let password = role_password(secret, &role);
    tx.batch_execute(&public_role_sql(&role, &password, database, limits))
        .await?;
    tx.commit().await?;
    Ok((role, password))
}

/// The role the public site's workers log in as: the `public` schema's counterpart of a
/// tenant role (one per database, hence the hash, like [`group_role`]).
pub fn public_role(database: &str) -> String {
    let digest = Sha256::digest(format!("{database}\0public site").as_bytes());
    format!("apotheca_public_{}", &hex::encode(digest)[..8])
}

/// Creates the public site's role if it is missing and (re)sets what it may do: log in to this
/// database only (through the tenant group), `search_path` fixed to `public`, the tenant
/// roles' timeouts and connection limit, and read the migration records, which is how a worker
/// checks that the schema it serves is at the version it was built for, and read the tenants'
/// names, statuses and domains (never their roles or schemas), which "Find my pharmacy" shows,
/// and record and count sign-up attempts (`public.apotheca_signup_attempt()`, not the table).
/// Nothing else: it owns
/// no objects and may not create any (`public` gives PUBLIC no CREATE).
pub fn public_role_sql(
    role: &str,
    password: &str,
    database: &str,
    limits: &TenantRoleSettings,
) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let r = quote_ident(role);
    format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN
                 CREATE ROLE {r} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT
                     NOREPLICATION NOBYPASSRLS;
             END IF;
         END $$;
         GRANT {group} TO {r};
         ALTER ROLE {r} LOGIN CONNECTION LIMIT {limit} PASSWORD {verifier};
         {settings}
         GRANT USAGE ON SCHEMA public TO {r};
         GRANT SELECT ON public.apotheca_migrations TO {r};
         GRANT SELECT (id, name, status) ON public.tenants TO {r};
         GRANT SELECT (domain, tenant_id, is_primary) ON public.domains TO {r};
         GRANT EXECUTE ON FUNCTION public.apotheca_signup_attempt(text, integer, double precision) TO {r};\n",
        lit = quote_literal(role),
        group = quote_ident(&group_role(database)),
        limit = limits.connection_limit,
        verifier = quote_literal(&verifier),
        settings = settings_sql(role, "public", database, limits),
    )
}

/// A role's settings that apply in this database, as PostgreSQL lists them
/// (`pg_db_role_setting`): whether they are this database's (else the role's everywhere), and
/// the `name=value` list, this database's first.
pub type RoleSettings = Vec<(bool, Vec<String>)>;

/// The role's settings in this database, see [`RoleSettings`].
pub async fn role_settings(client: &impl GenericClient, role: &str) -> Result<RoleSettings> {
    let rows = client
        .query(
            "SELECT s.setdatabase <> 0, s.setconfig
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             WHERE r.rolname = $1
               AND s.setdatabase IN (0, (SELECT oid FROM pg_database
                                         WHERE datname = current_database()))
             ORDER BY 1 DESC",
            &[&role],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The settings control gives a role in `database`: nothing at the role's level (what would
/// apply in every database), and in this database exactly `search_path` (`schema`, quoted) and
/// the timeouts.
pub fn settings_sql(
    role: &str,
    schema: &str,
    database: &str,
    limits: &TenantRoleSettings,
) -> String {
    let r = quote_ident(role);
    let db = quote_ident(database);
    format!(
        "ALTER ROLE {r} RESET ALL;\n\
         ALTER ROLE {r} IN DATABASE {db} RESET ALL;\n\
         ALTER ROLE {r} IN DATABASE {db} SET search_path TO {schema};\n\
         ALTER ROLE {r} IN DATABASE {db} SET statement_timeout TO {st};\n\
         ALTER ROLE {r} IN DATABASE {db} SET idle_in_transaction_session_timeout TO {it};\n",
        st = quote_literal(&limits.statement_timeout),
        it = quote_literal(&limits.idle_in_transaction_session_timeout),
    )
}

/// What [`reassert_settings`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasserted {
    /// The role's settings now.
    pub now: RoleSettings,
    /// What they were when they had to be put back; `None` when they were as control left them.
    pub changed_from: Option<RoleSettings>,
}

/// Puts the role's settings back to [`settings_sql`]'s when they differ (one transaction;
/// nothing is written when they are as they should be). `known`: what they were the last time
/// (then one query when nothing changed since).
pub async fn reassert_settings(
    client: &mut tokio_postgres::Client,
    role: &str,
    schema: &str,
    database: &str,
    limits: &TenantRoleSettings,
    known: Option<&RoleSettings>,
) -> Result<Reasserted> {
    let before = role_settings(client, role).await?;
    if known == Some(&before) {
        return Ok(Reasserted {
            now: before,
            changed_from: None,
        });
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&settings_sql(role, schema, database, limits))
        .await?;
    let after = role_settings(&tx, role).await?;
    if after == before {
        // As they should be: nothing to write.
        tx.rollback().await?;
        return Ok(Reasserted {
            now: after,
            changed_from: None,
        });
    }
    tx.commit().await?;
    Ok(Reasserted {
        now: after,
        changed_from: Some(before),
    })
}

/// The slow path: grants on whatever the schema holds now. Only for a schema migrated by an
/// admin other than the one whose default privileges cover it.
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
        let s1 = Secret::from_key("one");
        let s2 = Secret::from_key("two");
        assert_eq!(role_password(&s1, "t_acme"), role_password(&s1, "t_acme"));
        assert_ne!(role_password(&s1, "t_acme"), role_password(&s1, "t_beta"));
        assert_ne!(role_password(&s1, "t_acme"), role_password(&s2, "t_acme"));
    }

    #[test]
    fn role_sql_never_holds_the_password() {
        let acme = SchemaName::parse("acme").unwrap();
        let sql = activate_role_sql(
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
