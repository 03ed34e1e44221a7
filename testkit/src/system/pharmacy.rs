//! A pharmacy as its clients use it through the proxy: the admin made with the tenant, an API
//! token made through the API, medicines and stock received through a supplier invoice, sales
//! posted with an `Idempotency-Key` by continuous clients ([`Sales`]), and the audit of
//! The rules 1, 2 and 11 of `docs/domain.md` read back from the tenant's schema ([`audit`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apotheca_common::names::quote_ident;
use hyper::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::daemon::PATIENCE;
use super::proxy::{request, Reply};
use super::Apotheca;

pub const ADMIN_PASSWORD: &str = "a resilient pharmacy";

impl Apotheca {
    /// `create-tenant` with an `admin` user whose password is [`ADMIN_PASSWORD`].
    pub async fn create_pharmacy(&self, schema: &str) {
        // One file per tenant: pharmacies are created concurrently.
        let file = self.dir.path().join(format!("admin-password-{schema}"));
        std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).unwrap();
        let file = file.to_str().unwrap();
        self.create_with(
            schema,
            &["--admin-user", "admin", "--admin-password-file", file],
        )
        .await;
    }
}

/// A pharmacy open for business behind the proxy on `port`.
#[derive(Clone, Debug)]
pub struct Shop {
    pub port: u16,
    pub schema: String,
    pub host: String,
    pub token: String,
    pub medicines: Vec<i64>,
}

/// A JSON call through the proxy, expecting `want`; the answer's JSON.
async fn call(
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
    want: u16,
) -> (Reply, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let r = request(port, method, path, &all, &body.to_string())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status, want, "{path}: {}", r.text());
    let json = r.json();
    (r, json)
}

impl Shop {
    /// Logs in as the admin of `schema` (made by [`Apotheca::create_pharmacy`]) through the
    /// proxy on `port`, makes an API token, a supplier and `medicines` medicines, and receives
    /// `stock` units of each (one batch each, expiring in a year).
    pub async fn open(port: u16, schema: &str, medicines: usize, stock: i64) -> Shop {
        let host = format!("{}.localhost", schema.replace('_', "-"));
        let h = [("host", host.as_str())];
        let (r, body) = call(
            port,
            Method::POST,
            "/api/v1/auth/login",
            &h,
            &json!({"username": "admin", "password": ADMIN_PASSWORD}),
            200,
        )
        .await;
        let cookie = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let csrf = body["csrf_token"]
            .as_str()
            .expect("a CSRF token")
            .to_owned();
        let (_, body) = call(
            port,
            Method::POST,
            "/api/v1/tokens",
            &[
                ("host", &host),
                ("cookie", &cookie),
                ("x-csrf-token", &csrf),
            ],
            &json!({"name": "resilience"}),
            201,
        )
        .await;
        let token = body["token"].as_str().expect("an API token").to_owned();
        let mut shop = Shop {
            port,
            schema: schema.to_owned(),
            host,
            token,
            medicines: vec![],
        };
        let supplier = shop
            .json(
                Method::POST,
                "/api/v1/suppliers",
                &json!({"name": "Resilient Supplies"}),
                201,
            )
            .await["id"]
            .as_i64()
            .expect("a supplier id");
        for i in 0..medicines {
            let m = shop
                .json(
                    Method::POST,
                    "/api/v1/medicines",
                    &json!({"name": format!("Paracetamol {i}"), "dosage_form": "tablet",
                            "sale_price": "2.50"}),
                    201,
                )
                .await["id"]
                .as_i64()
                .expect("a medicine id");
            shop.medicines.push(m);
        }
        let today = chrono::Utc::now().date_naive();
        let lines: Vec<Value> = shop
            .medicines
            .iter()
            .map(|m| {
                json!({"medicine_id": m, "batch_no": format!("B-{m}"),
                       "expires_on": today + chrono::Days::new(365), "quantity": stock,
                       "unit_cost": "1.00"})
            })
            .collect();
        shop.json(
            Method::POST,
            "/api/v1/supplier-invoices",
            &json!({"supplier_id": supplier, "invoice_no": "R-1", "invoice_date": today,
                    "lines": lines}),
            201,
        )
        .await;
        shop
    }

    /// The bearer token and the host.
    pub fn headers(&self) -> [(&str, String); 3] {
        [
            ("host", self.host.clone()),
            ("authorization", format!("Bearer {}", self.token)),
            ("content-type", "application/json".to_owned()),
        ]
    }

    /// A call as the admin, expecting `want`; its JSON.
    pub async fn json(&self, method: Method, path: &str, body: &Value, want: u16) -> Value {
        let r = self.send(method, path, &[], &body.to_string()).await;
        let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, want, "{path}: {}", r.text());
        r.json()
    }

    /// A request as the admin with these extra headers; no answer in time is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let own = self.headers();
        let mut headers: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.extend_from_slice(extra);
        request(self.port, method, path, &headers, body).await
    }

    /// Posts a sale of these (medicine, quantity) lines with this idempotency key.
    pub async fn sell(&self, key: &str, lines: &[(i64, i64)]) -> Result<Reply, String> {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(m, q)| json!({"medicine_id": m, "quantity": q}))
            .collect();
        let body = json!({"payment_method": "card", "lines": lines});
        self.send(
            Method::POST,
            "/api/v1/sales",
            &[("idempotency-key", key)],
            &body.to_string(),
        )
        .await
    }
}

/// One sale a client tried: when, with which key, what it asked for and what came back.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: String,
    /// (medicine, quantity)
    pub lines: Vec<(i64, i64)>,
    pub started: Instant,
    pub ended: Instant,
    /// The status, or why there was no answer.
    pub outcome: Result<u16, String>,
    /// The invoice's id on 200/201.
    pub invoice: Option<i64>,
}

impl Attempt {
    pub fn posted(&self) -> bool {
        matches!(self.outcome, Ok(200 | 201))
    }
}

/// Continuous clients, each posting one sale after another (one unit of a random medicine, a
/// fresh idempotency key each) until stopped.
pub struct Sales {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

static KEYS: AtomicU64 = AtomicU64::new(0);

/// A key no other sale of this test process has.
pub fn fresh_key(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        KEYS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Sales {
    pub fn start(shop: &Shop, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, attempts, shop) = (stop.clone(), attempts.clone(), shop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let medicine = shop.medicines[rand::random_range(0..shop.medicines.len())];
                        let attempt = attempt(&shop, fresh_key("load"), vec![(medicine, 1)]).await;
                        attempts.lock().unwrap().push(attempt);
                    }
                })
            })
            .collect();
        Self {
            stop,
            attempts,
            tasks,
        }
    }

    /// How many sales were posted so far.
    pub fn posted(&self) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.posted())
            .count()
    }

    /// How many sales were tried so far, answered or not.
    pub fn tried(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }

    /// Waits until `n` more sales failed (not posted: another status, or no answer), at most
    /// [`PATIENCE`].
    pub async fn wait_failed(&self, n: usize) {
        let failed = |s: &Self| s.tried() - s.posted();
        let from = failed(self);
        let started = Instant::now();
        while failed(self) < from + n {
            assert!(
                started.elapsed() < PATIENCE,
                "not {n} more failed sales in {PATIENCE:?}: {}",
                summary(&self.attempts.lock().unwrap())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` more sales were posted (at most [`PATIENCE`]).
    pub async fn wait_more(&self, n: usize) {
        let from = self.posted();
        let started = Instant::now();
        while self.posted() < from + n {
            assert!(
                started.elapsed() < PATIENCE,
                "not {n} more sales in {PATIENCE:?}: {}",
                summary(&self.attempts.lock().unwrap())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        std::mem::take(&mut *self.attempts.lock().unwrap())
    }
}

/// Posts one sale and records it.
pub async fn attempt(shop: &Shop, key: String, lines: Vec<(i64, i64)>) -> Attempt {
    let started = Instant::now();
    let r = shop.sell(&key, &lines).await;
    let ended = Instant::now();
    let (outcome, invoice) = match r {
        Ok(r) => (Ok(r.status), r.json()["id"].as_i64()),
        Err(e) => (Err(e), None),
    };
    Attempt {
        key,
        lines,
        started,
        ended,
        outcome,
        invoice,
    }
}

/// Answers by status (no answer as 0).
pub fn summary(attempts: &[Attempt]) -> String {
    let mut by: BTreeMap<u16, usize> = BTreeMap::new();
    for a in attempts {
        *by.entry(*a.outcome.as_ref().unwrap_or(&0)).or_default() += 1;
    }
    format!("{by:?} (0: no answer)")
}

/// Posts again, with the same key, every sale that got a 5xx or no answer (the system is
/// healthy again): each gets the invoice it made, if it made one, or a new one, or is refused
/// whole (4xx).
/// Returns every attempt with its final outcome.
pub async fn settle(shop: &Shop, attempts: Vec<Attempt>) -> Vec<Attempt> {
    let mut settled = Vec::with_capacity(attempts.len());
    for a in attempts {
        if a.posted() || matches!(a.outcome, Ok(s) if (400..500).contains(&s)) {
            settled.push(a);
            continue;
        }
        let again = attempt(shop, a.key.clone(), a.lines.clone()).await;
        // Refused whole now (a 4xx: say, the stock ran out meanwhile) is an answer too.
        assert!(
            again.posted() || matches!(again.outcome, Ok(s) if (400..500).contains(&s)),
            "the sale {} retried: {:?} (first {:?})",
            a.key,
            again.outcome,
            a.outcome
        );
        settled.push(again);
    }
    settled
}

/// What the tenant's schema says after a run.
#[derive(Debug)]
pub struct Audit {
    /// Invoices by idempotency key.
    pub invoices: HashMap<String, i64>,
    /// Units sold per medicine, over all invoices.
    pub sold: BTreeMap<i64, i64>,
    /// Units on hand per medicine.
    pub on_hand: BTreeMap<i64, i64>,
}

/// Reads the tenant's schema through `db` (superuser) and asserts rules 1 and 2 for every
/// batch and medicine: no quantity below zero, each batch's quantity the sum of its ledger
/// movements, each invoice line drawn from batches in full, each sale's movements exactly its
/// lines' allocations.
pub async fn audit(db: &tokio_postgres::Client, schema: &str) -> Audit {
    let s = quote_ident(schema);
    let one = |sql: String| async move {
        db.query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    };
    let negative = one(format!(
        "SELECT count(*) FROM {s}.batches WHERE quantity_on_hand < 0"
    ))
    .await;
    assert_eq!(negative, 0, "{schema}: batches below zero");
    let off_ledger = one(format!(
        "SELECT count(*) FROM {s}.batches b WHERE b.quantity_on_hand <>
             (SELECT coalesce(sum(m.quantity), 0) FROM {s}.stock_movements m WHERE m.batch_id = b.id)"
    ))
    .await;
    assert_eq!(
        off_ledger, 0,
        "{schema}: batches that disagree with the ledger"
    );
    let bare = one(format!(
        "SELECT count(*) FROM {s}.invoices i
         WHERE NOT EXISTS (SELECT 1 FROM {s}.invoice_lines l WHERE l.invoice_id = i.id)"
    ))
    .await;
    assert_eq!(bare, 0, "{schema}: invoices without lines");
    let partial = one(format!(
        "SELECT count(*) FROM {s}.invoice_lines l WHERE l.quantity <>
             (SELECT coalesce(sum(a.quantity), 0) FROM {s}.invoice_line_batches a
              WHERE a.invoice_line_id = l.id)"
    ))
    .await;
    assert_eq!(partial, 0, "{schema}: lines not drawn from batches in full");
    let allocated = one(format!(
        "SELECT coalesce(sum(quantity), 0)::bigint FROM {s}.invoice_line_batches"
    ))
    .await;
    let moved = one(format!(
        "SELECT coalesce(-sum(quantity), 0)::bigint FROM {s}.stock_movements WHERE reason = 'sale'"
    ))
    .await;
    assert_eq!(
        allocated, moved,
        "{schema}: sales in the ledger vs. invoice lines"
    );
    let mut invoices = HashMap::new();
    for r in db
        .query(
            &format!(
                "SELECT idempotency_key, id FROM {s}.invoices WHERE idempotency_key IS NOT NULL"
            ),
            &[],
        )
        .await
        .unwrap()
    {
        invoices.insert(r.get::<_, String>(0), r.get::<_, i64>(1));
    }
    let per_medicine = |sql: String| async move {
        db.query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .collect::<BTreeMap<i64, i64>>()
    };
    let sold = per_medicine(format!(
        "SELECT medicine_id, sum(quantity)::bigint FROM {s}.invoice_lines GROUP BY 1"
    ))
    .await;
    let on_hand = per_medicine(format!(
        "SELECT medicine_id, sum(quantity_on_hand)::bigint FROM {s}.batches GROUP BY 1"
    ))
    .await;
    Audit {
        invoices,
        sold,
        on_hand,
    }
}

/// Asserts that what clients were told matches the schema: every sale answered 200/201 is
/// exactly one invoice (the one the answer named), no other sale of the run left one, and
/// each medicine's stock is what was received less what those sales sold.
pub fn assert_agrees(audit: &Audit, attempts: &[Attempt], received: i64, medicines: &[i64]) {
    let mut sold: BTreeMap<i64, i64> = medicines.iter().map(|m| (*m, 0)).collect();
    // A sale posted twice with its key (a retry) is one invoice, counted once.
    let mut posted: HashMap<&str, &Attempt> = HashMap::new();
    for a in attempts.iter().filter(|a| a.posted()) {
        assert_eq!(
            audit.invoices.get(&a.key),
            a.invoice.as_ref(),
            "the invoice of sale {}",
            a.key
        );
        if posted.insert(&a.key, a).is_none() {
            for (m, q) in &a.lines {
                *sold.entry(*m).or_default() += q;
            }
        }
    }
    let keys = posted.len();
    let refused = attempts
        .iter()
        .filter(|a| !a.posted() && !posted.contains_key(a.key.as_str()));
    for a in refused {
        assert!(
            !audit.invoices.contains_key(&a.key),
            "sale {} was answered {:?} but left an invoice",
            a.key,
            a.outcome
        );
    }
    assert_eq!(audit.invoices.len(), keys, "invoices vs. sales posted");
    for m in medicines {
        let sold_m = sold.get(m).copied().unwrap_or(0);
        assert_eq!(
            audit.sold.get(m).copied().unwrap_or(0),
            sold_m,
            "medicine {m} sold"
        );
        assert_eq!(
            audit.on_hand.get(m).copied(),
            Some(received - sold_m),
            "medicine {m} on hand"
        );
    }
}
