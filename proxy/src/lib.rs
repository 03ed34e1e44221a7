//! Apotheca edge proxy (`apotheca-proxy`). This crate owns the proxy's command line and
//! settings; the Pingora server that routes hosts to tenants arrives in a later step, and until
//! then the binary only validates its settings and says so rather than pretending to serve.

use std::process::ExitCode;

use apotheca_common::settings::{self as loader, LogSettings};
use clap::Parser;
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "apotheca-proxy",
    version,
    about = "Apotheca edge proxy: routes every host to its tenant's workers"
)]
pub struct Cli {
    /// Settings file (default: $APOTHECA_CONFIG, else ./apotheca.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Load and check the settings and exit.
    #[arg(long)]
    pub validate_config: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    pub proxy: Option<IgnoredAny>,
    pub database: Option<IgnoredAny>,
    pub private_db: Option<IgnoredAny>,
    pub control: Option<IgnoredAny>,
    pub worker: Option<IgnoredAny>,
}

pub fn run(cli: Cli) -> ExitCode {
    if let Err(e) = loader::load::<Settings>(cli.config.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if cli.validate_config {
        println!("settings OK");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error: this build of apotheca-proxy does not serve yet; only --validate-config works"
    );
    ExitCode::from(2)
}
