//! Apotheca worker (`apotheca-worker`): serves exactly one tenant schema, logged in as that
//! tenant's own PostgreSQL role. This crate owns the worker's command line, settings and its
//! start-up checks ([`startup`]): the role's `search_path` is the schema, and the schema's
//! migrations are the version this build expects. The HTTP app comes in a later step; until
//! then the binary runs those checks (`--check`) and refuses to pretend it serves.

pub mod settings;
pub mod startup;

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
    /// The tenant role's connection URL (`apotheca db url --schema S` prints it).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Settings file (default: $APOTHECA_CONFIG, else ./apotheca.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
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

pub async fn run(cli: Cli) -> ExitCode {
    let loaded = match loader::load::<settings::Settings>(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
    match startup::check(&url, &schema).await {
        Ok(version) if cli.check => {
            println!("schema {schema}: role and search_path OK, migration version {version:04}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("error: this build of apotheca-worker does not serve HTTP yet; use --check");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
