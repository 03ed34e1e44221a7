//! The write half of a batch of sales: every row of the accepted sales (invoices, lines,
//! allocations, ledger, stock, numbers) in one statement — followed in the same round trip by
//! the `COMMIT` of a transaction of its own — or, on Citus, one statement per table
//! ([`Writes`]); and their invoices built from what was written.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::batch::{Accepted, Failed, Frame, Stock};
use super::{duplicate_key, Pending};
use crate::invoices::{Allocation, Invoice, Line};
use crate::money;

/// How a batch's rows reach the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Every row in one statement ([`WRITE_SALES`]), whose parts feed each other: one round
    /// trip, with the COMMIT.
    Together,
    /// One statement per table ([`PER_TABLE`]), for Citus: there a statement whose parts feed
    /// each other has the parts' results sent to every worker node, so every tenant's sale
    /// would fail while any node was down. Each of these reaches the tenant's node alone; two
    /// round trips (ids and number, then the rows with the COMMIT).
    PerTable,
}

/// Writes the accepted sales, numbers them (and commits, in [`Frame::Own`]), and builds their
/// invoices.
pub(super) async fn write(
    db: &impl GenericClient,
    sales: &[Pending],
    accepted: &[Accepted],
    stock: &[Stock],
    tax_rate: Decimal,
    frame: Frame,
    writes: Writes,
) -> Result<Vec<Invoice>, Failed> {
    let columns = columns(sales, accepted, stock);
    let written = match writes {
        Writes::Together => together(db, &columns, tax_rate, frame).await?,
        Writes::PerTable => per_table(db, &columns, tax_rate, frame).await?,
    };
    Ok(invoices(sales, accepted, stock, tax_rate, &written))
}

/// The COMMIT of a transaction of its own, pipelined behind the write: the COMMIT of a failed
/// write ends the aborted transaction (PostgreSQL answers it with ROLLBACK), so both are
/// awaited and the write's error is the one reported.
async fn commit(db: &impl GenericClient, frame: Frame) -> Result<(), tokio_postgres::Error> {
    match frame {
        Frame::Own => db.batch_execute("COMMIT").await,
        Frame::Caller => Ok(()),
    }
}

/// A failed write: a duplicate idempotency key (committed by another transaction meanwhile)
/// is the batch's race; anything else is as it came.
fn write_failed(e: tokio_postgres::Error, inv: &InvoiceColumns) -> Failed {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && inv.key.iter().any(Option::is_some) {
        Failed::Before(duplicate_key())
    } else {
        e.into()
    }
}

/// [`Writes::Together`].
async fn together(
    db: &impl GenericClient,
    c: &Columns<'_>,
    tax_rate: Decimal,
    frame: Frame,
) -> Result<Written, Failed> {
    let Columns {
        inv,
        ln,
        al,
        taken_batch,
        taken_quantity,
    } = c;
    let stmt = db.prepare_cached(WRITE_SALES).await?;
    let mut params = inv.params(&tax_rate);
    params.extend(ln.params());
    params.extend::<[&(dyn ToSql + Sync); 6]>([
        &al.line,
        &al.batch,
        &al.quantity,
        &al.user,
        taken_batch,
        taken_quantity,
    ]);
    let (row, committed) = tokio::join!(db.query_one(&stmt, &params), commit(db, frame));
    let row = row.map_err(|e| write_failed(e, inv))?;
    committed.map_err(|e| Failed::Commit(e.into()))?;
    Ok(Written {
        first: row.get(0),
        invoice_ids: row.get(1),
        line_ids: row.get(2),
        created_at: row.get(3),
    })
}

/// [`Writes::PerTable`]: the ids and the counter first (no table, then the counter row), then
/// every table's rows and the COMMIT, pipelined.
async fn per_table(
    db: &impl GenericClient,
    c: &Columns<'_>,
    tax_rate: Decimal,
    frame: Frame,
) -> Result<Written, Failed> {
    let Columns {
        inv,
        ln,
        al,
        taken_batch,
        taken_quantity,
    } = c;
    let invoices = i32::try_from(inv.billed_by.len()).unwrap_or(i32::MAX);
    let lines = i32::try_from(ln.line_no.len()).unwrap_or(i32::MAX);
    let [ids, counter, s_inv, s_lines, s_alloc, s_ledger, s_stock] = PER_TABLE;
    let (ids, counter) = tokio::try_join!(db.prepare_cached(ids), db.prepare_cached(counter))?;
    let (p_ids, p_counter): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 1]) =
        ([&invoices, &lines], [&invoices]);
    // Errors in statement order (see `rows` below).
    let (ids, counter) = tokio::join!(
        db.query_one(&ids, &p_ids),
        db.query_one(&counter, &p_counter)
    );
    let (ids, counter) = (ids?, counter?);
    let (invoice_ids, line_ids, created_at): (Vec<i64>, Vec<i64>, DateTime<Utc>) =
        (ids.get(0), ids.get(1), ids.get(2));
    let base: i64 = counter.get(0);
    let (s_inv, s_lines, s_alloc, s_ledger, s_stock) = tokio::try_join!(
        db.prepare_cached(s_inv),
        db.prepare_cached(s_lines),
        db.prepare_cached(s_alloc),
        db.prepare_cached(s_ledger),
        db.prepare_cached(s_stock)
    )?;
    let mut p_inv = inv.params(&tax_rate);
    p_inv.extend::<[&(dyn ToSql + Sync); 3]>([&invoice_ids, &base, &created_at]);
    let mut p_lines = ln.params();
    p_lines.extend::<[&(dyn ToSql + Sync); 2]>([&line_ids, &invoice_ids]);
    let p_alloc: [&(dyn ToSql + Sync); 7] = [
        &al.line,
        &al.batch,
        &al.quantity,
        &line_ids,
        &invoice_ids,
        &ln.invoice,
        &ln.medicine_id,
    ];
    let p_ledger: [&(dyn ToSql + Sync); 7] = [
        &al.line,
        &al.batch,
        &al.quantity,
        &al.user,
        &base,
        &ln.invoice,
        &created_at,
    ];
    let p_stock: [&(dyn ToSql + Sync); 2] = [taken_batch, taken_quantity];
    // All awaited, then the first error in statement order: after it, every later statement
    // fails with "current transaction is aborted", which says nothing.
    let rows = async {
        let (a, b, c, d, e) = tokio::join!(
            db.execute(&s_inv, &p_inv),
            db.execute(&s_lines, &p_lines),
            db.execute(&s_alloc, &p_alloc),
            db.execute(&s_ledger, &p_ledger),
            db.execute(&s_stock, &p_stock),
        );
        a.and(b).and(c).and(d).and(e)
    };
    let (rows, committed) = tokio::join!(rows, commit(db, frame));
    rows.map_err(|e| write_failed(e, inv))?;
    committed.map_err(|e| Failed::Commit(e.into()))?;
    Ok(Written {
        first: base + 1,
        invoice_ids,
        line_ids,
        created_at,
    })
}

/// The rows of a batch of sales, as the statement's parameter arrays.
struct Columns<'a> {
    inv: InvoiceColumns<'a>,
    ln: LineColumns<'a>,
    al: AllocationColumns,
    /// Each batch that gives units, and how many in all.
    taken_batch: Vec<i64>,
    taken_quantity: Vec<i32>,
}

fn columns<'a>(sales: &'a [Pending], accepted: &'a [Accepted], stock: &[Stock]) -> Columns<'a> {
    // Invoices, then lines (with the invoice's position), then allocations (with the line's
    // position), as parallel arrays.
    let mut inv = InvoiceColumns::default();
    let mut ln = LineColumns::default();
    let mut al = AllocationColumns::default();
    // What each locked batch gives in all (by its index in `stock`): one row update per batch.
    let mut taken = vec![0i32; stock.len()];
    for (n, a) in accepted.iter().enumerate() {
        let p = &sales[a.index];
        let s = &p.sale;
        inv.customer_id.push(s.customer_id);
        inv.customer_name.push(a.customer_name.as_deref());
        inv.customer_phone.push(a.customer_phone.as_deref());
        inv.billed_by.push(p.user_id);
        inv.payment.push(s.payment.as_str());
        inv.subtotal.push(a.subtotal);
        inv.discount.push(s.discount.get());
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
            ln.quantity.push(q.get());
            ln.price.push(line.price);
            ln.total.push(line.price * Decimal::from(q.get()));
            for (b, q) in &line.takes {
                al.line.push(ln.line_no.len() as i32);
                al.batch.push(stock[*b].id);
                al.quantity.push(*q);
                al.user.push(p.user_id);
                taken[*b] += q;
            }
        }
    }
    let (taken_batch, taken_quantity): (Vec<i64>, Vec<i32>) = stock
        .iter()
        .zip(taken)
        .filter(|(_, q)| *q > 0)
        .map(|(b, q)| (b.id, q))
        .unzip();
    Columns {
        inv,
        ln,
        al,
        taken_batch,
        taken_quantity,
    }
}

/// What the statement gives back: the first invoice number, the ids of the invoices and of the
/// lines in position order, and the time of the write.
struct Written {
    first: i64,
    invoice_ids: Vec<i64>,
    line_ids: Vec<i64>,
    created_at: DateTime<Utc>,
}

/// The invoices of the accepted sales, as `GET /invoices/{id}` shows them, from what was
/// written.
fn invoices(
    sales: &[Pending],
    accepted: &[Accepted],
    stock: &[Stock],
    tax_rate: Decimal,
    written: &Written,
) -> Vec<Invoice> {
    let Written {
        first,
        invoice_ids,
        line_ids,
        created_at,
    } = written;
    let mut line_at = 0;
    accepted
        .iter()
        .zip(invoice_ids)
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
                        quantity: q.get(),
                        unit_price: taken.price,
                        line_total: money(taken.price * Decimal::from(q.get())),
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
                created_at: *created_at,
                customer_id: s.customer_id,
                customer_name: a.customer_name.clone(),
                customer_phone: a.customer_phone.clone(),
                billed_by: p.user_id,
                billed_by_username: p.username.clone(),
                payment_method: s.payment.as_str().to_owned(),
                subtotal: money(a.subtotal),
                discount: money(s.discount.get()),
                tax_rate,
                tax: money(a.tax),
                total: money(a.total),
                amount_received: money(a.received),
                change_due: money(a.change),
                status: "completed".to_owned(),
                voided_at: None,
                void_reason: None,
                imported: false,
                lines,
                returns: Vec::new(),
                refunded: money(Decimal::ZERO),
            }
        })
        .collect()
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

impl InvoiceColumns<'_> {
    /// The invoices' parameters of both statements, $1–$14 ($8: the tax rate).
    fn params<'p>(&'p self, tax_rate: &'p Decimal) -> Vec<&'p (dyn ToSql + Sync)> {
        vec![
            &self.customer_id,
            &self.customer_name,
            &self.customer_phone,
            &self.billed_by,
            &self.payment,
            &self.subtotal,
            &self.discount,
            tax_rate,
            &self.tax,
            &self.total,
            &self.received,
            &self.change,
            &self.key,
            &self.hash,
        ]
    }
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

impl LineColumns<'_> {
    /// The lines' parameters, in the order both statements take them (7 of them).
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.invoice,
            &self.line_no,
            &self.medicine_id,
            &self.name,
            &self.quantity,
            &self.price,
            &self.total,
        ]
    }
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
/// ($22: the line's position), $26–$27 what each batch gives in all. Ids are drawn from the
/// tables' own sequences in position order into arrays, and every row takes its ids from them
/// by position: rows are tied together by position, never by the order RETURNING happens to
/// give, and without joins (PostgreSQL's generic plan would hash-join these few rows).
///
/// The tenant's invoice counter moves once for the whole batch: the batch's numbers are
/// consecutive, in position order, and gap-free (a rolled-back batch rolls its numbers back).
/// The counter row is locked after the batches, like every sale does, so it never deadlocks;
/// concurrent batches of the same medicines are already queued on the batch locks.
///
/// Returns the first number, the ids of the invoices and of the lines in position order, and
/// the transaction's time (every row's `created_at` / `at`).
const WRITE_SALES: &str = "
WITH ids AS MATERIALIZED (
    SELECT ARRAY(SELECT nextval('invoices_id_seq')
                 FROM generate_series(1, cardinality($4::bigint[]))) AS inv,
           ARRAY(SELECT nextval('invoice_lines_id_seq')
                 FROM generate_series(1, cardinality($15::int[]))) AS line
), n AS (
    UPDATE invoice_counter SET last_number = last_number + cardinality($4::bigint[])
    RETURNING last_number - cardinality($4::bigint[]) AS base
), inv AS (
    INSERT INTO invoices (id, number, customer_id, customer_name, customer_phone, billed_by,
                          payment_method, subtotal, discount, tax_rate, tax, total,
                          amount_received, change_due, idempotency_key, request_hash)
    SELECT ids.inv[t.ord], n.base + t.ord, t.customer_id, t.customer_name, t.customer_phone,
           t.billed_by, t.payment, t.subtotal, t.discount, $8, t.tax, t.total, t.received,
           t.change, t.key, t.hash
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::numeric[],
                $7::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[],
                $13::text[], $14::bytea[])
         WITH ORDINALITY AS t(customer_id, customer_name, customer_phone, billed_by, payment,
                              subtotal, discount, tax, total, received, change, key, hash, ord)
    CROSS JOIN ids CROSS JOIN n
), lines AS (
    INSERT INTO invoice_lines (id, invoice_id, line_no, medicine_id, medicine_name, quantity,
                               unit_price, line_total)
    SELECT ids.line[t.ord], ids.inv[t.invoice], t.line_no, t.medicine_id, t.name, t.quantity,
           t.price, t.total
    FROM unnest($15::int[], $16::int[], $17::bigint[], $18::text[], $19::int[], $20::numeric[],
                $21::numeric[])
         WITH ORDINALITY AS t(invoice, line_no, medicine_id, name, quantity, price, total, ord)
    CROSS JOIN ids
), alloc AS (
    INSERT INTO invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id, quantity)
    SELECT ids.line[a.line], a.batch, ids.inv[($15::int[])[a.line]], ($17::bigint[])[a.line],
           a.quantity
    FROM unnest($22::int[], $23::bigint[], $24::int[]) AS a(line, batch, quantity)
    CROSS JOIN ids
), ledger AS (
    INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id)
    SELECT a.batch, -a.quantity, 'sale', 'INV-' || (n.base + ($15::int[])[a.line]), a.user_id
    FROM unnest($22::int[], $23::bigint[], $24::int[], $25::bigint[])
         AS a(line, batch, quantity, user_id)
    CROSS JOIN n
), stock AS (
    UPDATE batches
    SET quantity_on_hand = quantity_on_hand - ($27::int[])[array_position($26::bigint[], id)]
    WHERE id = ANY($26::bigint[])
)
SELECT (SELECT base + 1 FROM n), (SELECT inv FROM ids), (SELECT line FROM ids), now()";

/// [`WRITE_SALES`] one table at a time, for Citus ([`Writes::PerTable`]), in order: the ids
/// (no table: on the coordinator) and the counter (the tenant's node), then the invoices
/// ($15 their ids, $16 the number before the first, $17 the time), the lines ($8 their ids,
/// $9 the invoices'), the allocations ($4 the lines' ids, $5 the invoices', $6 each line's
/// invoice position, $7 its medicine), the ledger ($5 the number before the first, $6 each
/// line's invoice position, $7 the time) and the stock, each from its parameters alone. The
/// time is the coordinator's transaction's, written explicitly: a default's `now()` could be
/// a node's.
const PER_TABLE: [&str; 7] = [
    "SELECT ARRAY(SELECT nextval('invoices_id_seq') FROM generate_series(1, $1::int)),
            ARRAY(SELECT nextval('invoice_lines_id_seq') FROM generate_series(1, $2::int)),
            now()",
    "UPDATE invoice_counter SET last_number = last_number + $1::int
     RETURNING last_number - $1::int",
    "INSERT INTO invoices (id, number, customer_id, customer_name, customer_phone, billed_by,
                           payment_method, subtotal, discount, tax_rate, tax, total,
                           amount_received, change_due, idempotency_key, request_hash,
                           created_at)
     SELECT ($15::bigint[])[t.ord], $16::bigint + t.ord, t.customer_id, t.customer_name,
            t.customer_phone, t.billed_by, t.payment, t.subtotal, t.discount, $8, t.tax,
            t.total, t.received, t.change, t.key, t.hash, $17::timestamptz
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::numeric[],
                 $7::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[],
                 $13::text[], $14::bytea[])
          WITH ORDINALITY AS t(customer_id, customer_name, customer_phone, billed_by, payment,
                               subtotal, discount, tax, total, received, change, key, hash, ord)",
    "INSERT INTO invoice_lines (id, invoice_id, line_no, medicine_id, medicine_name, quantity,
                                unit_price, line_total)
     SELECT ($8::bigint[])[t.ord], ($9::bigint[])[t.invoice], t.line_no, t.medicine_id, t.name,
            t.quantity, t.price, t.total
     FROM unnest($1::int[], $2::int[], $3::bigint[], $4::text[], $5::int[], $6::numeric[],
                 $7::numeric[])
          WITH ORDINALITY AS t(invoice, line_no, medicine_id, name, quantity, price, total, ord)",
    "INSERT INTO invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id, quantity)
     SELECT ($4::bigint[])[a.line], a.batch, ($5::bigint[])[($6::int[])[a.line]],
            ($7::bigint[])[a.line], a.quantity
     FROM unnest($1::int[], $2::bigint[], $3::int[]) AS a(line, batch, quantity)",
    "INSERT INTO stock_movements (batch_id, quantity, reason, reference, user_id, at)
     SELECT a.batch, -a.quantity, 'sale', 'INV-' || ($5::bigint + ($6::int[])[a.line]), a.user_id,
            $7::timestamptz
     FROM unnest($1::int[], $2::bigint[], $3::int[], $4::bigint[]) AS a(line, batch, quantity, user_id)",
    "UPDATE batches
     SET quantity_on_hand = quantity_on_hand - ($2::int[])[array_position($1::bigint[], id)]
     WHERE id = ANY($1::bigint[])",
];
