//! `apotheca-worker`'s typed settings.

use apotheca_common::settings::{DatabaseSettings, LogSettings};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub worker: WorkerSettings,
    /// Sections of the other binaries, accepted so one file serves all.
    pub private_db: Option<IgnoredAny>,
    pub control: Option<IgnoredAny>,
    pub proxy: Option<IgnoredAny>,
}

/// The most runtime threads `[worker] threads` may ask for.
pub const MAX_THREADS: usize = 256;

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Database connections per worker (opened lazily).
    pub pool_size: usize,
    /// A connection idle this long is closed (looked at every 10 s)...
    pub connection_idle_secs: u64,
    /// ...but the one used last is kept for as long as the worker lives: its next request
    /// then needs no new backend (about 12 ms: SCRAM, a new backend, its catalog), at the
    /// cost of a PostgreSQL backend (about 4 MB) per quiet pharmacy.
    pub keep_last_connection: bool,
    /// After SIGTERM, how long in-flight requests may take before the worker exits anyway.
    pub shutdown_timeout_secs: u64,
    /// A login session ends after this long without a request.
    pub session_idle_minutes: i64,
    /// How long a login (session or API token) is remembered between requests before it is
    /// looked up again (each for a random half to all of it; the lookup runs behind the
    /// request that finds it due). Logins ended through the app end at once; this bounds what
    /// a change made by hand in SQL can miss. 0: every request looks its login up.
    pub login_cache_secs: u64,
    /// Failed logins (per username, and per client address) counted over this window...
    pub login_window_minutes: i64,
    /// ...after this many of either, each further attempt is answered slowly (at most 5 s)...
    pub login_slow_after: i64,
    /// ...and after this many from one address, that address is refused until the window has
    /// passed (a username's failures never refuse it: see `api::auth::throttle`).
    pub login_refuse_after: i64,
    /// Password reset links are built on this base (the tenant's own address); `{host}` is
    /// replaced by the request's host. Without SMTP the link is written to the log.
    pub reset_url: String,
    /// SMTP relay for password reset mail, e.g. "127.0.0.1:25"; unset: the link is logged.
    pub smtp_relay: Option<String>,
    /// The From address of that mail.
    pub mail_from: String,
    /// How long a ready answer of the hottest reads (medicines list and page, counter search)
    /// is fresh in memory (then, for as long again, it is still served while the next one is
    /// made behind it); writes through any worker of the tenant drop them at once. 0 turns
    /// that cache off.
    pub read_cache_secs: u64,
    /// Sale batches written at once (each one transaction of the sales waiting); at most
    /// `pool_size`.
    pub sale_writers: usize,
    /// Threads of the worker's runtime. 1: everything on one thread (no wake-ups between
    /// threads, the least CPU and memory per request; a busy tenant gets more cores through
    /// more workers, `[control.serve]`); 0: one per core; at most [`MAX_THREADS`].
    pub threads: usize,
    /// The public site only: the daemon's API socket, where "Create your pharmacy" and the
    /// operator console ask control to act (the daemon passes `--control-socket`, which wins
    /// over this).
    pub control_socket: Option<std::path::PathBuf>,
    /// The public site only: sign-up attempts each client address may make per hour.
    pub signups_per_hour: usize,
    /// The database is a Citus coordinator's (the daemon sets this for its workers when it
    /// is): statements are planned with their parameters' values (Citus cannot plan a write
    /// in a WITH clause without them; elsewhere each is planned once, since planning each
    /// run anew was a fifth of the database's time per sale), and a sale is written one
    /// statement per table, each reaching only the tenant's node (see
    /// `apotheca_pharmacy::sale::Writes`).
    pub citus: bool,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            pool_size: 4,
            connection_idle_secs: 30,
            keep_last_connection: false,
            shutdown_timeout_secs: 10,
            session_idle_minutes: 12 * 60,
            login_cache_secs: 30,
            login_window_minutes: 15,
            login_slow_after: 3,
            login_refuse_after: 10,
            reset_url: "http://{host}/reset-password".to_owned(),
            smtp_relay: None,
            mail_from: "apotheca@localhost".to_owned(),
            read_cache_secs: 5,
            sale_writers: 2,
            threads: 1,
            control_socket: None,
            signups_per_hour: 5,
            citus: false,
        }
    }
}
