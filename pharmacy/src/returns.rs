//! Corrections of posted invoices (rules 7 and 9): returns, never more per line than was sold,
//! restocking the very batches the units came from; and voids, which restock what was not yet
//! returned and mark the invoice voided. A posted invoice itself is never edited.

use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::cents;
use crate::values::{self, Quantity};
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
pub struct ReturnRequest {
    pub reason: String,
    pub lines: Vec<ReturnLine>,
}

#[derive(Debug, Deserialize)]
pub struct ReturnLine {
    pub invoice_line_id: i64,
    pub quantity: i64,
    /// Put the units back on the shelf (false: damaged, they are not restocked).
    #[serde(default = "yes")]
    pub restock: bool,
}

fn yes() -> bool {
    true
}

/// An allocation of an invoice line and how much of it can still be returned.
struct Open {
    line_id: i64,
    batch_id: i64,
    open: i32,
}

/// Locks the invoice and reads what of it is still unreturned, per allocation, newest expiry
/// first (those go back to the shelf first: they stay sellable longest).
async fn lock_open(
    tx: &Transaction<'_>,
    invoice_id: i64,
) -> Result<(i64, String, Decimal, Decimal, Vec<Open>)> {
    let row = tx
        .query_opt(
            "SELECT number, status, subtotal, total FROM invoices WHERE id = $1 FOR UPDATE",
            &[&invoice_id],
        )
        .await?
        .ok_or_else(|| Error::not_found("invoice"))?;
    let open = tx
        .query(
            "SELECT a.invoice_line_id, a.batch_id,
                    a.quantity - coalesce((SELECT sum(r.quantity) FROM return_lines r
                                           WHERE r.invoice_line_id = a.invoice_line_id AND r.batch_id = a.batch_id), 0)::int
             FROM invoice_line_batches a JOIN batches b ON b.id = a.batch_id
             WHERE a.invoice_id = $1 ORDER BY b.expires_on DESC, b.id DESC",
            &[&invoice_id],
        )
        .await?
        .iter()
        .map(|r| Open { line_id: r.get(0), batch_id: r.get(1), open: r.get(2) })
        .collect();
    Ok((row.get(0), row.get(1), row.get(2), row.get(3), open))
}

/// Records a return; returns its id. The refund is the returned units' share of what the
/// customer paid (their line value scaled by total ÷ subtotal, so discount and tax are
/// shared out), and all refunds together never exceed the invoice total.
pub async fn post_return(
    tx: &Transaction<'_>,
    user_id: i64,
    invoice_id: i64,
    req: &ReturnRequest,
) -> Result<i64> {
    let reason = values::text("reason", &req.reason, 500)?;
    if req.lines.is_empty() {
        return Err(Error::invalid("lines", "name at least one line to return"));
    }
    let (number, status, subtotal, total, mut open) = lock_open(tx, invoice_id).await?;
    if status != "completed" {
        return Err(Error::conflict(
            "voided",
            "a voided invoice cannot take returns",
        ));
    }
    // (line, batch, quantity, restock) to record, and the value returned.
    let mut taken: Vec<(i64, i64, i32, bool)> = Vec::new();
    let mut value = Decimal::ZERO;
    for (i, line) in req.lines.iter().enumerate() {
        let field = format!("lines[{i}].quantity");
        let mut left = Quantity::parse(&field, line.quantity)?.get();
        let row = tx
            .query_opt(
                // A unit is worth its share of the line's total: unit_price for a line sold
                // here (its total is quantity × price), and for a line imported from the Django
                // app, whose recorded total may not be, that share.
                "SELECT line_total / quantity FROM invoice_lines WHERE id = $1 AND invoice_id = $2",
                &[&line.invoice_line_id, &invoice_id],
            )
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    &format!("lines[{i}].invoice_line_id"),
                    "not a line of this invoice",
                )
            })?;
        let unit_price: Decimal = row.get(0);
        let available: i32 = open
            .iter()
            .filter(|o| o.line_id == line.invoice_line_id)
            .map(|o| o.open)
            .sum();
        if left > available {
            return Err(Error::conflict(
                "over_return",
                format!(
                    "line {} has {available} unit(s) left to return; {left} asked",
                    line.invoice_line_id
                ),
            )
            .with_field(&field));
        }
        value += unit_price * Decimal::from(left);
        for o in open
            .iter_mut()
            .filter(|o| o.line_id == line.invoice_line_id)
        {
            if left == 0 {
                break;
            }
            let q = left.min(o.open);
            if q > 0 {
                o.open -= q;
                left -= q;
                taken.push((o.line_id, o.batch_id, q, line.restock));
            }
        }
    }
    let already: Decimal = tx
        .query_one(
            "SELECT coalesce(sum(refund), 0) FROM returns WHERE invoice_id = $1",
            &[&invoice_id],
        )
        .await?
        .get(0);
    let share = if subtotal.is_zero() {
        Decimal::ZERO
    } else {
        cents(value * total / subtotal)
    };
    // The return that takes the invoice's last units refunds exactly what is left, so the
    // rounding of earlier partial returns never leaves a cent over or under.
    let last_units = open.iter().all(|o| o.open == 0);
    let refund = if last_units {
        total - already
    } else {
        share.min(total - already)
    }
    .max(Decimal::ZERO);
    let return_id: i64 = tx
        .query_one(
            "INSERT INTO returns (invoice_id, reason, refund, processed_by) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&invoice_id, &reason, &refund, &user_id],
        )
        .await?
        .get(0);
    let reference = format!("RET-{return_id} INV-{number}");
    for (line_id, batch_id, q, restock) in &taken {
        tx.execute(
            "INSERT INTO return_lines (return_id, invoice_id, invoice_line_id, batch_id, quantity, restock)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&return_id, &invoice_id, line_id, batch_id, q, restock],
        )
        .await?;
    }
    let restocked: Vec<(i64, i32)> = taken.iter().filter(|t| t.3).map(|t| (t.1, t.2)).collect();
    restock(tx, &restocked, &reference, user_id).await?;
    Ok(return_id)
}

/// Voids an invoice: whatever was not returned goes back to its batches, logged as returns.
pub async fn void(tx: &Transaction<'_>, user_id: i64, invoice_id: i64, reason: &str) -> Result<()> {
    let reason = values::text("reason", reason, 500)?;
    let (number, status, _, _, open) = lock_open(tx, invoice_id).await?;
    if status != "completed" {
        return Err(Error::conflict("voided", "this invoice is already voided"));
    }
    let back: Vec<(i64, i32)> = open
        .iter()
        .filter(|o| o.open > 0)
        .map(|o| (o.batch_id, o.open))
        .collect();
    restock(tx, &back, &format!("VOID INV-{number}"), user_id).await?;
    tx.execute(
        "UPDATE invoices SET status = 'voided', voided_at = now(), voided_by = $2, void_reason = $3 WHERE id = $1",
        &[&invoice_id, &user_id, &reason],
    )
    .await?;
    Ok(())
}

/// Adds units back to batches (locked in id order) and writes a `return` movement for each.
async fn restock(
    tx: &Transaction<'_>,
    items: &[(i64, i32)],
    reference: &str,
    user_id: i64,
) -> Result<()> {
    let mut items = items.to_vec();
    items.sort_unstable();
    for (batch_id, q) in items {
        tx.execute(
            "SELECT 1 FROM batches WHERE id = $1 FOR UPDATE",
            &[&batch_id],
        )
        .await?;
        tx.execute(
            "UPDATE batches SET quantity_on_hand = quantity_on_hand + $2 WHERE id = $1",
            &[&batch_id, &q],
        )
        .await?;
        tx.execute(
            "INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id) VALUES ($1, $2, 'return', $3, $4)",
            &[&batch_id, &q, &reference, &user_id],
        )
        .await?;
    }
    Ok(())
}
