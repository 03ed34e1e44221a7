//! The reports' queries, shared with the dashboard and the report pages: each returns typed
//! rows; `super` turns them into JSON or CSV.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::http::error::ApiResult;

/// Zero with two places, so that empty sums print like money ("0.00").
fn zero() -> Decimal {
    Decimal::new(0, 2)
}

/// The database's today (its time zone decides where days start).
pub async fn today(db: &tokio_postgres::Client) -> ApiResult<NaiveDate> {
    Ok(db.query_one("SELECT current_date", &[]).await?.get(0))
}

/// One day's sales.
#[derive(Debug, Serialize)]
pub struct Daily {
    pub date: NaiveDate,
    pub count: i64,
    pub gross: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub refunds: Decimal,
    pub net: Decimal,
    pub by_method: Vec<MethodSales>,
}

#[derive(Debug, Serialize)]
pub struct MethodSales {
    pub method: &'static str,
    pub count: i64,
    pub total: Decimal,
}

/// The sales of `date` (completed invoices), by payment method, and the day's refunds.
pub(crate) async fn daily_report(db: &tokio_postgres::Client, date: NaiveDate) -> ApiResult<Daily> {
    let r = db
        .query_one(
            "SELECT count(*), coalesce(sum(subtotal), 0.00), coalesce(sum(discount), 0.00),
                    coalesce(sum(tax), 0.00), coalesce(sum(total), 0.00),
                    count(*) FILTER (WHERE payment_method = 'cash'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'cash'), 0.00),
                    count(*) FILTER (WHERE payment_method = 'card'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'card'), 0.00),
                    count(*) FILTER (WHERE payment_method = 'wallet'),
                    coalesce(sum(total) FILTER (WHERE payment_method = 'wallet'), 0.00),
                    (SELECT coalesce(sum(refund), 0.00) FROM returns
                      WHERE created_at >= $1::date AND created_at < $1::date + 1)
             FROM invoices
             WHERE status = 'completed' AND created_at >= $1::date AND created_at < $1::date + 1",
            &[&date],
        )
        .await?;
    let (total, refunds): (Decimal, Decimal) = (r.get(4), r.get(11));
    Ok(Daily {
        date,
        count: r.get(0),
        gross: r.get(1),
        discount: r.get(2),
        tax: r.get(3),
        total,
        refunds,
        net: total - refunds,
        // In column order.
        by_method: ["cash", "card", "wallet"]
            .into_iter()
            .enumerate()
            .map(|(i, method)| MethodSales {
                method,
                count: r.get(5 + 2 * i),
                total: r.get(6 + 2 * i),
            })
            .collect(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct DaySales {
    pub date: NaiveDate,
    pub count: i64,
    pub total: Decimal,
    pub discount: Decimal,
}

/// One row per day of `from..=to`, oldest first, days without sales included as zeros;
/// `billed_by` limits it to one user's invoices.
pub async fn sales_by_day(
    db: &tokio_postgres::Client,
    from: NaiveDate,
    to: NaiveDate,
    billed_by: Option<i64>,
) -> ApiResult<Vec<DaySales>> {
    let rows = db
        .query(
            "WITH days AS (
                 SELECT $1::date + n AS day FROM generate_series(0, $2::date - $1::date) AS n
             ), sold AS (
                 SELECT created_at::date AS day, count(*) AS n, sum(total) AS total,
                        sum(discount) AS discount
                 FROM invoices
                 WHERE status = 'completed' AND created_at >= $1::date AND created_at < $2::date + 1
                   AND ($3::bigint IS NULL OR billed_by = $3)
                 GROUP BY 1
             )
             SELECT d.day, coalesce(s.n, 0), coalesce(s.total, 0.00), coalesce(s.discount, 0.00)
             FROM days d LEFT JOIN sold s USING (day) ORDER BY d.day",
            &[&from, &to, &billed_by],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DaySales {
            date: r.get(0),
            count: r.get(1),
            total: r.get(2),
            discount: r.get(3),
        })
        .collect())
}

/// Σ count, total and discount of `days`.
pub fn day_totals(days: &[DaySales]) -> (i64, Decimal, Decimal) {
    days.iter().fold((0i64, zero(), zero()), |acc, d| {
        (acc.0 + d.count, acc.1 + d.total, acc.2 + d.discount)
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct TopSeller {
    pub medicine_id: i64,
    pub name: String,
    /// Units sold less units returned.
    pub quantity: i64,
    /// Σ line totals of the sales (before invoice discounts).
    pub revenue: Decimal,
}

/// The best sellers of `from..=to` by units (net of returns of those sales), then revenue.
pub async fn top_sellers(
    db: &tokio_postgres::Client,
    from: NaiveDate,
    to: NaiveDate,
    limit: i64,
    billed_by: Option<i64>,
) -> ApiResult<Vec<TopSeller>> {
    let rows = db
        .query(
            "WITH sales AS (
                 SELECT id FROM invoices
                 WHERE status = 'completed' AND created_at >= $1::date AND created_at < $2::date + 1
                   AND ($4::bigint IS NULL OR billed_by = $4)
             ), sold AS (
                 SELECT l.medicine_id, sum(l.quantity)::bigint AS qty, sum(l.line_total) AS revenue
                 FROM invoice_lines l JOIN sales s ON s.id = l.invoice_id
                 GROUP BY l.medicine_id
             ), returned AS (
                 SELECT l.medicine_id, sum(rl.quantity)::bigint AS qty
                 FROM return_lines rl JOIN sales s ON s.id = rl.invoice_id
                      JOIN invoice_lines l ON l.id = rl.invoice_line_id
                 GROUP BY l.medicine_id
             )
             SELECT m.id, m.name, so.qty - coalesce(r.qty, 0) AS quantity, so.revenue
             FROM sold so JOIN medicines m ON m.id = so.medicine_id
                  LEFT JOIN returned r ON r.medicine_id = so.medicine_id
             ORDER BY quantity DESC, so.revenue DESC, m.name, m.id
             LIMIT $3",
            &[&from, &to, &limit, &billed_by],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TopSeller {
            medicine_id: r.get(0),
            name: r.get(1),
            quantity: r.get(2),
            revenue: r.get(3),
        })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct StockRow {
    pub medicine_id: i64,
    pub name: String,
    pub dosage_form: String,
    pub strength: Option<String>,
    /// Units in batches that have not expired (the sellable stock).
    pub on_hand: i64,
    pub expired: i64,
    /// Σ quantity × unit cost over unexpired batches.
    pub value: Decimal,
}

/// Stock on hand of every active medicine, by name.
pub(crate) async fn stock_rows(db: &tokio_postgres::Client) -> ApiResult<Vec<StockRow>> {
    // Expired means expires_on <= current_date, as the counter's FEFO sees it.
    Ok(db
        .query(
            "SELECT m.id, m.name, m.dosage_form, m.strength,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on > current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand * b.unit_cost) FILTER (WHERE b.expires_on > current_date), 0.00)
             FROM medicines m LEFT JOIN batches b ON b.medicine_id = m.id
             WHERE m.active
             GROUP BY m.id ORDER BY lower(m.name), m.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| StockRow {
            medicine_id: r.get(0),
            name: r.get(1),
            dosage_form: r.get(2),
            strength: r.get(3),
            on_hand: r.get(4),
            expired: r.get(5),
            value: r.get(6),
        })
        .collect())
}

/// Σ on hand, expired and value of `items`.
pub fn stock_totals(items: &[StockRow]) -> (i64, i64, Decimal) {
    items.iter().fold((0i64, 0i64, zero()), |acc, s| {
        (acc.0 + s.on_hand, acc.1 + s.expired, acc.2 + s.value)
    })
}

#[derive(Debug, Serialize)]
pub struct SupplierStock {
    /// `None`: batches received without a supplier.
    pub supplier_id: Option<i64>,
    pub supplier_name: String,
    pub medicines: i64,
    /// All units on hand, expired ones included.
    pub units: i64,
    pub expired_units: i64,
    /// Σ quantity × unit cost over unexpired batches.
    pub value: Decimal,
}

/// Stock on hand by the supplier it came from.
pub(crate) async fn supplier_stock_rows(
    db: &tokio_postgres::Client,
) -> ApiResult<Vec<SupplierStock>> {
    Ok(db
        .query(
            "SELECT b.supplier_id, coalesce(s.name, 'unknown supplier'), count(DISTINCT b.medicine_id),
                    sum(b.quantity_on_hand)::bigint,
                    coalesce(sum(b.quantity_on_hand) FILTER (WHERE b.expires_on <= current_date), 0)::bigint,
                    coalesce(sum(b.quantity_on_hand * b.unit_cost) FILTER (WHERE b.expires_on > current_date), 0.00)
             FROM batches b LEFT JOIN suppliers s ON s.id = b.supplier_id
             WHERE b.quantity_on_hand > 0
             GROUP BY b.supplier_id, s.name
             ORDER BY b.supplier_id IS NULL, lower(s.name), b.supplier_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| SupplierStock {
            supplier_id: r.get(0),
            supplier_name: r.get(1),
            medicines: r.get(2),
            units: r.get(3),
            expired_units: r.get(4),
            value: r.get(5),
        })
        .collect())
}

/// Σ units and value of `items`.
pub fn supplier_stock_totals(items: &[SupplierStock]) -> (i64, Decimal) {
    items
        .iter()
        .fold((0i64, zero()), |acc, s| (acc.0 + s.units, acc.1 + s.value))
}
