//! Posting sales: any number of them in one transaction, each judged on its own, in the order
//! given. A batch costs one round trip for its reads (medicines, tax rate, customers, the
//! batches it may draw on, locked in id order, and the idempotency keys) and one statement for
//! all its writes and numbers, so a busy counter pays those statements and one commit per
//! batch instead of per sale.
//!
//! Stock is allocated here, first expiry first out, from the locked batches: a sale sees what
//! the sales before it in the batch (and every committed transaction) left. A sale that cannot
//! be made (unknown or deactivated medicine, unknown customer, not enough unexpired stock, a
//! discount above the subtotal, cash short of the total, a key reused for another sale) gets
//! its error and takes nothing; the others go ahead. Each sale's answer is built from what was
//! written, so posting needs no read-back.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{duplicate_key, key_reused, Payment, Pending};
use crate::domain::invoices::{Allocation, Invoice, Line};
use crate::domain::{cents, money};
use crate::http::error::{ApiError, ApiResult};
use crate::values;

/// What became of a sale that was not refused.
#[derive(Debug)]
pub enum Posted {
    /// Made now; the whole invoice as `GET /invoices/{id}` shows it.
    New(Box<Invoice>),
    /// The invoice made earlier with the same idempotency key (and the same request).
    Earlier(i64),
}

/// A batch of stock, locked for this transaction.
struct Stock {
    id: i64,
    medicine_id: i64,
    batch_no: String,
    expires_on: NaiveDate,
    left: i32,
    expired: bool,
}

/// A sale that passed every check, waiting for the write.
struct Accepted {
    index: usize,
    customer_name: Option<String>,
    customer_phone: Option<String>,
    subtotal: Decimal,
    tax: Decimal,
    total: Decimal,
    received: Decimal,
    change: Decimal,
    lines: Vec<Taken>,
}

/// A line of an accepted sale: the medicine's name and price, and the batches it takes from.
struct Taken {
    name: String,
    price: Decimal,
    /// (index into the locked stock, units)
    takes: Vec<(usize, i32)>,
}

/// What a sale came to before the write.
enum Judged {
    Refused(ApiError),
    Earlier(i64),
    /// The same key and request as an earlier sale of this batch.
    SameAs(usize),
    Accepted(usize),
}

/// Posts `sales` in the caller's transaction. The outer error means the transaction failed
/// and must be rolled back (a duplicate idempotency key committed by another transaction meanwhile
/// surfaces as `idempotency_race`); otherwise each sale has its own outcome, in order.
pub async fn post_batch(
    tx: &Transaction<'_>,
    sales: &[Pending],
) -> ApiResult<Vec<ApiResult<Posted>>> {
    let mut medicine_ids: Vec<i64> = sales
        .iter()
        .flat_map(|s| s.sale.lines.iter().map(|(m, _)| *m))
        .collect();
    medicine_ids.sort_unstable();
    medicine_ids.dedup();
    let mut customer_ids: Vec<i64> = sales.iter().filter_map(|s| s.sale.customer_id).collect();
    customer_ids.sort_unstable();
    customer_ids.dedup();
    let keys: Vec<&str> = sales.iter().filter_map(|s| s.key.as_deref()).collect();

    // One round trip: these statements are pipelined and run in this order, so the keys are
    // read after the batch locks are granted — a retry racing its original, once it holds
    // the locks, sees the original's commit.
    let (medicines, settings, customers, locked, earlier) = {
        let q_medicines = tx
            .prepare_cached("SELECT id, name, sale_price, active FROM medicines WHERE id = ANY($1)")
            .await?;
        let q_settings = tx.prepare_cached("SELECT tax_rate FROM settings").await?;
        let q_customers = tx
            .prepare_cached("SELECT id, name, phone FROM customers WHERE id = ANY($1)")
            .await?;
        // Every batch of these medicines that has stock, in id order: concurrent sales of
        // overlapping medicines queue here instead of deadlocking.
        let q_locked = tx
            .prepare_cached(
                "SELECT id, medicine_id, batch_no, expires_on, quantity_on_hand,
                        expires_on <= current_date
                 FROM batches WHERE medicine_id = ANY($1) AND quantity_on_hand > 0
                 ORDER BY id FOR UPDATE",
            )
            .await?;
        let q_keys = tx
            .prepare_cached(
                "SELECT idempotency_key, id, request_hash FROM invoices
                 WHERE idempotency_key = ANY($1)",
            )
            .await?;
        let by_medicine: [&(dyn ToSql + Sync); 1] = [&medicine_ids];
        tokio::try_join!(
            tx.query(&q_medicines, &by_medicine),
            tx.query_opt(&q_settings, &[]),
            async {
                if customer_ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    tx.query(&q_customers, &[&customer_ids]).await
                }
            },
            tx.query(&q_locked, &by_medicine),
            async {
                if keys.is_empty() {
                    Ok(Vec::new())
                } else {
                    tx.query(&q_keys, &[&keys]).await
                }
            },
        )?
    };
    let medicines: HashMap<i64, (String, Decimal, bool)> = medicines
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let tax_rate: Decimal = settings.map_or(Decimal::ZERO, |r| r.get(0));
    let customers: HashMap<i64, (String, Option<String>)> = customers
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mut stock: Vec<Stock> = locked
        .iter()
        .map(|r| Stock {
            id: r.get(0),
            medicine_id: r.get(1),
            batch_no: r.get(2),
            expires_on: r.get(3),
            left: r.get(4),
            expired: r.get(5),
        })
        .collect();
    // First expiry first out.
    stock.sort_by_key(|b| (b.expires_on, b.id));
    let earlier: HashMap<String, (i64, Vec<u8>)> = earlier
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();

    let mut judged = Vec::with_capacity(sales.len());
    let mut accepted: Vec<Accepted> = Vec::new();
    // Keys of this batch's accepted sales: their position in `sales`.
    let mut keys_here: HashMap<&str, usize> = HashMap::new();
    for (index, pending) in sales.iter().enumerate() {
        if let Some(key) = pending.key.as_deref() {
            if let Some((id, fingerprint)) = earlier.get(key) {
                judged.push(if *fingerprint == pending.fingerprint {
                    Judged::Earlier(*id)
                } else {
                    Judged::Refused(key_reused())
                });
                continue;
            }
            if let Some(&first) = keys_here.get(key) {
                judged.push(if sales[first].fingerprint == pending.fingerprint {
                    Judged::SameAs(first)
                } else {
                    Judged::Refused(key_reused())
                });
                continue;
            }
        }
        match judge(index, pending, &medicines, &customers, &stock, tax_rate) {
            Ok(sale) => {
                for line in &sale.lines {
                    for (b, q) in &line.takes {
                        stock[*b].left -= q;
                    }
                }
                if let Some(key) = pending.key.as_deref() {
                    keys_here.insert(key, index);
                }
                judged.push(Judged::Accepted(accepted.len()));
                accepted.push(sale);
            }
            Err(e) => judged.push(Judged::Refused(e)),
        }
    }

    let made = if accepted.is_empty() {
        Vec::new()
    } else {
        write(tx, sales, &accepted, &stock, tax_rate).await?
    };
    // Position in `sales` → the invoice made for it.
    let mut made_for: HashMap<usize, i64> = HashMap::new();
    for (sale, invoice) in accepted.iter().zip(&made) {
        made_for.insert(sale.index, invoice.id);
    }
    let mut made = made.into_iter().map(Some).collect::<Vec<_>>();
    Ok(judged
        .into_iter()
        .map(|j| match j {
            Judged::Refused(e) => Err(e),
            Judged::Earlier(id) => Ok(Posted::Earlier(id)),
            Judged::SameAs(first) => Ok(Posted::Earlier(made_for[&first])),
            Judged::Accepted(n) => made[n]
                .take()
                .map(|invoice| Posted::New(Box::new(invoice)))
                .ok_or_else(ApiError::internal),
        })
        .collect())
}

/// Checks one sale against the batch's reads and allocates its stock (without taking it yet).
fn judge(
    index: usize,
    pending: &Pending,
    medicines: &HashMap<i64, (String, Decimal, bool)>,
    customers: &HashMap<i64, (String, Option<String>)>,
    stock: &[Stock],
    tax_rate: Decimal,
) -> ApiResult<Accepted> {
    let sale = &pending.sale;
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
            let (name, phone) = customers
                .get(&id)
                .ok_or_else(|| ApiError::not_found("customer").with_field("customer_id"))?;
            (Some(name.clone()), phone.clone())
        }
        None => (sale.customer_name.clone(), sale.customer_phone.clone()),
    };

    let mut lines = Vec::with_capacity(sale.lines.len());
    let mut shortages = Vec::new();
    for (medicine_id, wanted) in &sale.lines {
        let (name, price, _) = &medicines[medicine_id];
        let mut left = *wanted;
        let mut takes = Vec::new();
        let mut expired = 0;
        for (b, batch) in stock.iter().enumerate() {
            if batch.medicine_id != *medicine_id || batch.left == 0 {
                continue;
            }
            if batch.expired {
                expired += batch.left;
                continue;
            }
            if left == 0 {
                break;
            }
            let q = left.min(batch.left);
            takes.push((b, q));
            left -= q;
        }
        if left > 0 {
            shortages.push(json!({
                "medicine_id": medicine_id, "name": name, "requested": wanted,
                "available": wanted - left, "expired_only": expired,
            }));
        }
        lines.push(Taken {
            name: name.clone(),
            price: *price,
            takes,
        });
    }
    if !shortages.is_empty() {
        let only_expired = shortages
            .iter()
            .all(|s| s["available"] == 0 && s["expired_only"].as_i64().unwrap_or(0) > 0);
        let (code, message) = if only_expired {
            (
                "only_expired_stock",
                "only expired stock is left; expired batches are never sold",
            )
        } else {
            ("insufficient_stock", "not enough unexpired stock")
        };
        return Err(ApiError::conflict(code, message).with_detail(json!({"lines": shortages})));
    }

    // Totals: computed here, whatever the client believed.
    let subtotal: Decimal = sale
        .lines
        .iter()
        .zip(&lines)
        .map(|((_, q), line)| line.price * Decimal::from(*q))
        .sum();
    if sale.discount > subtotal {
        return Err(ApiError::invalid(
            "discount",
            format!(
                "the discount ({}) is more than the subtotal ({subtotal})",
                sale.discount
            ),
        ));
    }
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
    Ok(Accepted {
        index,
        customer_name,
        customer_phone,
        subtotal,
        tax,
        total,
        received,
        change,
        lines,
    })
}

/// Writes the accepted sales, numbers them, and builds their invoices.
async fn write(
    tx: &Transaction<'_>,
    sales: &[Pending],
    accepted: &[Accepted],
    stock: &[Stock],
    tax_rate: Decimal,
) -> ApiResult<Vec<Invoice>> {
    // Invoices, then lines (with the invoice's position), then allocations (with the line's
    // position), as parallel arrays.
    let mut inv = InvoiceColumns::default();
    let mut ln = LineColumns::default();
    let mut al = AllocationColumns::default();
    for (n, a) in accepted.iter().enumerate() {
        let p = &sales[a.index];
        let s = &p.sale;
        inv.customer_id.push(s.customer_id);
        inv.customer_name.push(a.customer_name.as_deref());
        inv.customer_phone.push(a.customer_phone.as_deref());
        inv.billed_by.push(p.user_id);
        inv.payment.push(s.payment.as_str());
        inv.subtotal.push(a.subtotal);
        inv.discount.push(s.discount);
        inv.tax.push(a.tax);
        inv.total.push(a.total);
        inv.received.push(a.received);
        inv.change.push(a.change);
        inv.key.push(p.key.as_deref());
        inv.hash
            .push(p.key.as_ref().map(|_| p.fingerprint.as_slice()));
        for (i, ((medicine_id, q), line)) in s.lines.iter().zip(&a.lines).enumerate() {
            ln.invoice.push(n as i32 + 1);
            ln.line_no.push(i as i32 + 1);
            ln.medicine_id.push(*medicine_id);
            ln.name.push(line.name.as_str());
            ln.quantity.push(*q);
            ln.price.push(line.price);
            ln.total.push(line.price * Decimal::from(*q));
            for (b, q) in &line.takes {
                al.line.push(ln.line_no.len() as i32);
                al.batch.push(stock[*b].id);
                al.quantity.push(*q);
                al.user.push(p.user_id);
            }
        }
    }
    let stmt = tx.prepare_cached(WRITE_SALES).await?;
    let params: [&(dyn ToSql + Sync); 25] = [
        &inv.customer_id,
        &inv.customer_name,
        &inv.customer_phone,
        &inv.billed_by,
        &inv.payment,
        &inv.subtotal,
        &inv.discount,
        &tax_rate,
        &inv.tax,
        &inv.total,
        &inv.received,
        &inv.change,
        &inv.key,
        &inv.hash,
        &ln.invoice,
        &ln.line_no,
        &ln.medicine_id,
        &ln.name,
        &ln.quantity,
        &ln.price,
        &ln.total,
        &al.line,
        &al.batch,
        &al.quantity,
        &al.user,
    ];
    let row = match tx.query_one(&stmt, &params).await {
        Ok(row) => row,
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && inv.key.iter().any(Option::is_some) =>
        {
            return Err(duplicate_key())
        }
        Err(e) => return Err(e.into()),
    };
    let first: i64 = row.get(0);
    let invoice_ids: Vec<i64> = row.get(1);
    let line_ids: Vec<i64> = row.get(2);
    let created_at: DateTime<Utc> = row.get(3);

    // The answers, from what was written.
    let mut line_at = 0;
    Ok(accepted
        .iter()
        .zip(&invoice_ids)
        .enumerate()
        .map(|(n, (a, id))| {
            let p = &sales[a.index];
            let s = &p.sale;
            let lines = s
                .lines
                .iter()
                .zip(&a.lines)
                .enumerate()
                .map(|(i, ((medicine_id, q), taken))| {
                    let line = Line {
                        id: line_ids[line_at],
                        line_no: i as i32 + 1,
                        medicine_id: *medicine_id,
                        medicine_name: taken.name.clone(),
                        quantity: *q,
                        unit_price: taken.price,
                        line_total: money(taken.price * Decimal::from(*q)),
                        returned: 0,
                        batches: taken
                            .takes
                            .iter()
                            .map(|(b, q)| Allocation {
                                batch_id: stock[*b].id,
                                batch_no: stock[*b].batch_no.clone(),
                                expires_on: stock[*b].expires_on,
                                quantity: *q,
                            })
                            .collect(),
                    };
                    line_at += 1;
                    line
                })
                .collect();
            Invoice {
                id: *id,
                number: first + n as i64,
                created_at,
                customer_id: s.customer_id,
                customer_name: a.customer_name.clone(),
                customer_phone: a.customer_phone.clone(),
                billed_by: p.user_id,
                billed_by_username: p.username.clone(),
                payment_method: s.payment.as_str().to_owned(),
                subtotal: money(a.subtotal),
                discount: money(s.discount),
                tax_rate,
                tax: money(a.tax),
                total: money(a.total),
                amount_received: money(a.received),
                change_due: money(a.change),
                status: "completed".to_owned(),
                voided_at: None,
                void_reason: None,
                lines,
                returns: Vec::new(),
                refunded: money(Decimal::ZERO),
            }
        })
        .collect())
}

#[derive(Default)]
struct InvoiceColumns<'a> {
    customer_id: Vec<Option<i64>>,
    customer_name: Vec<Option<&'a str>>,
    customer_phone: Vec<Option<&'a str>>,
    billed_by: Vec<i64>,
    payment: Vec<&'static str>,
    subtotal: Vec<Decimal>,
    discount: Vec<Decimal>,
    tax: Vec<Decimal>,
    total: Vec<Decimal>,
    received: Vec<Decimal>,
    change: Vec<Decimal>,
    key: Vec<Option<&'a str>>,
    hash: Vec<Option<&'a [u8]>>,
}

#[derive(Default)]
struct LineColumns<'a> {
    /// 1-based position of the line's invoice.
    invoice: Vec<i32>,
    line_no: Vec<i32>,
    medicine_id: Vec<i64>,
    name: Vec<&'a str>,
    quantity: Vec<i32>,
    price: Vec<Decimal>,
    total: Vec<Decimal>,
}

#[derive(Default)]
struct AllocationColumns {
    /// 1-based position of the allocation's line.
    line: Vec<i32>,
    batch: Vec<i64>,
    quantity: Vec<i32>,
    user: Vec<i64>,
}

/// Every write of a batch of sales, in one statement. $1–$14 the invoices ($8, the tax rate,
/// is one for all), $15–$21 the lines ($15: the invoice's position), $22–$25 the allocations
/// ($22: the line's position). Ids are drawn from the tables' own sequences in position order,
/// so rows are tied together by position, never by the order RETURNING happens to give.
///
/// The tenant's invoice counter moves once for the whole batch: the batch's numbers are
/// consecutive, in position order, and gap-free (a rolled-back batch rolls its numbers back).
/// The counter row is locked after the batches, like every sale does, so it never deadlocks;
/// concurrent batches of the same medicines are already queued on the batch locks.
///
/// Returns the first number, the ids of the invoices and of the lines in position order, and
/// the transaction's time (every row's `created_at` / `at`).
const WRITE_SALES: &str = "
WITH inv_ids AS MATERIALIZED (
    SELECT ord, nextval('invoices_id_seq') AS id
    FROM generate_series(1, cardinality($4::bigint[])) AS ord ORDER BY ord
), line_ids AS MATERIALIZED (
    SELECT ord, nextval('invoice_lines_id_seq') AS id
    FROM generate_series(1, cardinality($15::int[])) AS ord ORDER BY ord
), n AS (
    UPDATE invoice_counter SET last_number = last_number + cardinality($4::bigint[])
    RETURNING last_number - cardinality($4::bigint[]) AS base
), inv AS (
    INSERT INTO invoices (id, number, customer_id, customer_name, customer_phone, billed_by,
                          payment_method, subtotal, discount, tax_rate, tax, total,
                          amount_received, change_due, idempotency_key, request_hash)
    SELECT i.id, n.base + t.ord, t.customer_id, t.customer_name, t.customer_phone, t.billed_by,
           t.payment, t.subtotal, t.discount, $8, t.tax, t.total, t.received, t.change, t.key,
           t.hash
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::numeric[],
                $7::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[],
                $13::text[], $14::bytea[])
         WITH ORDINALITY AS t(customer_id, customer_name, customer_phone, billed_by, payment,
                              subtotal, discount, tax, total, received, change, key, hash, ord)
    JOIN inv_ids i USING (ord) CROSS JOIN n
), lines AS (
    INSERT INTO invoice_lines (id, invoice_id, line_no, medicine_id, medicine_name, quantity,
                               unit_price, line_total)
    SELECT li.id, i.id, t.line_no, t.medicine_id, t.name, t.quantity, t.price, t.total
    FROM unnest($15::int[], $16::int[], $17::bigint[], $18::text[], $19::int[], $20::numeric[],
                $21::numeric[])
         WITH ORDINALITY AS t(invoice, line_no, medicine_id, name, quantity, price, total, ord)
    JOIN line_ids li USING (ord)
    JOIN inv_ids i ON i.ord = t.invoice
), alloc AS (
    INSERT INTO invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id, quantity)
    SELECT li.id, a.batch, i.id, ($17::bigint[])[a.line], a.quantity
    FROM unnest($22::int[], $23::bigint[], $24::int[]) AS a(line, batch, quantity)
    JOIN line_ids li ON li.ord = a.line
    JOIN inv_ids i ON i.ord = ($15::int[])[a.line]
), ledger AS (
    INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id)
    SELECT a.batch, -a.quantity, 'sale', 'INV-' || (n.base + ($15::int[])[a.line]), a.user_id
    FROM unnest($22::int[], $23::bigint[], $24::int[], $25::bigint[])
         AS a(line, batch, quantity, user_id)
    CROSS JOIN n
), stock AS (
    UPDATE batches SET quantity_on_hand = batches.quantity_on_hand - s.quantity
    FROM (SELECT batch, sum(quantity)::int AS quantity
          FROM unnest($23::bigint[], $24::int[]) AS a(batch, quantity) GROUP BY batch) s
    WHERE batches.id = s.batch
)
SELECT (SELECT base + 1 FROM n),
       (SELECT array_agg(id ORDER BY ord) FROM inv_ids),
       (SELECT array_agg(id ORDER BY ord) FROM line_ids),
       now()";
