//! Test support shared by every integration test: the private cluster of this test run
//! (started through the same launcher as `apotheca db start`, see [`test_dir`]), and
//! [`TestDb`], a fresh database per test, empty or cloned from a template that has the public
//! schema migrated, dropped together with its tenant roles (and the public site's role, when
//! a daemon made one) when the test ends (even on panic).
//!
//! The README's test command wipes the cluster before the run and stops it afterwards; a plain
//! `cargo test` starts it on first use and leaves it running for the next run. A test that
//! stops or restarts PostgreSQL gets a cluster of its own instead ([`OwnCluster`]).
//!
//! With `APOTHECA_TEST_CITUS=1` ([`CITUS_ENV`]) every cluster is a Citus coordinator with two
//! worker nodes of its own, and every test database is made a Citus database (the extension,
//! the nodes) on all three: the same tests then run with each tenant schema distributed.

mod binaries;
pub mod system;

use std::path::PathBuf;
use std::sync::Arc;

use apotheca_common::devdb::PrivateCluster;
use apotheca_common::names::quote_ident;
use apotheca_common::settings::PrivateDbSettings;
use apotheca_migrations::MigrationSet;
use apotheca_tenancy::db::Database;
use apotheca_tenancy::migrate::{self, Quiet, Target};
use apotheca_tenancy::roles;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

pub use binaries::{binary, workspace_root};

/// Overrides where the test cluster lives (data in `$DIR/pg`, socket in `$DIR/run`).
pub const DIR_ENV: &str = "APOTHECA_TEST_PG_DIR";
/// Set (to anything but `0` or nothing): the clusters are Citus coordinators with
/// [`CITUS_TEST_NODES`] worker nodes.
pub const CITUS_ENV: &str = "APOTHECA_TEST_CITUS";
/// The worker nodes of a Citus test cluster.
pub const CITUS_TEST_NODES: u32 = 2;

/// Whether this run's clusters are Citus clusters ([`CITUS_ENV`]).
pub fn citus() -> bool {
    std::env::var(CITUS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The worker nodes a test cluster gets.
fn citus_nodes() -> u32 {
    if citus() {
        CITUS_TEST_NODES
    } else {
        0
    }
}

static CLUSTER: OnceCell<Arc<PrivateCluster>> = OnceCell::const_new();

/// The folder of this checkout's test cluster: `$APOTHECA_TEST_PG_DIR`, else a folder in the
/// temp dir named after the checkout's `target` (short socket paths, reachable by PostgreSQL's
/// user when tests run as root, and one per checkout); with a `-citus` suffix for a Citus
/// run, so that both kinds of cluster can be kept.
pub fn test_dir() -> PathBuf {
    let dir = plain_test_dir();
    if citus() {
        let mut dir = dir.into_os_string();
        dir.push("-citus");
        return PathBuf::from(dir);
    }
    dir
}

fn plain_test_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .unwrap_or(&exe);
    let digest = Sha256::digest(target.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("apotheca-test-{}", &hex::encode(digest)[..10]))
}

/// The run's cluster, started on first use (other test processes share it through the
/// launcher's lock file).
pub async fn cluster() -> Arc<PrivateCluster> {
    CLUSTER
        .get_or_init(|| async {
            let dir = test_dir();
            let settings = PrivateDbSettings {
                data_dir: dir.join("pg"),
                run_dir: dir.join("run"),
                max_connections: 400,
                shared_buffers: "128MB".into(),
                unsafe_fast: true,
                citus_nodes: citus_nodes(),
                ..PrivateDbSettings::default()
            };
            let cluster =
                PrivateCluster::new(&settings).unwrap_or_else(|e| panic!("test cluster: {e}"));
            cluster
                .start()
                .await
                .unwrap_or_else(|e| panic!("starting the test cluster: {e}"));
            Arc::new(cluster)
        })
        .await
        .clone()
}

/// A connection as superuser to `database`.
pub async fn connect(cluster: &PrivateCluster, database: &str) -> Client {
    let url = cluster.url_for(database).expect("test cluster password");
    connect_url(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {database}: {e}"))
}

/// A connection to `url`, its driver task spawned.
pub async fn connect_url(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    cluster: Arc<PrivateCluster>,
}

impl TestDb {
    /// A new, empty database.
    pub async fn empty() -> Self {
        Self::create(cluster().await, None).await
    }

    /// A new database with the public schema migrated (cloned from a template).
    pub async fn migrated() -> Self {
        Self::migrated_on(cluster().await).await
    }

    /// A new database with the public schema migrated, on `cluster` (e.g. an [`OwnCluster`]).
    pub async fn migrated_on(cluster: Arc<PrivateCluster>) -> Self {
        let template = migrated_template(&cluster).await;
        Self::create(cluster, Some(&template)).await
    }

    async fn create(cluster: Arc<PrivateCluster>, template: Option<&str>) -> Self {
        let name = format!(
            "test_{}",
            Alphanumeric
                .sample_string(&mut rand::rng(), 12)
                .to_lowercase()
        );
        let admin = connect(&cluster, "postgres").await;
        let sql = match template {
            Some(t) => format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(t)
            ),
            None => format!("CREATE DATABASE {}", quote_ident(&name)),
        };
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let db = Self { name, cluster };
        // Dropped (on every server) if this fails.
        db.cluster
            .prepare_database(&db.name)
            .await
            .unwrap_or_else(|e| panic!("making {} a Citus database: {e}", db.name));
        db
    }

    /// The superuser URL of this database.
    pub fn url(&self) -> String {
        self.cluster
            .url_for(&self.name)
            .expect("test cluster password")
    }

    pub async fn client(&self) -> Client {
        connect(&self.cluster, &self.name).await
    }

    pub fn cluster(&self) -> &PrivateCluster {
        &self.cluster
    }
}

impl Drop for TestDb {
    /// Drops the database and the tenant roles made in it (roles are cluster-wide). Runs on a
    /// thread of its own because `Drop` cannot await and may run inside a runtime.
    fn drop(&mut self) {
        let name = self.name.clone();
        let cluster = self.cluster.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let tenant_roles: Vec<String> = match connect_url(&cluster.url_for(&name)?).await {
                    Ok(db) => db
                        .query("SELECT db_role FROM public.tenants UNION ALL SELECT db_role FROM public.spare_schemas", &[])
                        .await
                        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                        .unwrap_or_default(),
                    Err(_) => vec![],
                };
                // The coordinator first, then each Citus node (roles are per server; dropped
                // from the maintenance database, Citus does not pass the drop on).
                let own = [roles::public_role(&name), roles::group_role(&name)];
                for server in std::iter::once(&*cluster).chain(cluster.citus_nodes()) {
                    let admin = connect(server, "postgres").await;
                    admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            quote_ident(&name)
                        ))
                        .await?;
                    for role in tenant_roles.iter().chain(&own) {
                        admin
                            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
                            .await?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: dropping test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A private cluster of one test's own, for a test that stops or restarts PostgreSQL (the
/// run's cluster is shared by every test): in a new folder of the temp dir (which PostgreSQL's
/// user can reach when tests run as root), stopped and removed when dropped. Drop its
/// [`TestDb`]s first.
pub struct OwnCluster {
    pub cluster: Arc<PrivateCluster>,
    dir: PathBuf,
}

impl OwnCluster {
    /// A cluster of this run's kind (plain, or Citus with [`CITUS_ENV`]).
    pub async fn start(max_connections: u32) -> Self {
        Self::start_with(max_connections, citus_nodes()).await
    }

    /// A Citus coordinator with `nodes` worker nodes of its own, whatever the run's kind.
    pub async fn start_citus(max_connections: u32, nodes: u32) -> Self {
        Self::start_with(max_connections, nodes).await
    }

    async fn start_with(max_connections: u32, citus_nodes: u32) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "apotheca-own-{}",
            Alphanumeric
                .sample_string(&mut rand::rng(), 10)
                .to_lowercase()
        ));
        let settings = PrivateDbSettings {
            data_dir: dir.join("pg"),
            run_dir: dir.join("run"),
            max_connections,
            shared_buffers: "32MB".into(),
            unsafe_fast: true,
            citus_nodes,
            ..PrivateDbSettings::default()
        };
        let cluster = PrivateCluster::new(&settings).unwrap_or_else(|e| panic!("own cluster: {e}"));
        let own = Self {
            cluster: Arc::new(cluster),
            dir,
        };
        own.cluster
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting a cluster in {}: {e}", own.dir.display()));
        own
    }

    /// Stops PostgreSQL (fast shutdown: every session is ended) and starts it again.
    pub async fn restart(&self) {
        let stopped = self.cluster.stop().await;
        assert!(matches!(stopped, Ok(true)), "stopping: {stopped:?}");
        if let Err(e) = self.cluster.start().await {
            panic!("starting again: {e}");
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let stopped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cluster.stop())
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join();
        match stopped {
            Ok(Ok(_)) => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(Err(e)) => eprintln!("warning: stopping {}: {e}", self.dir.display()),
            Err(_) => eprintln!("warning: stopping {} panicked", self.dir.display()),
        }
    }
}

/// A template database with the built-in shared migrations applied by the real runner,
/// named after their checksums so a changed migration gets a new template. Built once per
/// cluster, under a lock.
async fn migrated_template(cluster: &PrivateCluster) -> String {
    let set = MigrationSet::embedded().expect("embedded migrations");
    let mut hash = Sha256::new();
    for m in &set.shared {
        hash.update(m.checksum.as_bytes());
    }
    let name = format!("tmpl_{}", &hex::encode(hash.finalize())[..16]);
    let admin = connect(cluster, "postgres").await;
    admin
        .batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .expect("template lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("pg_database")
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        for sql in [
            "DROP DATABASE IF EXISTS {b} WITH (FORCE)",
            "CREATE DATABASE {b}",
        ] {
            let sql = sql.replace("{b}", &quote_ident(&building));
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let url = cluster.url_for(&building).expect("test cluster password");
        let db = Database::from_url(url, None).expect("template URL");
        let pool = db.pool(2).expect("template pool");
        let summary = migrate::run(&pool, &set, &Target::Shared, false, 1, &Quiet)
            .await
            .unwrap_or_else(|e| panic!("migrating the template: {e}"));
        assert_eq!(
            summary.failed().count(),
            0,
            "migrating the template: {summary:?}"
        );
        pool.close();
        // Clones do not inherit the template's database privileges, so its tenant group is
        // of no use to them: drop it (create-tenant makes each clone's own).
        let group = quote_ident(&roles::group_role(&building));
        for sql in [
            format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&building),
                quote_ident(&name)
            ),
            format!("REVOKE ALL ON DATABASE {} FROM {group}", quote_ident(&name)),
            format!("DROP ROLE IF EXISTS {group}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    admin
        .batch_execute("SELECT pg_advisory_unlock(42)")
        .await
        .expect("template unlock");
    name
}

/// A tenant provisioned by control's own code in a fresh database, with its role's URL.
pub struct TestTenant {
    pub db: TestDb,
    pub schema: String,
    /// The tenant role's connection URL (what a worker logs in with).
    pub role_url: String,
}

impl TestTenant {
    pub async fn new(schema: &str) -> Self {
        let db = TestDb::migrated().await;
        let database = Database::from_url(db.url(), None).expect("test database URL");
        let secret = roles::Secret::from_key("test-secret");
        let set = MigrationSet::embedded().expect("embedded migrations");
        let limits = apotheca_tenancy::roles::TenantRoleSettings::default();
        let provisioner = apotheca_tenancy::tenants::Provisioner {
            db: &database,
            secret: &secret,
            migrations: &set,
            role_limits: &limits,
        };
        let schema_name =
            apotheca_common::names::SchemaName::parse(schema).expect("test schema name");
        let domain = apotheca_common::names::DomainName::parse(&format!(
            "{}.localhost",
            schema.replace('_', "-")
        ))
        .expect("test domain");
        let mut client = database.connect().await.expect("admin connection");
        let info = provisioner
            .create(
                &mut client,
                &format!("Pharmacy {schema}"),
                &schema_name,
                &domain,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("creating tenant {schema}: {e}"));
        let role_url = database.role_url(&info.role, &roles::role_password(&secret, &info.role));
        Self {
            db,
            schema: schema.to_owned(),
            role_url,
        }
    }
}
/// The first column of every row `sql` returns, in order: what a test asserts the database
/// holds.
pub async fn column<T>(client: &tokio_postgres::Client, sql: &str) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}
