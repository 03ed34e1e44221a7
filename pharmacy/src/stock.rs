//! Stock that does not come from sales: goods receipts (supplier invoices; rule 8), which
//! create or top up batches, and write-offs and adjustments of one batch (rule 1). Every
//! change writes its ledger movement (rule 2).

use chrono::NaiveDate;
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::values::{self, Money, Quantity};
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
pub struct ReceiptRequest {
    pub supplier_id: i64,
    pub invoice_no: String,
    pub invoice_date: NaiveDate,
    pub notes: Option<String>,
    pub lines: Vec<ReceiptLine>,
}

#[derive(Debug, Deserialize)]
pub struct ReceiptLine {
    pub medicine_id: i64,
    pub batch_no: String,
    pub manufactured_on: Option<NaiveDate>,
    pub expires_on: NaiveDate,
    pub quantity: i64,
    pub unit_cost: Decimal,
}

/// The most lines one receipt may have.
pub const MAX_RECEIPT_LINES: usize = 500;

/// Posts a goods receipt: returns the supplier invoice's id. A batch number already known
/// for the medicine is topped up (its dates must agree); a new one becomes a batch.
pub async fn post_receipt(tx: &Transaction<'_>, user_id: i64, req: &ReceiptRequest) -> Result<i64> {
    let invoice_no = values::text("invoice_no", &req.invoice_no, 50)?;
    let notes = values::opt_text("notes", req.notes.as_deref(), 2000)?;
    if req.lines.is_empty() {
        return Err(Error::invalid("lines", "a receipt needs at least one line"));
    }
    if req.lines.len() > MAX_RECEIPT_LINES {
        return Err(Error::invalid(
            "lines",
            format!("a receipt may have at most {MAX_RECEIPT_LINES} lines"),
        ));
    }
    check_supplier(tx, req.supplier_id).await?;
    let lines = valid_lines(&req.lines)?;
    let total: Decimal = lines.iter().map(|l| l.unit_cost.times(l.quantity)).sum();
    let total = Money::checked(total)
        .ok_or_else(|| Error::invalid("lines", "the receipt's total is too large"))?;
    let invoice_id: i64 = match tx
        .query_one(
            "INSERT INTO supplier_invoices (supplier_id, invoice_no, invoice_date, received_by, total, notes)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&req.supplier_id, &invoice_no, &req.invoice_date, &user_id, &total, &notes],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(Error::conflict("duplicate", format!("this supplier's invoice {invoice_no} is already entered"))
                .with_field("invoice_no"))
        }
        Err(e) => return Err(e.into()),
    };
    // Existing batches first, locked in id order (the order every stock change uses).
    let medicine_ids: Vec<i64> = lines.iter().map(|l| l.medicine_id).collect();
    let batch_nos: Vec<&str> = lines.iter().map(|l| l.batch_no.as_str()).collect();
    let existing = tx
        .query(
            "SELECT b.id, b.medicine_id, b.batch_no, b.expires_on, b.manufactured_on FROM batches b
             JOIN unnest($1::bigint[], $2::text[]) AS t(m, n) ON b.medicine_id = t.m AND b.batch_no = t.n
             ORDER BY b.id FOR UPDATE OF b",
            &[&medicine_ids, &batch_nos],
        )
        .await?;
    let reference = format!("RCV-{invoice_id} {invoice_no}");
    for (i, line) in lines.iter().enumerate() {
        let found = existing.iter().find(|r| {
            r.get::<_, i64>(1) == line.medicine_id && r.get::<_, &str>(2) == line.batch_no
        });
        let batch_id = match found {
            Some(row) => add_to_batch(tx, row, line, i).await?,
            None => new_batch(tx, line, req.supplier_id, i).await?,
        };
        let line_total = line.unit_cost.times(line.quantity);
        tx.execute(
            "INSERT INTO supplier_invoice_lines (supplier_invoice_id, medicine_id, batch_id, batch_no, manufactured_on, expires_on, quantity, unit_cost, line_total)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[&invoice_id, &line.medicine_id, &batch_id, &line.batch_no, &line.manufactured_on, &line.expires_on, &line.quantity, &line.unit_cost, &line_total],
        )
        .await?;
        tx.execute(
            "INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id) VALUES ($1, $2, 'receipt', $3, $4)",
            &[&batch_id, &line.quantity, &reference, &user_id],
        )
        .await?;
    }
    Ok(invoice_id)
}

/// A receipt line, checked.
struct ValidLine {
    medicine_id: i64,
    batch_no: String,
    manufactured_on: Option<NaiveDate>,
    expires_on: NaiveDate,
    quantity: Quantity,
    unit_cost: Money,
}

/// The receipt's lines, each checked (`lines[i].field` named in a refusal): expiry after
/// manufacture, no batch twice.
fn valid_lines(raw: &[ReceiptLine]) -> Result<Vec<ValidLine>> {
    let mut lines: Vec<ValidLine> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let f = |name: &str| format!("lines[{i}].{name}");
        let quantity = Quantity::parse(&f("quantity"), l.quantity)?;
        let unit_cost = Money::parse(&f("unit_cost"), l.unit_cost)?;
        let batch_no = values::text(&f("batch_no"), &l.batch_no, 50)?;
        if l.manufactured_on.is_some_and(|m| l.expires_on <= m) {
            return Err(Error::invalid(
                &f("expires_on"),
                "the expiry must be after the manufacture date",
            ));
        }
        if lines
            .iter()
            .any(|v| v.medicine_id == l.medicine_id && v.batch_no == batch_no)
        {
            return Err(Error::invalid(
                &f("batch_no"),
                "the same batch appears twice on this receipt",
            ));
        }
        lines.push(ValidLine {
            medicine_id: l.medicine_id,
            batch_no,
            manufactured_on: l.manufactured_on,
            expires_on: l.expires_on,
            quantity,
            unit_cost,
        });
    }
    Ok(lines)
}

/// The supplier exists and is active.
async fn check_supplier(tx: &Transaction<'_>, supplier_id: i64) -> Result<()> {
    let active: Option<bool> = tx
        .query_opt(
            "SELECT active FROM suppliers WHERE id = $1",
            &[&supplier_id],
        )
        .await?
        .map(|r| r.get(0));
    match active {
        None => Err(Error::not_found("supplier").with_field("supplier_id")),
        Some(false) => Err(Error::invalid(
            "supplier_id",
            "this supplier is deactivated",
        )),
        Some(true) => Ok(()),
    }
}

/// More of a batch already on record (locked, `row`: id, medicine, number, expiry,
/// manufacture), which must have the same dates; its id.
async fn add_to_batch(
    tx: &Transaction<'_>,
    row: &tokio_postgres::Row,
    line: &ValidLine,
    i: usize,
) -> Result<i64> {
    let expires: NaiveDate = row.get(3);
    let made: Option<NaiveDate> = row.get(4);
    if expires != line.expires_on
        || line
            .manufactured_on
            .is_some_and(|m| made.is_some_and(|known| known != m))
    {
        return Err(Error::conflict(
            "batch_mismatch",
            format!(
                "batch {} is already on record with expiry {expires}",
                line.batch_no
            ),
        )
        .with_field(&format!("lines[{i}].expires_on")));
    }
    let id: i64 = row.get(0);
    tx.execute(
        "UPDATE batches SET quantity_on_hand = quantity_on_hand + $2 WHERE id = $1",
        &[&id, &line.quantity],
    )
    .await?;
    Ok(id)
}

/// A batch new to the pharmacy, of a medicine that must exist; its id.
async fn new_batch(
    tx: &Transaction<'_>,
    line: &ValidLine,
    supplier_id: i64,
    i: usize,
) -> Result<i64> {
    let row = tx
        .query_opt(
            "INSERT INTO batches (medicine_id, batch_no, manufactured_on, expires_on, quantity_on_hand, unit_cost, supplier_id)
             SELECT id, $2, $3, $4, $5, $6, $7 FROM medicines WHERE id = $1 RETURNING id",
            &[&line.medicine_id, &line.batch_no, &line.manufactured_on, &line.expires_on, &line.quantity, &line.unit_cost, &supplier_id],
        )
        .await?
        .ok_or_else(|| {
            Error::not_found(&format!("medicine {}", line.medicine_id))
                .with_field(&format!("lines[{i}].medicine_id"))
        })?;
    Ok(row.get(0))
}

/// A correction of one batch outside sales and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Units leave the shelf (expired, damaged, lost): `quantity` > 0 is taken out.
    WriteOff,
    /// A count found a difference: `quantity` units either way, never 0.
    Adjustment,
}

/// Applies a correction to a batch; returns its new quantity. Never below zero (rule 1).
pub async fn correct(
    tx: &Transaction<'_>,
    user_id: i64,
    batch_id: i64,
    kind: Correction,
    quantity: i64,
    reason: &str,
) -> Result<i32> {
    let delta = match kind {
        Correction::WriteOff => -Quantity::parse("quantity", quantity)?.get(),
        Correction::Adjustment if quantity == 0 => {
            return Err(Error::invalid(
                "quantity",
                "an adjustment changes the quantity by at least one unit",
            ))
        }
        Correction::Adjustment => {
            quantity.signum() as i32
                * Quantity::parse(
                    "quantity",
                    i64::try_from(quantity.unsigned_abs()).unwrap_or(i64::MAX),
                )?
                .get()
        }
    };
    let reason = values::text("reason", reason, 200)?;
    let movement = match kind {
        Correction::WriteOff => "write_off",
        Correction::Adjustment => "adjustment",
    };
    change_batch(tx, user_id, batch_id, delta, movement, &reason).await
}

async fn change_batch(
    tx: &Transaction<'_>,
    user_id: i64,
    batch_id: i64,
    delta: i32,
    kind: &str,
    reason: &str,
) -> Result<i32> {
    let on_hand: i32 = tx
        .query_opt(
            "SELECT quantity_on_hand FROM batches WHERE id = $1 FOR UPDATE",
            &[&batch_id],
        )
        .await?
        .ok_or_else(|| Error::not_found("batch"))?
        .get(0);
    let after = on_hand + delta;
    if after < 0 {
        return Err(Error::conflict(
            "insufficient_stock",
            format!(
                "the batch holds {on_hand} unit(s); it cannot lose {}",
                -delta
            ),
        )
        .with_field("quantity"));
    }
    tx.execute(
        "UPDATE batches SET quantity_on_hand = $2 WHERE id = $1",
        &[&batch_id, &after],
    )
    .await?;
    tx.execute(
        "INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id) VALUES ($1, $2, $3, $4, $5)",
        &[&batch_id, &delta, &kind, &reason, &user_id],
    )
    .await?;
    Ok(after)
}
