//! Reading invoices back: the whole document (lines, the batches each drew on, returns) as the
//! API, the receipt print and the tests see it. Prepared once per connection: a sale's answer
//! runs these four queries every time.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::{Error, Result};

#[derive(Debug, Serialize)]
pub struct Invoice {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    pub billed_by: i64,
    pub billed_by_username: String,
    pub payment_method: String,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub tax_rate: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub amount_received: Decimal,
    pub change_due: Decimal,
    pub status: String,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<String>,
    /// Brought from the Django app (`apotheca import`): its figures are as that app recorded
    /// them, and may break today's rules.
    pub imported: bool,
    pub lines: Vec<Line>,
    pub returns: Vec<Return>,
    /// Σ refunds of all returns.
    pub refunded: Decimal,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub id: i64,
    pub line_no: i32,
    pub medicine_id: i64,
    pub medicine_name: String,
    pub quantity: i32,
    pub unit_price: Decimal,
    pub line_total: Decimal,
    /// Units of this line returned so far.
    pub returned: i64,
    pub batches: Vec<Allocation>,
}

#[derive(Debug, Serialize)]
pub struct Allocation {
    pub batch_id: i64,
    pub batch_no: String,
    pub expires_on: NaiveDate,
    pub quantity: i32,
}

#[derive(Debug, Serialize)]
pub struct Return {
    pub id: i64,
    pub reason: String,
    pub refund: Decimal,
    pub processed_by: i64,
    pub created_at: DateTime<Utc>,
}

/// The invoice with everything on it; `only_billed_by` hides other users' invoices (staff).
pub async fn load(
    db: &deadpool_postgres::ClientWrapper,
    id: i64,
    only_billed_by: Option<i64>,
) -> Result<Invoice> {
    let row = db
        .query_opt(
            &db.prepare_cached("SELECT i.id, i.number, i.created_at, i.customer_id, i.customer_name, i.customer_phone, i.billed_by,
                    u.username, i.payment_method, i.subtotal, i.discount, i.tax_rate, i.tax, i.total,
                    i.amount_received, i.change_due, i.status, i.voided_at, i.void_reason, i.imported
             FROM invoices i JOIN users u ON u.id = i.billed_by
             WHERE i.id = $1 AND ($2::bigint IS NULL OR i.billed_by = $2)").await?,
            &[&id, &only_billed_by],
        )
        .await?
        .ok_or_else(|| Error::not_found("invoice"))?;
    let allocations = db
        .query(
            &db.prepare_cached(
                "SELECT a.invoice_line_id, a.batch_id, b.batch_no, b.expires_on, a.quantity
             FROM invoice_lines l
             JOIN invoice_line_batches a ON a.invoice_line_id = l.id
             JOIN batches b ON b.id = a.batch_id
             WHERE l.invoice_id = $1 ORDER BY b.expires_on, b.id",
            )
            .await?,
            &[&id],
        )
        .await?;
    let lines = db
        .query(
            &db.prepare_cached("SELECT l.id, l.line_no, l.medicine_id, l.medicine_name, l.quantity, l.unit_price, l.line_total,
                    coalesce((SELECT sum(r.quantity) FROM return_lines r WHERE r.invoice_line_id = l.id), 0)::bigint
             FROM invoice_lines l WHERE l.invoice_id = $1 ORDER BY l.line_no").await?,
            &[&id],
        )
        .await?
        .iter()
        .map(|r| {
            let line_id: i64 = r.get(0);
            Line {
                id: line_id,
                line_no: r.get(1),
                medicine_id: r.get(2),
                medicine_name: r.get(3),
                quantity: r.get(4),
                unit_price: r.get(5),
                line_total: r.get(6),
                returned: r.get(7),
                batches: allocations
                    .iter()
                    .filter(|a| a.get::<_, i64>(0) == line_id)
                    .map(|a| Allocation { batch_id: a.get(1), batch_no: a.get(2), expires_on: a.get(3), quantity: a.get(4) })
                    .collect(),
            }
        })
        .collect();
    let returns: Vec<Return> = db
        .query(
            &db.prepare_cached("SELECT id, reason, refund, processed_by, created_at FROM returns WHERE invoice_id = $1 ORDER BY id").await?,
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Return { id: r.get(0), reason: r.get(1), refund: r.get(2), processed_by: r.get(3), created_at: r.get(4) })
        .collect();
    let refunded = super::money(returns.iter().map(|r| r.refund).sum());
    Ok(Invoice {
        id: row.get(0),
        number: row.get(1),
        created_at: row.get(2),
        customer_id: row.get(3),
        customer_name: row.get(4),
        customer_phone: row.get(5),
        billed_by: row.get(6),
        billed_by_username: row.get(7),
        payment_method: row.get(8),
        subtotal: row.get(9),
        discount: row.get(10),
        tax_rate: row.get(11),
        tax: row.get(12),
        total: row.get(13),
        amount_received: row.get(14),
        change_due: row.get(15),
        status: row.get(16),
        voided_at: row.get(17),
        void_reason: row.get(18),
        imported: row.get(19),
        lines,
        returns,
        refunded,
    })
}
