//! `sync-roles`: every tenant's and spare schema's role made to match the tables and the server
//! secret again — created when missing, member of this database's tenant group, its password
//! (as a SCRAM verifier), `search_path`, timeouts and connection limit set, its rights on its
//! own schema granted (the objects there now and, through default privileges, those that
//! migrations add); and PUBLIC kept out of the database and of creating in `public`. Roles live outside any database, so a whole-database dump restored onto
//! another cluster (`pg_restore --no-owner --no-acl`) has tables that name roles which do not
//! exist yet; this brings them back. Idempotent; one transaction.

use apotheca_common::names::{quote_ident, quote_literal, SchemaName};
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::migrate;
use crate::roles::TenantRoleSettings;
use crate::roles::{self, Secret};

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Synced {
    /// Tenants whose roles were set.
    pub tenants: usize,
    /// Spare schemas whose dormant roles were set.
    pub spares: usize,
    /// Roles that did not exist and were created.
    pub created: Vec<String>,
}

pub async fn sync(
    client: &mut Client,
    database: &str,
    secret: &Secret,
    limits: &TenantRoleSettings,
) -> Result<Synced> {
    let tx = client.transaction().await?;
    // The tenant group and its CONNECT, PUBLIC's taken away, and no CREATE in public (the
    // first shared migration's REVOKE): a restore without the dump's ACLs has neither.
    migrate::ensure_database_access(&tx).await?;
    tx.batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await?;
    // On Citus every tenant role's node credentials too.
    let citus = crate::citus::enabled(&tx).await?;
    let rows = tx
        .query(
            "SELECT t.schema_name, t.db_role, false AS spare FROM public.tenants t
             UNION ALL
             SELECT s.schema_name, s.db_role, true FROM public.spare_schemas s
             ORDER BY 1",
            &[],
        )
        .await?;
    let mut done = Synced::default();
    for row in rows {
        let (schema, role, spare): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        let parsed = SchemaName::parse(&schema).ok();
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        let present = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await?
            .is_some();
        if !present {
            return Err(Error::invalid(format!(
                "schema \"{schema}\" is listed but missing from the database; restore it first"
            )));
        }
        let mut sql = String::new();
        if !exists {
            sql.push_str(&roles::create_dormant_role_sql(&role, database));
            done.created.push(role.clone());
        } else {
            sql.push_str(&format!(
                "GRANT {} TO {};\n",
                quote_ident(&roles::group_role(database)),
                quote_ident(&role)
            ));
        }
        sql.push_str(&roles::default_privileges_sql(&role, &schema));
        sql.push_str(&roles::grants_sql(&role, &schema));
        if spare {
            done.spares += 1;
        } else {
            // Tenant schemas are valid names (the table's CHECK); spares keep their own.
            let Some(name) = parsed else {
                return Err(Error::Inconsistent(format!(
                    "tenant schema {} is not a valid schema name",
                    quote_literal(&schema)
                )));
            };
            let password = roles::role_password(secret, &role);
            sql.push_str(&roles::activate_role_sql(
                &role, &password, &name, database, limits,
            ));
            done.tenants += 1;
            tx.batch_execute(&sql).await?;
            if citus {
                crate::citus::store_credentials(&tx, &role, &password).await?;
            }
            continue;
        }
        tx.batch_execute(&sql).await?;
    }
    tx.commit().await?;
    Ok(done)
}
