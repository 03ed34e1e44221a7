//! What an import did, entity by entity, and every anomaly found in the source with what was
//! done about it: printed as text, or as JSON (`--json`), for a dry run as for the real one.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

/// Counts of one kind of row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows read from the source.
    pub read: usize,
    /// Rows written to Apotheca.
    pub written: usize,
    /// Source rows folded into another (batches of one medicine, a duplicate phone).
    pub merged: usize,
    /// Source rows not imported (each is also an anomaly).
    pub skipped: usize,
}

/// One thing in the source that needed a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// The source table, e.g. `billing_invoice`.
    pub table: &'static str,
    /// The source row's primary key.
    pub id: i64,
    pub problem: String,
    /// What was done about it.
    pub action: String,
}

/// The whole report of one pharmacy's import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The schema it went (or would go) to.
    pub schema: String,
    pub dry_run: bool,
    /// Entity → counts, in a stable order.
    pub counts: BTreeMap<&'static str, Counts>,
    pub anomalies: Vec<Anomaly>,
    /// Tables of the app's that the source does not have.
    pub missing_tables: Vec<&'static str>,
}

impl Report {
    pub fn counts(&mut self, entity: &'static str) -> &mut Counts {
        self.counts.entry(entity).or_default()
    }

    pub fn anomaly(
        &mut self,
        table: &'static str,
        id: i64,
        problem: impl Into<String>,
        action: impl Into<String>,
    ) {
        self.anomalies.push(Anomaly {
            table,
            id,
            problem: problem.into(),
            action: action.into(),
        });
    }

    /// The report as people read it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let verb = if self.dry_run {
            "would import (dry run: nothing was changed)"
        } else {
            "imported"
        };
        let _ = writeln!(out, "{}: {verb}", self.schema);
        let _ = writeln!(
            out,
            "  {:<22} {:>9} {:>9} {:>9} {:>9}",
            "", "read", "written", "merged", "skipped"
        );
        for (entity, c) in &self.counts {
            let _ = writeln!(
                out,
                "  {entity:<22} {:>9} {:>9} {:>9} {:>9}",
                c.read, c.written, c.merged, c.skipped
            );
        }
        if !self.missing_tables.is_empty() {
            let _ = writeln!(
                out,
                "  tables the source does not have (nothing from them): {}",
                self.missing_tables.join(", ")
            );
        }
        if self.anomalies.is_empty() {
            let _ = writeln!(out, "  no anomalies");
        } else {
            let _ = writeln!(out, "  {} anomalies:", self.anomalies.len());
            for a in &self.anomalies {
                let _ = writeln!(out, "  - {} {}: {}; {}", a.table, a.id, a.problem, a.action);
            }
        }
        out
    }
}
