//! The `apotheca` command line: its arguments (clap) and what each command prints.

use std::path::PathBuf;
use std::time::Duration;

use apotheca_common::names::{DomainName, SchemaName};
use apotheca_common::settings::LogFormat;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "apotheca",
    version,
    about = "Apotheca control: provision pharmacies (tenants), migrate their schemas, supervise their workers, run the private database",
    long_about = "Apotheca control: the only component that changes the database's shape.\n\n\
        Settings come from defaults, then apotheca.toml (--config, APOTHECA_CONFIG, or the working folder), \
        then APOTHECA_* environment variables (APOTHECA_SECTION__KEY). The database is --database-url, \
        else DATABASE_URL, else [database] url, else a private PostgreSQL cluster started on demand.\n\n\
        Exit status: 0 success, 1 failure, 2 bad input (nothing was changed)."
)]
pub struct Cli {
    /// Settings file (default: $APOTHECA_CONFIG, else ./apotheca.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Admin connection URL of the database (default: the private cluster).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Load and check the settings and migrations, say which database would be used, and exit.
    #[arg(long)]
    pub validate_config: bool,
    /// Use migrations from DIR/shared and DIR/tenant instead of the ones built in.
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development all-in-one: the private database if none is configured, migrations, the demo
    /// tenants (seeded) on an empty system, then the daemon and the proxy (HTTP, and HTTPS with a
    /// self-signed certificate) until Ctrl-C, which stops everything.
    Up,
    /// The private PostgreSQL cluster.
    #[command(subcommand)]
    Db(DbCommand),
    /// Apply pending migrations: public first, then every tenant (in parallel).
    MigrateSchemas(MigrateArgs),
    /// Create a tenant: schema, all tenant migrations, its role and its first (primary) domain.
    CreateTenant(CreateTenantArgs),
    /// Build spare tenant schemas ahead of time, so create-tenant only renames one.
    PrepareSpares {
        /// Keep this many ready (default: [control] spare_schemas).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// Bring a pharmacy's data from the Django pharmacy app Apotheca replaces.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Fill a tenant with a sample pharmacy: company, users (passwords printed once),
    /// suppliers, medicines with batches, customers and a week of sales.
    SeedData {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
        /// First remove the tenant's business data (users are kept).
        #[arg(long)]
        clear: bool,
    },
    /// List tenants with their status, domains and migration version.
    ListTenants {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// On Citus: the worker nodes that hold tenants, and how many each holds.
    ListNodes {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// On Citus: move a tenant's schema with its data to another worker node while the
    /// pharmacy keeps serving (its writes wait only for the final switch).
    MoveTenant {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
        /// The node, `name:port` as `apotheca list-nodes` shows it.
        #[arg(long, value_name = "NODE")]
        to: String,
    },
    /// On Citus: spread the tenants evenly over the worker nodes (by count), one move at a
    /// time, each as `move-tenant` does it.
    RebalanceTenants {
        /// Only print the moves.
        #[arg(long)]
        dry_run: bool,
        /// The moves as one JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Route another domain to a tenant.
    AddDomain {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
        #[arg(long)]
        domain: DomainName,
        /// Make it the tenant's primary domain.
        #[arg(long)]
        primary: bool,
    },
    /// Stop routing a domain (a primary only when --new-primary names the next one).
    RemoveDomain {
        #[arg(long)]
        domain: DomainName,
        /// Another domain of the same tenant that becomes primary.
        #[arg(long, value_name = "DOMAIN")]
        new_primary: Option<DomainName>,
    },
    /// Suspend a tenant: its sites answer 403 until resumed.
    SuspendTenant {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
    },
    /// Resume a suspended tenant.
    ResumeTenant {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
    },
    /// Delete a tenant: its schema with all its data, its role and its rows.
    DeleteTenant {
        #[arg(long, value_name = "SCHEMA")]
        schema: SchemaName,
        /// Confirm: the tenant's data is gone for good (unless archived).
        #[arg(long)]
        yes: bool,
        /// First write `pg_dump -n SCHEMA` (custom format, for pg_restore) to FILE.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
    },
    /// Add an operator: someone who may log in to the operator console (/operator/ on the
    /// public site) and manage every tenant.
    ///
    /// The password is read from standard input with --password-stdin (its first line), else
    /// asked for twice on the terminal without echo. At least 12 characters.
    CreateOperator {
        /// 1 to 150 letters, digits or . _ @ + - (stored lowercased).
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the operators: username, active, created, last login.
    ListOperators {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove an operator (their sessions end at once), or with --deactivate only refuse their logins.
    DeleteOperator {
        #[arg(long)]
        username: String,
        /// Keep the operator but end their sessions and refuse their logins.
        #[arg(long)]
        deactivate: bool,
    },
    /// Put every tenant's role back as the tables and the server secret say.
    ///
    /// Creates the roles that are missing, makes each a member of this database's tenant group,
    /// sets its password, search_path, timeouts and connection limit, and grants it its own
    /// schema. For a whole-database dump restored onto another cluster (pg_restore --no-owner
    /// --no-acl), whose roles were not in the dump. Idempotent; needs the same server secret.
    SyncRoles {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: supervise every tenant's workers and serve its API.
    ///
    /// In the foreground: spawns, wakes, scales, restarts and reaps every tenant's workers and
    /// the public site's, and serves the API on a Unix socket ([control.serve] socket).
    /// SIGTERM or SIGINT drains every worker and exits 0; a second one kills them. SIGQUIT
    /// exits at once and leaves the workers to the next daemon (to restart control): they
    /// serve on until idle for 1 s (at most 30 s), then drain and exit by themselves.
    /// Under systemd (NOTIFY_SOCKET set, Type=notify) it says READY=1 once the API answers and
    /// every tenant's minimum of workers is ready, keeps a STATUS= line, says STOPPING=1 when
    /// it drains, and pings WATCHDOG=1 when the unit sets WatchdogSec=.
    Serve,
    /// Wake a tenant: return once one of its workers is ready, printing its endpoints.
    ///
    /// Exit 1 if none is ready in time, 2 for an unknown tenant. Needs `apotheca serve`.
    Wake {
        /// A tenant schema, or `public` for the public site.
        #[arg(long, value_name = "SCHEMA", value_parser = parse_target)]
        schema: String,
        /// Give up after this long, e.g. 10s (default: [control.serve] wake_timeout_ms).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Workers per tenant, restarts, last exit and policy, as the daemon sees them.
    ///
    /// Each worker with its pid, state, uptime, requests in flight and served, RSS. Needs
    /// `apotheca serve`. With --cluster: every host sharing the database (from the database,
    /// no daemon needed) and where each tenant has worker processes.
    Status {
        /// Only this tenant (or `public`).
        #[arg(long, value_name = "SCHEMA", value_parser = parse_target, conflicts_with = "cluster")]
        schema: Option<String>,
        /// Every host sharing the database: name, address, version, live, stopped or gone,
        /// last beat, and the tenants it runs workers for.
        #[arg(long)]
        cluster: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's worker policy; a running daemon applies it at once.
    Scale(ScaleArgs),
    /// Rolling restart: replace workers one at a time, each new one ready first.
    ///
    /// Each new worker is ready before an old one drains, so no request fails. Also lifts a
    /// crash-loop mark. Needs `apotheca serve`.
    Restart {
        /// A tenant schema, or `public` for the public site.
        #[arg(long, value_name = "SCHEMA", value_parser = parse_target, required_unless_present = "all", conflicts_with = "all")]
        schema: Option<String>,
        /// Every tenant and the public site.
        #[arg(long)]
        all: bool,
        /// Stop waiting after this long (the restart goes on), e.g. 5m (default 300s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[arg(long, value_name = "SCHEMA")]
    pub schema: SchemaName,
    /// Workers kept running even when idle (0: scale to zero).
    #[arg(long, value_name = "N")]
    pub min: Option<u16>,
    /// At most this many workers (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max: Option<u16>,
    /// Idle this long, the tenant goes down to its min, e.g. 300s, 5m, 1h (at least 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Requests in flight per worker above which another worker is added (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: Option<u16>,
    #[arg(long)]
    pub json: bool,
}

/// `public` (the public site) or a tenant schema name.
pub fn parse_target(raw: &str) -> Result<String, String> {
    if raw == SchemaName::PUBLIC {
        return Ok(raw.to_owned());
    }
    SchemaName::parse(raw)
        .map(|s| s.to_string())
        .map_err(|e| e.to_string())
}

/// A duration: a whole number with a unit (`ms`, `s`, `m`/`min`, `h`), or seconds alone:
/// `300`, `90s`, `5m`, `1h`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let bad = || format!("{raw:?} is not a duration like 300, 90s, 5m or 1h");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create (first time) and start the private cluster; waits until it accepts connections.
    Start {
        /// Create it as a Citus coordinator with this many worker nodes of its own (each with
        /// its own data folder, socket folder and port; Citus must be installed). Only when
        /// the cluster is created: an existing cluster starts as it was made.
        #[arg(long, value_name = "N")]
        citus_nodes: Option<u32>,
    },
    /// Stop the private cluster.
    Stop,
    /// Whether the private cluster is running, and where.
    Status,
    /// Print the admin connection URL, or with --schema the tenant role's URL (to run a worker by hand).
    Url {
        #[arg(long, value_name = "SCHEMA")]
        schema: Option<SchemaName>,
    },
    /// Open psql as admin, or with --schema as the tenant's role.
    Psql {
        #[arg(long, value_name = "SCHEMA")]
        schema: Option<SchemaName>,
        /// Arguments passed on to psql (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only the public schema.
    #[arg(long, conflicts_with = "schema")]
    pub shared: bool,
    /// Only this tenant schema.
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<SchemaName>,
    /// Show what is pending per schema; apply nothing.
    #[arg(long)]
    pub plan: bool,
    /// Schemas migrated at once (default: [control] migrate_jobs, else the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not top up the spare schema pool afterwards.
    #[arg(long)]
    pub no_spares: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A new pharmacy made from one database of the Django pharmacy app: created and filled in
    /// one transaction (nothing is left on failure), with a report of every entity read,
    /// written, merged and skipped, and of every anomaly and what was done about it.
    PharmacyApp(ImportPharmacyAppArgs),
    /// Every pharmacy of a django-tenants database (the public tenant skipped), with its
    /// domains (the primary kept), each in its own transaction, several at once; an inactive
    /// one arrives suspended. One whose schema or a domain exists already is skipped. Prints a
    /// summary (imported, skipped, failed with the reason) and each pharmacy's report; exits 1
    /// when any failed.
    DjangoTenants(ImportDjangoTenantsArgs),
}

#[derive(Debug, Args)]
pub struct ImportDjangoTenantsArgs {
    /// The django-tenants database: a postgres:// URL.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Only this schema (repeat for more).
    #[arg(long, value_name = "SCHEMA")]
    pub only: Vec<String>,
    /// Pharmacies imported at once (default: 2).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Import each, print the reports, then roll every one back.
    #[arg(long)]
    pub dry_run: bool,
    /// The summary and the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportPharmacyAppArgs {
    /// The database: sqlite:PATH, a postgres:// URL (its schema public), or dumpdata:PATH (the
    /// app's `manage.py dumpdata` JSON, UTF-8 or UTF-16 with a byte-order mark).
    #[arg(long, value_name = "SOURCE")]
    pub from: apotheca_import::Location,
    /// The new tenant's schema.
    #[arg(long, value_name = "SCHEMA")]
    pub schema: SchemaName,
    /// Its first (primary) domain.
    #[arg(long)]
    pub domain: DomainName,
    /// The pharmacy's display name (default: the company's name in the source, else the schema).
    #[arg(long)]
    pub name: Option<String>,
    /// Read, map and write everything, print the report, then roll it all back.
    #[arg(long)]
    pub dry_run: bool,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateTenantArgs {
    /// The pharmacy's display name.
    #[arg(long)]
    pub name: String,
    /// Schema name: a lowercase letter, then lowercase letters, digits or '_' (at most 63).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: SchemaName,
    /// Its first domain, e.g. my-pharmacy.example.com (IDNA is converted to punycode).
    #[arg(long)]
    pub domain: DomainName,
    /// Accepted for django-tenants compatibility: a tenant's first domain is always primary.
    #[arg(long)]
    pub is_primary: bool,
    /// Print the created tenant as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also create this pharmacy's first user, an admin with this username.
    #[arg(long, value_name = "NAME")]
    pub admin_user: Option<String>,
    /// The admin's password, read from FILE (first line); without it a password is
    /// generated and printed once.
    #[arg(long, value_name = "FILE", requires = "admin_user")]
    pub admin_password_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "5 weeks", "-1s", "1.5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_target("public"), Ok("public".into()));
        assert!(parse_target("pg_catalog").is_err());
    }
}
