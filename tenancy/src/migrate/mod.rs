//! The migration runner: what is applied where (`public.apotheca_migrations`), what is pending,
//! and applying it — each schema in its own transaction under an advisory lock, many schemas
//! in parallel, one failing schema never stopping the others. Checking whether anything is
//! pending over any number of tenants takes one query.
//!
//! This module owns running: reading the records, bootstrapping the records table, the
//! locks, applying and recording migrations and the database's access rules. What a schema
//! still needs, and the refusal of edited migrations, is decided in `plan`.

mod plan;

use std::collections::BTreeMap;
use std::time::Instant;

use apotheca_common::names::quote_ident;
use apotheca_migrations::{Migration, MigrationSet, RECORDS_TABLE_SQL};
use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::error::{db_message, Error, Result};
use crate::roles;

/// Who hears how a migration run goes (the CLI shows a bar or lines; the test kit nothing).
pub trait Progress: Sync {
    /// The run starts on `schemas` schemas.
    fn start(&self, schemas: u64);
    /// One schema is done (applied, planned or failed).
    fn schema_done(&self, outcome: &SchemaOutcome);
    /// The run is over.
    fn finish(&self);
}

/// Hears nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: u64) {}
    fn schema_done(&self, _: &SchemaOutcome) {}
    fn finish(&self) {}
}

use plan::{pending, verify_checksums, Kind, SchemaState};

/// Advisory lock namespace (first key) for migration locks; the second key is the schema's hash.
pub(crate) const LOCK_NAMESPACE: i32 = 0x4150_4f54; // "APOT"

/// Which schemas a run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `public`, then every tenant.
    All,
    /// `public` only (`--shared`).
    Shared,
    /// One tenant schema (`--schema`).
    Schema(String),
}

/// A migration applied to a schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub version: i32,
    pub file: String,
    pub duration_ms: i64,
}

/// What happened to one schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaOutcome {
    pub schema: String,
    /// What it had pending (the plan); with `--plan` nothing of it was applied.
    pub pending: Vec<String>,
    pub applied: Vec<Applied>,
    pub error: Option<String>,
}

/// The run's summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub outcomes: Vec<SchemaOutcome>,
    pub planned_only: bool,
}

impl Summary {
    pub fn failed(&self) -> impl Iterator<Item = &SchemaOutcome> {
        self.outcomes.iter().filter(|o| o.error.is_some())
    }

    pub fn migrated(&self) -> impl Iterator<Item = &SchemaOutcome> {
        self.outcomes
            .iter()
            .filter(|o| o.error.is_none() && !o.applied.is_empty())
    }

    pub fn current(&self) -> impl Iterator<Item = &SchemaOutcome> {
        self.outcomes
            .iter()
            .filter(|o| o.error.is_none() && o.pending.is_empty())
    }
}

/// Applies (or with `plan_only` lists) pending migrations for `target`.
pub async fn run(
    pool: &Pool,
    set: &MigrationSet,
    target: &Target,
    plan_only: bool,
    jobs: usize,
    reporter: &dyn Progress,
) -> Result<Summary> {
    let client = pool.get().await?;
    let mut summary = Summary {
        planned_only: plan_only,
        ..Summary::default()
    };
    let (records, tenants) = existing_tables(&client).await?;
    if !tenants && matches!(target, Target::Schema(_)) {
        return Err(Error::invalid(NOT_MIGRATED));
    }
    // Everything is read and checked before anything is applied or created.
    let public = if records {
        load_states(&client, Some("public"), false).await?.remove(0)
    } else {
        SchemaState {
            name: "public".into(),
            kind: Kind::Public,
            applied: BTreeMap::new(),
        }
    };
    let only = match target {
        Target::Schema(s) => Some(s.as_str()),
        _ => None,
    };
    let states = if tenants && *target != Target::Shared {
        load_states(&client, only, true).await?
    } else {
        vec![]
    };
    if let Some(schema) = only {
        if states.is_empty() {
            return Err(Error::invalid(format!(
                "no tenant with schema \"{schema}\""
            )));
        }
    }
    if only.is_none() {
        verify_checksums(std::slice::from_ref(&public), &set.shared, "shared")?;
    }
    verify_checksums(&states, &set.tenant, "tenant")?;
    if !records && !plan_only {
        bootstrap(&client).await?;
    }
    drop(client);

    if only.is_none() {
        let outcome = migrate_one(pool, public, &set.shared, plan_only).await;
        reporter.schema_done(&outcome);
        let failed = outcome.error.is_some();
        summary.outcomes.push(outcome);
        if !failed && !plan_only {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            ensure_database_access(&tx).await?;
            crate::citus::configure_database(&*tx).await?;
            tx.commit().await?;
        }
        if failed || *target == Target::Shared {
            return Ok(summary);
        }
    }

    let (current, work): (Vec<_>, Vec<_>) = states
        .into_iter()
        .partition(|s| pending(s, &set.tenant).is_ok_and(|p| p.is_empty()));
    summary
        .outcomes
        .extend(current.into_iter().map(|s| SchemaOutcome {
            schema: s.name,
            pending: vec![],
            applied: vec![],
            error: None,
        }));
    reporter.start(work.len() as u64);
    let mut results = futures::stream::iter(work)
        .map(|state| migrate_one(pool, state, &set.tenant, plan_only))
        .buffer_unordered(jobs.max(1));
    while let Some(outcome) = results.next().await {
        reporter.schema_done(&outcome);
        summary.outcomes.push(outcome);
    }
    reporter.finish();
    summary
        .outcomes
        .sort_by(|a, b| (a.schema != "public", &a.schema).cmp(&(b.schema != "public", &b.schema)));
    Ok(summary)
}

/// The refusal when a command needs the public schema's tables.
pub const NOT_MIGRATED: &str =
    "the public schema is not migrated yet; run `apotheca migrate-schemas --shared` first";

/// Whether the records table and `public.tenants` exist.
async fn existing_tables(client: &Client) -> Result<(bool, bool)> {
    let row = client
        .query_one(
            "SELECT to_regclass('public.apotheca_migrations') IS NOT NULL, \
                    to_regclass('public.tenants') IS NOT NULL",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Creates the records table (under a lock: two first runs may race).
async fn bootstrap(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, 0); {RECORDS_TABLE_SQL} COMMIT;"
        ))
        .await?;
    Ok(())
}

/// Every schema's applied migrations, in one query.
async fn load_states(
    client: &Client,
    only: Option<&str>,
    tenants: bool,
) -> Result<Vec<SchemaState>> {
    let rows = if tenants {
        client
            .query(
                "SELECT s.schema_name, s.db_role, m.version, m.checksum
                 FROM (SELECT schema_name, db_role FROM public.tenants
                       UNION ALL
                       SELECT schema_name, NULL FROM public.spare_schemas WHERE $1::text IS NULL) s
                 LEFT JOIN public.apotheca_migrations m ON m.schema_name = s.schema_name
                 WHERE $1::text IS NULL OR s.schema_name = $1
                 ORDER BY s.schema_name, m.version",
                &[&only],
            )
            .await?
    } else {
        client
            .query(
                "SELECT s.schema_name, NULL::text, m.version, m.checksum
                 FROM (SELECT $1::text AS schema_name) s
                 LEFT JOIN public.apotheca_migrations m ON m.schema_name = s.schema_name
                 ORDER BY m.version",
                &[&only],
            )
            .await?
    };
    let mut states: Vec<SchemaState> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        if states.last().is_none_or(|s| s.name != name) {
            let kind = match row.get::<_, Option<String>>(1) {
                Some(role) => Kind::Tenant(role),
                None if tenants => Kind::Spare,
                None => Kind::Public,
            };
            states.push(SchemaState {
                name: name.clone(),
                kind,
                applied: BTreeMap::new(),
            });
        }
        if let (Some(version), Some(checksum)) = (
            row.get::<_, Option<i32>>(2),
            row.get::<_, Option<String>>(3),
        ) {
            if let Some(state) = states.last_mut() {
                state.applied.insert(version, checksum);
            }
        }
    }
    Ok(states)
}

/// Migrates one schema in its own transaction (or just reports its plan).
async fn migrate_one(
    pool: &Pool,
    state: SchemaState,
    migrations: &[Migration],
    plan_only: bool,
) -> SchemaOutcome {
    let mut outcome = SchemaOutcome {
        schema: state.name.clone(),
        pending: vec![],
        applied: vec![],
        error: None,
    };
    match pending(&state, migrations) {
        Ok(todo) => outcome.pending = todo.iter().map(|m| m.file_name()).collect(),
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    }
    if plan_only || outcome.pending.is_empty() {
        return outcome;
    }
    let result = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let applied = migrate_locked(&tx, &state, migrations).await?;
        tx.commit().await?;
        Ok::<_, Error>(applied)
    }
    .await;
    match result {
        Ok(applied) => outcome.applied = applied,
        Err(Error::Db(e)) => outcome.error = Some(db_message(&e)),
        Err(e) => outcome.error = Some(e.to_string()),
    }
    outcome
}

async fn migrate_locked(
    tx: &Transaction<'_>,
    state: &SchemaState,
    migrations: &[Migration],
) -> Result<Vec<Applied>> {
    lock_schema(tx, &state.name).await?;
    // A tenant deleted, or a spare claimed, since the run began has nothing left to migrate here.
    let still_there = match &state.kind {
        Kind::Public => true,
        Kind::Tenant(_) => tx
            .query_opt(
                "SELECT 1 FROM public.tenants WHERE schema_name = $1",
                &[&state.name],
            )
            .await?
            .is_some(),
        Kind::Spare => tx
            .query_opt(
                "SELECT 1 FROM public.spare_schemas WHERE schema_name = $1",
                &[&state.name],
            )
            .await?
            .is_some(),
    };
    if !still_there {
        return Ok(vec![]);
    }
    // Re-read under the lock: another run may have migrated this schema meanwhile.
    let fresh = load_applied(tx, &state.name).await?;
    let current = SchemaState {
        applied: fresh,
        ..state.clone()
    };
    let todo = pending(&current, migrations).map_err(Error::Plan)?;
    if todo.is_empty() {
        return Ok(vec![]);
    }
    if state.kind != Kind::Public {
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&state.name],
            )
            .await?
            .is_some();
        if !exists {
            return Err(Error::Inconsistent(format!(
                "schema {:?} does not exist in the database",
                state.name
            )));
        }
    }
    let citus = state.kind != Kind::Public && crate::citus::prepare(tx).await?;
    let applied = apply(tx, &state.name, &todo, citus).await?;
    // New tables are granted to the tenant's role by the default privileges of the admin who
    // created the schema; only another admin's migrations need the (catalog-scanning) grant.
    if state.kind != Kind::Public {
        let by_owner: bool = tx
            .query_one(
                "SELECT nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 FROM pg_namespace WHERE nspname = $1",
                &[&state.name],
            )
            .await?
            .get(0);
        if !by_owner {
            let role = match &state.kind {
                Kind::Tenant(role) => role.clone(),
                _ => tx
                    .query_one(
                        "SELECT db_role FROM public.spare_schemas WHERE schema_name = $1",
                        &[&state.name],
                    )
                    .await?
                    .get(0),
            };
            tx.batch_execute(&roles::grants_sql(&role, &state.name))
                .await?;
        }
    }
    Ok(applied)
}

/// Makes sure PUBLIC cannot connect to (or make temporary objects in) this database and that
/// the tenant group can connect. One query when all is well; mended under a lock otherwise.
pub(crate) async fn ensure_database_access(tx: &Transaction<'_>) -> Result<()> {
    let database: String = tx.query_one("SELECT current_database()", &[]).await?.get(0);
    let group = roles::group_role(&database);
    if !access_needed(tx, &group).await? {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_NAMESPACE])
        .await?;
    if access_needed(tx, &group).await? {
        tx.batch_execute(&roles::database_access_sql(&database))
            .await?;
    }
    Ok(())
}

async fn access_needed(tx: &Transaction<'_>, group: &str) -> Result<bool> {
    let row = tx
        .query_one(roles::DATABASE_ACCESS_NEEDED, &[&group])
        .await?;
    Ok(row.get(0))
}

/// Takes the schema's migration lock until the end of the transaction.
pub(crate) async fn lock_schema(tx: &impl GenericClient, schema: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_NAMESPACE, &schema],
    )
    .await?;
    Ok(())
}

async fn load_applied(tx: &impl GenericClient, schema: &str) -> Result<BTreeMap<i32, String>> {
    let rows = tx
        .query(
            "SELECT version, checksum FROM public.apotheca_migrations WHERE schema_name = $1",
            &[&schema],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Runs `todo` in `schema` inside the caller's transaction and records each. `citus`: the
/// caller's [`crate::citus::prepare`] found Citus, which sends some DDL on to its nodes as the
/// text it came in, so each statement goes alone.
pub(crate) async fn apply(
    tx: &Transaction<'_>,
    schema: &str,
    todo: &[&Migration],
    citus: bool,
) -> Result<Vec<Applied>> {
    tx.batch_execute(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
        .await?;
    let mut applied = Vec::with_capacity(todo.len());
    for m in todo {
        let started = Instant::now();
        let failed = |message: String| Error::Migration {
            file: m.file_name(),
            message,
        };
        if citus {
            let statements =
                apotheca_migrations::statements(&m.sql).map_err(|e| failed(e.to_string()))?;
            for statement in statements {
                tx.batch_execute(statement)
                    .await
                    .map_err(|e| failed(db_message(&e)))?;
            }
        } else {
            tx.batch_execute(&m.sql)
                .await
                .map_err(|e| failed(db_message(&e)))?;
        }
        let duration_ms = started.elapsed().as_millis() as i64;
        tx.execute(
            "INSERT INTO public.apotheca_migrations (schema_name, version, name, checksum, duration_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[&schema, &m.version, &m.name, &m.checksum, &(duration_ms as i32)],
        )
        .await?;
        applied.push(Applied {
            version: m.version,
            file: m.file_name(),
            duration_ms,
        });
    }
    Ok(applied)
}
