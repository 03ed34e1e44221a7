//! The `apotheca db` subcommands: start, stop and status of the private cluster, and the URL
//! (or a `psql` session) for the admin or for a tenant's own role.

use std::os::unix::process::CommandExt;

use apotheca_common::devdb::PrivateCluster;
use apotheca_common::names::SchemaName;

use super::{ensure_public_migrated, Context};
use crate::cli::DbCommand;
use crate::error::{ControlError, Result};
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles;
use apotheca_tenancy::tenants;

fn private_cluster(ctx: &Context) -> Result<PrivateCluster> {
    private_cluster_with(ctx, ctx.settings.private_db.citus_nodes)
}

fn private_cluster_with(ctx: &Context, citus_nodes: u32) -> Result<PrivateCluster> {
    if ctx
        .settings
        .database
        .resolve(ctx.cli_url.as_deref())
        .is_some()
    {
        return Err(ControlError::invalid(
            "a database is configured (--database-url, DATABASE_URL or [database] url); `apotheca db start|stop|status` manage only the private cluster",
        ));
    }
    let mut settings = ctx.settings.private_db.clone();
    settings.citus_nodes = citus_nodes;
    Ok(PrivateCluster::new(&settings)?)
}

/// One line per Citus worker node of `cluster`: where it is, as `pg_dist_node` names it.
fn print_nodes(cluster: &PrivateCluster) {
    for node in cluster.citus_nodes() {
        println!(
            "  Citus node {}:{} (data {}{})",
            node.socket_dir().display(),
            node.port(),
            node.data_dir().display(),
            if node.is_running() {
                ""
            } else {
                ", not running"
            }
        );
    }
}

pub(super) async fn db_command(ctx: &Context, cmd: DbCommand) -> Result<()> {
    match cmd {
        DbCommand::Start { citus_nodes } => {
            let cluster = private_cluster_with(
                ctx,
                citus_nodes.unwrap_or(ctx.settings.private_db.citus_nodes),
            )?;
            let started = cluster.start().await?;
            let what = match (started.initialised, started.already_running) {
                (true, _) => "created and started",
                (false, true) => "already running",
                (false, false) => "started",
            };
            let kind = if cluster.citus_nodes().is_empty() {
                "PostgreSQL"
            } else {
                "PostgreSQL (Citus coordinator)"
            };
            println!(
                "private {kind} {what}: data {}, socket in {}",
                cluster.data_dir().display(),
                cluster.socket_dir().display()
            );
            print_nodes(&cluster);
            Ok(())
        }
        DbCommand::Stop => {
            let cluster = private_cluster(ctx)?;
            let was = cluster.stop().await?;
            println!(
                "private PostgreSQL {}",
                if was { "stopped" } else { "was not running" }
            );
            Ok(())
        }
        DbCommand::Status => {
            let cluster = private_cluster(ctx)?;
            if cluster.is_running() {
                println!(
                    "private PostgreSQL running: data {}, socket in {}, log {}",
                    cluster.data_dir().display(),
                    cluster.socket_dir().display(),
                    cluster.log_file().display()
                );
                print_nodes(&cluster);
                Ok(())
            } else {
                println!(
                    "private PostgreSQL is not running (data {})",
                    cluster.data_dir().display()
                );
                Err(ControlError::Other("not running".into()))
            }
        }
        DbCommand::Url { schema } => {
            println!("{}", url_for(ctx, schema.as_ref()).await?.0);
            Ok(())
        }
        DbCommand::Psql { schema, args } => {
            let (url, db) = url_for(ctx, schema.as_ref()).await?;
            let err = db.tool_command("psql", &url).args(args).exec();
            Err(ControlError::Other(format!("running psql: {err}")))
        }
    }
}

/// The admin URL, or a tenant role's URL (the tenant must exist).
async fn url_for(ctx: &Context, schema: Option<&SchemaName>) -> Result<(String, Database)> {
    let db = ctx.database().await?;
    let Some(schema) = schema else {
        return Ok((db.admin_url().to_owned(), db));
    };
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let tenant = tenants::load(&client, schema.as_str()).await?;
    let secret = ctx.secret(&client).await?;
    let url = db.role_url(&tenant.role, &roles::role_password(&secret, &tenant.role));
    Ok((url, db))
}
