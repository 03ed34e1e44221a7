//! Where a pharmacy's database comes from: a SQLite file ([`sqlite`]), a PostgreSQL schema
//! ([`postgres`]; the schemas of a django-tenants database are listed by [`tenants`]) or a
//! `manage.py dumpdata` JSON ([`dumpdata`]). Each gives its tables as
//! [`Table`]s of plain cells; [`snapshot`] reads the app's rows from them the same way for
//! all three, taking the columns a version of the app has and defaults for those it lacks.

pub mod dumpdata;
pub mod postgres;
pub mod sqlite;
pub mod tenants;

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::app::{self, Snapshot};

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading the SQLite file: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("reading the PostgreSQL database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// One value as a source holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(i) => Some(i.to_string()),
            Cell::Real(r) => Some(r.to_string()),
            Cell::Text(t) => Some(t.clone()),
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::Real(r) if r.fract() == 0.0 => Some(*r as i64),
            Cell::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn decimal(&self) -> Option<Decimal> {
        self.text().as_deref().and_then(app::decimal_from_text)
    }

    pub fn bool(&self) -> Option<bool> {
        match self {
            Cell::Int(i) => Some(*i != 0),
            Cell::Text(t) => match t.trim() {
                "t" | "true" | "True" | "1" => Some(true),
                "f" | "false" | "False" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A table's rows, by column name.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: HashMap<String, usize>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[String], rows: Vec<Vec<Cell>>) -> Self {
        Self {
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            rows,
        }
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The cell of `column` in `row`; Null when the table has no such column.
    pub fn cell<'a>(&self, row: &'a [Cell], column: &str) -> &'a Cell {
        const NULL: &Cell = &Cell::Null;
        self.columns
            .get(column)
            .and_then(|&i| row.get(i))
            .unwrap_or(NULL)
    }
}

/// The app's tables (section 1) a snapshot is read from.
pub const TABLES: [&str; 9] = [
    "pharmacy_user",
    "pharmacy_company",
    "supplier_supplier",
    "medicine_medicine",
    "supplier_supplierinvoice",
    "supplier_supplierinvoiceitem",
    "billing_customer",
    "billing_invoice",
    "billing_invoiceitem",
];

/// `make` of every row of `table`.
fn rows<T>(table: &Table, make: impl Fn(&Table, &[Cell]) -> T) -> Vec<T> {
    table.rows.iter().map(|r| make(table, r)).collect()
}

/// Reads the app's rows from `tables` (table name → its rows; a table absent from the map is
/// one the database does not have).
pub fn snapshot(tables: &HashMap<String, Table>) -> Snapshot {
    let empty = Table::default();
    let get = |name: &str| tables.get(name).unwrap_or(&empty);
    let mut s = Snapshot {
        missing_tables: TABLES
            .iter()
            .copied()
            .filter(|t| !tables.contains_key(*t))
            .collect(),
        ..Snapshot::default()
    };
    let text = |t: &Table, r: &[Cell], c: &str| t.cell(r, c).text().unwrap_or_default();
    let opt_text = |t: &Table, r: &[Cell], c: &str| t.cell(r, c).text();
    let date = |t: &Table, r: &[Cell], c: &str| {
        t.cell(r, c).text().as_deref().and_then(app::date_from_text)
    };
    let at = |t: &Table, r: &[Cell], c: &str| {
        t.cell(r, c)
            .text()
            .as_deref()
            .and_then(app::datetime_from_text)
    };
    let int = |t: &Table, r: &[Cell], c: &str| t.cell(r, c).int();
    let dec = |t: &Table, r: &[Cell], c: &str| t.cell(r, c).decimal();

    s.users = rows(get("pharmacy_user"), |t, r| app::User {
        id: int(t, r, "id").unwrap_or_default(),
        username: text(t, r, "username"),
        password: text(t, r, "password"),
        first_name: text(t, r, "first_name"),
        last_name: text(t, r, "last_name"),
        email: text(t, r, "email"),
        is_active: t.cell(r, "is_active").bool().unwrap_or(true),
        role: text(t, r, "role"),
        date_joined: at(t, r, "date_joined"),
        last_login: at(t, r, "last_login"),
    });
    if tables.contains_key("pharmacy_company") {
        let t = get("pharmacy_company");
        s.company = Some(
            t.rows
                .iter()
                .map(|r| app::Company {
                    id: int(t, r, "id").unwrap_or_default(),
                    company_name: text(t, r, "company_name"),
                    address: opt_text(t, r, "address"),
                    phone_number: opt_text(t, r, "phone_number"),
                    email: opt_text(t, r, "email"),
                    pan_number: opt_text(t, r, "pan_number"),
                    vat_number: opt_text(t, r, "vat_number"),
                })
                .collect(),
        );
    }
    s.suppliers = rows(get("supplier_supplier"), |t, r| app::Supplier {
        id: int(t, r, "id").unwrap_or_default(),
        name: text(t, r, "name"),
        contact: text(t, r, "contact"),
        address: text(t, r, "address"),
        email: opt_text(t, r, "email"),
        pan_number: opt_text(t, r, "pan_number"),
    });
    s.medicines = rows(get("medicine_medicine"), |t, r| app::Medicine {
        medicine_id: int(t, r, "medicine_id").unwrap_or_default(),
        name: text(t, r, "name"),
        brand_name: text(t, r, "brand_name"),
        batch_number: opt_text(t, r, "batch_number"),
        category: text(t, r, "category"),
        mfg_date: date(t, r, "mfg_date"),
        exp_date: date(t, r, "exp_date"),
        price: dec(t, r, "price"),
        stock_qty: int(t, r, "stock_qty").unwrap_or_default(),
        supplier_id: int(t, r, "supplier_id"),
    });
    s.supplier_invoices = rows(get("supplier_supplierinvoice"), |t, r| {
        app::SupplierInvoice {
            id: int(t, r, "id").unwrap_or_default(),
            invoice_number: text(t, r, "invoice_number"),
            date: date(t, r, "date"),
            created_at: at(t, r, "created_at"),
            supplier_id: int(t, r, "supplier_id"),
            total_amount: dec(t, r, "total_amount"),
            received_by: opt_text(t, r, "received_by"),
        }
    });
    s.supplier_invoice_items = rows(get("supplier_supplierinvoiceitem"), |t, r| {
        app::SupplierInvoiceItem {
            id: int(t, r, "id").unwrap_or_default(),
            invoice_id: int(t, r, "invoice_id").unwrap_or_default(),
            medicine_name: text(t, r, "medicine_name"),
            brand_name: text(t, r, "brand_name"),
            batch_number: text(t, r, "batch_number"),
            category: text(t, r, "category"),
            mfg_date: date(t, r, "mfg_date"),
            exp_date: date(t, r, "exp_date"),
            quantity: int(t, r, "quantity").unwrap_or_default(),
            price: dec(t, r, "price"),
        }
    });
    s.customers = rows(get("billing_customer"), |t, r| app::Customer {
        customer_id: int(t, r, "customer_id").unwrap_or_default(),
        name: text(t, r, "name"),
        email: opt_text(t, r, "email"),
        phone_number: text(t, r, "phone_number"),
        address: text(t, r, "address"),
        created_at: at(t, r, "created_at"),
    });
    let t = get("billing_invoice");
    // Versions before billing.0004 called the discount `tax`.
    let discount = if t.has("discount") { "discount" } else { "tax" };
    s.invoices = rows(t, |t, r| app::Invoice {
        invoice_id: int(t, r, "invoice_id").unwrap_or_default(),
        customer_id: int(t, r, "customer_id"),
        customer_name: text(t, r, "customer_name"),
        phone_number: text(t, r, "phone_number"),
        payment_method: text(t, r, "payment_method"),
        amount_received: dec(t, r, "amount_received"),
        return_amount: dec(t, r, "return_amount"),
        subtotal: dec(t, r, "subtotal"),
        discount: dec(t, r, discount),
        total: dec(t, r, "total"),
        billed_by: text(t, r, "billed_by"),
        created_at: at(t, r, "created_at"),
    });
    s.invoice_items = rows(get("billing_invoiceitem"), |t, r| app::InvoiceItem {
        id: int(t, r, "id").unwrap_or_default(),
        invoice_id: int(t, r, "invoice_id").unwrap_or_default(),
        medicine_id: int(t, r, "medicine_id").unwrap_or_default(),
        quantity: int(t, r, "quantity").unwrap_or_default(),
        price: dec(t, r, "price"),
        total: dec(t, r, "total"),
    });
    s
}
