//! The mapping (`docs/import.md`): a [`Snapshot`] of the app's rows becomes Apotheca's rows,
//! every value checked against the tenant schema's rules, and every decision a row needed
//! written to the [`Report`]. Nothing here touches a database: the plan is written by
//! [`crate::write`], in one transaction.
//!
//! Ids are kept where the app had them (users, suppliers, batches = the app's medicine rows,
//! customers, invoices and their lines, receipts and their lines), so a row can be found again
//! by its old id; medicines, which the app did not have as rows of their own, are numbered
//! from 1. Invoices keep their numbers, and new sales continue after the highest.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::app::{self, Snapshot};
use crate::report::Report;
use apotheca_pharmacy::accounts;
use apotheca_pharmacy::values::{self, Money};

/// Everything to write into the new schema.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub company: Company,
    pub users: Vec<User>,
    pub suppliers: Vec<Supplier>,
    pub medicines: Vec<Medicine>,
    pub batches: Vec<Batch>,
    pub receipts: Vec<Receipt>,
    pub receipt_lines: Vec<ReceiptLine>,
    pub customers: Vec<Customer>,
    pub invoices: Vec<Invoice>,
    pub lines: Vec<Line>,
    /// The highest invoice number: new sales continue after it.
    pub last_number: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Company {
    pub name: String,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub pan: Option<String>,
    pub vat_no: Option<String>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub full_name: String,
    pub email: Option<String>,
    pub role: &'static str,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Supplier {
    pub id: i64,
    pub name: String,
    pub contact_person: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub pan: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Medicine {
    pub id: i64,
    pub name: String,
    pub brand: Option<String>,
    pub dosage_form: &'static str,
    pub sale_price: Decimal,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct Batch {
    /// The app's medicine row id.
    pub id: i64,
    pub medicine_id: i64,
    pub batch_no: String,
    pub manufactured_on: Option<NaiveDate>,
    pub expires_on: NaiveDate,
    /// Also the opening-balance movement (when above 0).
    pub quantity: i32,
    pub unit_cost: Decimal,
    pub supplier_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Receipt {
    pub id: i64,
    pub supplier_id: i64,
    pub invoice_no: String,
    pub invoice_date: NaiveDate,
    pub received_by: i64,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ReceiptLine {
    pub id: i64,
    pub receipt_id: i64,
    pub medicine_id: i64,
    pub batch_id: i64,
    pub batch_no: String,
    pub manufactured_on: Option<NaiveDate>,
    pub expires_on: NaiveDate,
    pub quantity: i32,
    pub unit_cost: Decimal,
    pub line_total: Decimal,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub customer_id: Option<i64>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    pub billed_by: i64,
    pub payment_method: &'static str,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub total: Decimal,
    pub amount_received: Decimal,
    pub change_due: Decimal,
}

/// An invoice line and the batch it was sold from (one allocation).
#[derive(Debug, Clone)]
pub struct Line {
    pub id: i64,
    pub invoice_id: i64,
    pub line_no: i32,
    pub medicine_id: i64,
    pub medicine_name: String,
    pub quantity: i32,
    pub unit_price: Decimal,
    pub line_total: Decimal,
    pub batch_id: i64,
}

/// The app's `category` as Apotheca's dosage form (the nearest: a "dose form" is too vague to
/// be one, so it is `other`).
pub fn dosage_form(category: &str) -> Option<&'static str> {
    Some(match category.trim().to_lowercase().as_str() {
        "tablet/capsule" | "tablet" => "tablet",
        "capsule" => "capsule",
        "liquid" => "liquid",
        "patch" => "patch",
        "dose form" => "other",
        "ointment" => "ointment",
        "syrup" => "syrup",
        "injection" => "injection",
        "cream" => "cream",
        "drops" => "drops",
        _ => return None,
    })
}

/// The expiry given to a batch the source has none for: long past, so it is never sold.
fn no_expiry() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// How one kind of number (a batch's, a receipt's) is made unique within its owner.
struct Numbering {
    /// "batch number"
    what: &'static str,
    /// What a number taken already is, after it ("appears twice for this medicine").
    twice: &'static str,
    table: &'static str,
}

impl Numbering {
    /// `raw` (trimmed, at most 50 characters), else `IMPORT-<id>`; one that `owner` has
    /// already gets `-<id>` after it. Each such decision is an anomaly of row `id`.
    fn unique(
        &self,
        raw: &str,
        id: i64,
        owner: i64,
        seen: &mut HashSet<(i64, String)>,
        report: &mut Report,
    ) -> String {
        let number = bounded(raw, 50).unwrap_or_else(|| {
            let made = format!("IMPORT-{id}");
            let (what, done) = (format!("no {}", self.what), format!("numbered {made:?}"));
            report.anomaly(self.table, id, what, done);
            made
        });
        if seen.insert((owner, number.clone())) {
            return number;
        }
        let made = cut(&format!("{number}-{id}"), 50);
        report.anomaly(
            self.table,
            id,
            format!("{} {number:?} {}", self.what, self.twice),
            format!("this one numbered {made:?}"),
        );
        seen.insert((owner, made.clone()));
        made
    }
}

/// Trimmed text cut to `max` characters (and trimmed again: the schema's names are); `None`
/// when blank.
fn bounded(raw: &str, max: usize) -> Option<String> {
    let t = raw.trim();
    (!t.is_empty()).then(|| cut(t, max))
}

/// `text` cut to `max` characters, with no space left at its end.
fn cut(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Whether a recorded amount fits a numeric(14,2) column (either sign).
fn fits(x: Decimal) -> bool {
    x.abs() <= Money::MAX.get()
}

fn email(raw: Option<&str>) -> Result<Option<String>, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(e) => values::opt_email("email", Some(e))
            .map_err(|_| format!("email {e:?} is not an email address")),
    }
}

/// A password hash kept as it is: of a shape the tenant schema's CHECK takes, and one
/// Apotheca's login verifies (`accounts::verifiable`), or Django's unusable password.
pub fn storable_hash(hash: &str) -> bool {
    shaped(hash) && (hash.starts_with('!') || accounts::verifiable(hash))
}

/// The shapes the column's CHECK takes (tenant migration 3).
fn shaped(hash: &str) -> bool {
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
    };
    if hash.len() > 512 {
        return false;
    }
    if hash.starts_with("$argon2id$") {
        return true;
    }
    if let Some(rest) = hash.strip_prefix('!') {
        return rest.len() <= 64 && rest.bytes().all(|c| c.is_ascii_alphanumeric());
    }
    for prefix in ["pbkdf2_sha256$", "pbkdf2_sha1$"] {
        if let Some(rest) = hash.strip_prefix(prefix) {
            let parts: Vec<&str> = rest.split('$').collect();
            return parts.len() == 3
                && !parts[0].is_empty()
                && parts[0].bytes().all(|c| c.is_ascii_digit())
                && !parts[1].is_empty()
                && b64(parts[2]);
        }
    }
    if let Some(rest) = hash.strip_prefix("argon2$argon2") {
        return ["id$", "i$", "d$"].iter().any(|v| rest.starts_with(v));
    }
    if let Some(rest) = hash.strip_prefix("bcrypt_sha256$$2") {
        let rest = rest.strip_prefix(['a', 'b', 'x', 'y']).unwrap_or(rest);
        let mut parts = rest.splitn(3, '$');
        return parts.next() == Some("")
            && parts
                .next()
                .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()));
    }
    false
}

/// A username the tenant schema takes (1–150 of letters, digits and `._@+-`), made from `raw`.
fn username(raw: &str) -> String {
    let made: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    if made.is_empty() {
        "imported-user".to_owned()
    } else {
        made
    }
}

/// Builds the plan. `name` is the pharmacy's name when the source has no company row.
pub fn plan(snapshot: &Snapshot, name: &str, report: &mut Report) -> Plan {
    let now = Utc::now();
    let mut p = Plan::default();
    report.missing_tables = snapshot.missing_tables.clone();
    company(snapshot, name, &mut p, report);
    let mut users = Users::new(snapshot, report, now);
    suppliers(snapshot, &mut p, report);
    let batches = medicines(snapshot, &mut p, report);
    receipts(snapshot, &mut p, &mut users, &batches, report, now);
    let customers = customers(snapshot, &mut p, report, now);
    invoices(
        snapshot, &mut p, &mut users, &batches, &customers, report, now,
    );
    p.users = users.rows;
    // Placeholders for deleted medicine rows come with the sales: counted at the end.
    report.counts("users").written = p.users.len();
    report.counts("medicines").written = p.medicines.len();
    report.counts("batches").written = p.batches.len();
    p
}

fn company(snapshot: &Snapshot, name: &str, p: &mut Plan, report: &mut Report) {
    let rows = snapshot.company.as_deref().unwrap_or_default();
    report.counts("company").read = rows.len();
    let Some(c) = rows
        .iter()
        .filter(|c| !c.company_name.trim().is_empty())
        .min_by_key(|c| c.id)
    else {
        p.company.name = name.to_owned();
        report.counts("company").written = 1;
        return;
    };
    let t = "pharmacy_company";
    if rows.len() > 1 {
        report.anomaly(
            t,
            c.id,
            format!("{} company rows", rows.len()),
            "the first is used",
        );
        report.counts("company").skipped = rows.len() - 1;
    }
    p.company.name = bounded(&c.company_name, 200).unwrap_or_else(|| name.to_owned());
    p.company.address = c.address.as_deref().and_then(|a| bounded(a, 500));
    p.company.phone = c.phone_number.as_deref().and_then(|a| bounded(a, 50));
    p.company.email = email(c.email.as_deref()).unwrap_or_else(|e| {
        report.anomaly(t, c.id, e, "left out");
        None
    });
    p.company.pan = c.pan_number.as_deref().and_then(|a| bounded(a, 30));
    p.company.vat_no = c.vat_number.as_deref().and_then(|a| bounded(a, 30));
    report.counts("company").written = 1;
}

/// The users, and those made for names that sales and receipts give but no user has.
struct Users {
    rows: Vec<User>,
    /// Lower-cased username → id (Apotheca's usernames are unique in any case).
    by_name: HashMap<String, i64>,
    /// The username as the source wrote it (Django's are case-sensitive) → id: what sales and
    /// receipts name.
    by_source: HashMap<String, i64>,
    /// The users made for names no user had: id → username.
    made: HashMap<i64, String>,
    next_id: i64,
    now: DateTime<Utc>,
}

impl Users {
    fn new(snapshot: &Snapshot, report: &mut Report, now: DateTime<Utc>) -> Self {
        let t = "pharmacy_user";
        let mut users = Self {
            rows: Vec::new(),
            by_name: HashMap::new(),
            by_source: HashMap::new(),
            made: HashMap::new(),
            next_id: snapshot.users.iter().map(|u| u.id).max().unwrap_or(0) + 1,
            now,
        };
        report.counts("users").read = snapshot.users.len();
        let mut sorted: Vec<&app::User> = snapshot.users.iter().collect();
        sorted.sort_by_key(|u| u.id);
        for u in sorted {
            let mut name = username(&u.username);
            if name != u.username {
                report.anomaly(
                    t,
                    u.id,
                    format!(
                        "username {:?} has characters Apotheca does not take",
                        u.username
                    ),
                    format!("imported as {name:?}"),
                );
            }
            let unique = users.unique(name.clone());
            if unique != name {
                report.anomaly(
                    t,
                    u.id,
                    format!("username {name:?} is another user's too (Apotheca ignores case)"),
                    format!("imported as {unique:?}"),
                );
                name = unique;
            }
            let role = match u.role.trim() {
                "admin" => "admin",
                "pharmacist" => "pharmacist",
                other => {
                    if other != "staff" {
                        report.anomaly(
                            t,
                            u.id,
                            format!("role {other:?} is not one of Apotheca's"),
                            "imported as staff",
                        );
                    }
                    "staff"
                }
            };
            let password_hash = if !storable_hash(&u.password) {
                report.anomaly(
                    t,
                    u.id,
                    "the password hash is of a kind Apotheca does not verify",
                    "imported as unusable; the user must reset the password to log in",
                );
                "!".to_owned()
            } else {
                if u.password.starts_with('!') {
                    report.anomaly(
                        t,
                        u.id,
                        "the password is unusable (set so in Django)",
                        "imported; the user must reset the password to log in",
                    );
                }
                u.password.clone()
            };
            let email = email(Some(&u.email)).unwrap_or_else(|e| {
                report.anomaly(t, u.id, e, "left out");
                None
            });
            let full_name: String = format!("{} {}", u.first_name.trim(), u.last_name.trim())
                .trim()
                .chars()
                .take(200)
                .collect();
            users.by_name.insert(name.to_lowercase(), u.id);
            users.by_source.insert(u.username.clone(), u.id);
            users.rows.push(User {
                id: u.id,
                username: name,
                password_hash,
                full_name,
                email,
                role,
                active: u.is_active,
                created_at: u.date_joined.unwrap_or(now),
                last_login_at: u.last_login,
            });
        }
        users
    }

    /// `name`, or with a number appended when a user (in any case) has it already.
    fn unique(&self, name: String) -> String {
        if !self.by_name.contains_key(&name.to_lowercase()) {
            return name;
        }
        (2..)
            .map(|n| {
                let suffix = format!("-{n}");
                let keep = 150 - suffix.len();
                format!("{}{suffix}", name.chars().take(keep).collect::<String>())
            })
            .find(|n| !self.by_name.contains_key(&n.to_lowercase()))
            .expect("some suffix is free")
    }

    /// The user a sale or receipt names (`billed_by`, `received_by`, a username as text); one
    /// is made, inactive and without a usable password, when no user has that name.
    fn named(&mut self, raw: &str, table: &'static str, id: i64, report: &mut Report) -> i64 {
        let raw = raw.trim();
        let user = match self.by_source.get(raw) {
            Some(&user) if !self.made.contains_key(&user) => return user,
            Some(&user) => user,
            None => self.make(raw),
        };
        let problem = if raw.is_empty() {
            "names no user".to_owned()
        } else {
            format!("names user {raw:?}, who does not exist")
        };
        let username = &self.made[&user];
        report.anomaly(
            table,
            id,
            problem,
            format!("attributed to {username:?}, an inactive user made for it"),
        );
        user
    }

    /// An inactive user without a usable password for `raw`, a name no user has.
    fn make(&mut self, raw: &str) -> i64 {
        let wanted = self.unique(if raw.is_empty() {
            "imported-unknown".to_owned()
        } else {
            username(raw)
        });
        let made = self.next_id;
        self.next_id += 1;
        self.made.insert(made, wanted.clone());
        self.by_name.insert(wanted.to_lowercase(), made);
        self.by_source.insert(raw.to_owned(), made);
        self.rows.push(User {
            id: made,
            username: wanted,
            password_hash: "!".to_owned(),
            full_name: String::new(),
            email: None,
            role: "staff",
            active: false,
            created_at: self.now,
            last_login_at: None,
        });
        made
    }
}

fn suppliers(snapshot: &Snapshot, p: &mut Plan, report: &mut Report) {
    let t = "supplier_supplier";
    report.counts("suppliers").read = snapshot.suppliers.len();
    for s in &snapshot.suppliers {
        let name = bounded(&s.name, 200).unwrap_or_else(|| {
            report.anomaly(t, s.id, "no name", format!("named \"Supplier {}\"", s.id));
            format!("Supplier {}", s.id)
        });
        // `contact` is free text: a phone number, or a person.
        let contact = s.contact.trim();
        let digits = contact.chars().filter(char::is_ascii_digit).count();
        let phone_like = digits >= 6
            && contact
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let (phone, contact_person) = if phone_like {
            (bounded(contact, 50), None)
        } else {
            (None, bounded(contact, 200))
        };
        let email = email(s.email.as_deref()).unwrap_or_else(|e| {
            report.anomaly(t, s.id, e, "left out");
            None
        });
        p.suppliers.push(Supplier {
            id: s.id,
            name,
            contact_person,
            phone,
            email,
            address: bounded(&s.address, 500),
            pan: s.pan_number.as_deref().and_then(|x| bounded(x, 30)),
        });
    }
    report.counts("suppliers").written = p.suppliers.len();
}

/// Where each app medicine row (a batch) went: its batch id is its own id.
struct Batches {
    /// App medicine row id → its batch: (medicine id, batch number, expiry).
    by_row: HashMap<i64, (i64, String, NaiveDate)>,
    /// (lower name, lower brand, batch number) → app medicine row id.
    by_names: HashMap<(String, String, String), i64>,
}

fn medicines(snapshot: &Snapshot, p: &mut Plan, report: &mut Report) -> Batches {
    let t = "medicine_medicine";
    let supplier_ids: HashSet<i64> = p.suppliers.iter().map(|s| s.id).collect();
    let mut rows: Vec<&app::Medicine> = snapshot.medicines.iter().collect();
    rows.sort_by_key(|m| m.medicine_id);
    // What a receipt paid per unit for a batch, by its names (the latest receipt wins).
    let mut costs: HashMap<(String, String, String), Decimal> = HashMap::new();
    let mut items: Vec<&app::SupplierInvoiceItem> =
        snapshot.supplier_invoice_items.iter().collect();
    items.sort_by_key(|i| i.id);
    for i in items {
        if let Some(price) = i.price.and_then(|p| Money::parse("unit_cost", p).ok()) {
            costs.insert(
                key(&i.medicine_name, &i.brand_name, &i.batch_number),
                price.get(),
            );
        }
    }
    let mut medicine_of: HashMap<(String, String, &'static str), usize> = HashMap::new();
    let mut batch_nos: HashSet<(i64, String)> = HashSet::new();
    let mut out = Batches {
        by_row: HashMap::new(),
        by_names: HashMap::new(),
    };
    let mut without_cost = 0;
    report.counts("medicines").read = rows.len();
    report.counts("batches").read = rows.len();
    for m in rows {
        let form = dosage_form(&m.category).unwrap_or_else(|| {
            report.anomaly(
                t,
                m.medicine_id,
                format!("category {:?} is not one Apotheca knows", m.category),
                "imported as dosage form \"other\"",
            );
            "other"
        });
        let name = bounded(&m.name, 200).unwrap_or_else(|| {
            report.anomaly(
                t,
                m.medicine_id,
                "no name",
                format!("named \"Medicine {}\"", m.medicine_id),
            );
            format!("Medicine {}", m.medicine_id)
        });
        let price = match m.price.map(|x| Money::parse("price", x)) {
            Some(Ok(x)) => {
                if x.get().is_zero() {
                    report.anomaly(t, m.medicine_id, "sale price 0", "kept");
                }
                x.get()
            }
            _ => {
                report.anomaly(
                    t,
                    m.medicine_id,
                    format!("sale price {:?} is not an amount Apotheca keeps", m.price),
                    "imported as 0",
                );
                Decimal::ZERO
            }
        };
        let group = (
            name.to_lowercase(),
            m.brand_name.trim().to_lowercase(),
            form,
        );
        let index = match medicine_of.get(&group) {
            Some(&i) => {
                // A later batch of the same medicine: its price is the latest.
                p.medicines[i].sale_price = price;
                report.counts("medicines").merged += 1;
                i
            }
            None => {
                p.medicines.push(Medicine {
                    id: p.medicines.len() as i64 + 1,
                    name: name.clone(),
                    brand: bounded(&m.brand_name, 200),
                    dosage_form: form,
                    sale_price: price,
                    active: true,
                });
                medicine_of.insert(group, p.medicines.len() - 1);
                p.medicines.len() - 1
            }
        };
        let medicine_id = p.medicines[index].id;
        let written = m.batch_number.as_deref().map(str::trim).unwrap_or("");
        let batch_no = Numbering {
            what: "batch number",
            twice: "appears twice for this medicine",
            table: t,
        }
        .unique(written, m.medicine_id, medicine_id, &mut batch_nos, report);
        let expires_on = m.exp_date.unwrap_or_else(|| {
            report.anomaly(
                t,
                m.medicine_id,
                "no expiry date",
                "recorded as expired (1970-01-01), so it is never sold",
            );
            no_expiry()
        });
        let manufactured_on = match m.mfg_date {
            Some(made) if made >= expires_on => {
                report.anomaly(
                    t,
                    m.medicine_id,
                    format!("made {made}, not before its expiry {expires_on}"),
                    "manufacture date left out",
                );
                None
            }
            other => other,
        };
        let quantity = i32::try_from(m.stock_qty.max(0)).unwrap_or(i32::MAX);
        if i64::from(quantity) != m.stock_qty {
            report.anomaly(
                t,
                m.medicine_id,
                format!("stock {} is not a count Apotheca keeps", m.stock_qty),
                format!("imported as {quantity}"),
            );
        }
        if quantity > 0 && expires_on <= Utc::now().date_naive() {
            report.anomaly(
                t,
                m.medicine_id,
                format!("expired on {expires_on} with {quantity} units on hand"),
                "imported as it is: expired stock is never sold",
            );
        }
        let names = key(&m.name, &m.brand_name, written);
        let unit_cost = costs.get(&names).copied().unwrap_or_else(|| {
            without_cost += 1;
            Decimal::ZERO
        });
        let supplier_id = m.supplier_id.filter(|s| supplier_ids.contains(s));
        if m.supplier_id.is_some() && supplier_id.is_none() {
            report.anomaly(
                t,
                m.medicine_id,
                format!(
                    "supplier {} does not exist",
                    m.supplier_id.unwrap_or_default()
                ),
                "batch imported without a supplier",
            );
        }
        out.by_row
            .insert(m.medicine_id, (medicine_id, batch_no.clone(), expires_on));
        out.by_names.entry(names).or_insert(m.medicine_id);
        p.batches.push(Batch {
            id: m.medicine_id,
            medicine_id,
            batch_no,
            manufactured_on,
            expires_on,
            quantity,
            unit_cost,
            supplier_id,
        });
    }
    if without_cost > 0 {
        report.anomaly(
            t,
            0,
            format!(
                "{without_cost} batches have no unit cost in the source (no receipt names them)"
            ),
            "unit cost 0",
        );
    }
    out
}

/// A batch's names as matched between tables: lower-cased name and brand, the batch number.
fn key(name: &str, brand: &str, batch: &str) -> (String, String, String) {
    (
        name.trim().to_lowercase(),
        brand.trim().to_lowercase(),
        batch.trim().to_owned(),
    )
}

fn receipts(
    snapshot: &Snapshot,
    p: &mut Plan,
    users: &mut Users,
    batches: &Batches,
    report: &mut Report,
    now: DateTime<Utc>,
) {
    let t = "supplier_supplierinvoice";
    let supplier_ids: HashSet<i64> = p.suppliers.iter().map(|s| s.id).collect();
    let mut numbers: HashSet<(i64, String)> = HashSet::new();
    let mut kept: HashSet<i64> = HashSet::new();
    report.counts("receipts").read = snapshot.supplier_invoices.len();
    let mut rows: Vec<&app::SupplierInvoice> = snapshot.supplier_invoices.iter().collect();
    rows.sort_by_key(|r| r.id);
    for r in rows {
        let Some(supplier_id) = r.supplier_id.filter(|s| supplier_ids.contains(s)) else {
            report.anomaly(
                t,
                r.id,
                "its supplier does not exist",
                "not imported (nor its lines)",
            );
            report.counts("receipts").skipped += 1;
            continue;
        };
        let Some(invoice_date) = r.date.or(r.created_at.map(|c| c.date_naive())) else {
            report.anomaly(t, r.id, "no date", "not imported (nor its lines)");
            report.counts("receipts").skipped += 1;
            continue;
        };
        let invoice_no = Numbering {
            what: "invoice number",
            twice: "is another receipt's of this supplier too",
            table: t,
        }
        .unique(&r.invoice_number, r.id, supplier_id, &mut numbers, report);
        let received_by = users.named(r.received_by.as_deref().unwrap_or(""), t, r.id, report);
        let total = r
            .total_amount
            .and_then(|x| Money::parse("total", x).ok())
            .map_or_else(
                || {
                    report.anomaly(
                        t,
                        r.id,
                        format!("total {:?} is not an amount", r.total_amount),
                        "imported as 0",
                    );
                    Decimal::ZERO
                },
                Money::get,
            );
        kept.insert(r.id);
        p.receipts.push(Receipt {
            id: r.id,
            supplier_id,
            invoice_no,
            invoice_date,
            received_by,
            total,
            created_at: r.created_at.unwrap_or(now),
        });
    }
    report.counts("receipts").written = p.receipts.len();
    let t = "supplier_supplierinvoiceitem";
    report.counts("receipt lines").read = snapshot.supplier_invoice_items.len();
    let mut items: Vec<&app::SupplierInvoiceItem> =
        snapshot.supplier_invoice_items.iter().collect();
    items.sort_by_key(|i| i.id);
    for i in items {
        if !kept.contains(&i.invoice_id) {
            report.counts("receipt lines").skipped += 1;
            continue;
        }
        let names = key(&i.medicine_name, &i.brand_name, &i.batch_number);
        let Some(&row) = batches.by_names.get(&names) else {
            report.anomaly(
                t,
                i.id,
                format!(
                    "names batch {:?} of {:?}, which the pharmacy does not have",
                    i.batch_number, i.medicine_name
                ),
                "not imported (its stock is in no batch)",
            );
            report.counts("receipt lines").skipped += 1;
            continue;
        };
        let quantity = match i32::try_from(i.quantity) {
            Ok(q) if q > 0 => q,
            _ => {
                report.anomaly(t, i.id, format!("quantity {}", i.quantity), "not imported");
                report.counts("receipt lines").skipped += 1;
                continue;
            }
        };
        let unit_cost = match i.price.map(|x| Money::parse("price", x)) {
            Some(Ok(cost)) => cost.get(),
            _ => {
                report.anomaly(
                    t,
                    i.id,
                    format!("unit cost {:?} is not an amount Apotheca keeps", i.price),
                    "imported as 0",
                );
                Decimal::ZERO
            }
        };
        if Money::checked(unit_cost * Decimal::from(quantity)).is_none() {
            report.anomaly(
                t,
                i.id,
                format!("{quantity} × {unit_cost:.2} is more than an amount Apotheca keeps"),
                "not imported",
            );
            report.counts("receipt lines").skipped += 1;
            continue;
        }
        let (medicine_id, batch_no, batch_expiry) = batches.by_row[&row].clone();
        let expires_on = i.exp_date.unwrap_or(batch_expiry);
        let manufactured_on = match i.mfg_date {
            Some(made) if made >= expires_on => {
                report.anomaly(
                    t,
                    i.id,
                    format!("made {made}, not before its expiry {expires_on}"),
                    "manufacture date left out",
                );
                None
            }
            other => other,
        };
        p.receipt_lines.push(ReceiptLine {
            id: i.id,
            receipt_id: i.invoice_id,
            medicine_id,
            batch_id: row,
            batch_no,
            manufactured_on,
            expires_on,
            quantity,
            unit_cost,
            line_total: unit_cost * Decimal::from(quantity),
        });
    }
    report.counts("receipt lines").written = p.receipt_lines.len();
}

fn customers(
    snapshot: &Snapshot,
    p: &mut Plan,
    report: &mut Report,
    now: DateTime<Utc>,
) -> HashMap<i64, String> {
    let t = "billing_customer";
    let mut phones: HashSet<String> = HashSet::new();
    let mut names = HashMap::new();
    report.counts("customers").read = snapshot.customers.len();
    let mut rows: Vec<&app::Customer> = snapshot.customers.iter().collect();
    rows.sort_by_key(|c| c.customer_id);
    for c in rows {
        let name = bounded(&c.name, 200).unwrap_or_else(|| {
            report.anomaly(
                t,
                c.customer_id,
                "no name",
                format!("named \"Customer {}\"", c.customer_id),
            );
            format!("Customer {}", c.customer_id)
        });
        let phone = match values::opt_phone("phone", Some(&c.phone_number)) {
            Ok(Some(phone)) if !phones.insert(phone.clone()) => {
                report.anomaly(
                    t,
                    c.customer_id,
                    format!("phone {phone} is another customer's too"),
                    "left out for this one",
                );
                None
            }
            Ok(phone) => phone,
            Err(_) => {
                report.anomaly(
                    t,
                    c.customer_id,
                    format!("phone {:?} is not a phone number", c.phone_number),
                    "left out",
                );
                None
            }
        };
        let email = email(c.email.as_deref()).unwrap_or_else(|e| {
            report.anomaly(t, c.customer_id, e, "left out");
            None
        });
        names.insert(c.customer_id, name.clone());
        p.customers.push(Customer {
            id: c.customer_id,
            name,
            phone,
            email,
            address: bounded(&c.address, 500),
            created_at: c.created_at.unwrap_or(now),
        });
    }
    report.counts("customers").written = p.customers.len();
    names
}

#[allow(clippy::too_many_arguments)]
fn invoices(
    snapshot: &Snapshot,
    p: &mut Plan,
    users: &mut Users,
    batches: &Batches,
    customers: &HashMap<i64, String>,
    report: &mut Report,
    now: DateTime<Utc>,
) {
    let t = "billing_invoice";
    let mut items: HashMap<i64, Vec<&app::InvoiceItem>> = HashMap::new();
    for i in &snapshot.invoice_items {
        items.entry(i.invoice_id).or_default().push(i);
    }
    let mut placeholders: HashMap<i64, i64> = HashMap::new();
    report.counts("invoices").read = snapshot.invoices.len();
    report.counts("invoice lines").read = snapshot.invoice_items.len();
    let mut rows: Vec<&app::Invoice> = snapshot.invoices.iter().collect();
    rows.sort_by_key(|i| i.invoice_id);
    // A recorded figure is kept as it is, if a numeric(14,2) column can hold it.
    let amount = |raw: Option<Decimal>, what: &str, id: i64, report: &mut Report| match raw {
        Some(x) if fits(x) => x.round_dp(2),
        Some(x) => {
            report.anomaly(
                t,
                id,
                format!("{what} {x} does not fit an amount"),
                format!("{what} imported as 0"),
            );
            Decimal::ZERO
        }
        None => {
            report.anomaly(t, id, format!("no {what}"), format!("{what} imported as 0"));
            Decimal::ZERO
        }
    };
    for inv in rows {
        let id = inv.invoice_id;
        let created_at = inv.created_at.unwrap_or_else(|| {
            report.anomaly(t, id, "no date", "dated the moment of the import");
            now
        });
        let customer_id = match inv.customer_id {
            Some(c) if customers.contains_key(&c) => Some(c),
            Some(c) => {
                report.anomaly(
                    t,
                    id,
                    format!("customer {c} does not exist"),
                    "imported without a customer; the name on the invoice is kept",
                );
                None
            }
            None => None,
        };
        let mut customer_name = bounded(&inv.customer_name, 200);
        if customer_name.is_none() {
            customer_name = customer_id.and_then(|c| customers.get(&c).cloned());
        }
        let payment_method = match inv.payment_method.trim() {
            "cash" => "cash",
            "card" => "card",
            "esewa" | "wallet" => "wallet",
            other => {
                report.anomaly(
                    t,
                    id,
                    format!("payment method {other:?}"),
                    "imported as cash",
                );
                "cash"
            }
        };
        let billed_by = users.named(&inv.billed_by, t, id, report);
        let subtotal = amount(inv.subtotal, "subtotal", id, report);
        let discount = amount(inv.discount, "discount", id, report);
        let total = amount(inv.total, "total", id, report);
        let amount_received = match inv.amount_received {
            Some(x) => amount(Some(x), "amount received", id, report),
            None if payment_method == "cash" => {
                report.anomaly(
                    t,
                    id,
                    "a cash sale with no amount received",
                    "recorded as received: the total",
                );
                total
            }
            None => total,
        };
        let change_due = match inv.return_amount {
            Some(x) => amount(Some(x), "change", id, report),
            None => Decimal::ZERO,
        };
        if total != subtotal - discount {
            report.anomaly(
                t,
                id,
                format!("total {total:.2} is not subtotal {subtotal:.2} − discount {discount:.2}"),
                "the recorded figures are kept; the invoice is marked imported",
            );
        }
        let mut lines_total = Decimal::ZERO;
        let mut sorted = items.remove(&id).unwrap_or_default();
        sorted.sort_by_key(|i| i.id);
        let mut line_no = 0;
        for item in sorted {
            let lt = "billing_invoiceitem";
            let quantity = match i32::try_from(item.quantity) {
                Ok(q) if q > 0 => q,
                _ => {
                    report.anomaly(
                        lt,
                        item.id,
                        format!("quantity {}", item.quantity),
                        "not imported",
                    );
                    report.counts("invoice lines").skipped += 1;
                    continue;
                }
            };
            let line_total = item.total.map_or_else(
                || item.price.unwrap_or_default() * Decimal::from(quantity),
                |x| x.round_dp(2),
            );
            if !fits(line_total) || item.price.is_some_and(|x| !fits(x)) {
                report.anomaly(
                    lt,
                    item.id,
                    "an amount that does not fit numeric(14,2)",
                    "not imported",
                );
                report.counts("invoice lines").skipped += 1;
                continue;
            }
            // The column takes a price of 0 or more (the line's recorded total is kept).
            let unit_price = match item.price.map(|x| (x, Money::checked(x))) {
                Some((_, Some(price))) => price.get(),
                price => {
                    report.anomaly(
                        lt,
                        item.id,
                        format!("price {:?} is not one Apotheca keeps", price.map(|p| p.0)),
                        "imported as 0",
                    );
                    Decimal::ZERO
                }
            };
            if line_total != unit_price * Decimal::from(quantity) {
                report.anomaly(
                    lt,
                    item.id,
                    format!("line total {line_total:.2} is not {quantity} × {unit_price:.2}"),
                    "kept as recorded",
                );
            }
            lines_total += line_total;
            let (medicine_id, batch_id) = match batches.by_row.get(&item.medicine_id) {
                Some((m, ..)) => (*m, item.medicine_id),
                None => {
                    let m = *placeholders.entry(item.medicine_id).or_insert_with(|| {
                        report.anomaly(
                            lt,
                            item.id,
                            format!("medicine row {} does not exist", item.medicine_id),
                            format!(
                                "sold as \"Medicine #{} (deleted)\", an inactive placeholder with an empty batch",
                                item.medicine_id
                            ),
                        );
                        let mid = p.medicines.len() as i64 + 1;
                        p.medicines.push(Medicine {
                            id: mid,
                            name: format!("Medicine #{} (deleted)", item.medicine_id),
                            brand: None,
                            dosage_form: "other",
                            sale_price: unit_price,
                            active: false,
                        });
                        p.batches.push(Batch {
                            id: item.medicine_id,
                            medicine_id: mid,
                            batch_no: format!("DELETED-{}", item.medicine_id),
                            manufactured_on: None,
                            expires_on: created_at.date_naive(),
                            quantity: 0,
                            unit_cost: Decimal::ZERO,
                            supplier_id: None,
                        });
                        mid
                    });
                    (m, item.medicine_id)
                }
            };
            // Medicines are numbered from 1 in the order they were planned.
            let medicine_name = p.medicines[(medicine_id - 1) as usize].name.clone();
            line_no += 1;
            p.lines.push(Line {
                id: item.id,
                invoice_id: id,
                line_no,
                medicine_id,
                medicine_name,
                quantity,
                unit_price,
                line_total,
                batch_id,
            });
        }
        if line_no > 0 && lines_total != subtotal {
            report.anomaly(
                t,
                id,
                format!("subtotal {subtotal:.2} is not the lines' {lines_total:.2}"),
                "the recorded figures are kept; the invoice is marked imported",
            );
        }
        p.last_number = p.last_number.max(id);
        p.invoices.push(Invoice {
            id,
            number: id,
            created_at,
            customer_id,
            customer_name,
            customer_phone: bounded(&inv.phone_number, 50),
            billed_by,
            payment_method,
            subtotal,
            discount,
            total,
            amount_received,
            change_due,
        });
    }
    // Lines of invoices that do not exist.
    for (invoice, orphans) in items {
        for item in orphans {
            report.anomaly(
                "billing_invoiceitem",
                item.id,
                format!("invoice {invoice} does not exist"),
                "not imported",
            );
            report.counts("invoice lines").skipped += 1;
        }
    }
    report.counts("invoices").written = p.invoices.len();
    report.counts("invoice lines").written = p.lines.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(id: i64, total: &str) -> app::Invoice {
        app::Invoice {
            invoice_id: id,
            customer_id: None,
            customer_name: "Walk-in".into(),
            phone_number: String::new(),
            payment_method: "card".into(),
            amount_received: None,
            return_amount: None,
            subtotal: app::decimal_from_text(total),
            discount: Some(Decimal::ZERO),
            total: app::decimal_from_text(total),
            billed_by: String::new(),
            created_at: None,
        }
    }

    fn item(id: i64, invoice_id: i64, quantity: i64, price: &str) -> app::InvoiceItem {
        app::InvoiceItem {
            id,
            invoice_id,
            medicine_id: 1,
            quantity,
            price: app::decimal_from_text(price),
            total: None,
        }
    }

    #[test]
    fn values_no_column_holds_are_reported_and_left_out() {
        let snapshot = Snapshot {
            invoices: vec![invoice(1, "10"), invoice(2, "1e20")],
            invoice_items: vec![
                item(1, 1, 0, "1"),
                item(2, 1, 3_000_000_000, "1"),
                item(3, 1, 2, "1e20"),
                item(4, 1, 2, "5"),
                item(5, 9, 1, "1"),
                item(6, 1, 1, "-5"),
            ],
            ..Snapshot::default()
        };
        let mut report = Report::default();
        let plan = plan(&snapshot, "P", &mut report);
        let has = |table: &str, id: i64, problem: &str| {
            report
                .anomalies
                .iter()
                .any(|a| a.table == table && a.id == id && a.problem.contains(problem))
        };
        assert!(has("billing_invoiceitem", 1, "quantity 0"));
        assert!(has("billing_invoiceitem", 2, "quantity 3000000000"));
        assert!(has("billing_invoiceitem", 3, "does not fit"));
        assert!(has("billing_invoiceitem", 5, "invoice 9 does not exist"));
        assert!(has("billing_invoice", 2, "does not fit"));
        assert_eq!(report.counts["invoice lines"].skipped, 4);
        assert!(has("billing_invoiceitem", 6, "price Some(-5)"));
        assert_eq!(
            plan.lines.iter().find(|l| l.id == 6).map(|l| l.unit_price),
            Some(Decimal::ZERO)
        );
        assert_eq!(plan.lines.len(), 2);
        assert_eq!(plan.invoices[1].total, Decimal::ZERO);
        // The one line kept sold from a medicine row that does not exist: a placeholder.
        assert_eq!(plan.medicines[0].name, "Medicine #1 (deleted)");
        assert!(!plan.medicines[0].active);
    }

    #[test]
    fn hashes_the_schema_takes() {
        // Apotheca's own, then Django's (made by Django 5.2).
        let own = accounts::hash_password("a password");
        for ok in [
            own.as_str(),
            "pbkdf2_sha256$1000000$nvzyuUFlNYuD44MfpIWBa4$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=",
            "argon2$argon2id$v=19$m=102400,t=2,p=8$cXBxN2g1NkIyZ2lOeUluN1NONGJwQQ$tBjJBQUWeo0Y2OfRsObcufAzop4UVcwtyB8CysS/auw",
            "bcrypt_sha256$$2b$12$Udq89Gp5Hx9Ah/VzhbZC3u1XHQerf/GdhiZcK8Xgu6IsyZqkEO9RO",
            "!dK36PjY2nrDe3BXqpUtKRILnDT4mEhNolzcy1wp2",
        ] {
            assert!(storable_hash(ok), "{ok}");
        }
        for bad in [
            "md5$x$y",
            "pbkdf2_sha256$x$y$z",
            "sha1$$abc",
            "!not unusable",
            "",
            // Shaped as the column takes them, but no login could verify them.
            "pbkdf2_sha256$0$salt$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=",
            "pbkdf2_sha256$1000$salt$xebWIfy9vJJcFM9XA9ff0ypLj9I=",
            // Not a shape the column takes.
            "bcrypt_sha256$$2ab$12$Udq89Gp5Hx9Ah/VzhbZC3u1XHQerf/GdhiZcK8Xgu6IsyZqkEO9RO",
        ] {
            assert!(!storable_hash(bad), "{bad}");
        }
        assert_eq!(
            bounded(&format!("{}   x", "a".repeat(9)), 10).as_deref(),
            Some("aaaaaaaaa")
        );
        assert_eq!(dosage_form("Tablet/Capsule"), Some("tablet"));
        assert_eq!(dosage_form("dose form"), Some("other"));
        assert_eq!(dosage_form("lozenge"), None);
    }
}

#[cfg(test)]
mod users_tests {
    use super::*;

    fn user(id: i64, username: &str, role: &str) -> app::User {
        app::User {
            id,
            username: username.into(),
            password: "pbkdf2_sha256$1000$salt$IFI+M5c1yTShotbBl2lC6I1WS6g18SN0zjeBcXRqV7o=".into(),
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            is_active: true,
            role: role.into(),
            date_joined: None,
            last_login: None,
        }
    }

    #[test]
    fn usernames_apotheca_takes_and_unique_in_any_case() {
        let snapshot = Snapshot {
            users: vec![
                user(1, "admin", "admin"),
                user(2, "Admin", "pharmacist"),
                user(3, "ram karki", "pharmacist"),
                user(4, "", "staff"),
            ],
            ..Snapshot::default()
        };
        let mut report = Report::default();
        let p = plan(&snapshot, "P", &mut report);
        // Django's usernames are case-sensitive: a sale billed by "Admin" is Admin's.
        let mut users = Users::new(&snapshot, &mut report, Utc::now());
        assert_eq!(users.named("Admin", "billing_invoice", 1, &mut report), 2);
        assert_eq!(
            users.named("ram karki", "billing_invoice", 1, &mut report),
            3
        );
        let ghost = users.named("ADMIN", "billing_invoice", 2, &mut report);
        assert!(
            ghost > 4 && users.made[&ghost] == "ADMIN-3",
            "{:?}",
            users.made
        );
        let names: Vec<&str> = p.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["admin", "Admin-2", "ram_karki", "imported-user"]);
        assert!(report
            .anomalies
            .iter()
            .any(|a| a.id == 3 && a.action.contains("\"ram_karki\"")));
        assert!(report
            .anomalies
            .iter()
            .any(|a| a.id == 2 && a.action.contains("\"Admin-2\"")));
    }
}
