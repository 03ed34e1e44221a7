//! How a migration run shows its progress: an indicatif bar on a terminal, plain lines
//! otherwise (logs, CI), both on stderr so stdout holds only the summary.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use apotheca_tenancy::migrate::{Progress, SchemaOutcome};

pub struct Reporter {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Reporter {
    /// A bar when stderr is a terminal, else plain lines; `quiet` shows nothing.
    pub fn new(quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            bar: None,
            plain: !quiet && !terminal,
        }
        .with_bar(!quiet && terminal)
    }

    fn with_bar(mut self, on: bool) -> Self {
        if on {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} migrating [{bar:30}] {pos}/{len} schemas {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
        self
    }
}

impl Progress for Reporter {
    fn start(&self, schemas: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(schemas);
            if schemas > 0 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }

    fn schema_done(&self, outcome: &SchemaOutcome) {
        let line = describe(outcome);
        if let Some(bar) = &self.bar {
            if outcome.error.is_some() {
                bar.println(line);
            }
            bar.inc(1);
        } else if self.plain && (outcome.error.is_some() || !outcome.applied.is_empty()) {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn describe(o: &SchemaOutcome) -> String {
    match &o.error {
        Some(e) => format!("{}: FAILED: {e}", o.schema),
        None => {
            let files: Vec<String> = o
                .applied
                .iter()
                .map(|a| format!("{} ({} ms)", a.file, a.duration_ms))
                .collect();
            format!("{}: applied {}", o.schema, files.join(", "))
        }
    }
}
