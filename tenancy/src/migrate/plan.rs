//! The pure planning half of the migration runner: a schema's state as read from the records
//! table, what it still needs (`pending`), and the whole-run refusal of edited migrations
//! (`verify_checksums`). Nothing here touches the database.

use std::collections::BTreeMap;

use apotheca_migrations::Migration;

use crate::error::{Error, Result};

/// What a schema is, which decides what else migrating it involves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Public,
    /// A tenant, with its role (re-granted after migrating).
    Tenant(String),
    /// A pre-built spare from the pool (see `spares`).
    Spare,
}

/// One schema as found in the database.
#[derive(Debug, Clone)]
pub(super) struct SchemaState {
    pub(super) name: String,
    pub(super) kind: Kind,
    /// Applied versions and their recorded checksums.
    pub(super) applied: BTreeMap<i32, String>,
}

/// An applied file that changed is an error for the whole run: nothing is applied anywhere.
pub(super) fn verify_checksums(
    states: &[SchemaState],
    migrations: &[Migration],
    kind: &str,
) -> Result<()> {
    let mut changed: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for state in states {
        for (version, recorded) in &state.applied {
            if let Some(m) = migrations.iter().find(|m| m.version == *version) {
                if &m.checksum != recorded {
                    let entry = changed
                        .entry(m.file_name())
                        .or_insert((0, state.name.clone()));
                    entry.0 += 1;
                }
            }
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = changed
        .into_iter()
        .map(|(file, (count, example))| {
            format!("migrations/{kind}/{file} changed after it was applied (its checksum differs in {count} schema(s), e.g. {example:?}); add a new migration instead of editing an applied one")
        })
        .collect();
    Err(Error::ChecksumMismatch(format!(
        "{}\nnothing was applied",
        lines.join("\n")
    )))
}

/// What `state` still needs, or why it cannot be migrated by this build.
pub(super) fn pending<'m>(
    state: &SchemaState,
    migrations: &'m [Migration],
) -> Result<Vec<&'m Migration>, String> {
    if let Some(unknown) = state
        .applied
        .keys()
        .find(|v| !migrations.iter().any(|m| m.version == **v))
    {
        return Err(format!(
            "has migration {unknown:04} applied, which this build does not know (a newer apotheca migrated it?)"
        ));
    }
    let newest = state.applied.keys().next_back().copied().unwrap_or(0);
    let todo: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !state.applied.contains_key(&m.version))
        .collect();
    if let Some(early) = todo.iter().find(|m| m.version < newest) {
        return Err(format!(
            "{} is older than the newest applied migration ({newest:04}); give new migrations higher numbers",
            early.file_name()
        ));
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn m(v: i32, sql: &'static str) -> Migration {
        Migration::parse(&format!("{v:04}_m.sql"), Cow::Borrowed(sql)).unwrap()
    }

    fn state(applied: &[(i32, &Migration)]) -> SchemaState {
        SchemaState {
            name: "acme".into(),
            kind: Kind::Tenant("r".into()),
            applied: applied
                .iter()
                .map(|(v, m)| (*v, m.checksum.clone()))
                .collect(),
        }
    }

    #[test]
    fn pending_and_order() {
        let (a, b, c) = (m(1, "a"), m(2, "b"), m(3, "c"));
        let all = vec![a.clone(), b.clone(), c.clone()];
        assert_eq!(pending(&state(&[]), &all).unwrap().len(), 3);
        assert_eq!(
            pending(&state(&[(1, &a), (2, &b)]), &all).unwrap()[0].version,
            3
        );
        assert!(pending(&state(&[(1, &a), (3, &c)]), &all)
            .unwrap_err()
            .contains("older"));
        assert!(pending(&state(&[(1, &a), (9, &c)]), &all)
            .unwrap_err()
            .contains("does not know"));
    }

    #[test]
    fn changed_checksums_name_the_file() {
        let a = m(1, "a");
        let edited = m(1, "a edited");
        let err = verify_checksums(&[state(&[(1, &a)])], &[edited], "tenant")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("migrations/tenant/0001_m.sql") && err.contains("nothing was applied"),
            "{err}"
        );
        assert!(verify_checksums(&[state(&[(1, &a)])], std::slice::from_ref(&a), "tenant").is_ok());
    }
}
