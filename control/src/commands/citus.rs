//! The commands for a Citus cluster's worker nodes: `list-nodes`, `move-tenant` and
//! `rebalance-tenants` (moves planned by [`citus::rebalance_plan`], made one at a time).

use std::time::Instant;

use apotheca_common::names::SchemaName;
use apotheca_tenancy::citus::{self, Node};
use apotheca_tenancy::tenants;

use super::{ensure_public_migrated, Context};
use crate::error::{ControlError, Result};

/// Refuses the node commands on plain PostgreSQL.
async fn require_citus(client: &tokio_postgres::Client) -> Result<()> {
    if citus::enabled(client).await? {
        Ok(())
    } else {
        Err(ControlError::invalid(
            "this database is plain PostgreSQL, not a Citus coordinator's: every tenant is on the one server (see docs/citus.md)",
        ))
    }
}

pub(super) async fn list_nodes(ctx: &Context, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    require_citus(&client).await?;
    let nodes = citus::nodes(&client).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    if nodes.is_empty() {
        println!("no worker nodes hold tenants yet; add one with citus_add_node");
    }
    for n in &nodes {
        println!(
            "{}  {} schema(s){}",
            n.node,
            n.schemas,
            if n.active { "" } else { "  (inactive)" }
        );
    }
    Ok(())
}

pub(super) async fn move_tenant(ctx: &Context, schema: &SchemaName, to: &str) -> Result<()> {
    let to: Node = to.parse()?;
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    require_citus(&client).await?;
    // Tenants only: a spare is not moved by name.
    tenants::load(&client, schema.as_str()).await?;
    let started = Instant::now();
    match citus::move_schema(&client, schema.as_str(), &to).await? {
        None => println!("{schema} is already on {to}; nothing moved"),
        Some(from) => println!(
            "moved {schema} from {from} to {to} in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(())
}

pub(super) async fn rebalance(ctx: &Context, dry_run: bool, json: bool) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    require_citus(&client).await?;
    let tenants: std::collections::BTreeSet<String> = tenants::list(&client)
        .await?
        .into_iter()
        .map(|t| t.schema)
        .collect();
    // Tenants only: spares are spread by Citus as they are made, and claimed where they are.
    let placements = citus::placements(&client)
        .await?
        .into_iter()
        .filter(|(schema, _)| tenants.contains(schema))
        .collect();
    let nodes: Vec<Node> = citus::nodes(&client)
        .await?
        .into_iter()
        .filter(|n| n.active)
        .map(|n| n.node)
        .collect();
    let moves = citus::rebalance_plan(&placements, &nodes);
    if json && dry_run {
        println!("{}", serde_json::to_string_pretty(&moves)?);
        return Ok(());
    }
    if moves.is_empty() && !json {
        println!(
            "the tenants are spread evenly over {} node(s); nothing to move",
            nodes.len()
        );
        return Ok(());
    }
    for m in &moves {
        if dry_run {
            println!("would move {} from {} to {}", m.schema, m.from, m.to);
            continue;
        }
        let started = Instant::now();
        citus::move_schema(&client, &m.schema, &m.to).await?;
        if !json {
            println!(
                "moved {} from {} to {} in {:.1}s",
                m.schema,
                m.from,
                m.to,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&moves)?);
    }
    Ok(())
}
