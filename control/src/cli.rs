//! The `apotheca` command line: its arguments (clap) and what each command prints.

use std::path::PathBuf;

use apotheca_common::names::{DomainName, SchemaName};
use apotheca_common::settings::LogFormat;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "apotheca",
    version,
    about = "Apotheca control: provision pharmacies (tenants), migrate their schemas, run the private database",
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
    /// Start the private database if needed, migrate, create the demo tenants, print how to reach them.
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
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create (first time) and start the private cluster; waits until it accepts connections.
    Start,
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
