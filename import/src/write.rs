//! Writes a [`Plan`] into a tenant's schema, inside the caller's transaction (the one that
//! created the tenant: a failure leaves nothing). Rows go in batches of parameter arrays
//! (`unnest`), with the ids the plan gives; afterwards every identity continues after the
//! highest id, and the invoice counter after the highest number.

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use crate::plan::Plan;

/// Rows per statement.
const CHUNK: usize = 5_000;

/// Runs `sql` (with `{s}` for the quoted schema) once per chunk of `rows`, binding the columns
/// `columns` makes of each chunk.
async fn insert<T>(
    tx: &Transaction<'_>,
    schema: &str,
    sql: &str,
    rows: &[T],
    columns: impl Fn(&[T]) -> Vec<Box<dyn ToSql + Sync + Send>>,
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = tx.prepare(&sql.replace("{s}", schema)).await?;
    for chunk in rows.chunks(CHUNK) {
        let values = columns(chunk);
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(&stmt, &params).await?;
    }
    Ok(())
}

/// A column of a chunk.
macro_rules! col {
    ($chunk:expr, |$r:ident| $e:expr) => {
        Box::new($chunk.iter().map(|$r| $e).collect::<Vec<_>>()) as Box<dyn ToSql + Sync + Send>
    };
}

/// Writes every row of `plan` into `schema` (quoted).
pub async fn write(
    tx: &Transaction<'_>,
    schema: &str,
    plan: &Plan,
) -> Result<(), tokio_postgres::Error> {
    let c = &plan.company;
    tx.execute(
        &format!(
            "INSERT INTO {schema}.company (name, address, phone, email, pan, vat_no)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address,
                 phone = excluded.phone, email = excluded.email, pan = excluded.pan,
                 vat_no = excluded.vat_no, updated_at = now()"
        ),
        &[&c.name, &c.address, &c.phone, &c.email, &c.pan, &c.vat_no],
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.users (id, username, password_hash, full_name, email, role, active,
                                created_at, updated_at, password_changed_at, last_login_at)
         SELECT id, username, hash, full_name, email, role, active, created, created, created, last
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bool[], $8::timestamptz[], $9::timestamptz[])
              AS t(id, username, hash, full_name, email, role, active, created, last)",
        &plan.users,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.username.clone()),
                col!(c, |r| r.password_hash.clone()),
                col!(c, |r| r.full_name.clone()),
                col!(c, |r| r.email.clone()),
                col!(c, |r| r.role.to_owned()),
                col!(c, |r| r.active),
                col!(c, |r| r.created_at),
                col!(c, |r| r.last_login_at),
            ]
        },
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.suppliers (id, name, contact_person, phone, email, address, pan)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[])",
        &plan.suppliers,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.name.clone()),
                col!(c, |r| r.contact_person.clone()),
                col!(c, |r| r.phone.clone()),
                col!(c, |r| r.email.clone()),
                col!(c, |r| r.address.clone()),
                col!(c, |r| r.pan.clone()),
            ]
        },
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.medicines (id, name, brand, dosage_form, sale_price, active)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                              $6::bool[])",
        &plan.medicines,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.name.clone()),
                col!(c, |r| r.brand.clone()),
                col!(c, |r| r.dosage_form.to_owned()),
                col!(c, |r| r.sale_price),
                col!(c, |r| r.active),
            ]
        },
    )
    .await?;
    // Each batch with its opening balance: batches = ledger from the first minute.
    insert(
        tx,
        schema,
        "WITH b AS (
             INSERT INTO {s}.batches (id, medicine_id, batch_no, manufactured_on, expires_on,
                                      quantity_on_hand, unit_cost, supplier_id)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::date[], $5::date[],
                                  $6::int[], $7::numeric[], $8::bigint[])
             RETURNING id, quantity_on_hand)
         INSERT INTO {s}.stock_movements (batch_id, quantity, reason, reference)
         SELECT id, quantity_on_hand, 'opening', 'opening balance (imported)' FROM b
         WHERE quantity_on_hand > 0",
        &plan.batches,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.medicine_id),
                col!(c, |r| r.batch_no.clone()),
                col!(c, |r| r.manufactured_on),
                col!(c, |r| r.expires_on),
                col!(c, |r| r.quantity),
                col!(c, |r| r.unit_cost),
                col!(c, |r| r.supplier_id),
            ]
        },
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.supplier_invoices (id, supplier_id, invoice_no, invoice_date, received_by,
                                            total, created_at)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::date[], $5::bigint[],
                              $6::numeric[], $7::timestamptz[])",
        &plan.receipts,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.supplier_id),
                col!(c, |r| r.invoice_no.clone()),
                col!(c, |r| r.invoice_date),
                col!(c, |r| r.received_by),
                col!(c, |r| r.total),
                col!(c, |r| r.created_at),
            ]
        },
    )
    .await?;
    // History: the stock these brought is already in the batches.
    insert(
        tx,
        schema,
        "INSERT INTO {s}.supplier_invoice_lines (id, supplier_invoice_id, medicine_id, batch_id,
                 batch_no, manufactured_on, expires_on, quantity, unit_cost, line_total)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                              $6::date[], $7::date[], $8::int[], $9::numeric[], $10::numeric[])",
        &plan.receipt_lines,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.receipt_id),
                col!(c, |r| r.medicine_id),
                col!(c, |r| r.batch_id),
                col!(c, |r| r.batch_no.clone()),
                col!(c, |r| r.manufactured_on),
                col!(c, |r| r.expires_on),
                col!(c, |r| r.quantity),
                col!(c, |r| r.unit_cost),
                col!(c, |r| r.line_total),
            ]
        },
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.customers (id, name, phone, email, address, created_at, updated_at)
         SELECT id, name, phone, email, address, created, created
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[]) AS t(id, name, phone, email, address, created)",
        &plan.customers,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.name.clone()),
                col!(c, |r| r.phone.clone()),
                col!(c, |r| r.email.clone()),
                col!(c, |r| r.address.clone()),
                col!(c, |r| r.created_at),
            ]
        },
    )
    .await?;
    insert(
        tx,
        schema,
        "INSERT INTO {s}.invoices (id, number, created_at, customer_id, customer_name,
                 customer_phone, billed_by, payment_method, subtotal, discount, tax_rate, tax,
                 total, amount_received, change_due, imported)
         SELECT id, number, created, customer, cname, cphone, billed_by, method, subtotal,
                discount, 0, 0, total, received, change, true
         FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bigint[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[], $9::numeric[], $10::numeric[],
                     $11::numeric[], $12::numeric[], $13::numeric[])
              AS t(id, number, created, customer, cname, cphone, billed_by, method, subtotal,
                   discount, total, received, change)",
        &plan.invoices,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.number),
                col!(c, |r| r.created_at),
                col!(c, |r| r.customer_id),
                col!(c, |r| r.customer_name.clone()),
                col!(c, |r| r.customer_phone.clone()),
                col!(c, |r| r.billed_by),
                col!(c, |r| r.payment_method.to_owned()),
                col!(c, |r| r.subtotal),
                col!(c, |r| r.discount),
                col!(c, |r| r.total),
                col!(c, |r| r.amount_received),
                col!(c, |r| r.change_due),
            ]
        },
    )
    .await?;
    // Each line with its one allocation: the batch row the app sold it from.
    insert(
        tx,
        schema,
        "WITH l AS (
             INSERT INTO {s}.invoice_lines (id, invoice_id, line_no, medicine_id, medicine_name,
                                            quantity, unit_price, line_total, imported)
             SELECT id, invoice, line_no, medicine, name, quantity, price, total, true
             FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::text[],
                         $6::int[], $7::numeric[], $8::numeric[])
                  AS t(id, invoice, line_no, medicine, name, quantity, price, total)
             RETURNING id, invoice_id, medicine_id, quantity)
         INSERT INTO {s}.invoice_line_batches (invoice_line_id, batch_id, invoice_id, medicine_id,
                                               quantity)
         SELECT l.id, t.batch, l.invoice_id, l.medicine_id, l.quantity
         FROM l JOIN unnest($1::bigint[], $9::bigint[]) AS t(line, batch) ON t.line = l.id",
        &plan.lines,
        |c| {
            vec![
                col!(c, |r| r.id),
                col!(c, |r| r.invoice_id),
                col!(c, |r| r.line_no),
                col!(c, |r| r.medicine_id),
                col!(c, |r| r.medicine_name.clone()),
                col!(c, |r| r.quantity),
                col!(c, |r| r.unit_price),
                col!(c, |r| r.line_total),
                col!(c, |r| r.batch_id),
            ]
        },
    )
    .await?;
    // Identities after the highest id; new sales after the highest number.
    let mut after = String::new();
    for table in [
        "users",
        "suppliers",
        "medicines",
        "batches",
        "supplier_invoices",
        "supplier_invoice_lines",
        "customers",
        "invoices",
        "invoice_lines",
    ] {
        after.push_str(&format!(
            "SELECT setval(pg_get_serial_sequence('{schema}.{table}', 'id'),
                           coalesce((SELECT max(id) FROM {schema}.{table}), 0) + 1, false);\n"
        ));
    }
    after.push_str(&format!(
        "UPDATE {schema}.invoice_counter SET last_number = greatest(last_number, {});",
        plan.last_number
    ));
    tx.batch_execute(&after).await
}
