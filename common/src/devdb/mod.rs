//! The private PostgreSQL cluster: what Apotheca runs when no database is configured, and
//! what the tests run on. It owns the cluster's folders, its generated superuser password, its
//! start (idempotent, waits until connections are accepted) and stop. It uses the system's
//! `initdb`/`pg_ctl`/`postgres`, listens on a Unix socket in its own folder (TCP on 127.0.0.1
//! only when asked) with scram-sha-256 password auth, and when run as root runs PostgreSQL as
//! an unprivileged user, since PostgreSQL refuses to run as root.
//!
//! This module owns the cluster's life cycle; `files` has the file-system helpers (server
//! programs, reachability, private files, the launcher lock), `urls` the connection URLs and
//! `citus` what makes the cluster a Citus coordinator with worker nodes of its own.

mod citus;
mod files;
mod urls;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::fcntl::Flock;
use nix::unistd::{Gid, Uid, User};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::settings::PrivateDbSettings;

use files::{check_reachable, find_bin_dir, write_private};
pub use urls::socket_url;

/// The database Apotheca keeps its data in, inside the private cluster.
pub const DATABASE: &str = "apotheca";
/// The cluster's superuser.
pub const SUPERUSER: &str = "postgres";
/// Where Debian (and the PGDG packages) install the server binaries.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Where a root-run cluster goes when PostgreSQL's user cannot reach the configured folder.
const FALLBACK_ROOT: &str = "/var/lib/apotheca/clusters";
/// A Unix socket path must fit in `sockaddr_un.sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    #[error("the PostgreSQL server programs (initdb, pg_ctl, postgres) were not found under {DEBIAN_PG_ROOT}/*/bin{0}; install them with `apt-get install postgresql`, or configure a database with --database-url / DATABASE_URL")]
    BinariesMissing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {output}")]
    Tool {
        tool: String,
        status: String,
        output: String,
    },
    #[error("PostgreSQL refuses to run as root, so it runs as OS user {0:?}, which does not exist; create it or set [private_db] os_user")]
    NoOsUser(String),
    #[error("PostgreSQL runs as OS user {user:?} (it refuses root) and cannot reach {path}: {dir} is not searchable by that user; set [private_db] data_dir and run_dir (APOTHECA_PRIVATE_DB__DATA_DIR, APOTHECA_PRIVATE_DB__RUN_DIR) to a place it can reach, or `chmod o+x {dir}`")]
    NotReachable {
        user: String,
        path: String,
        dir: String,
    },
    #[error("{0} exists but is not a PostgreSQL data folder (no PG_VERSION) and is not empty; refusing to touch it")]
    NotACluster(PathBuf),
    #[error("the socket path {0} is longer than {MAX_SOCKET_PATH} bytes; set [private_db] run_dir to a shorter path")]
    SocketPathTooLong(String),
    #[error("the cluster at {0} has no password file {1}; it was not created by Apotheca (remove the folder to start afresh)")]
    NoPassword(PathBuf, PathBuf),
    #[error("the Citus extension is not installed for this PostgreSQL (no {0}); build it with ../shared/citus/install.sh (tests) or install Citus's packages, or set [private_db] citus_nodes = 0")]
    CitusMissing(PathBuf),
    #[error("the private cluster at {data} was created {was}; it cannot become {wanted} (set [private_db] citus_nodes / --citus-nodes to match, or remove {data} and {run} to start afresh)")]
    CitusMismatch {
        data: PathBuf,
        run: PathBuf,
        was: String,
        wanted: String,
    },
    #[error("database: {}", db_error_text(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the launcher task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The server's message for an error it sent (tokio-postgres shows only "db error").
fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevDbError {
    let what = what.into();
    move |source| DevDbError::Io { what, source }
}

/// What `start` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// `initdb` ran: the cluster is new.
    pub initialised: bool,
    /// It was already running; nothing was started.
    pub already_running: bool,
}

/// The OS identity PostgreSQL runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// A private cluster described by `[private_db]`. Creating one touches nothing on disk.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    data_dir: PathBuf,
    run_dir: PathBuf,
    port: u16,
    settings: PrivateDbSettings,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    /// What this server is in a Citus cluster; none for plain PostgreSQL.
    citus: Option<citus::Part>,
}

impl PrivateCluster {
    pub fn new(settings: &PrivateDbSettings) -> Result<Self, DevDbError> {
        let cwd = std::env::current_dir().map_err(io("reading the working folder"))?;
        let mut data_dir = cwd.join(&settings.data_dir);
        let mut run_dir = cwd.join(&settings.run_dir);
        let bin_dir = find_bin_dir(settings.bin_dir.as_deref())?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(&settings.os_user)
                .ok()
                .flatten()
                .ok_or_else(|| DevDbError::NoOsUser(settings.os_user.clone()))?;
            Some(RunAs {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
            })
        } else {
            None
        };
        if let Some(run_as) = &run_as {
            let unreachable = check_reachable(&data_dir, run_as).is_err()
                || check_reachable(&run_dir, run_as).is_err();
            if unreachable {
                // E.g. a checkout under /root (mode 0700): PostgreSQL's user cannot get in, so
                // this configured folder's cluster lives where it can, found the same way again.
                let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
                let home = Path::new(FALLBACK_ROOT).join(&hex::encode(digest)[..12]);
                tracing::info!(
                    configured = %data_dir.display(),
                    actual = %home.display(),
                    "PostgreSQL's OS user cannot reach the configured folder; using one it can"
                );
                data_dir = home.join("pg");
                run_dir = home.join("run");
            }
        }
        let port = settings.tcp_port.unwrap_or(5432);
        check_socket_path(&run_dir, port)?;
        let mut cluster = Self {
            data_dir,
            run_dir,
            port,
            settings: settings.clone(),
            bin_dir,
            run_as,
            citus: None,
        };
        let nodes = citus::node_count(&cluster)?;
        if nodes > 0 {
            cluster.citus = Some(citus::Part::Coordinator(citus::nodes(&cluster, nodes)?));
        }
        Ok(cluster)
    }

    /// The Citus worker nodes of this coordinator (none for a plain cluster).
    pub fn citus_nodes(&self) -> &[PrivateCluster] {
        match &self.citus {
            Some(citus::Part::Coordinator(nodes)) => nodes,
            _ => &[],
        }
    }

    /// The port in the socket's name (and on 127.0.0.1 when `tcp_port` is set).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The folder holding the Unix socket (what libpq calls the host).
    pub fn socket_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn log_file(&self) -> PathBuf {
        self.run_dir.join("postgres.log")
    }

    fn password_file(&self) -> PathBuf {
        self.run_dir.join("superuser.password")
    }

    /// A server program of the installed PostgreSQL (psql, pg_dump, ...).
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.bin_dir.join(tool)
    }

    /// The superuser's URL for `database`, over the Unix socket.
    pub fn url_for(&self, database: &str) -> Result<String, DevDbError> {
        let password = self.password()?;
        Ok(socket_url(
            SUPERUSER,
            &password,
            &self.run_dir,
            self.port,
            database,
        ))
    }

    /// The superuser's URL for Apotheca's database.
    pub fn admin_url(&self) -> Result<String, DevDbError> {
        self.url_for(DATABASE)
    }

    pub fn password(&self) -> Result<String, DevDbError> {
        let path = self.password_file();
        match fs::read_to_string(&path) {
            Ok(p) => Ok(p.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(DevDbError::NoPassword(self.data_dir.clone(), path))
            }
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Whether the server of this data folder is running.
    pub fn is_running(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
            && self
                .pg_command("pg_ctl")
                .arg("status")
                .arg("-D")
                .arg(&self.data_dir)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
    }

    /// Creates the cluster if needed, starts it unless running, waits until it accepts
    /// connections and makes sure Apotheca's database exists. Safe to call from several
    /// processes at once: they serialise on a lock file.
    pub async fn start(&self) -> Result<Started, DevDbError> {
        let this = self.clone();
        let (lock, started) = tokio::task::spawn_blocking(move || {
            // The coordinator first: its nodes are made with its superuser password.
            let started = this.start_blocking()?;
            for node in this.citus_nodes() {
                node.start_blocking()?;
            }
            Ok::<_, DevDbError>(started)
        })
        .await??;
        if !matches!(self.citus, Some(citus::Part::Node)) {
            self.ensure_database().await?;
        }
        drop(lock);
        Ok(started)
    }

    /// Stops the server (fast shutdown: sessions are ended), and a Citus coordinator's nodes
    /// after it. Returns whether any was running.
    pub async fn stop(&self) -> Result<bool, DevDbError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut was = false;
            let mut failed = None;
            // Every server is stopped even when one fails; the first failure is reported.
            for server in std::iter::once(&this).chain(this.citus_nodes()) {
                if !server.data_dir.join("PG_VERSION").is_file() {
                    continue;
                }
                // Not while another process is starting it.
                let stopped = server.lock().and_then(|_lock| {
                    let running = server.is_running();
                    if running {
                        server.stop_blocking()?;
                    }
                    Ok(running)
                });
                match stopped {
                    Ok(running) => was |= running,
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            failed.map_or(Ok(was), Err)
        })
        .await?
    }

    fn stop_blocking(&self) -> Result<(), DevDbError> {
        let out = self
            .pg_command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .output()
            .map_err(io("running pg_ctl stop"))?;
        check("pg_ctl stop", &out)
    }

    fn start_blocking(&self) -> Result<(Flock<File>, Started), DevDbError> {
        self.make_dirs()?;
        let lock = self.lock()?;
        let mut started = Started {
            initialised: false,
            already_running: false,
        };
        if self.citus.is_some() {
            citus::check_installed(&self.bin_dir)?;
        }
        if !self.data_dir.join("PG_VERSION").is_file() {
            // Recorded first: a cluster is never there without what it was made as.
            citus::record(self)?;
            self.initdb()?;
            started.initialised = true;
        }
        self.write_conf()?;
        if self.is_running() {
            started.already_running = true;
            return Ok((lock, started));
        }
        let out = self
            .pg_command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-s", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_file())
            .output()
            .map_err(io("running pg_ctl start"))?;
        if !out.status.success() {
            let tail = fs::read_to_string(self.log_file()).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(8).collect();
            let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            msg.push_str("\nserver log (last lines):\n");
            msg.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            return Err(DevDbError::Tool {
                tool: "pg_ctl start".into(),
                status: out.status.to_string(),
                output: msg,
            });
        }
        Ok((lock, started))
    }

    fn make_dirs(&self) -> Result<(), DevDbError> {
        for dir in [&self.data_dir, &self.run_dir] {
            if let Some(run_as) = &self.run_as {
                check_reachable(dir, run_as)?;
            }
            fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            if let Some(run_as) = &self.run_as {
                nix::unistd::chown(dir.as_path(), Some(run_as.uid), Some(run_as.gid)).map_err(
                    |e| io(format!("handing {} to {}", dir.display(), run_as.name))(e.into()),
                )?;
            }
        }
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(io("restricting the data folder"))?;
        Ok(())
    }

    fn lock(&self) -> Result<Flock<File>, DevDbError> {
        files::lock(&self.run_dir.join("launcher.lock"))
    }

    fn initdb(&self) -> Result<(), DevDbError> {
        let not_empty = fs::read_dir(&self.data_dir)
            .map_err(io("reading the data folder"))?
            .next()
            .is_some();
        if not_empty {
            return Err(DevDbError::NotACluster(self.data_dir.clone()));
        }
        // A Citus node shares its coordinator's superuser password (each connects to the others).
        let password = match &self.citus {
            Some(citus::Part::Node) => citus::coordinator_password(self)?,
            _ => Alphanumeric.sample_string(&mut rand::rng(), 32),
        };
        // Kept for us (0600, our user) and handed to initdb through a file only it can read.
        write_private(&self.password_file(), &password, None)?;
        let pwfile = self.run_dir.join("initdb.pw");
        write_private(&pwfile, &password, self.run_as.as_ref())?;
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        if self.settings.unsafe_fast {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().map_err(io("running initdb"));
        let _ = fs::remove_file(&pwfile);
        check("initdb", &out?)?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io(format!("opening {}", conf.display())))?;
        writeln!(f, "\n# Written by Apotheca at every start from [private_db].\ninclude_if_exists 'apotheca.conf'")
            .map_err(io("extending postgresql.conf"))?;
        Ok(())
    }

    fn write_conf(&self) -> Result<(), DevDbError> {
        let s = &self.settings;
        let listen = if s.tcp_port.is_some() {
            "127.0.0.1"
        } else {
            ""
        };
        let mut conf = format!(
            "listen_addresses = '{listen}'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = {}\nshared_buffers = '{}'\npassword_encryption = 'scram-sha-256'\n",
            self.port,
            self.run_dir.display().to_string().replace('\'', "''"),
            s.max_connections,
            s.shared_buffers.replace('\'', "''"),
        );
        // After each checkpoint the first change to every page writes the whole page to the WAL:
        // with hundreds of tenants a burst that held sales up 2-3x for the next seconds (mix
        // p99 192 ms right after a CHECKPOINT against 73 ms later, 28 MB of WAL against 15).
        // Compressed, those images cost less; checkpoints every 15 min instead of 5 come a
        // third as often (crash recovery replays up to that much WAL).
        conf.push_str(&format!(
            "wal_compression = {}\ncheckpoint_timeout = '15min'\nmax_wal_size = '2GB'\n",
            self.wal_compression()
        ));
        if s.unsafe_fast {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        if self.citus.is_some() {
            conf.push_str(&citus::conf(&self.run_dir));
        }
        write_private(
            &self.data_dir.join("apotheca.conf"),
            &conf,
            self.run_as.as_ref(),
        )?;
        Ok(())
    }

    /// `lz4` when this PostgreSQL was built with it (15 and later, as Debian's), else `on`
    /// (pglz, every version).
    fn wal_compression(&self) -> &'static str {
        let version = fs::read_to_string(self.data_dir.join("PG_VERSION")).unwrap_or_default();
        let lz4 = || {
            Command::new(self.bin("pg_config"))
                .arg("--configure")
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--with-lz4"))
        };
        match version.trim().parse::<u32>() {
            Ok(major) if major >= 15 && lz4() => "lz4",
            _ => "on",
        }
    }

    async fn ensure_database(&self) -> Result<(), DevDbError> {
        create_database(&connect(&self.url_for("postgres")?).await?, DATABASE, true).await?;
        self.prepare_database(DATABASE).await
    }

    /// Makes `database` (which must exist on the coordinator) a Citus database: the same
    /// database on every worker node, the extension everywhere, the superuser's credentials
    /// for the connections between servers, and the nodes registered. Idempotent; nothing for
    /// a plain cluster.
    pub async fn prepare_database(&self, database: &str) -> Result<(), DevDbError> {
        citus::prepare_database(self, database).await
    }

    /// A server program, run as the cluster's OS user when we are root.
    pub fn pg_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin(tool));
        if let Some(run_as) = &self.run_as {
            cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        }
        // Don't let a stray PGDATA/PGHOST from the caller's shell steer the tools.
        for var in [
            "PGDATA",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}

/// A superuser connection to `url`, its driver spawned (it ends with the client).
async fn connect(url: &str) -> Result<tokio_postgres::Client, DevDbError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Creates `database` through `admin` (a connection to a maintenance database) unless it
/// exists. With `apotheca_db` (Apotheca's own database is being made): only the superuser
/// (and, per database, what control grants) may connect, so tenant roles are kept out of the
/// maintenance databases.
async fn create_database(
    admin: &tokio_postgres::Client,
    database: &str,
    apotheca_db: bool,
) -> Result<(), DevDbError> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                crate::names::quote_ident(database)
            ))
            .await?;
    }
    if apotheca_db {
        admin
            .batch_execute(
                "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC; \
                 REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
            )
            .await?;
    }
    Ok(())
}

/// The socket of `port` in `run_dir` must fit in a socket address.
fn check_socket_path(run_dir: &Path, port: u16) -> Result<(), DevDbError> {
    let socket = run_dir.join(format!(".s.PGSQL.{port}"));
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(DevDbError::SocketPathTooLong(socket.display().to_string()));
    }
    Ok(())
}

fn check(tool: &str, out: &Output) -> Result<(), DevDbError> {
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if output.is_empty() {
        output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(DevDbError::Tool {
        tool: tool.to_owned(),
        status: out.status.to_string(),
        output,
    })
}
