//! The Django pharmacy app's rows, as every source gives them (`PHARMACY_APP.md`, section 1):
//! one pharmacy's database read whole, before anything is checked or mapped. Text stays as the
//! app stored it; numbers and dates are parsed, and a value that does not parse is kept as
//! `None` with the row, for the mapping to report.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// One pharmacy's database.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub users: Vec<User>,
    /// `None`: the database has no `pharmacy_company` table (older versions).
    pub company: Option<Vec<Company>>,
    pub suppliers: Vec<Supplier>,
    pub medicines: Vec<Medicine>,
    pub supplier_invoices: Vec<SupplierInvoice>,
    pub supplier_invoice_items: Vec<SupplierInvoiceItem>,
    pub customers: Vec<Customer>,
    pub invoices: Vec<Invoice>,
    pub invoice_items: Vec<InvoiceItem>,
    /// Tables of section 1 the database does not have (an older version, a failed migration):
    /// what they hold is imported as none.
    pub missing_tables: Vec<&'static str>,
}

/// `pharmacy_user`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    pub role: String,
    pub date_joined: Option<DateTime<Utc>>,
    pub last_login: Option<DateTime<Utc>>,
}

/// `pharmacy_company`.
#[derive(Debug, Clone)]
pub struct Company {
    pub id: i64,
    pub company_name: String,
    pub address: Option<String>,
    pub phone_number: Option<String>,
    pub email: Option<String>,
    pub pan_number: Option<String>,
    pub vat_number: Option<String>,
}

/// `supplier_supplier`.
#[derive(Debug, Clone)]
pub struct Supplier {
    pub id: i64,
    pub name: String,
    /// Free text: a phone number or a person.
    pub contact: String,
    pub address: String,
    pub email: Option<String>,
    pub pan_number: Option<String>,
}

/// `medicine_medicine`: one row is one batch.
#[derive(Debug, Clone)]
pub struct Medicine {
    pub medicine_id: i64,
    pub name: String,
    pub brand_name: String,
    pub batch_number: Option<String>,
    pub category: String,
    pub mfg_date: Option<NaiveDate>,
    pub exp_date: Option<NaiveDate>,
    /// The sale price.
    pub price: Option<Decimal>,
    pub stock_qty: i64,
    pub supplier_id: Option<i64>,
}

/// `supplier_supplierinvoice`: a goods receipt.
#[derive(Debug, Clone)]
pub struct SupplierInvoice {
    pub id: i64,
    pub invoice_number: String,
    pub date: Option<NaiveDate>,
    pub created_at: Option<DateTime<Utc>>,
    pub supplier_id: Option<i64>,
    pub total_amount: Option<Decimal>,
    /// A username, as text.
    pub received_by: Option<String>,
}

/// `supplier_supplierinvoiceitem`: a receipt's line, naming its medicine (no key).
#[derive(Debug, Clone)]
pub struct SupplierInvoiceItem {
    pub id: i64,
    pub invoice_id: i64,
    pub medicine_name: String,
    pub brand_name: String,
    pub batch_number: String,
    pub category: String,
    pub mfg_date: Option<NaiveDate>,
    pub exp_date: Option<NaiveDate>,
    pub quantity: i64,
    /// The unit cost.
    pub price: Option<Decimal>,
}

/// `billing_customer`.
#[derive(Debug, Clone)]
pub struct Customer {
    pub customer_id: i64,
    pub name: String,
    pub email: Option<String>,
    pub phone_number: String,
    pub address: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// `billing_invoice`: a sale, its figures as the browser computed them.
#[derive(Debug, Clone)]
pub struct Invoice {
    pub invoice_id: i64,
    pub customer_id: Option<i64>,
    pub customer_name: String,
    pub phone_number: String,
    pub payment_method: String,
    pub amount_received: Option<Decimal>,
    /// The change given.
    pub return_amount: Option<Decimal>,
    pub subtotal: Option<Decimal>,
    /// `tax` in versions before `billing.0004`.
    pub discount: Option<Decimal>,
    pub total: Option<Decimal>,
    /// A username, as text (may be '').
    pub billed_by: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// `billing_invoiceitem`: a line, pointing at the batch row it was sold from.
#[derive(Debug, Clone)]
pub struct InvoiceItem {
    pub id: i64,
    pub invoice_id: i64,
    pub medicine_id: i64,
    pub quantity: i64,
    pub price: Option<Decimal>,
    pub total: Option<Decimal>,
}

/// Parses a decimal as SQLite or JSON may hold it: an integer, a real or text.
pub fn decimal_from_text(text: &str) -> Option<Decimal> {
    let text = text.trim();
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// A date as Django writes it (`YYYY-MM-DD`).
pub fn date_from_text(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim().get(..10)?, "%Y-%m-%d").ok()
}

/// A datetime as Django writes it in SQLite (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC with
/// `USE_TZ`) or in JSON (RFC 3339, `Z` or an offset).
pub fn datetime_from_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let plain = text.trim_end_matches('Z');
    let plain = plain
        .split_once('+')
        .map_or(plain, |(before, _)| before)
        .replace('T', " ");
    chrono::NaiveDateTime::parse_from_str(&plain, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_the_sources_hold_them() {
        assert_eq!(decimal_from_text("10"), Some(Decimal::new(10, 0)));
        assert_eq!(decimal_from_text("2.5"), Some(Decimal::new(25, 1)));
        assert_eq!(decimal_from_text(" 1e2 "), Some(Decimal::new(100, 0)));
        assert_eq!(decimal_from_text("ten"), None);
        assert_eq!(
            date_from_text("2026-03-01"),
            NaiveDate::from_ymd_opt(2026, 3, 1)
        );
        assert_eq!(date_from_text("2026-13-01"), None);
        let at = |s: &str| datetime_from_text(s).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-12-07 11:38:33.116581").as_deref(),
            Some("2026-12-07T11:38:33.116581+00:00")
        );
        assert_eq!(
            at("2026-12-07T11:38:33.116Z").as_deref(),
            Some("2026-12-07T11:38:33.116+00:00")
        );
        assert_eq!(
            at("2026-12-07T17:23:33+05:45").as_deref(),
            Some("2026-12-07T11:38:33+00:00")
        );
        assert_eq!(at("yesterday"), None);
    }
}
