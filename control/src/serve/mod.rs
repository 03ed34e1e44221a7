//! `apotheca serve`: the daemon that supervises workers (`docs/daemon.md`; the process contract: `docs/architecture.md`).
//!
//! - [`supervisor`]: the one task owning all state; handles every event, then reconciles;
//! - [`tenant`]: one tenant's workers, backoff, crash-loop mark and waiting requests (no I/O);
//! - [`worker`]: one worker's phase and load; [`reconcile`]: what to spawn, drain or kill;
//! - [`scaling`]: when a tenant gets one worker more or fewer;
//! - [`process`]: spawning (own process group, inherited channel), reaping, killing;
//! - [`link`]: control's end of each worker's channel;
//! - [`catalog`]: tenants from the database, the public site's role, the LISTEN/NOTIFY follower;
//! - [`role_check`]: a tenant role's settings put back, if it changed them, before its workers
//!   start;
//! - [`api`]: the HTTP/1.1 + JSON API on a Unix socket; [`client`]: the CLI's side of it;
//! - [`signup`]: the public sign-up; [`operator_api`]: operator console logins and sessions;
//!   [`console`]: the console's actions on tenants; [`imports`]: its "Import a pharmacy";
//! - [`status`]: the API's answers, shared by both sides;
//! - [`hosts`]: this host among those sharing the database (`public.hosts`): its beats, and
//!   which tenants other hosts serve too (their workers here then keep no caches);
//! - [`readiness`]: whether the daemon serves (every tenant's minimum ready); [`systemd`]:
//!   telling the service manager (sd_notify: READY, STATUS, STOPPING, WATCHDOG).
//!
//! This module wires them together and owns the daemon's life: the lock against a second
//! daemon, stale sockets, signals (SIGTERM or SIGINT: drain every worker and stop; SIGQUIT:
//! stop at once and leave the workers to the next daemon, for restarting control without a
//! failed request), and leaving nothing behind.

pub mod api;
pub mod catalog;
pub mod client;
pub mod console;
pub mod feed;
pub mod hosts;
pub mod imports;
pub mod link;
pub mod operator_api;
pub mod process;
pub mod readiness;
pub mod reconcile;
pub mod role_check;
pub mod scaling;
pub mod signup;
pub mod status;
pub mod supervisor;
pub mod systemd;
pub mod tenant;
pub mod worker;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use apotheca_migrations::MigrationSet;

use crate::error::{ControlError, Result};
use crate::settings::{ServeSettings, Settings};
use apotheca_protocol::api::Policy;
use apotheca_tenancy::db::Database;
use apotheca_tenancy::roles::Secret;
use catalog::Catalog;
use process::WorkerCommand;
use supervisor::Supervisor;
use tenant::{Status, Tenant};

/// The supervision settings as durations, as the supervisor uses them.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub ready_timeout: Duration,
    pub report_interval: Duration,
    pub scale_up_after: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub crash_loop_crashes: u32,
    pub crash_loop_window: Duration,
    /// 0: no memory guard.
    pub max_rss_bytes: u64,
    pub drain_grace: Duration,
    pub drain_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl From<&ServeSettings> for Tuning {
    fn from(s: &ServeSettings) -> Self {
        let ms = Duration::from_millis;
        Self {
            ready_timeout: ms(s.ready_timeout_ms),
            report_interval: ms(s.report_interval_ms),
            scale_up_after: ms(s.scale_up_after_ms),
            backoff_initial: ms(s.backoff_initial_ms),
            backoff_max: ms(s.backoff_max_ms),
            crash_loop_crashes: s.crash_loop_crashes,
            crash_loop_window: Duration::from_secs(s.crash_loop_window_secs),
            max_rss_bytes: s.max_worker_rss_mb.saturating_mul(1_048_576),
            drain_grace: ms(s.drain_grace_ms),
            drain_timeout: Duration::from_secs(s.drain_timeout_secs),
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout_secs),
        }
    }
}

/// The public site's policy: its min and max from the settings, the tenant defaults else.
fn public_policy(s: &ServeSettings) -> Policy {
    Policy {
        min_workers: s.public_min_workers.max(1),
        max_workers: s.public_max_workers.max(s.public_min_workers).max(1),
        idle_timeout_secs: 300,
        max_in_flight: 32,
    }
}

/// How long a restart request waits by default before answering that it goes on.
const RESTART_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the daemon until SIGTERM or SIGINT has drained every worker. `config_file` is the
/// settings file control read, handed on to workers.
pub async fn run(
    settings: &Settings,
    db: Database,
    secret: Secret,
    migrations: MigrationSet,
    config_file: Option<&Path>,
) -> Result<()> {
    let serve = &settings.control.serve;
    let Places {
        socket,
        worker_dir,
        _lock,
    } = Places::take(serve)?;

    let program = WorkerCommand::locate(serve.worker_bin.as_deref());
    if program.components().count() > 1 && !program.is_file() {
        return Err(ControlError::invalid(format!(
            "the worker program {} does not exist (set [control.serve] worker_bin)",
            program.display()
        )));
    }
    // On a Citus coordinator the workers are told so (`[worker] citus`).
    let mut env = vec![];
    // One connection for what the start asks of the database (Citus, then the host's row).
    let admin = db.connect().await?;
    let citus = apotheca_tenancy::citus::enabled(&admin).await?;
    if citus {
        tracing::info!("the database is a Citus coordinator's: tenant schemas live on its nodes");
        env.push(("APOTHECA_WORKER__CITUS".to_owned(), "true".to_owned()));
    }
    let command = WorkerCommand {
        program,
        config: config_file.map(absolute).transpose()?,
        report_interval: Duration::from_millis(serve.report_interval_ms),
        control_socket: socket.clone(),
        env,
    };
    let signup = Arc::new(signup::Signup {
        db: db.clone(),
        secret: secret.clone(),
        migrations,
        role_limits: settings.control.tenant_role.clone(),
        base_domain: settings.control.signup_domain.clone(),
        tenant_url: settings.control.tenant_url.clone(),
        running: tokio::sync::Semaphore::new(2),
    });
    let host = hosts::Host {
        name: serve.host_name(),
        address: serve.host_address.clone(),
        every: Duration::from_secs(serve.heartbeat_secs),
        gone_after: Duration::from_secs(serve.host_gone_secs),
    };
    hosts::register(&admin, &host).await?;
    drop(admin);
    let catalog = Catalog::new(db, secret);
    let public_url = catalog
        .public_role_url(&settings.control.tenant_role)
        .await?;

    // Bound before any worker starts: failing here leaves nothing behind.
    let listener = tokio::net::UnixListener::bind(&socket).map_err(ControlError::io(format!(
        "listening on {}",
        socket.display()
    )))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(ControlError::io(format!("securing {}", socket.display())))?;
    // Before anything starts, so a stop signal is never the default (fatal) one.
    let signal_err = |e: std::io::Error| ControlError::Io {
        what: "signal handler".into(),
        source: e,
    };
    let term = signal(SignalKind::terminate()).map_err(signal_err)?;
    let int = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let quit = signal(SignalKind::quit()).map_err(signal_err)?;
    let (to, inbox) = mpsc::channel(4096);
    let (endpoints_tx, endpoints_rx) = watch::channel(Arc::new(BTreeMap::new()));
    let public = Tenant::new(
        "public",
        Status::Active,
        public_policy(serve),
        public_url,
        tokio::time::Instant::now(),
    );
    let supervisor = Supervisor::new(
        Tuning::from(serve),
        command,
        worker_dir.clone(),
        socket.clone(),
        public,
        to.clone(),
        endpoints_tx,
    )
    .with_role_checks(role_check::RoleChecks::start(
        catalog.db.clone(),
        settings.control.tenant_role.clone(),
        to.clone(),
    ))
    .with_feed(feed::Feed::start(catalog.db.clone(), to.clone()));
    let (cluster_tx, cluster_rx) = mpsc::unbounded_channel();
    let supervisor = supervisor.with_cluster(cluster_tx);
    let readiness = supervisor.readiness();
    let notifier = tokio::spawn(systemd::run(
        readiness.clone(),
        Duration::from_millis(serve.report_interval_ms),
    ));
    let mut supervised = tokio::spawn(supervisor.run(inbox));
    let (stop_follower, follower_stop) = watch::channel(false);
    let (handover_tx, handover_rx) = watch::channel(false);
    let beats = tokio::spawn(hosts::run(
        catalog.db.clone(),
        host,
        to.clone(),
        cluster_rx,
        handover_rx,
    ));
    let follower = tokio::spawn(catalog::follow(catalog.clone(), to.clone(), follower_stop));

    let api = api::Api {
        to: to.clone(),
        endpoints: endpoints_rx,
        catalog,
        wake_timeout: Duration::from_millis(serve.wake_timeout_ms),
        restart_timeout: RESTART_TIMEOUT,
        signup,
        session_lifetime: Duration::from_secs(settings.control.operator_session_hours * 3600),
        readiness,
        figures_db: Arc::default(),
        citus,
        imports: Arc::new(imports::Imports {
            dir: settings.control.state_dir.join("imports"),
            max_bytes: settings.control.import_max_bytes,
        }),
    };
    let (stop_api, api_stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, api::router(api))
            .with_graceful_shutdown(async move {
                let _ = api_stop.await;
            })
            .into_future(),
    );
    println!(
        "apotheca serve: API on unix:{}, workers in {}",
        socket.display(),
        worker_dir.display()
    );
    let _ = std::io::stdout().flush();

    let (outcome, handed_over) = until_stopped(
        &mut supervised,
        Signals { term, int, quit },
        &to,
        &stop_follower,
        &handover_tx,
    )
    .await;
    let _ = follower.await;
    let _ = beats.await;
    // It ends with the supervisor, once it said so.
    let _ = notifier.await;
    // Endpoint watchers end with the supervisor; then the server stops at once.
    let _ = stop_api.send(());
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("API connections still open at exit");
    }
    process::remove_socket(&socket);
    // Left workers still listen on theirs (the next daemon clears them when it starts).
    if !handed_over {
        remove_stale_sockets(&worker_dir);
    }
    match outcome {
        Ok(Ok(())) if handed_over => {
            println!("apotheca serve: stopped, its workers left to the next daemon");
            Ok(())
        }
        Ok(Ok(())) => {
            println!("apotheca serve: stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(ControlError::Other(format!("supervisor: {e}"))),
        Err(e) => Err(ControlError::Other(format!("supervisor failed: {e}"))),
    }
}

/// The stop signals the daemon answers.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

/// Waits for the supervisor to end, passing the signals on: SIGTERM or SIGINT drains every
/// worker (a second one kills them), SIGQUIT leaves them to the next daemon. The
/// supervisor's outcome, and whether the workers were handed over.
async fn until_stopped(
    supervised: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    mut signals: Signals,
    to: &mpsc::Sender<supervisor::Msg>,
    stop_follower: &watch::Sender<bool>,
    handing_over: &watch::Sender<bool>,
) -> (
    std::result::Result<std::io::Result<()>, tokio::task::JoinError>,
    bool,
) {
    let mut stops = 0;
    let mut handed_over = false;
    let outcome = loop {
        let handover = tokio::select! {
            r = &mut *supervised => break r,
            _ = signals.term.recv() => false,
            _ = signals.int.recv() => false,
            _ = signals.quit.recv() => true,
        };
        if handover {
            if !handed_over {
                tracing::info!("SIGQUIT: leaving every worker to the next daemon");
                handed_over = true;
                let _ = handing_over.send(true);
                let _ = stop_follower.send(true);
                let _ = to.send(supervisor::Msg::Handover).await;
            }
            continue;
        }
        stops += 1;
        if stops == 1 {
            tracing::info!("stop signal: draining every worker (again to kill them)");
            let _ = stop_follower.send(true);
        }
        let _ = to
            .send(supervisor::Msg::Shutdown { force: stops > 1 })
            .await;
    };
    (outcome, handed_over)
}

/// Where the daemon lives: its API socket and the workers' folder (mode 0700: worker sockets
/// bypass the proxy, so only this user, the proxy's, may reach them), made absolute and
/// created, held under the lock beside the socket, with the stale sockets of a daemon
/// before it removed.
struct Places {
    socket: PathBuf,
    worker_dir: PathBuf,
    _lock: Flock<std::fs::File>,
}

impl Places {
    fn take(serve: &ServeSettings) -> Result<Self> {
        let socket = absolute(&serve.socket)?;
        let worker_dir = absolute(&serve.worker_dir)?;
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent)
                .map_err(ControlError::io(format!("creating {}", parent.display())))?;
        }
        std::fs::create_dir_all(&worker_dir).map_err(ControlError::io(format!(
            "creating {}",
            worker_dir.display()
        )))?;
        std::fs::set_permissions(&worker_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            ControlError::io(format!("securing {}", worker_dir.display())),
        )?;
        let lock = lock(&socket)?;
        remove_stale_sockets(&worker_dir);
        process::remove_socket(&socket);
        Ok(Self {
            socket,
            worker_dir,
            _lock: lock,
        })
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| ControlError::invalid(format!("path {}: {e}", path.display())))
}

/// One daemon per socket: an exclusive lock on `<socket>.lock`, held while it runs.
fn lock(socket: &Path) -> Result<Flock<std::fs::File>> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ControlError::io(format!("lock file {}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        ControlError::Other(format!(
            "another `apotheca serve` is running with the socket {} (lock {}: {e})",
            socket.display(),
            path.display()
        ))
    })
}

/// Sockets left by workers of a daemon that died (killed workers cannot remove theirs). Such
/// a daemon's workers stop by themselves once their channels close, and nothing routes to them.
fn remove_stale_sockets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "sock") {
            process::remove_socket(&entry.path());
        }
    }
}
