//! A pharmacy app's PostgreSQL database (a single-tenant installation's, or one schema of a
//! django-tenants database), read in one repeatable-read, read-only transaction: a consistent
//! picture even while the app still runs.

use std::collections::HashMap;

use apotheca_common::names::quote_ident;
use tokio_postgres::{Client, IsolationLevel};

use super::{Cell, SourceError, Table, TABLES};

/// Every table of the app's in `schema` that the database has; every value as text (the
/// snapshot parses them as it does SQLite's and JSON's).
pub async fn read(
    client: &mut Client,
    schema: &str,
) -> Result<HashMap<String, Table>, SourceError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let present: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if present.is_empty() {
        return Err(SourceError::Invalid(format!(
            "schema \"{schema}\" has no tables (is it the pharmacy app's database?)"
        )));
    }
    let mut tables = HashMap::new();
    for name in TABLES.iter().filter(|t| present.iter().any(|p| p == *t)) {
        let columns: Vec<String> = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, name],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let list = columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = tx
            .query(
                &format!(
                    "SELECT {list} FROM {}.{}",
                    quote_ident(schema),
                    quote_ident(name)
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| match r.get::<_, Option<String>>(i) {
                        Some(t) => Cell::Text(t),
                        None => Cell::Null,
                    })
                    .collect()
            })
            .collect();
        tables.insert((*name).to_owned(), Table::new(&columns, rows));
    }
    tx.commit().await?;
    Ok(tables)
}
