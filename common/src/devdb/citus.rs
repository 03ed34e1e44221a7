//! The private cluster as a Citus cluster (`[private_db] citus_nodes`, `apotheca db start
//! --citus-nodes N`): the configured cluster becomes the coordinator and N more servers, each
//! with a data folder beside the coordinator's (`<data_dir>-node<i>`), a socket folder of its
//! own (`<run_dir>/node<i>`) and the next ports, become its worker nodes. Every server loads
//! Citus, keeps logical WAL (a tenant's move replicates its schema) and names its own socket
//! folder as `citus.local_hostname` (a move connects back to the source over it). They share
//! the superuser's password, which each database's `pg_dist_authinfo` hands to Citus for the
//! connections between servers, since every server asks for passwords.
//!
//! What the cluster was created as is recorded in `<run_dir>/citus-nodes`, so a later start
//! without the option brings the same servers back.

use std::fs;
use std::path::{Path, PathBuf};

use super::{check_socket_path, connect, io, write_private, DevDbError, PrivateCluster, DATABASE};

/// What one server is in a Citus cluster.
#[derive(Debug, Clone)]
pub(super) enum Part {
    /// The server Apotheca connects to, with its worker nodes.
    Coordinator(Vec<PrivateCluster>),
    /// A worker node, reached only through the coordinator.
    Node,
}

const RECORD: &str = "citus-nodes";

/// How many worker nodes `cluster` has: what it was created with when it exists, else what
/// `[private_db] citus_nodes` asks for. Asking for another number than an existing cluster's
/// is an error (a plain cluster cannot gain nodes here, nor lose them).
pub(super) fn node_count(cluster: &PrivateCluster) -> Result<u32, DevDbError> {
    let wanted = cluster.settings.citus_nodes;
    if !cluster.data_dir.join("PG_VERSION").is_file() {
        return Ok(wanted);
    }
    let path = cluster.run_dir.join(RECORD);
    let recorded = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u32>().map_err(|e| DevDbError::Io {
            what: format!("reading {}", path.display()),
            source: std::io::Error::other(e),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    if wanted != 0 && wanted != recorded {
        let describe = |n: u32| match n {
            0 => "plain PostgreSQL".to_owned(),
            1 => "a Citus coordinator with 1 node".to_owned(),
            n => format!("a Citus coordinator with {n} nodes"),
        };
        return Err(DevDbError::CitusMismatch {
            data: cluster.data_dir.clone(),
            run: cluster.run_dir.clone(),
            was: describe(recorded),
            wanted: describe(wanted),
        });
    }
    Ok(recorded)
}

/// The coordinator's worker nodes, described (nothing is touched on disk).
pub(super) fn nodes(
    coordinator: &PrivateCluster,
    count: u32,
) -> Result<Vec<PrivateCluster>, DevDbError> {
    (1..=count)
        .map(|i| {
            let mut data_dir = coordinator.data_dir.clone().into_os_string();
            data_dir.push(format!("-node{i}"));
            let run_dir = coordinator.run_dir.join(format!("node{i}"));
            let port =
                u16::try_from(u32::from(coordinator.port) + i).map_err(|_| DevDbError::Io {
                    what: format!("choosing a port for Citus node {i}"),
                    source: std::io::Error::other("past 65535"),
                })?;
            check_socket_path(&run_dir, port)?;
            let mut settings = coordinator.settings.clone();
            // Nodes listen on their socket only: Apotheca never connects to them directly.
            settings.tcp_port = None;
            settings.citus_nodes = 0;
            Ok(PrivateCluster {
                data_dir: PathBuf::from(data_dir),
                run_dir,
                port,
                settings,
                bin_dir: coordinator.bin_dir.clone(),
                run_as: coordinator.run_as.clone(),
                citus: Some(Part::Node),
            })
        })
        .collect()
}

/// Refuses to make a Citus server when this PostgreSQL has no Citus.
pub(super) fn check_installed(bin_dir: &Path) -> Result<(), DevDbError> {
    let lib = bin_dir
        .parent()
        .map(|root| root.join("lib").join("citus.so"))
        .unwrap_or_else(|| PathBuf::from("citus.so"));
    if lib.is_file() {
        Ok(())
    } else {
        Err(DevDbError::CitusMissing(lib))
    }
}

/// Records what a new cluster is made as, beside its password: a coordinator's node count, or
/// (a plain cluster) no record, so that one left by an earlier cluster in the folder is not
/// believed. Nothing for a node.
pub(super) fn record(cluster: &PrivateCluster) -> Result<(), DevDbError> {
    let path = cluster.run_dir.join(RECORD);
    match &cluster.citus {
        Some(Part::Coordinator(nodes)) => write_private(&path, &format!("{}\n", nodes.len()), None),
        Some(Part::Node) => Ok(()),
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        },
    }
}

/// A node's superuser password: its coordinator's (the node's run folder is inside the
/// coordinator's).
pub(super) fn coordinator_password(node: &PrivateCluster) -> Result<String, DevDbError> {
    let coordinator_run = node.run_dir.parent().unwrap_or(&node.run_dir);
    let path = coordinator_run.join("superuser.password");
    fs::read_to_string(&path)
        .map(|p| p.trim().to_owned())
        .map_err(io(format!(
            "reading the coordinator's password {} for a Citus node",
            path.display()
        )))
}

/// The server settings every Citus server of the cluster gets. Citus runs a maintenance
/// process per database (background workers, 8 by default in all): room for many databases.
pub(super) fn conf(run_dir: &Path) -> String {
    format!(
        "shared_preload_libraries = 'citus'\n\
         wal_level = logical\n\
         max_worker_processes = 64\n\
         citus.local_hostname = '{}'\n",
        run_dir.display().to_string().replace('\'', "''")
    )
}

/// A libpq connection-string value, quoted.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Puts the superuser's credentials for connections between servers in `client`'s database.
async fn store_authinfo(client: &tokio_postgres::Client, authinfo: &str) -> Result<(), DevDbError> {
    client
        .execute(
            "INSERT INTO pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo)
             VALUES (0, current_user, $1)
             ON CONFLICT (rolename, nodeid) DO UPDATE SET authinfo = EXCLUDED.authinfo",
            &[&authinfo],
        )
        .await?;
    Ok(())
}

/// See [`PrivateCluster::prepare_database`].
pub(super) async fn prepare_database(
    coordinator: &PrivateCluster,
    database: &str,
) -> Result<(), DevDbError> {
    let Some(Part::Coordinator(nodes)) = &coordinator.citus else {
        return Ok(());
    };
    // One database at a time (test processes make theirs at once): adding a node copies the
    // cluster's roles to it, and two such copies at once collide ("tuple concurrently
    // updated").
    let path = coordinator.run_dir.join("citus.lock");
    let _lock = tokio::task::spawn_blocking(move || super::files::lock(&path)).await??;
    let authinfo = format!("password={}", conninfo_value(&coordinator.password()?));
    for node in nodes {
        let admin = connect(&node.url_for("postgres")?).await?;
        super::create_database(&admin, database, database == DATABASE).await?;
        let db = connect(&node.url_for(database)?).await?;
        db.batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
            .await?;
        store_authinfo(&db, &authinfo).await?;
    }
    let db = connect(&coordinator.url_for(database)?).await?;
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
        .await?;
    store_authinfo(&db, &authinfo).await?;
    let host = |c: &PrivateCluster| c.run_dir.display().to_string();
    let registered = db
        .query_opt("SELECT 1 FROM pg_dist_node WHERE groupid = 0", &[])
        .await?
        .is_some();
    if !registered {
        db.execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            &[&host(coordinator), &i32::from(coordinator.port)],
        )
        .await?;
    }
    for node in nodes {
        let known = db
            .query_opt(
                "SELECT 1 FROM pg_dist_node WHERE nodename = $1 AND nodeport = $2",
                &[&host(node), &i32::from(node.port)],
            )
            .await?
            .is_some();
        if !known {
            db.execute(
                "SELECT citus_add_node($1, $2)",
                &[&host(node), &i32::from(node.port)],
            )
            .await?;
        }
    }
    Ok(())
}
