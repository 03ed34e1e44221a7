//! Apotheca control (`apotheca`): the ops CLI over the tenancy core, and the daemon. It is the
//! only component that changes the database's shape: it runs the private cluster ([`db`]),
//! applies migrations ([`migrate`]) and provisions tenants with their roles and domains
//! ([`tenants`], [`roles`]) and makes tenants of pharmacies brought from the Django app
//! ([`import`]). `apotheca serve` ([`serve`]) supervises every tenant's workers.
//! `main.rs` only parses the command line and calls [`run`].

pub mod cli;
pub mod commands;
pub mod error;
pub mod import;
pub mod progress;
pub mod serve;
pub mod settings;

use std::process::ExitCode;

pub use cli::Cli;
pub use error::ControlError;

/// Runs one command line to completion and turns the outcome into an exit status.
pub async fn run(cli: Cli) -> ExitCode {
    match commands::dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Migration failures were already explained by the summary.
            if !matches!(
                e,
                ControlError::Tenancy(apotheca_tenancy::Error::MigrationsFailed(_))
            ) {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
