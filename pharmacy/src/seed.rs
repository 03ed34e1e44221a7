//! `apotheca seed-data`: a realistic sample pharmacy (`docs/domain.md`, "Seed data"), written through
//! the same domain code as the API — goods receipts create the stock, the counter's sale
//! code posts the invoices — so stock, batches and the ledger agree. Runs as the tenant's
//! own role. Seeding twice is refused unless `clear` first removes the tenant's business data
//! (users are kept: clearing never locks the owner out).

use chrono::{Duration, NaiveDate, Utc};
use deadpool_postgres::{Pool, Transaction};
use rand::distr::{Alphanumeric, SampleString};
use rust_decimal::Decimal;

use crate::accounts;
use crate::sale::{LineRequest, Payment, SaleRequest};
use crate::stock::{ReceiptLine, ReceiptRequest};
use crate::Error;
use crate::{sale, stock};

/// What seeding did, for the command to print.
#[derive(Debug, Default)]
pub struct Report {
    /// Users created now, with their one-time passwords.
    pub users: Vec<(String, String, String)>,
    /// Existing users left as they were.
    pub kept_users: Vec<String>,
    pub medicines: usize,
    pub batches: usize,
    pub invoices: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("this pharmacy already has data (medicines exist); run with --clear to replace it")]
    AlreadySeeded,
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Rule(Error),
}

impl From<Error> for SeedError {
    fn from(e: Error) -> Self {
        Self::Rule(e)
    }
}

/// (name, brand, generic, form, strength, price, reorder level)
const MEDICINES: &[(&str, &str, &str, &str, &str, &str, i32)] = &[
    (
        "Paracetamol 500 mg",
        "Cetamol",
        "paracetamol",
        "tablet",
        "500 mg",
        "2.00",
        100,
    ),
    (
        "Ibuprofen 400 mg",
        "Brufen",
        "ibuprofen",
        "tablet",
        "400 mg",
        "4.50",
        60,
    ),
    (
        "Amoxicillin 500 mg",
        "Amoxil",
        "amoxicillin",
        "capsule",
        "500 mg",
        "12.00",
        50,
    ),
    (
        "Azithromycin 500 mg",
        "Azithral",
        "azithromycin",
        "tablet",
        "500 mg",
        "45.00",
        20,
    ),
    (
        "Cetirizine 10 mg",
        "Cetzine",
        "cetirizine",
        "tablet",
        "10 mg",
        "3.00",
        50,
    ),
    (
        "Omeprazole 20 mg",
        "Omez",
        "omeprazole",
        "capsule",
        "20 mg",
        "6.50",
        40,
    ),
    (
        "Metformin 500 mg",
        "Glycomet",
        "metformin",
        "tablet",
        "500 mg",
        "3.20",
        80,
    ),
    (
        "Amlodipine 5 mg",
        "Amlong",
        "amlodipine",
        "tablet",
        "5 mg",
        "5.00",
        40,
    ),
    (
        "Atorvastatin 10 mg",
        "Atorva",
        "atorvastatin",
        "tablet",
        "10 mg",
        "9.00",
        30,
    ),
    (
        "Salbutamol inhaler",
        "Asthalin",
        "salbutamol",
        "other",
        "100 mcg/dose",
        "350.00",
        5,
    ),
    (
        "Cough syrup 100 ml",
        "Benadryl",
        "diphenhydramine",
        "syrup",
        "12.5 mg/5 ml",
        "120.00",
        10,
    ),
    (
        "Oral rehydration salts",
        "Jeevan Jal",
        "ORS",
        "other",
        "21 g",
        "15.00",
        50,
    ),
    (
        "Ciprofloxacin eye drops",
        "Ciplox",
        "ciprofloxacin",
        "drops",
        "0.3%",
        "65.00",
        10,
    ),
    (
        "Clotrimazole cream 15 g",
        "Candid",
        "clotrimazole",
        "cream",
        "1%",
        "95.00",
        10,
    ),
    (
        "Betamethasone ointment",
        "Betnovate",
        "betamethasone",
        "ointment",
        "0.1%",
        "80.00",
        10,
    ),
    (
        "Insulin glargine",
        "Lantus",
        "insulin glargine",
        "injection",
        "100 IU/ml",
        "1450.00",
        3,
    ),
    (
        "Vitamin B complex",
        "Becosules",
        "vitamin B complex",
        "capsule",
        "",
        "5.50",
        60,
    ),
    (
        "Pantoprazole 40 mg",
        "Pan",
        "pantoprazole",
        "tablet",
        "40 mg",
        "8.00",
        40,
    ),
    (
        "Nicotine patch 21 mg",
        "Nicotinell",
        "nicotine",
        "patch",
        "21 mg/24 h",
        "210.00",
        5,
    ),
    (
        "Ranitidine syrup",
        "Zinetac",
        "ranitidine",
        "liquid",
        "75 mg/5 ml",
        "85.00",
        10,
    ),
    (
        "Diclofenac gel 30 g",
        "Voveran",
        "diclofenac",
        "cream",
        "1%",
        "110.00",
        10,
    ),
    (
        "Losartan 50 mg",
        "Losar",
        "losartan",
        "tablet",
        "50 mg",
        "7.00",
        30,
    ),
];

/// Seeds the tenant behind `pool` (its own role). `clear` first deletes business data.
pub async fn run(pool: &Pool, clear: bool) -> Result<Report, SeedError> {
    let mut db = pool.get().await?;
    let tx = db.transaction().await?;
    start(&tx, clear).await?;
    let mut report = Report::default();
    users(&tx, &mut report).await?;
    let admin: i64 = tx
        .query_one(
            "SELECT id FROM users WHERE role = 'admin' AND active ORDER BY id LIMIT 1",
            &[],
        )
        .await?
        .get(0);
    let cashier: i64 = tx
        .query_one(
            "SELECT id FROM users WHERE active ORDER BY (role = 'staff') DESC, id LIMIT 1",
            &[],
        )
        .await?
        .get(0);
    let suppliers = suppliers(&tx).await?;
    let medicines = medicines(&tx).await?;
    report.medicines = medicines.len();
    let today = Utc::now().date_naive();
    report.batches = receive(&tx, admin, &suppliers, &medicines, today).await?;
    let customers = customers(&tx).await?;
    report.invoices = sell(&tx, cashier, &medicines, &customers, today).await?;
    tx.commit().await?;
    Ok(report)
}

/// One seeder at a time per tenant; a pharmacy with data is refused unless `clear`, which
/// empties it first; then the company profile.
async fn start(tx: &Transaction<'_>, clear: bool) -> Result<(), SeedError> {
    tx.execute("SELECT 1 FROM invoice_counter FOR UPDATE", &[])
        .await?;
    let seeded: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM medicines)", &[])
        .await?
        .get(0);
    if seeded && !clear {
        return Err(SeedError::AlreadySeeded);
    }
    if clear {
        tx.batch_execute(
            "DELETE FROM return_lines; DELETE FROM returns; DELETE FROM invoice_line_batches;
             DELETE FROM invoice_lines; DELETE FROM invoices; DELETE FROM stock_movements;
             DELETE FROM supplier_invoice_lines; DELETE FROM supplier_invoices; DELETE FROM batches;
             DELETE FROM medicines; DELETE FROM customers; DELETE FROM suppliers; DELETE FROM company;
             UPDATE invoice_counter SET last_number = 0;",
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO company (name, address, phone, email, pan, vat_no, licence_no)
         VALUES ('Sample Pharmacy', 'New Road, Kathmandu', '+977 1 4220000', 'hello@sample-pharmacy.example',
                 '301234567', '301234567', 'DDA-12345')",
        &[],
    )
    .await?;
    Ok(())
}

/// One user of each role with a new random password, unless a user of that name exists.
async fn users(tx: &Transaction<'_>, report: &mut Report) -> Result<(), SeedError> {
    for (username, role, full_name) in [
        ("admin", "admin", "Asha Admin"),
        ("pharmacist", "pharmacist", "Prakash Pharmacist"),
        ("staff", "staff", "Sita Staff"),
    ] {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = $1)",
                &[&username],
            )
            .await?
            .get(0);
        if exists {
            report.kept_users.push(username.to_owned());
            continue;
        }
        let password = Alphanumeric.sample_string(&mut rand::rng(), 14);
        let hash = accounts::hash_password_async(&password)
            .await
            .map_err(|busy| SeedError::Rule(busy.into()))?;
        tx.execute(
            "INSERT INTO users (username, password_hash, full_name, role) VALUES ($1, $2, $3, $4)",
            &[&username, &hash, &full_name, &role],
        )
        .await?;
        report
            .users
            .push((username.to_owned(), role.to_owned(), password));
    }
    Ok(())
}

async fn suppliers(tx: &Transaction<'_>) -> Result<Vec<i64>, SeedError> {
    let mut suppliers = Vec::new();
    for (name, contact, phone) in [
        ("Himalayan Drug House", "Ram Thapa", "+977 1 4400001"),
        (
            "Everest Medical Supplies",
            "Gita Shrestha",
            "+977 1 4400002",
        ),
    ] {
        let id: i64 = tx
            .query_one("INSERT INTO suppliers (name, contact_person, phone) VALUES ($1, $2, $3) RETURNING id", &[&name, &contact, &phone])
            .await?
            .get(0);
        suppliers.push(id);
    }

    Ok(suppliers)
}

/// Every medicine of [`MEDICINES`]: its id and price.
async fn medicines(tx: &Transaction<'_>) -> Result<Vec<(i64, Decimal)>, SeedError> {
    let mut medicine_ids = Vec::new();
    for (name, brand, generic, form, strength, price, reorder) in MEDICINES {
        let price: Decimal = price
            .parse()
            .map_err(|_| SeedError::Rule(Error::internal()))?;
        let strength = Some(*strength).filter(|s| !s.is_empty());
        let id: i64 = tx
            .query_one(
                "INSERT INTO medicines (name, brand, generic_name, dosage_form, strength, sale_price, reorder_level, prescription_only)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[name, brand, generic, form, &strength, &price, reorder, &matches!(*form, "injection" | "capsule")],
            )
            .await?
            .get(0);
        medicine_ids.push((id, price));
    }
    Ok(medicine_ids)
}

/// Batches, received from the two suppliers in two goods receipts. The first medicine gets an
/// expired batch besides a good one; the last gets none (out of stock); a few expire soon.
/// How many batches.
async fn receive(
    tx: &Transaction<'_>,
    admin: i64,
    suppliers: &[i64],
    medicine_ids: &[(i64, Decimal)],
    today: NaiveDate,
) -> Result<usize, SeedError> {
    let mut batches = 0;
    let mut receipts: [Vec<ReceiptLine>; 2] = [Vec::new(), Vec::new()];
    let last = medicine_ids.len() - 1;
    for (i, (id, price)) in medicine_ids.iter().enumerate() {
        if i == last {
            continue;
        }
        let cost = (*price * Decimal::new(6, 1)).round_dp(2);
        let plan: Vec<(i64, i64)> = match i {
            0 => vec![(-20, 40), (400, 500)], // one expired batch
            1 => vec![(20, 30), (300, 200)],  // critical: under 30 days
            2 => vec![(60, 40), (500, 150)],  // warning: under 90 days
            3 => vec![(75, 12)],
            4 => vec![(200, 30)], // at its reorder level: low stock
            _ => match i % 3 {
                0 => vec![(180, 120)],
                1 => vec![(240, 90), (420, 160)],
                _ => vec![(150, 60), (330, 80), (540, 100)],
            },
        };
        for (n, (expires_in, quantity)) in plan.into_iter().enumerate() {
            let expires_on = today + Duration::days(expires_in);
            receipts[i % 2].push(ReceiptLine {
                medicine_id: *id,
                batch_no: format!(
                    "B{:02}{}-{}",
                    i + 1,
                    (b'A' + n as u8) as char,
                    expires_on.format("%y%m")
                ),
                manufactured_on: Some(expires_on - Duration::days(730)),
                expires_on,
                quantity,
                unit_cost: cost,
            });
        }
    }
    for (n, lines) in receipts.into_iter().enumerate() {
        batches += lines.len();
        let request = ReceiptRequest {
            supplier_id: suppliers[n],
            invoice_no: format!("SUP-{}-{:03}", today.format("%Y%m"), n + 1),
            invoice_date: today - Duration::days(10),
            notes: Some("Opening stock".into()),
            lines,
        };
        stock::post_receipt(tx, admin, &request).await?;
    }

    Ok(batches)
}

async fn customers(tx: &Transaction<'_>) -> Result<Vec<i64>, SeedError> {
    let mut customers = Vec::new();
    for (name, phone) in [
        ("Hari Bahadur", "9841000001"),
        ("Maya Gurung", "9841000002"),
    ] {
        let id: i64 = tx
            .query_one(
                "INSERT INTO customers (name, phone) VALUES ($1, $2) RETURNING id",
                &[&name, &phone],
            )
            .await?
            .get(0);
        customers.push(id);
    }

    Ok(customers)
}

/// A few sales over the last seven days, through the counter's code, then dated back. How
/// many.
async fn sell(
    tx: &Transaction<'_>,
    cashier: i64,
    medicine_ids: &[(i64, Decimal)],
    customers: &[i64],
    today: NaiveDate,
) -> Result<usize, SeedError> {
    let mut invoices = 0;
    // (days ago, customer, payment, [(medicine index, quantity)])
    type Sale<'a> = (i64, Option<usize>, Payment, &'a [(usize, i64)]);
    let sales: [Sale; 6] = [
        (6, Some(0), Payment::Cash, &[(0, 10), (4, 5)]),
        (5, None, Payment::Card, &[(2, 6)]),
        (4, Some(1), Payment::Wallet, &[(1, 4), (5, 10), (6, 20)]),
        (2, None, Payment::Cash, &[(7, 30), (8, 15)]),
        (1, Some(0), Payment::Card, &[(10, 1), (11, 10)]),
        (0, None, Payment::Cash, &[(0, 20), (3, 2)]),
    ];
    for (days_ago, customer, payment, lines) in sales {
        let lines: Vec<LineRequest> = lines
            .iter()
            .map(|(i, q)| LineRequest {
                medicine_id: medicine_ids[*i].0,
                quantity: *q,
            })
            .collect();
        let request = SaleRequest {
            customer_id: customer.map(|c| customers[c]),
            customer_name: None,
            customer_phone: None,
            payment_method: payment,
            discount: Decimal::ZERO,
            amount_received: (payment == Payment::Cash).then(|| Decimal::new(1_000_000, 2)),
            lines,
        };
        let (id, _) = sale::post(tx, cashier, &request, None).await?;
        back_date(tx, id, today, days_ago).await?;
        invoices += 1;
    }
    Ok(invoices)
}

/// Moves a just-posted invoice (and its ledger lines) to `days_ago` at 10:00 + its number.
async fn back_date(
    tx: &Transaction<'_>,
    invoice: i64,
    today: NaiveDate,
    days_ago: i64,
) -> Result<(), SeedError> {
    let day = today - Duration::days(days_ago);
    tx.execute(
        "WITH moved AS (
             UPDATE invoices SET created_at = ($2::date + time '10:00' + make_interval(mins => number::int)) AT TIME ZONE 'UTC'
             WHERE id = $1 RETURNING number, created_at)
         UPDATE stock_movements SET at = moved.created_at FROM moved WHERE reference = 'INV-' || moved.number",
        &[&invoice, &day],
    )
    .await?;
    Ok(())
}
