//! Posting sales: any number of them in one transaction, each judged on its own, in the order
//! given. A batch costs one round trip for its reads (medicines, tax rate, customers, the
//! batches it may draw on, locked in id order, and the idempotency keys) and one statement for
//! all its writes and numbers, so a busy counter pays those statements and one commit per
//! batch instead of per sale. In a transaction of its own ([`Frame::Own`]) the `BEGIN` goes
//! out with the reads and the `COMMIT` with the write: two round trips for the whole batch.
//!
//! Stock is allocated here, first expiry first out, from the locked batches: a sale sees what
//! the sales before it in the batch (and every committed transaction) left. A sale that cannot
//! be made (unknown or deactivated medicine, unknown customer, not enough unexpired stock, a
//! discount above the subtotal, cash short of the total, a key reused for another sale) gets
//! its error and takes nothing; the others go ahead. Each sale's answer is built from what was
//! written, so posting needs no read-back.

use std::collections::HashMap;

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use serde_json::json;
use tokio_postgres::types::ToSql;

use super::write::{write, Writes};
use super::{key_reused, Payment, Pending};
use crate::cents;
use crate::invoices::Invoice;
use crate::values::Money;
use crate::{Error, Result};

/// What became of a sale that was not refused.
#[derive(Debug)]
pub enum Posted {
    /// Made now; the whole invoice as `GET /invoices/{id}` shows it.
    New(Box<Invoice>),
    /// The invoice made earlier with the same idempotency key (and the same request).
    Earlier(i64),
}

/// A batch of stock, locked for this transaction.
pub(super) struct Stock {
    pub(super) id: i64,
    pub(super) medicine_id: i64,
    pub(super) batch_no: String,
    pub(super) expires_on: NaiveDate,
    pub(super) left: i32,
    pub(super) expired: bool,
}

/// A sale that passed every check, waiting for the write.
pub(super) struct Accepted {
    pub(super) index: usize,
    pub(super) customer_name: Option<String>,
    pub(super) customer_phone: Option<String>,
    pub(super) subtotal: Decimal,
    pub(super) tax: Decimal,
    pub(super) total: Decimal,
    pub(super) received: Decimal,
    pub(super) change: Decimal,
    pub(super) lines: Vec<Taken>,
}

/// A line of an accepted sale: the medicine's name and price, and the batches it takes from.
pub(super) struct Taken {
    pub(super) name: String,
    pub(super) price: Decimal,
    /// (index into the locked stock, units)
    pub(super) takes: Vec<(usize, i32)>,
}

/// What a sale came to before the write.
enum Judged {
    Refused(Error),
    Earlier(i64),
    /// The same key and request as an earlier sale of this batch.
    SameAs(usize),
    Accepted(usize),
}

/// Whose transaction a batch is posted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The caller's, already open; the caller commits.
    Caller,
    /// Its own, on a connection outside any transaction: opened with the reads and committed
    /// with the write, in the same round trips.
    Own,
}

/// Why a batch was not posted.
#[derive(Debug)]
pub enum Failed {
    /// Before the commit: nothing was kept. With [`Frame::Own`] the transaction may still be
    /// open (a failed read or write leaves it aborted): the caller ends it.
    Before(Error),
    /// The commit itself ([`Frame::Own`]): whether the sales were kept is unknown.
    Commit(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Self::Before(e)
    }
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Before(e.into())
    }
}

/// Posts `sales` in `frame`, its rows written as `writes` says. The outer error means the
/// batch failed as a whole (a duplicate idempotency key committed by another transaction
/// meanwhile surfaces as `idempotency_race`); otherwise each sale has its own outcome, in order.
pub async fn post_batch(
    db: &impl GenericClient,
    sales: &[Pending],
    frame: Frame,
    writes: Writes,
) -> Result<Vec<Result<Posted>>, Failed> {
    let mut reads = read(db, sales, frame).await?;
    let (judged, accepted) = judge_all(sales, &mut reads);
    let made = if accepted.is_empty() {
        if frame == Frame::Own {
            // Nothing to write, so nothing to lose: the COMMIT only lets the locks go.
            db.batch_execute("COMMIT").await?;
        }
        Vec::new()
    } else {
        write(
            db,
            sales,
            &accepted,
            &reads.stock,
            reads.tax_rate,
            frame,
            writes,
        )
        .await?
    };
    outcomes(judged, &accepted, made)
}

/// What a batch is judged on, read (and its stock locked) in one round trip.
struct Reads {
    /// id → (name, price, active)
    medicines: HashMap<i64, (String, Decimal, bool)>,
    tax_rate: Decimal,
    /// id → (name, phone)
    customers: HashMap<i64, (String, Option<String>)>,
    /// Every batch of the batch's medicines with stock, locked, first expiry first.
    stock: Vec<Stock>,
    /// Idempotency key → (invoice, fingerprint) of the invoices already made with the keys.
    earlier: HashMap<String, (i64, Vec<u8>)>,
}

/// Opens the transaction ([`Frame::Own`]) and reads what the batch is judged on. These
/// statements are pipelined and run in this order, so the keys are read after the batch's
/// locks are granted: a retry racing its original, once it holds the locks, sees the
/// original's commit.
async fn read(db: &impl GenericClient, sales: &[Pending], frame: Frame) -> Result<Reads, Failed> {
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

    let q_medicines = db
        .prepare_cached("SELECT id, name, sale_price, active FROM medicines WHERE id = ANY($1)")
        .await?;
    let q_settings = db.prepare_cached("SELECT tax_rate FROM settings").await?;
    let q_customers = db
        .prepare_cached("SELECT id, name, phone FROM customers WHERE id = ANY($1)")
        .await?;
    // Every batch of these medicines that has stock, in id order: concurrent sales of
    // overlapping medicines queue here instead of deadlocking.
    let q_locked = db
        .prepare_cached(
            "SELECT id, medicine_id, batch_no, expires_on, quantity_on_hand,
                    expires_on <= current_date
             FROM batches WHERE medicine_id = ANY($1) AND quantity_on_hand > 0
             ORDER BY id FOR UPDATE",
        )
        .await?;
    let q_keys = db
        .prepare_cached(
            "SELECT idempotency_key, id, request_hash FROM invoices
             WHERE idempotency_key = ANY($1)",
        )
        .await?;
    let by_medicine: [&(dyn ToSql + Sync); 1] = [&medicine_ids];
    // All awaited, then the errors taken in statement order: after the first failure every
    // later statement fails with "current transaction is aborted", which says nothing.
    let (begun, medicines, settings, customers, locked, earlier) = tokio::join!(
        async {
            match frame {
                Frame::Own => db.batch_execute("BEGIN").await,
                Frame::Caller => Ok(()),
            }
        },
        db.query(&q_medicines, &by_medicine),
        db.query_opt(&q_settings, &[]),
        async {
            if customer_ids.is_empty() {
                Ok(Vec::new())
            } else {
                db.query(&q_customers, &[&customer_ids]).await
            }
        },
        db.query(&q_locked, &by_medicine),
        async {
            if keys.is_empty() {
                Ok(Vec::new())
            } else {
                db.query(&q_keys, &[&keys]).await
            }
        },
    );
    begun?;
    let (medicines, settings, customers, locked, earlier) =
        (medicines?, settings?, customers?, locked?, earlier?);
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
    Ok(Reads {
        medicines: medicines
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect(),
        tax_rate: settings.map_or(Decimal::ZERO, |r| r.get(0)),
        customers: customers
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect(),
        stock,
        earlier: earlier
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect(),
    })
}

/// Judges every sale in order, each against the stock the ones before it left; a key seen
/// before (committed, or earlier in this batch) is the same sale again, or a refusal when the
/// request differs. Returns what each sale came to, and the accepted ones.
fn judge_all(sales: &[Pending], reads: &mut Reads) -> (Vec<Judged>, Vec<Accepted>) {
    let mut judged = Vec::with_capacity(sales.len());
    let mut accepted: Vec<Accepted> = Vec::new();
    // Keys of this batch's accepted sales: their position in `sales`.
    let mut keys_here: HashMap<&str, usize> = HashMap::new();
    for (index, pending) in sales.iter().enumerate() {
        if let Some(key) = pending.key.as_deref() {
            if let Some((id, fingerprint)) = reads.earlier.get(key) {
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
        match judge(index, pending, reads) {
            Ok(sale) => {
                for line in &sale.lines {
                    for (b, q) in &line.takes {
                        reads.stock[*b].left -= q;
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
    (judged, accepted)
}

/// Each sale's outcome, in order, from what it was judged and the invoices written for the
/// accepted ones (in the order they were accepted).
fn outcomes(
    judged: Vec<Judged>,
    accepted: &[Accepted],
    made: Vec<Invoice>,
) -> Result<Vec<Result<Posted>>, Failed> {
    // Position in `sales` → the invoice made for it.
    let made_for: HashMap<usize, i64> = accepted
        .iter()
        .zip(&made)
        .map(|(sale, invoice)| (sale.index, invoice.id))
        .collect();
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
                .ok_or_else(Error::internal),
        })
        .collect())
}

/// Checks one sale against the batch's reads and allocates its stock (without taking it yet).
fn judge(index: usize, pending: &Pending, reads: &Reads) -> Result<Accepted> {
    let Reads {
        medicines,
        customers,
        stock,
        tax_rate,
        ..
    } = reads;
    let sale = &pending.sale;
    for (i, (id, _)) in sale.lines.iter().enumerate() {
        match medicines.get(id) {
            None => {
                return Err(Error::not_found(&format!("medicine {id}"))
                    .with_field(&format!("lines[{i}].medicine_id")))
            }
            Some((name, _, false)) => {
                return Err(Error::invalid(
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
                .ok_or_else(|| Error::not_found("customer").with_field("customer_id"))?;
            (Some(name.clone()), phone.clone())
        }
        None => (sale.customer_name.clone(), sale.customer_phone.clone()),
    };

    let mut lines = Vec::with_capacity(sale.lines.len());
    let mut shortages = Vec::new();
    for (medicine_id, wanted) in &sale.lines {
        let (name, price, _) = &medicines[medicine_id];
        let wanted = wanted.get();
        let mut left = wanted;
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
        return Err(Error::conflict(code, message).with_detail(json!({"lines": shortages})));
    }

    // Totals: computed here, whatever the client believed.
    let subtotal: Decimal = sale
        .lines
        .iter()
        .zip(&lines)
        .map(|((_, q), line)| line.price * Decimal::from(q.get()))
        .sum();
    let discount = sale.discount.get();
    if discount > subtotal {
        return Err(Error::invalid(
            "discount",
            format!("the discount ({discount}) is more than the subtotal ({subtotal})"),
        ));
    }
    let tax = cents((subtotal - discount) * tax_rate);
    let total = subtotal - discount + tax;
    if total > Money::MAX.get() {
        return Err(Error::invalid("lines", "the sale's total is too large"));
    }
    let (received, change) = match sale.payment {
        Payment::Cash => {
            let received = sale.amount_received.map(Money::get).ok_or_else(|| {
                Error::invalid("amount_received", "a cash sale needs the amount received")
            })?;
            if received < total {
                return Err(Error::invalid(
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
