//! The one `tracing` set-up every Apotheca binary uses: filter from `RUST_LOG` (else the
//! binary's default), readable text on a terminal or one JSON object per line, always on stderr
//! so stdout stays free for command output. Libraries that log through the `log` crate
//! (Pingora among them) are bridged into the same subscriber.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset or invalid.
/// Calling it twice is harmless (the second call changes nothing), which tests rely on.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init also installs the `log` → `tracing` bridge (tracing-log).
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
