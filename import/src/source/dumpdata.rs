//! `manage.py dumpdata` JSON: a list of `{"model": "app.model", "pk": …, "fields": {…}}`, in
//! UTF-8, or in UTF-16 with a byte-order mark as Windows PowerShell writes a redirected output.
//! Each model becomes the table Django names `<app>_<model>`; a foreign key's field `x` is the
//! column `x_id`, and the primary key is named as the app's table names it.

use std::collections::HashMap;

use serde_json::Value;

use super::{Cell, SourceError, Table, TABLES};

/// The primary key's column of each table (the app renamed some).
fn primary_key(table: &str) -> &'static str {
    match table {
        "medicine_medicine" => "medicine_id",
        "billing_customer" => "customer_id",
        "billing_invoice" => "invoice_id",
        _ => "id",
    }
}

/// Foreign keys (as dumpdata names the field) of the app's tables.
const FOREIGN_KEYS: [&str; 4] = ["supplier", "invoice", "customer", "medicine"];

/// Decodes the file's bytes: UTF-8 (with or without a byte-order mark) or UTF-16 with one.
pub fn decode(bytes: &[u8]) -> Result<String, SourceError> {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units)
            .map_err(|_| SourceError::Invalid("the dumpdata file is not valid UTF-16".into()))
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec())
            .map_err(|_| SourceError::Invalid("the dumpdata file is not valid UTF-8".into())),
        _ => String::from_utf8(bytes.to_vec()).map_err(|_| {
            SourceError::Invalid(
                "the dumpdata file is neither UTF-8 nor UTF-16 with a byte-order mark".into(),
            )
        }),
    }
}

/// A table's columns in first-seen order, and its rows as column → cell.
type Found = (Vec<String>, Vec<HashMap<String, Cell>>);

/// The app's tables in the JSON text.
pub fn read(text: &str) -> Result<HashMap<String, Table>, SourceError> {
    let objects: Vec<Value> = serde_json::from_str(text).map_err(|e| {
        SourceError::Invalid(format!(
            "the dumpdata file is not a JSON list of objects: {e}"
        ))
    })?;
    let mut found: HashMap<String, Found> = HashMap::new();
    for (i, object) in objects.iter().enumerate() {
        let model = object.get("model").and_then(Value::as_str).ok_or_else(|| {
            SourceError::Invalid(format!("object {i} of the dumpdata file has no \"model\""))
        })?;
        let table = model.replace('.', "_").to_lowercase();
        if !TABLES.contains(&table.as_str()) {
            continue;
        }
        let fields = object
            .get("fields")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                SourceError::Invalid(format!("object {i} ({model}) has no \"fields\""))
            })?;
        let mut row = HashMap::new();
        row.insert(
            primary_key(&table).to_owned(),
            cell(object.get("pk").unwrap_or(&Value::Null)),
        );
        for (name, value) in fields {
            let column = if FOREIGN_KEYS.contains(&name.as_str()) {
                format!("{name}_id")
            } else {
                name.clone()
            };
            row.insert(column, cell(value));
        }
        let entry = found.entry(table).or_default();
        for column in row.keys() {
            if !entry.0.contains(column) {
                entry.0.push(column.clone());
            }
        }
        entry.1.push(row);
    }
    // A dump lists rows, not tables: a model without objects is an empty table, not a missing
    // one.
    for table in TABLES {
        found.entry(table.to_owned()).or_default();
    }
    Ok(found
        .into_iter()
        .map(|(table, (columns, rows))| {
            let rows = rows
                .into_iter()
                .map(|mut row| {
                    columns
                        .iter()
                        .map(|c| row.remove(c).unwrap_or(Cell::Null))
                        .collect()
                })
                .collect();
            (table, Table::new(&columns, rows))
        })
        .collect())
}

fn cell(value: &Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Int(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Cell::Text(n.to_string()), Cell::Int),
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_a_dump_comes_in() {
        let text =
            "[{\"model\": \"billing.customer\", \"pk\": 7, \"fields\": {\"name\": \"Maya\"}}]";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let bom: Vec<u8> = [0xEF, 0xBB, 0xBF].into_iter().chain(text.bytes()).collect();
        for bytes in [le, be, bom, text.as_bytes().to_vec()] {
            assert_eq!(decode(&bytes).unwrap(), text);
        }
        assert!(
            decode(&[0xFF, 0xFE, 0x00, 0xD8]).is_err(),
            "a lone surrogate"
        );
        assert!(decode(&[0xC3, 0x28]).is_err(), "not UTF-8");
    }

    #[test]
    fn models_become_the_tables_django_names() {
        let tables = read(
            r#"[{"model": "billing.invoice", "pk": 3, "fields": {"customer": 7, "tax": "2.50", "payment_method": "esewa"}},
                {"model": "auth.permission", "pk": 1, "fields": {"name": "x"}},
                {"model": "medicine.medicine", "pk": 9, "fields": {"supplier": null, "price": 2.75}}]"#,
        )
        .unwrap();
        assert_eq!(
            tables.len(),
            TABLES.len(),
            "the app's tables, and not Django's own"
        );
        let invoices = &tables["billing_invoice"];
        let row = &invoices.rows[0];
        assert_eq!(invoices.cell(row, "invoice_id"), &Cell::Int(3));
        assert_eq!(invoices.cell(row, "customer_id"), &Cell::Int(7));
        let medicines = &tables["medicine_medicine"];
        assert_eq!(
            medicines.cell(&medicines.rows[0], "medicine_id"),
            &Cell::Int(9)
        );
        assert_eq!(
            medicines
                .cell(&medicines.rows[0], "price")
                .decimal()
                .map(|d| d.to_string())
                .as_deref(),
            Some("2.75")
        );
        // An older version's `tax` is the discount.
        let snapshot = crate::source::snapshot(&tables);
        assert_eq!(
            snapshot.invoices[0]
                .discount
                .map(|d| d.to_string())
                .as_deref(),
            Some("2.50")
        );
        assert!(
            snapshot.missing_tables.is_empty(),
            "a model without objects is empty"
        );
        assert!(snapshot.users.is_empty());
        assert!(read("{\"not\": \"a list\"}").is_err());
        assert!(read("[{\"pk\": 1}]").is_err(), "an object without a model");
    }
}
