//! Tenants: provisioning (schema, every tenant migration, role, grants, rows and a NOTIFY in
//! one transaction), listing, suspending, resuming and deleting. Domains live in [`domains`],
//! worker policies in [`policy`], putting roles back after a restore in [`sync_roles`].

pub mod domains;
pub mod policy;
pub mod sync_roles;

use std::path::Path;

use apotheca_common::names::{quote_ident, DomainName, SchemaName};
use apotheca_migrations::MigrationSet;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::db::Database;
use crate::error::{db_message, Error, Result};
use crate::migrate;
use crate::roles::TenantRoleSettings;
use crate::roles::{self, Secret};
use crate::spares;

/// The channel the proxy and the daemon listen on; the payload is a JSON [`Event`].
pub const NOTIFY_CHANNEL: &str = "apotheca_tenants";

/// What changed, as sent on [`NOTIFY_CHANNEL`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Event {
    pub op: String,
    pub schema: String,
}

/// Any role may NOTIFY any channel, so listeners must treat a payload as a hint to re-read
/// the tables, never as the truth.
pub(crate) async fn notify(client: &impl GenericClient, op: &str, schema: &str) -> Result<()> {
    // The same shape as [`Event`], built infallibly.
    let payload = serde_json::json!({ "op": op, "schema": schema }).to_string();
    client
        .execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// A tenant's display name: trimmed, 1 to 200 characters, no control characters.
pub fn parse_display_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::invalid("the tenant name is empty"));
    }
    if name.chars().count() > 200 {
        return Err(Error::invalid(
            "the tenant name is longer than 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "the tenant name contains control characters",
        ));
    }
    Ok(name.to_owned())
}

/// One tenant as `list-tenants` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub name: String,
    pub schema: String,
    pub status: String,
    pub role: String,
    /// Primary first.
    pub domains: Vec<String>,
    pub migration_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub policy: Policy,
    /// On Citus, the worker node its schema lives on (`name:port`); left out on plain
    /// PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A tenant's worker policy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Policy {
    pub min_workers: i32,
    pub max_workers: i32,
    pub idle_timeout_secs: i32,
    pub max_inflight_per_worker: i32,
    pub queue_length: i32,
}

/// The first user of a new tenant: an admin.
pub struct FirstAdmin {
    pub username: String,
    /// argon2id, as the worker checks it.
    pub password_hash: String,
}

impl FirstAdmin {
    /// Checks the username and password (bad input: exit 2) and hashes the password (within
    /// the process's bound on password hashing: [`Error::Busy`] past it).
    pub async fn new(username: &str, password: &str) -> Result<Self> {
        let username = username.trim();
        let valid = (1..=150).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
        if !valid {
            return Err(Error::invalid(
                "the admin username must be 1 to 150 letters, digits or . _ @ + -",
            ));
        }
        apotheca_pharmacy::accounts::check_new_password(password).map_err(Error::invalid)?;
        Ok(Self {
            username: username.to_owned(),
            password_hash: apotheca_pharmacy::accounts::hash_password_async(password).await?,
        })
    }
}

/// Everything needed to provision tenants.
pub struct Provisioner<'a> {
    pub db: &'a Database,
    pub secret: &'a Secret,
    pub migrations: &'a MigrationSet,
    pub role_limits: &'a TenantRoleSettings,
}

impl Provisioner<'_> {
    /// Creates the tenant in one transaction; on any failure nothing is left behind.
    pub async fn create(
        &self,
        client: &mut Client,
        name: &str,
        schema: &SchemaName,
        domain: &DomainName,
        admin: Option<&FirstAdmin>,
    ) -> Result<TenantInfo> {
        let tx = client.transaction().await?;
        let info = self.create_in(&tx, name, schema, domain, admin).await?;
        tx.commit().await?;
        Ok(info)
    }

    /// Creates the tenant in the caller's transaction, for a caller that fills it before the
    /// commit (`apotheca import`): the tenant exists for others only once that commits, and
    /// not at all if it rolls back.
    pub async fn create_in(
        &self,
        tx: &Transaction<'_>,
        name: &str,
        schema: &SchemaName,
        domain: &DomainName,
        admin: Option<&FirstAdmin>,
    ) -> Result<TenantInfo> {
        let name = parse_display_name(name)?;
        let database = self.db.name();
        let role = roles::role_name(database, schema);
        let password = roles::role_password(self.secret, &role);
        migrate::lock_schema(tx, schema.as_str()).await?;
        migrate::ensure_database_access(tx).await?;
        let taken = tx
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&schema.as_str()],
            )
            .await?;
        if taken.is_some() {
            return Err(Error::invalid(format!(
                "schema \"{schema}\" already exists"
            )));
        }
        domains::ensure_free(tx, domain).await?;
        // A spare brings its schema, migrated, and its dormant role, already granted; else
        // both are built here, the role first so its default privileges cover every table.
        // On Citus: a built schema is distributed, and the role needs node credentials.
        let citus = crate::citus::prepare(tx).await?;
        if !spares::claim(tx, self.migrations, schema.as_str(), &role).await? {
            let mut ddl = format!("CREATE SCHEMA {};\n", schema.quoted());
            ddl.push_str(&roles::create_dormant_role_sql(&role, database));
            ddl.push_str(&roles::default_privileges_sql(&role, schema.as_str()));
            tx.batch_execute(&ddl).await.map_err(map_conflict)?;
            let all: Vec<_> = self.migrations.tenant.iter().collect();
            migrate::apply(tx, schema.as_str(), &all, citus).await?;
        }
        tx.batch_execute(&roles::activate_role_sql(
            &role,
            &password,
            schema,
            database,
            self.role_limits,
        ))
        .await?;
        if citus {
            crate::citus::store_credentials(tx, &role, &password).await?;
        }
        let row = tx
            .query_one(
                "INSERT INTO public.tenants (schema_name, name, db_role) VALUES ($1, $2, $3) RETURNING id",
                &[&schema.as_str(), &name, &role],
            )
            .await
            .map_err(map_conflict)?;
        let id: i64 = row.get(0);
        tx.execute(
            "INSERT INTO public.domains (domain, tenant_id, is_primary) VALUES ($1, $2, true)",
            &[&domain.as_str(), &id],
        )
        .await
        .map_err(map_conflict)?;
        if let Some(admin) = admin {
            tx.execute(
                &format!(
                    "INSERT INTO {}.users (username, password_hash, full_name, role) VALUES ($1, $2, 'Administrator', 'admin')",
                    schema.quoted()
                ),
                &[&admin.username, &admin.password_hash],
            )
            .await?;
        }
        notify(tx, "created", schema.as_str()).await?;
        load(tx, schema.as_str()).await
    }
}

/// Unique violations and duplicate objects raced in by a concurrent command are bad input.
fn map_conflict(e: tokio_postgres::Error) -> Error {
    match e.code() {
        Some(c)
            if *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::DUPLICATE_SCHEMA
                || *c == SqlState::DUPLICATE_OBJECT =>
        {
            Error::invalid(db_message(&e))
        }
        _ => Error::Db(e),
    }
}

const SELECT_TENANTS: &str = "
    SELECT t.name, t.schema_name, t.status, t.db_role,
           coalesce((SELECT array_agg(d.domain ORDER BY NOT d.is_primary, d.domain)
                     FROM public.domains d WHERE d.tenant_id = t.id), '{}') AS domains,
           (SELECT max(m.version) FROM public.apotheca_migrations m WHERE m.schema_name = t.schema_name),
           t.created_at, t.min_workers, t.max_workers, t.idle_timeout_secs,
           t.max_inflight_per_worker, t.queue_length
    FROM public.tenants t";

fn tenant_from_row(row: &tokio_postgres::Row) -> TenantInfo {
    TenantInfo {
        name: row.get(0),
        schema: row.get(1),
        status: row.get(2),
        role: row.get(3),
        domains: row.get(4),
        migration_version: row.get(5),
        created_at: row.get(6),
        policy: Policy {
            min_workers: row.get(7),
            max_workers: row.get(8),
            idle_timeout_secs: row.get(9),
            max_inflight_per_worker: row.get(10),
            queue_length: row.get(11),
        },
        node: None,
    }
}

pub async fn list(client: &impl GenericClient) -> Result<Vec<TenantInfo>> {
    let rows = client
        .query(&format!("{SELECT_TENANTS} ORDER BY t.schema_name"), &[])
        .await?;
    let placements = if crate::citus::enabled(client).await? {
        crate::citus::placements(client).await?
    } else {
        Default::default()
    };
    Ok(rows
        .iter()
        .map(|row| {
            let mut t = tenant_from_row(row);
            t.node = placements.get(&t.schema).map(ToString::to_string);
            t
        })
        .collect())
}

/// One tenant, or the "unknown schema" error (exit status 2).
pub async fn load(client: &impl GenericClient, schema: &str) -> Result<TenantInfo> {
    let row = client
        .query_opt(
            &format!("{SELECT_TENANTS} WHERE t.schema_name = $1"),
            &[&schema],
        )
        .await?;
    row.as_ref()
        .map(tenant_from_row)
        .ok_or_else(|| unknown(schema))
}

/// What the daemon needs of a tenant to run its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runnable {
    pub schema: String,
    /// Not suspended.
    pub active: bool,
    pub db_role: String,
    pub policy: Policy,
}

const SELECT_RUNNABLE: &str = "SELECT schema_name, status, db_role, min_workers, max_workers,
                                      idle_timeout_secs, max_inflight_per_worker, queue_length
                               FROM public.tenants";

fn runnable_from_row(row: &tokio_postgres::Row) -> Runnable {
    Runnable {
        schema: row.get(0),
        active: row.get::<_, &str>(1) == "active",
        db_role: row.get(2),
        policy: Policy {
            min_workers: row.get(3),
            max_workers: row.get(4),
            idle_timeout_secs: row.get(5),
            max_inflight_per_worker: row.get(6),
            queue_length: row.get(7),
        },
    }
}

/// Every tenant, as the daemon runs it.
pub async fn runnable_all(client: &impl GenericClient) -> Result<Vec<Runnable>> {
    let rows = client.query(SELECT_RUNNABLE, &[]).await?;
    Ok(rows.iter().map(runnable_from_row).collect())
}

/// One tenant as the daemon runs it; none when there is no such tenant (deleted meanwhile).
pub async fn runnable(client: &impl GenericClient, schema: &str) -> Result<Option<Runnable>> {
    let row = client
        .query_opt(
            &format!("{SELECT_RUNNABLE} WHERE schema_name = $1"),
            &[&schema],
        )
        .await?;
    Ok(row.as_ref().map(runnable_from_row))
}

/// Whether `schema` or `domain` is in use already: a schema of that name (a tenant's, a
/// spare's, anything's), a tenant row, or a domain.
pub async fn taken(
    client: &impl GenericClient,
    schema: &SchemaName,
    domain: &DomainName,
) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                 OR EXISTS (SELECT 1 FROM public.tenants WHERE schema_name = $1)
                 OR EXISTS (SELECT 1 FROM public.domains WHERE domain = $2)",
            &[&schema.as_str(), &domain.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

pub(crate) fn unknown(schema: &str) -> Error {
    Error::invalid(format!(
        "no tenant with schema {schema:?} (see `apotheca list-tenants`)"
    ))
}

/// Sets the status; returns false when it already was.
pub async fn set_status(client: &mut Client, schema: &str, status: &str) -> Result<bool> {
    let tx = client.transaction().await?;
    let changed = set_status_in(&tx, schema, status).await?;
    tx.commit().await?;
    Ok(changed)
}

/// [`set_status`] in the caller's transaction.
pub async fn set_status_in(tx: &Transaction<'_>, schema: &str, status: &str) -> Result<bool> {
    let before: Option<String> = tx
        .query_opt(
            "SELECT status FROM public.tenants WHERE schema_name = $1 FOR UPDATE",
            &[&schema],
        )
        .await?
        .map(|r| r.get(0));
    match before {
        None => Err(unknown(schema)),
        Some(s) if s == status => Ok(false),
        Some(_) => {
            tx.execute(
                "UPDATE public.tenants SET status = $2 WHERE schema_name = $1",
                &[&schema, &status],
            )
            .await?;
            let op = if status == "suspended" {
                "suspended"
            } else {
                "resumed"
            };
            notify(tx, op, schema).await?;
            Ok(true)
        }
    }
}

/// Deletes a tenant. First its role stops logging in and its sessions end (so the archive is
/// the final state and nothing holds its tables), then the optional archive is written, then
/// schema, role and rows go in one transaction that re-checks the tenant under its lock.
/// A failed archive gives the role its logins back and deletes nothing.
pub async fn delete(
    client: &mut Client,
    db: &Database,
    schema: &SchemaName,
    archive: Option<&Path>,
) -> Result<TenantInfo> {
    let schema = schema.as_str();
    let info = load(&*client, schema).await?;
    let role = quote_ident(&info.role);
    client
        .batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
        .await?;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&info.role],
        )
        .await?;
    if let Some(path) = archive {
        if let Err(e) = dump_schema(db, schema, path).await {
            client
                .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
                .await?;
            return Err(e);
        }
    }
    let tx = client.transaction().await?;
    migrate::lock_schema(&tx, schema).await?;
    let still_there = tx
        .query_opt(
            "SELECT 1 FROM public.tenants WHERE schema_name = $1 FOR UPDATE",
            &[&schema],
        )
        .await?
        .is_some();
    if !still_there {
        return Err(unknown(schema));
    }
    tx.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(schema)
    ))
    .await?;
    let role_exists = tx
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&info.role])
        .await?
        .is_some();
    if role_exists {
        // DROP OWNED also removes what the role made outside its schema in this database
        // (large objects, grants); it cannot connect to any other database.
        tx.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
            .await?;
    }
    if crate::citus::enabled(&tx).await? {
        crate::citus::forget_credentials(&tx, &info.role).await?;
    }
    tx.execute(
        "DELETE FROM public.apotheca_migrations WHERE schema_name = $1",
        &[&schema],
    )
    .await?;
    tx.execute(
        "DELETE FROM public.tenants WHERE schema_name = $1",
        &[&schema],
    )
    .await?;
    notify(&tx, "deleted", schema).await?;
    tx.commit().await?;
    Ok(info)
}

/// `pg_dump -n schema` in PostgreSQL's custom format (restore with `pg_restore`).
async fn dump_schema(db: &Database, schema: &str, path: &Path) -> Result<()> {
    let mut cmd = db.tool_command("pg_dump", db.admin_url());
    cmd.arg("--format=custom")
        .arg(format!("--schema={}", quote_ident(schema)))
        .arg("--no-owner")
        .arg("--file")
        .arg(path);
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(|e| Error::Tool(format!("running pg_dump: {e}")))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "pg_dump failed, nothing was deleted: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
