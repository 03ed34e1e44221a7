//! A single-tenant installation's SQLite file, opened read-only (the file is never changed).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{Cell, SourceError, Table, TABLES};

/// Every table of the app's that the file has.
pub fn read(path: &Path) -> Result<HashMap<String, Table>, SourceError> {
    if !path.is_file() {
        return Err(SourceError::Invalid(format!(
            "{}: no such file",
            path.display()
        )));
    }
    tables(path).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            SourceError::Invalid(format!("{}: not a SQLite database", path.display()))
        }
        e => e.into(),
    })
}

fn tables(path: &Path) -> Result<HashMap<String, Table>, rusqlite::Error> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The file may come from anyone (the console's upload): no function of its schema (a
    // view's, a generated column's) runs with side effects.
    db.pragma_update(None, "trusted_schema", false)?;
    let present: Vec<String> = {
        let mut stmt = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        names.collect::<Result<_, _>>()?
    };
    let mut tables = HashMap::new();
    for name in TABLES.iter().filter(|t| present.iter().any(|p| p == *t)) {
        // The name is one of ours, not the file's: safe to put in the statement.
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{name}\""))?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let rows = stmt
            .query_map([], |r| {
                (0..width)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => Cell::Null,
                            ValueRef::Integer(i) => Cell::Int(i),
                            ValueRef::Real(f) => Cell::Real(f),
                            ValueRef::Text(t) => {
                                Cell::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => {
                                Cell::Text(String::from_utf8_lossy(b).into_owned())
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        tables.insert((*name).to_owned(), Table::new(&columns, rows));
    }
    Ok(tables)
}
