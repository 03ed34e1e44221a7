//! Sales (`docs/domain.md`, rules 1–6 and 10–12): what the counter sends, its validation, and the
//! idempotency fingerprint. The posting itself — first-expiry-first-out over unexpired
//! batches, totals computed here (anything a client sends is ignored), cash change, gap-free
//! invoice numbers, the ledger, at most one invoice per idempotency key — is [`batch`], which
//! posts any number of sales in one transaction.

pub mod batch;
mod write;

use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use batch::{post_batch, Failed, Frame, Posted};
pub use write::Writes;

use crate::values::{self, Money, Quantity};
use crate::{Error, Result};

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
    discount: Money,
    amount_received: Option<Money>,
    lines: Vec<(i64, Quantity)>,
}

fn validate(req: &SaleRequest) -> Result<Valid> {
    if req.lines.is_empty() {
        return Err(Error::invalid("lines", "a sale needs at least one line"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(Error::invalid(
            "lines",
            format!("a sale may have at most {MAX_LINES} lines"),
        ));
    }
    let mut lines: Vec<(i64, i64)> = Vec::new();
    for (i, line) in req.lines.iter().enumerate() {
        Quantity::parse(&format!("lines[{i}].quantity"), line.quantity)?;
        match lines.iter_mut().find(|(m, _)| *m == line.medicine_id) {
            Some((_, q)) => *q += line.quantity,
            None => lines.push((line.medicine_id, line.quantity)),
        }
    }
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, (m, q))| Ok((m, Quantity::parse(&format!("lines[{i}].quantity"), q)?)))
        .collect::<Result<Vec<_>>>()?;
    let amount_received = req
        .amount_received
        .map(|a| Money::parse("amount_received", a))
        .transpose()?;
    Ok(Valid {
        customer_id: req.customer_id,
        customer_name: values::opt_text("customer_name", req.customer_name.as_deref(), 200)?,
        customer_phone: values::opt_phone("customer_phone", req.customer_phone.as_deref())?,
        payment: req.payment_method,
        discount: Money::parse("discount", req.discount)?,
        amount_received,
        lines,
    })
}

/// A validated sale waiting to be posted, with who sells it and its idempotency key.
#[derive(Debug, Clone)]
pub struct Pending {
    user_id: i64,
    username: String,
    sale: Valid,
    key: Option<String>,
    fingerprint: Vec<u8>,
}

impl Pending {
    /// Validates the request (422 on bad input, before anything is locked or written).
    pub fn new(user_id: i64, username: &str, req: &SaleRequest, key: Option<&str>) -> Result<Self> {
        let sale = validate(req)?;
        let key = key
            .map(|k| values::text("Idempotency-Key", k, 200))
            .transpose()?;
        let fingerprint = request_hash(&sale, user_id);
        Ok(Self {
            user_id,
            username: username.to_owned(),
            sale,
            key,
            fingerprint,
        })
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn fingerprint(&self) -> &[u8] {
        &self.fingerprint
    }
}

/// Posts one sale in the caller's transaction (`apotheca seed-data`); returns the invoice id
/// and whether it was made now (false: the earlier sale with the same key). Written one
/// statement per table ([`Writes::PerTable`]), which works on plain PostgreSQL and on Citus
/// alike (a seed is not worth the round trip the other saves).
pub async fn post(
    tx: &Transaction<'_>,
    user_id: i64,
    req: &SaleRequest,
    key: Option<&str>,
) -> Result<(i64, bool)> {
    let pending = Pending::new(user_id, "", req, key)?;
    let posted = post_batch(
        tx,
        std::slice::from_ref(&pending),
        Frame::Caller,
        Writes::PerTable,
    )
    .await
    .map_err(|(Failed::Before(e) | Failed::Commit(e))| e)?
    .pop()
    .ok_or_else(Error::internal)??;
    Ok(match posted {
        Posted::New(invoice) => (invoice.id, true),
        Posted::Earlier(id) => (id, false),
    })
}

fn duplicate_key() -> Error {
    Error::conflict(
        "idempotency_race",
        "a sale with this Idempotency-Key was posted at the same moment",
    )
}

/// The same key sent with a different request: a client bug, never answered with another sale.
fn key_reused() -> Error {
    Error::invalid(
        "Idempotency-Key",
        "this Idempotency-Key was already used for a different sale",
    )
}

/// Whether an error is the concurrent-duplicate-key case of [`post_batch`].
pub fn is_duplicate_key(e: &Error) -> bool {
    e.conflict_code() == Some("idempotency_race")
}

/// The invoice made earlier with `key`, if any; the same key with a different request is
/// refused (422), so a client bug never silently returns someone else's sale.
pub async fn find_by_key(
    tx: &Transaction<'_>,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<i64>> {
    let stmt = tx
        .prepare_cached("SELECT id, request_hash FROM invoices WHERE idempotency_key = $1")
        .await?;
    match tx.query_opt(&stmt, &[&key]).await? {
        None => Ok(None),
        Some(row) if row.get::<_, Vec<u8>>(1) == fingerprint => Ok(Some(row.get(0))),
        Some(_) => Err(key_reused()),
    }
}

/// SHA-256 of the validated request, to tell a retry from a different sale reusing a key.
fn request_hash(sale: &Valid, user_id: i64) -> Vec<u8> {
    // The user is part of it: another cashier reusing a key gets a refusal, not this sale.
    let canonical = serde_json::to_vec(&(user_id, sale)).unwrap_or_default();
    Sha256::digest(&canonical).to_vec()
}
