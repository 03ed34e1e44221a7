//! Posting a sale (DOMAIN.md rules 1–6, 10–12): first-expiry-first-out over unexpired batches,
//! totals computed here (anything a client sends is ignored), cash change, a gap-free invoice
//! number, the ledger written for every batch touched, and at most one invoice per
//! idempotency key.

use std::collections::HashMap;

use chrono::NaiveDate;
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

use super::cents;
use crate::http::error::{ApiError, ApiResult};
use crate::values;

/// The most lines one sale may have.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payment {
    Cash,
    Card,
    Wallet,
}

impl Payment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cash => "cash",
            Self::Card => "card",
            Self::Wallet => "wallet",
        }
    }
}

/// What the counter sends. Totals, prices and change are never taken from the client.
#[derive(Debug, Clone, Deserialize)]
pub struct SaleRequest {
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    pub payment_method: Payment,
    #[serde(default)]
    pub discount: Decimal,
    pub amount_received: Option<Decimal>,
    pub lines: Vec<LineRequest>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineRequest {
    pub medicine_id: i64,
    pub quantity: i64,
}

/// A validated request: lines merged per medicine (first occurrence keeps its place).
#[derive(Debug, Clone, Serialize)]
struct Valid {
    customer_id: Option<i64>,
    customer_name: Option<String>,
    customer_phone: Option<String>,
    payment: Payment,
    discount: Decimal,
    amount_received: Option<Decimal>,
    lines: Vec<(i64, i32)>,
}

fn validate(req: &SaleRequest) -> ApiResult<Valid> {
    if req.lines.is_empty() {
        return Err(ApiError::invalid("lines", "a sale needs at least one line"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(ApiError::invalid(
            "lines",
            format!("a sale may have at most {MAX_LINES} lines"),
        ));
    }
    let mut lines: Vec<(i64, i64)> = Vec::new();
    for (i, line) in req.lines.iter().enumerate() {
        values::quantity(&format!("lines[{i}].quantity"), line.quantity)?;
        match lines.iter_mut().find(|(m, _)| *m == line.medicine_id) {
            Some((_, q)) => *q += line.quantity,
            None => lines.push((line.medicine_id, line.quantity)),
        }
    }
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, (m, q))| Ok((m, values::quantity(&format!("lines[{i}].quantity"), q)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    let amount_received = req
        .amount_received
        .map(|a| values::money("amount_received", a))
        .transpose()?;
    Ok(Valid {
        customer_id: req.customer_id,
        customer_name: values::opt_text("customer_name", req.customer_name.as_deref(), 200)?,
        customer_phone: values::opt_phone("customer_phone", req.customer_phone.as_deref())?,
        payment: req.payment_method,
        discount: values::money("discount", req.discount)?,
        amount_received,
        lines,
    })
}

/// Posts a sale in the caller's transaction; returns the invoice id and whether it was made
/// now (false: an earlier sale with the same idempotency key, returned again).
///
/// A concurrent duplicate of the key surfaces as [`DuplicateKey`]; the caller then rolls back
/// and calls [`find_by_key`] in a new transaction.
pub async fn post(
    tx: &Transaction<'_>,
    user_id: i64,
    req: &SaleRequest,
    key: Option<&str>,
) -> ApiResult<(i64, bool)> {
    let sale = validate(req)?;
    let key = key
        .map(|k| values::text("Idempotency-Key", k, 200))
        .transpose()?;
    let fingerprint = request_hash(&sale, user_id);
    if let Some(key) = &key {
        if let Some(found) = find_by_key(tx, key, &fingerprint).await? {
            return Ok((found, false));
        }
    }
    let medicine_ids: Vec<i64> = sale.lines.iter().map(|(m, _)| *m).collect();

    let stmt = tx
        .prepare_cached("SELECT id, name, sale_price, active FROM medicines WHERE id = ANY($1)")
        .await?;
    let medicines: HashMap<i64, (String, Decimal, bool)> = tx
        .query(&stmt, &[&medicine_ids])
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    for (i, (id, _)) in sale.lines.iter().enumerate() {
        match medicines.get(id) {
            None => {
                return Err(ApiError::not_found(&format!("medicine {id}"))
                    .with_field(&format!("lines[{i}].medicine_id")))
            }
            Some((name, _, false)) => {
                return Err(ApiError::invalid(
                    &format!("lines[{i}].medicine_id"),
                    format!("{name} is deactivated and cannot be sold"),
                ))
            }
            Some(_) => {}
        }
    }

    let (customer_name, customer_phone) = match sale.customer_id {
        Some(id) => {
            let stmt = tx
                .prepare_cached("SELECT name, phone FROM customers WHERE id = $1")
                .await?;
            let row = tx
                .query_opt(&stmt, &[&id])
                .await?
                .ok_or_else(|| ApiError::not_found("customer").with_field("customer_id"))?;
            (
                Some(row.get::<_, String>(0)),
                row.get::<_, Option<String>>(1),
            )
        }
        None => (sale.customer_name.clone(), sale.customer_phone.clone()),
    };

    // Lock every batch of these medicines that has stock, in id order: concurrent sales of
    // overlapping medicines queue here instead of deadlocking, and a sale that waited sees
    // the quantities its predecessor left.
    let stmt = tx
        .prepare_cached(
            "SELECT id, medicine_id, expires_on, quantity_on_hand, expires_on <= current_date
             FROM batches WHERE medicine_id = ANY($1) AND quantity_on_hand > 0
             ORDER BY id FOR UPDATE",
        )
        .await?;
    let mut batches: Vec<(i64, i64, NaiveDate, i32, bool)> = tx
        .query(&stmt, &[&medicine_ids])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    // A retry racing its original waited on the batch locks above; once they are granted the
    // original has committed (or failed), and this statement sees it: answer with it.
    if let Some(key) = &key {
        if let Some(found) = find_by_key(tx, key, &fingerprint).await? {
            return Ok((found, false));
        }
    }
    // First expiry first out.
    batches.sort_by_key(|b| (b.2, b.0));

    let mut allocations: Vec<Vec<(i64, i32)>> = Vec::with_capacity(sale.lines.len());
    let mut shortages = Vec::new();
    for (medicine_id, wanted) in &sale.lines {
        let mut left = *wanted;
        let mut taken = Vec::new();
        let mut expired = 0;
        for b in batches.iter_mut().filter(|b| b.1 == *medicine_id) {
            if b.4 {
                expired += b.3;
                continue;
            }
            if left == 0 {
                break;
            }
            let q = left.min(b.3);
            if q > 0 {
                taken.push((b.0, q));
                b.3 -= q;
                left -= q;
            }
        }
        if left > 0 {
            let (name, _, _) = &medicines[medicine_id];
            shortages.push(json!({
                "medicine_id": medicine_id, "name": name, "requested": wanted,
                "available": wanted - left, "expired_only": expired,
            }));
        }
        allocations.push(taken);
    }
    if !shortages.is_empty() {
        let only_expired = shortages
            .iter()
            .all(|s| s["available"] == 0 && s["expired_only"].as_i64().unwrap_or(0) > 0);
        let message = if only_expired {
            "only expired stock is left; expired batches are never sold"
        } else {
            "not enough unexpired stock"
        };
        let code = if only_expired {
            "only_expired_stock"
        } else {
            "insufficient_stock"
        };
        return Err(ApiError::conflict(code, message).with_detail(json!({"lines": shortages})));
    }

    // Totals: computed here, whatever the client believed.
    let line_totals: Vec<Decimal> = sale
        .lines
        .iter()
        .map(|(m, q)| medicines[m].1 * Decimal::from(*q))
        .collect();
    let subtotal: Decimal = line_totals.iter().sum();
    if sale.discount > subtotal {
        return Err(ApiError::invalid(
            "discount",
            format!(
                "the discount ({}) is more than the subtotal ({subtotal})",
                sale.discount
            ),
        ));
    }
    let stmt = tx.prepare_cached("SELECT tax_rate FROM settings").await?;
    let tax_rate: Decimal = tx
        .query_opt(&stmt, &[])
        .await?
        .map_or(Decimal::ZERO, |r| r.get(0));
    let tax = cents((subtotal - sale.discount) * tax_rate);
    let total = subtotal - sale.discount + tax;
    if total > values::max_money() {
        return Err(ApiError::invalid("lines", "the sale's total is too large"));
    }
    let (received, change) = match sale.payment {
        Payment::Cash => {
            let received = sale.amount_received.ok_or_else(|| {
                ApiError::invalid("amount_received", "a cash sale needs the amount received")
            })?;
            if received < total {
                return Err(ApiError::invalid(
                    "amount_received",
                    format!("the amount received ({received}) is less than the total ({total})"),
                ));
            }
            (received, received - total)
        }
        Payment::Card | Payment::Wallet => (total, Decimal::ZERO),
    };

    // Everything but the number is written by one statement; the number comes last, so the
    // invoice counter (the hottest lock: one per tenant) is held only for that small statement
    // and the commit. Lines come back with their ids to place the batch allocations; stock and
    // the ledger follow from the allocations.
    let line_nos: Vec<i32> = (1..=sale.lines.len() as i32).collect();
    let names: Vec<&str> = sale
        .lines
        .iter()
        .map(|(m, _)| medicines[m].0.as_str())
        .collect();
    let quantities: Vec<i32> = sale.lines.iter().map(|(_, q)| *q).collect();
    let prices: Vec<Decimal> = sale.lines.iter().map(|(m, _)| medicines[m].1).collect();
    let (mut a_line_no, mut a_batch, mut a_qty) = (vec![], vec![], vec![]);
    for (i, taken) in allocations.iter().enumerate() {
        for (batch, q) in taken {
            a_line_no.push(i as i32 + 1);
            a_batch.push(*batch);
            a_qty.push(*q);
        }
    }
    let hash_param: Option<&[u8]> = key.as_ref().map(|_| fingerprint.as_slice());
    let stmt = tx.prepare_cached(POST_SALE).await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &sale.customer_id,
                &customer_name,
                &customer_phone,
                &user_id,
                &sale.payment.as_str(),
                &subtotal,
                &sale.discount,
                &tax_rate,
                &tax,
                &total,
                &received,
                &change,
                &key,
                &hash_param,
                &line_nos,
                &medicine_ids,
                &names,
                &quantities,
                &prices,
                &line_totals,
                &a_line_no,
                &a_batch,
                &a_qty,
            ],
        )
        .await;
    let (invoice_id, movements): (i64, Vec<i64>) = match row {
        Ok(row) => (row.get(0), row.get(1)),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && key.is_some() => {
            return Err(duplicate_key())
        }
        Err(e) => return Err(e.into()),
    };
    // Last: the number. The counter is locked from here to the commit only.
    let stmt = tx.prepare_cached(NUMBER_SALE).await?;
    tx.execute(&stmt, &[&invoice_id, &movements]).await?;
    Ok((invoice_id, true))
}

/// The write half of a sale but its number, in one statement (see `post`). $1–$14 the
/// invoice, $15–$20 the lines (by line number), $21–$23 the allocations (line number, batch,
/// quantity). Returns the invoice id and its ledger rows (referenced once numbered).
const POST_SALE: &str = "
WITH inv AS (
    INSERT INTO invoices (customer_id, customer_name, customer_phone, billed_by, payment_method,
                          subtotal, discount, tax_rate, tax, total, amount_received, change_due,
                          idempotency_key, request_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING id
), lines AS (
    INSERT INTO invoice_lines (invoice_id, line_no, medicine_id, medicine_name, quantity, unit_price, line_total)
    SELECT inv.id, t.* FROM inv,
           unnest($15::int[], $16::bigint[], $17::text[], $18::int[], $19::numeric[], $20::numeric[]) AS t
    RETURNING id, line_no, invoice_id, medicine_id
), alloc AS (
    INSERT INTO invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id, quantity)
    SELECT l.id, a.batch, l.invoice_id, l.medicine_id, a.q
    FROM unnest($21::int[], $22::bigint[], $23::int[]) AS a(line_no, batch, q) JOIN lines l ON l.line_no = a.line_no
    RETURNING batch_id, quantity
), stock AS (
    UPDATE batches SET quantity_on_hand = batches.quantity_on_hand - s.q
    FROM (SELECT batch_id, sum(quantity)::int AS q FROM alloc GROUP BY batch_id) s
    WHERE batches.id = s.batch_id
    RETURNING batches.id
), ledger AS (
    INSERT INTO stock_movements (batch_id, quantity, reason, user_id)
    SELECT alloc.batch_id, -alloc.quantity, 'sale', $4 FROM alloc
    RETURNING id
)
SELECT (SELECT id FROM inv), (SELECT coalesce(array_agg(id), '{}') FROM ledger)";

/// The sale's number, gap-free: the next value of the tenant's counter, on the invoice and in
/// its ledger rows' reference. $1 the invoice, $2 its ledger rows.
const NUMBER_SALE: &str = "
WITH n AS (
    UPDATE invoice_counter SET last_number = last_number + 1 RETURNING last_number
), inv AS (
    UPDATE invoices SET number = n.last_number FROM n WHERE invoices.id = $1 RETURNING number
)
UPDATE stock_movements SET reference = 'INV-' || inv.number FROM inv WHERE stock_movements.id = ANY($2)";

fn duplicate_key() -> ApiError {
    ApiError::conflict(
        "idempotency_race",
        "a sale with this Idempotency-Key was posted at the same moment",
    )
}

/// Whether an error is the concurrent-duplicate-key case of [`post`].
pub fn is_duplicate_key(e: &ApiError) -> bool {
    e.code == "idempotency_race"
}

/// The invoice made earlier with `key`, if any; the same key with a different request is
/// refused (422), so a client bug never silently returns someone else's sale.
pub async fn find_by_key(
    tx: &Transaction<'_>,
    key: &str,
    fingerprint: &[u8],
) -> ApiResult<Option<i64>> {
    let stmt = tx
        .prepare_cached("SELECT id, request_hash FROM invoices WHERE idempotency_key = $1")
        .await?;
    match tx.query_opt(&stmt, &[&key]).await? {
        None => Ok(None),
        Some(row) if row.get::<_, Vec<u8>>(1) == fingerprint => Ok(Some(row.get(0))),
        Some(_) => Err(ApiError::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was already used for a different sale",
        )),
    }
}

/// SHA-256 of the validated request, to tell a retry from a different sale reusing a key.
pub fn fingerprint(req: &SaleRequest, user_id: i64) -> ApiResult<Vec<u8>> {
    Ok(request_hash(&validate(req)?, user_id))
}

fn request_hash(sale: &Valid, user_id: i64) -> Vec<u8> {
    // The user is part of it: another cashier reusing a key gets a refusal, not this sale.
    let canonical = serde_json::to_vec(&(user_id, sale)).unwrap_or_default();
    Sha256::digest(&canonical).to_vec()
}
