//! Apotheca on a Citus coordinator: each tenant schema is a Citus distributed schema, a unit
//! that lives whole on one worker node, and every query reaches it through the coordinator,
//! routed by the `search_path` every tenant role already has. This module owns what differs
//! from plain PostgreSQL:
//!
//! - detection (the `citus` extension in Apotheca's database) and `[database] citus`;
//! - the session settings under which tenant schemas are built ([`prepare`]): schemas made
//!   distributed, and the trigger functions of migrations allowed on their tables;
//! - the database default that makes every later session's new schema distributed too
//!   (a restore through `psql`, say) ([`configure_database`]);
//! - the credentials the coordinator uses to reach the nodes as a tenant's role
//!   (`pg_dist_authinfo`: every server asks for passwords) ([`store_credentials`]);
//! - where each tenant lives, the nodes, and moving a tenant to another node
//!   ([`placements`], [`nodes`], [`move_schema`], [`rebalance_plan`]).

use std::collections::BTreeMap;

use apotheca_common::names::quote_ident;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::error::{db_message, Error, Result};

/// Whether Apotheca's database is a Citus coordinator's (the extension is installed in it).
pub async fn enabled(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Checks `[database] citus` against the database: `true` needs the extension, `false`
/// refuses a database that has it (its schemas would not be distributed), unset takes what
/// the database is. Returns whether Citus is in use.
pub async fn check_setting(client: &impl GenericClient, setting: Option<bool>) -> Result<bool> {
    let found = enabled(client).await?;
    match (setting, found) {
        (Some(true), false) => Err(Error::invalid(
            "[database] citus = true, but the database has no citus extension: connect to a Citus coordinator's database (CREATE EXTENSION citus, nodes added), or unset it",
        )),
        (Some(false), true) => Err(Error::invalid(
            "[database] citus = false, but the database is a Citus coordinator's (it has the citus extension): unset it",
        )),
        _ => Ok(found),
    }
}

/// For the rest of the caller's transaction, on Citus: a new schema is a distributed schema
/// (its tables live together on one node), and triggers may be made on its tables (a
/// migration's trigger function runs on the node, beside the table). Nothing on plain
/// PostgreSQL. One round trip; returns whether the database is on Citus.
pub async fn prepare(tx: &impl GenericClient) -> Result<bool> {
    let row = tx
        .query_opt(
            "SELECT set_config('citus.enable_schema_based_sharding', 'on', true),
                    set_config('citus.enable_unsafe_triggers', 'on', true)
             WHERE EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await?;
    Ok(row.is_some())
}

/// On Citus, makes schema-based sharding the database's default, so a schema any later
/// session creates (a restore through `psql`, an operator's) is distributed like those
/// Apotheca creates. Nothing on plain PostgreSQL, or when already so. In a transaction (it
/// takes the migration lock until its end); ALTER DATABASE … SET replaces an older value.
pub async fn configure_database(client: &impl GenericClient) -> Result<()> {
    if !enabled(client).await? {
        return Ok(());
    }
    let row = client
        .query_one(
            "SELECT current_database(), EXISTS (
                 SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                 WHERE d.datname = current_database() AND s.setrole = 0
                   AND 'citus.enable_schema_based_sharding=on' = ANY (s.setconfig))",
            &[],
        )
        .await?;
    let (database, set): (String, bool) = (row.get(0), row.get(1));
    if !set {
        // Two first runs at once would both add the setting.
        client
            .execute(
                "SELECT pg_advisory_xact_lock($1, 0)",
                &[&crate::migrate::LOCK_NAMESPACE],
            )
            .await?;
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} SET citus.enable_schema_based_sharding = on",
                quote_ident(&database)
            ))
            .await?;
    }
    Ok(())
}

/// The password the coordinator gives when it connects to the nodes as `role` (for each query
/// of that role's sessions): stored in `pg_dist_authinfo`, which only superusers read. On
/// Citus only (the caller knows: [`prepare`], [`enabled`]).
pub async fn store_credentials(tx: &impl GenericClient, role: &str, password: &str) -> Result<()> {
    let authinfo = format!(
        "password='{}'",
        password.replace('\\', "\\\\").replace('\'', "\\'")
    );
    tx.execute(
        "INSERT INTO pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, $1, $2)
         ON CONFLICT (rolename, nodeid) DO UPDATE SET authinfo = EXCLUDED.authinfo",
        &[&role, &authinfo],
    )
    .await?;
    Ok(())
}

/// Forgets a dropped role's credentials. On Citus only.
pub async fn forget_credentials(tx: &impl GenericClient, role: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM pg_catalog.pg_dist_authinfo WHERE rolename = $1",
        &[&role],
    )
    .await?;
    Ok(())
}

/// A worker node as `pg_dist_node` names it: `name:port` (a host, or a socket folder).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    pub name: String,
    pub port: i32,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

impl std::str::FromStr for Node {
    type Err = Error;

    /// `name:port`, split at the last colon (a socket folder may hold colons).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "{s:?} is not a node: write it name:port as `apotheca list-nodes` shows it"
            ))
        };
        let (name, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: i32 = port.parse().map_err(|_| bad())?;
        if name.is_empty() || !(1..=65535).contains(&port) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            port,
        })
    }
}

/// A node that may hold tenants, with how many it holds.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLoad {
    #[serde(flatten)]
    pub node: Node,
    /// Active in the cluster (a node being added or removed is not).
    pub active: bool,
    /// Tenant schemas (and spares) whose tables are there.
    pub schemas: i64,
}

/// The worker nodes that may hold shards, and how many distributed schemas each holds. On
/// Citus only.
pub async fn nodes(client: &impl GenericClient) -> Result<Vec<NodeLoad>> {
    let rows = client
        .query(
            &format!(
                "SELECT n.nodename, n.nodeport, n.isactive,
                        (SELECT count(*) FROM ({PLACEMENTS}) p WHERE p.groupid = n.groupid)
                 FROM pg_dist_node n
                 WHERE n.shouldhaveshards AND n.noderole = 'primary'
                 ORDER BY n.nodename, n.nodeport"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| NodeLoad {
            node: Node {
                name: r.get(0),
                port: r.get(1),
            },
            active: r.get(2),
            schemas: r.get(3),
        })
        .collect())
}

/// Each distributed schema with the node group its tables are on (one row per schema that
/// has tables: all of a schema's tables are colocated, so any one tells).
const PLACEMENTS: &str =
    "SELECT DISTINCT ON (s.schemaid) s.schemaid::regnamespace::text AS schema_name,
                                 pl.groupid
                          FROM pg_dist_schema s
                          JOIN pg_dist_partition p ON p.colocationid = s.colocationid
                          JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
                          JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
                          ORDER BY s.schemaid, sh.shardid";

/// The node each distributed schema lives on. On Citus only.
pub async fn placements(client: &impl GenericClient) -> Result<BTreeMap<String, Node>> {
    let rows = client
        .query(
            &format!(
                "SELECT p.schema_name, n.nodename, n.nodeport
                 FROM ({PLACEMENTS}) p JOIN pg_dist_node n ON n.groupid = p.groupid
                 WHERE n.noderole = 'primary'"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Node {
                    name: r.get(1),
                    port: r.get(2),
                },
            )
        })
        .collect())
}

/// Moves a tenant's schema, tables and data, to `to` with Citus's schema move: the tables are
/// copied and then kept up to date by logical replication while the pharmacy goes on
/// selling; writes wait only for the last catch-up and the switch. Returns the node it was
/// on (`None`: it already was on `to`, nothing moved). On Citus only.
pub async fn move_schema(
    client: &impl GenericClient,
    schema: &str,
    to: &Node,
) -> Result<Option<Node>> {
    let known = nodes(client).await?;
    if !known.iter().any(|n| &n.node == to && n.active) {
        let list: Vec<String> = known.iter().map(|n| n.node.to_string()).collect();
        return Err(Error::invalid(format!(
            "{to} is not an active node that holds tenants; the nodes are: {}",
            list.join(", ")
        )));
    }
    let from = placements(client)
        .await?
        .remove(schema)
        .ok_or_else(|| {
            Error::invalid(format!(
                "schema {schema:?} is not a distributed schema with tables (see `apotheca list-tenants`)"
            ))
        })?;
    if &from == to {
        return Ok(None);
    }
    client
        .execute(
            "SELECT citus_schema_move($1::text::regnamespace, $2::text, $3::integer)",
            &[&schema, &to.name, &to.port],
        )
        .await
        .map_err(|e| Error::Tool(format!("moving {schema} to {to}: {}", db_message(&e))))?;
    Ok(Some(from))
}

/// One move of a rebalance.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Move {
    pub schema: String,
    pub from: Node,
    pub to: Node,
}

/// The moves that spread `schemas` (name to node) evenly over `nodes`, by count: while the
/// fullest node holds two or more than the emptiest, the fullest gives one (the last by name,
/// so plans are stable) to the emptiest. Fewest moves for even counts.
pub fn rebalance_plan(schemas: &BTreeMap<String, Node>, nodes: &[Node]) -> Vec<Move> {
    let mut on: BTreeMap<&Node, Vec<&str>> = nodes.iter().map(|n| (n, vec![])).collect();
    for (schema, node) in schemas {
        if let Some(list) = on.get_mut(node) {
            list.push(schema);
        }
    }
    let mut moves = vec![];
    loop {
        let fullest = on
            .iter()
            .max_by_key(|(n, s)| (s.len(), std::cmp::Reverse(*n)));
        let emptiest = on.iter().min_by_key(|(n, s)| (s.len(), *n));
        let (Some((&from, full)), Some((&to, empty))) = (fullest, emptiest) else {
            return moves;
        };
        if full.len() < empty.len() + 2 {
            return moves;
        }
        let schema = on
            .get_mut(from)
            .and_then(Vec::pop)
            .expect("fullest is not empty");
        on.get_mut(to).expect("a node").push(schema);
        moves.push(Move {
            schema: schema.to_owned(),
            from: from.clone(),
            to: to.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: i32) -> Node {
        Node {
            name: "/run/n".into(),
            port,
        }
    }

    #[test]
    fn nodes_parse_at_the_last_colon() {
        let n: Node = "/tmp/a:b/run:5433".parse().unwrap();
        assert_eq!((n.name.as_str(), n.port), ("/tmp/a:b/run", 5433));
        assert_eq!(n.to_string(), "/tmp/a:b/run:5433");
        for bad in [
            "",
            "host",
            ":5432",
            "host:",
            "host:0",
            "host:70000",
            "host:x",
        ] {
            assert!(bad.parse::<Node>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rebalance_evens_counts_with_fewest_moves() {
        let nodes = [node(1), node(2), node(3)];
        let schemas: BTreeMap<String, Node> = (0..7).map(|i| (format!("s{i}"), node(1))).collect();
        let moves = rebalance_plan(&schemas, &nodes);
        assert_eq!(moves.len(), 4, "{moves:?}");
        let mut after = schemas.clone();
        for m in &moves {
            assert_eq!(
                after.insert(m.schema.clone(), m.to.clone()),
                Some(m.from.clone())
            );
        }
        let mut counts = [0; 3];
        for n in after.values() {
            counts[(n.port - 1) as usize] += 1;
        }
        counts.sort();
        assert_eq!(counts, [2, 2, 3]);
        // Even already (or off by one): nothing to do; schemas on unknown nodes are left.
        let even: BTreeMap<String, Node> = [("a", 1), ("b", 2), ("c", 1), ("d", 9)]
            .iter()
            .map(|(s, p)| (s.to_string(), node(*p)))
            .collect();
        assert!(rebalance_plan(&even, &nodes[..2]).is_empty());
        assert!(rebalance_plan(&even, &[]).is_empty());
    }
}
