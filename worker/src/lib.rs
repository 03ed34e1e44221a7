//! Apotheca worker (`apotheca-worker`): serves exactly one tenant schema, logged in as that
//! tenant's own PostgreSQL role. It checks at start that the role's `search_path` is its
//! schema and that the schema has the migrations this build expects ([`startup`]), then serves
//! the JSON API ([`api`], [`http`]) on a Unix socket or loopback port ([`server`]).

pub mod api;
pub mod authcache;
pub mod changes;
pub mod channel;
pub mod http;
pub mod mail;
pub mod pages;
pub mod readcache;
pub mod sale_queue;
pub mod server;
pub mod settings;
pub mod startup;
pub mod state;
pub mod stats;

use std::process::ExitCode;

use apotheca_common::names::SchemaName;
use apotheca_common::settings::LogFormat;
use apotheca_common::{settings as loader, telemetry};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "apotheca-worker",
    version,
    about = "Apotheca worker: the pharmacy app for one tenant schema"
)]
pub struct Cli {
    /// The tenant schema this worker serves (`public` for the public site).
    #[arg(long, value_name = "SCHEMA", value_parser = parse_schema)]
    pub schema: Option<String>,
    /// Where to listen: unix:/path/to.sock or tcp:127.0.0.1:PORT (0 picks a free port,
    /// printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "tcp:127.0.0.1:0")]
    pub listen: server::Listen,
    /// Write "ready <address>" on this inherited descriptor once listening and the database
    /// answers (for scripts; control uses --control-fd).
    #[arg(long, value_name = "FD")]
    pub ready_fd: Option<i32>,
    /// Control's channel: an inherited stream socket. The worker says "ready <address>" on it,
    /// reports its load every --report-interval-ms, drains when control says "drain", and
    /// drains and exits by itself when the channel closes (control is gone).
    #[arg(long, value_name = "FD", conflicts_with = "ready_fd")]
    pub control_fd: Option<i32>,
    /// How often to report load on the control channel.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "control_fd",
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub report_interval_ms: u64,
    /// The tenant role's connection URL (`apotheca db url --schema S` prints it).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Settings file (default: $APOTHECA_CONFIG, else ./apotheca.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The public site: the daemon's API socket, for "Create your pharmacy" and the operator
    /// console (the daemon passes it; overrides `[worker] control_socket`).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<std::path::PathBuf>,
    /// Load and check the settings and exit.
    #[arg(long)]
    pub validate_config: bool,
    /// Connect, run the start-up checks (role, search_path, schema version) and exit.
    #[arg(long)]
    pub check: bool,
}

fn parse_schema(raw: &str) -> Result<String, String> {
    if raw == SchemaName::PUBLIC {
        return Ok(raw.to_owned());
    }
    SchemaName::parse(raw)
        .map(|s| s.to_string())
        .map_err(|e| e.to_string())
}

/// Loads the settings, builds the runtime `[worker] threads` asks for, and runs the worker on it.
pub fn main(cli: Cli) -> ExitCode {
    let loaded = match loader::load::<settings::Settings>(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = loaded.settings.worker.threads;
    if threads > settings::MAX_THREADS {
        eprintln!(
            "error: [worker] threads = {threads}: at most {} (0: one per core)",
            settings::MAX_THREADS
        );
        return ExitCode::from(2);
    }
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                b.worker_threads(n);
            }
            b
        }
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli, loaded)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli, loaded: loader::Loaded<settings::Settings>) -> ExitCode {
    telemetry::init(
        cli.log_format.unwrap_or(loaded.settings.log.format),
        "warn,apotheca_worker=info",
    );
    if cli.validate_config {
        println!("settings OK");
        return ExitCode::SUCCESS;
    }
    let Some(schema) = cli.schema else {
        eprintln!("error: --schema is required");
        return ExitCode::from(2);
    };
    let Some(url) = loaded
        .settings
        .database
        .resolve(cli.database_url.as_deref())
    else {
        eprintln!("error: no database URL: pass --database-url or DATABASE_URL (see `apotheca db url --schema {schema}`)");
        return ExitCode::from(2);
    };
    // Taken before anything else, so a bad descriptor is refused at once.
    let channel = match cli.control_fd.map(channel::Channel::inherit).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --control-fd: {e}");
            return ExitCode::from(2);
        }
    };
    let mut worker_settings = loaded.settings.worker;
    if cli.control_socket.is_some() {
        worker_settings.control_socket = cli.control_socket;
    }
    let marker = change_marker(&cli.listen, &schema);
    let state = match state::AppState::with_marker(&schema, &url, worker_settings, marker) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let version = match startup::check(&state.pool, &schema).await {
        Ok(version) => version,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if cli.check {
        println!("schema {schema}: role and search_path OK, migration version {version:04}");
        return ExitCode::SUCCESS;
    }
    let announce = match channel {
        Some(channel) => Announce::Control {
            channel,
            interval: std::time::Duration::from_millis(cli.report_interval_ms),
        },
        None => Announce::ReadyFd(cli.ready_fd),
    };
    match serve(state, cli.listen, announce, &schema, &url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// How the worker tells the world it is ready.
enum Announce {
    /// `--ready-fd N` (or nothing): one line, then the descriptor is left alone.
    ReadyFd(Option<i32>),
    /// `--control-fd N`: the process contract with control.
    Control {
        channel: channel::Channel,
        interval: std::time::Duration,
    },
}

/// Every 10 s (while the worker runs): closes the database connections idle for
/// `connection_idle_secs` (all of them, or all but the last used with `keep_last_connection`);
/// and once the worker is quiet (nothing served since the last tick), drops what its caches
/// keep past its time and gives the allocator's free memory back to the kernel — once per
/// quiet spell, and again whenever a connection was closed meanwhile. A busy pharmacy's
/// worker thus returns to about its idle size soon after its staff stop.
async fn tidy(state: std::sync::Weak<state::Inner>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut served = u64::MAX;
    let mut tidied = false;
    loop {
        every.tick().await;
        let Some(state) = state::AppState::upgrade(&state) else {
            return;
        };
        let connections = state.pool.status().size;
        state.close_idle(
            std::time::Duration::from_secs(state.settings.connection_idle_secs),
            state.settings.keep_last_connection,
        );
        let closed = state.pool.status().size < connections;
        let now = state.stats.served();
        if now != served || state.stats.in_flight() > 0 {
            served = now;
            tidied = false;
            continue;
        }
        if !tidied || closed {
            state.read_cache.sweep();
            state.auth_cache.sweep();
            stats::release_free_memory();
            tidied = true;
        }
    }
}

/// The tenant's change marker beside the worker's socket (`<schema>.changes`), shared with the
/// tenant's other workers there; none for a TCP listener, whose writes go by NOTIFY.
fn change_marker(listen: &server::Listen, schema: &str) -> Option<readcache::Marker> {
    let server::Listen::Unix(path) = listen else {
        return None;
    };
    let path = path.parent()?.join(format!("{schema}.changes"));
    readcache::Marker::open(&path)
        .inspect_err(|e| {
            tracing::warn!(error = %e, path = %path.display(), "no change marker; announcing writes by NOTIFY")
        })
        .ok()
}

/// Binds, announces readiness, serves until SIGTERM/SIGINT (or, under control, a drain or the
/// channel's end), drains, closes the pool.
async fn serve(
    state: state::AppState,
    listen: server::Listen,
    announce: Announce,
    schema: &str,
    url: &str,
) -> Result<(), String> {
    let deadline = std::time::Duration::from_secs(state.settings.shutdown_timeout_secs);
    let bound = server::Bound::bind(&listen)
        .await
        .map_err(|e| format!("listening on {listen:?}: {e}"))?;
    let address = bound.describe();
    tracing::info!(%address, schema, "listening");
    if matches!(listen, server::Listen::Tcp(_)) {
        println!("listening on {address}");
    }
    // Under control, control follows the tenant's change channel for all its workers on one
    // connection and relays it over the control channel; alone, the worker listens itself.
    let (stop_listener, stopped) = tokio::sync::watch::channel(false);
    let listener = matches!(announce, Announce::ReadyFd(_))
        .then(|| tokio::spawn(changes::listen(state.clone(), url.to_owned(), stopped)));
    tokio::spawn(tidy(state.downgrade()));
    let app = http::router(state.clone());
    let shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match announce {
        Announce::ReadyFd(fd) => {
            if let Some(fd) = fd {
                server::announce_ready(fd, &address)
                    .map_err(|e| format!("writing to the ready descriptor {fd}: {e}"))?;
            }
            Box::pin(server::shutdown_signal())
        }
        Announce::Control {
            mut channel,
            interval,
        } => {
            channel
                .ready(&address)
                .await
                .map_err(|e| format!("saying ready on the control channel: {e}"))?;
            let state = state.clone();
            Box::pin(async move {
                let feed = |notice| changes::heard(&state, notice);
                tokio::select! {
                    () = server::shutdown_signal() => {}
                    why = channel.supervise(&state.stats, interval, &feed) => {
                        tracing::info!("{why}: finishing in-flight requests");
                    }
                }
            })
        }
    };
    bound
        .serve(app, shutdown, deadline)
        .await
        .map_err(|e| format!("serving: {e}"))?;
    let _ = stop_listener.send(true);
    if let Some(listener) = listener {
        let _ = listener.await;
    }
    state.pool.close();
    tracing::info!("stopped");
    Ok(())
}
