//! The spare schema pool: empty tenant schemas built ahead of time, at the current migration
//! version, so that `create-tenant` renames one (milliseconds) instead of running the tenant
//! migrations (tens of milliseconds of DDL). Filling happens off the request path (`migrate-schemas`,
//! `prepare-spares`, `up`, the daemon); an empty pool only means create-tenant builds from scratch.

use apotheca_common::names::quote_ident;
use apotheca_migrations::MigrationSet;
use rand::distr::{Alphanumeric, SampleString};
use tokio_postgres::{Client, Transaction};

use crate::error::Result;
use crate::{migrate, roles};

/// Every spare's name starts with this (a prefix `SchemaName` refuses for tenants).
pub const PREFIX: &str = "apotheca_spare_";

/// What a spare must have applied to be claimed: `version:checksum` of every tenant migration.
fn fingerprint(set: &MigrationSet) -> Vec<String> {
    set.tenant
        .iter()
        .map(|m| format!("{}:{}", m.version, m.checksum))
        .collect()
}

/// The condition (on spare `s`, with the fingerprint as $1) that a spare is claimable by
/// this build: exactly this build's tenant migrations applied, with the same checksums.
const CURRENT: &str = "(SELECT array_agg(m.version || ':' || m.checksum ORDER BY m.version)
     FROM public.apotheca_migrations m WHERE m.schema_name = s.schema_name) = $1";

/// How many spares are current (claimable by this build).
pub async fn count_current(client: &Client, set: &MigrationSet) -> Result<i64> {
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM public.spare_schemas s WHERE {CURRENT}"),
            &[&fingerprint(set)],
        )
        .await?;
    Ok(row.get(0))
}

/// Builds spares until `target` are current; returns how many were built. One filler at a
/// time (a session advisory lock): a concurrent call returns 0 at once instead of overshooting.
pub async fn fill(client: &mut Client, set: &MigrationSet, target: usize) -> Result<usize> {
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, 1)",
            &[&migrate::LOCK_NAMESPACE],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let built = fill_locked(client, set, target).await;
    client
        .execute(
            "SELECT pg_advisory_unlock($1, 1)",
            &[&migrate::LOCK_NAMESPACE],
        )
        .await?;
    built
}

async fn fill_locked(client: &mut Client, set: &MigrationSet, target: usize) -> Result<usize> {
    let have = usize::try_from(count_current(client, set).await?).unwrap_or(0);
    let mut built = 0;
    for _ in have..target {
        let name = format!(
            "{PREFIX}{}",
            Alphanumeric
                .sample_string(&mut rand::rng(), 12)
                .to_lowercase()
        );
        let tx = client.transaction().await?;
        migrate::ensure_database_access(&tx).await?;
        let database: String = tx.query_one("SELECT current_database()", &[]).await?.get(0);
        let citus = crate::citus::prepare(&tx).await?;
        // The spare's dormant role takes the schema name: both are renamed at claim.
        let mut ddl = format!("CREATE SCHEMA {};\n", quote_ident(&name));
        ddl.push_str(&roles::create_dormant_role_sql(&name, &database));
        ddl.push_str(&roles::default_privileges_sql(&name, &name));
        tx.batch_execute(&ddl).await?;
        let all: Vec<_> = set.tenant.iter().collect();
        migrate::apply(&tx, &name, &all, citus).await?;
        tx.execute(
            "INSERT INTO public.spare_schemas (schema_name, db_role) VALUES ($1, $1)",
            &[&name],
        )
        .await?;
        tx.commit().await?;
        built += 1;
    }
    Ok(built)
}

/// Takes a current spare inside the caller's transaction and renames it to `schema` and its
/// dormant role to `role` (still NOLOGIN: the caller activates it), moving its migration
/// records along. False when no current spare is free.
pub(crate) async fn claim(
    tx: &Transaction<'_>,
    set: &MigrationSet,
    schema: &str,
    role: &str,
) -> Result<bool> {
    let candidates = tx
        .query(
            &format!("SELECT s.schema_name FROM public.spare_schemas s WHERE {CURRENT} ORDER BY s.created_at LIMIT 8"),
            &[&fingerprint(set)],
        )
        .await?;
    for row in candidates {
        let spare: String = row.get(0);
        // A migration run may hold this spare; skip it rather than wait.
        let free: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                &[&migrate::LOCK_NAMESPACE, &spare],
            )
            .await?
            .get(0);
        if !free {
            continue;
        }
        // Re-checked under the lock: still a spare (not claimed meanwhile), still current.
        let current = tx
            .query_opt(
                &format!("SELECT 1 FROM public.spare_schemas s WHERE s.schema_name = $2 AND {CURRENT} FOR UPDATE SKIP LOCKED"),
                &[&fingerprint(set), &spare],
            )
            .await?
            .is_some();
        if !current {
            continue;
        }
        tx.batch_execute(&format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote_ident(&spare),
            quote_ident(schema)
        ))
        .await?;
        let dormant: String = tx
            .query_one(
                "SELECT db_role FROM public.spare_schemas WHERE schema_name = $1",
                &[&spare],
            )
            .await?
            .get(0);
        tx.batch_execute(&format!(
            "ALTER ROLE {} RENAME TO {}",
            quote_ident(&dormant),
            quote_ident(role)
        ))
        .await?;
        tx.execute(
            "UPDATE public.apotheca_migrations SET schema_name = $2 WHERE schema_name = $1",
            &[&spare, &schema],
        )
        .await?;
        tx.execute(
            "DELETE FROM public.spare_schemas WHERE schema_name = $1",
            &[&spare],
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}
