//! `trickle`: many pharmacies live at once, used the way their staff use them. Each of
//! `--tenants` hosts (`--host` with `{i}` from `--first` on) gets a keep-alive connection of its
//! own through the proxy and logs in by password (`--login-concurrency` logins at a time,
//! timed); once every one has, each lists its medicines and posts a one-line sale (session
//! cookie and CSRF token, as the browser pages do) every `--every` seconds, at a phase of its
//! own, for `--duration` seconds. Counted apart: each pharmacy's first round (every worker's
//! caches, statements and backend catalog cold, all at once), and the other requests of the
//! first `--warmup` seconds (held up by that backlog); the rest is the steady trickle. After
//! the warm-up, `--cold` other hosts (from `--cold-first`), which nothing has woken, get their
//! first request one after another, spread over what is left: the cold wake a pharmacy sees
//! while the others are live. Prints one JSON line; bounded in time, stops by itself (requests
//! still unanswered 30 s after the end are cut off and counted as `cut_off` pharmacies).
//!
//! `--dialect peer` sends the same rounds to the django-tenants peer (`../shared/peer`): its
//! medicine list and a one-line bill, with no login (its API has none) and a new connection
//! whenever its server has closed the last (gunicorn's sync workers close every one); a cold
//! wake there is a first medicine list.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use serde_json::{json, Value};

use crate::{connect, percentile};

#[derive(clap::Args, Clone)]
pub struct TrickleArgs {
    /// The proxy: tcp:127.0.0.1:PORT
    #[arg(long)]
    target: String,
    /// Each pharmacy's host; `{i}` becomes its number.
    #[arg(long, default_value = "t{i}.localhost")]
    host: String,
    /// The first live pharmacy's number.
    #[arg(long, default_value_t = 1)]
    first: usize,
    /// How many pharmacies are live.
    #[arg(long)]
    tenants: usize,
    #[arg(long, default_value = "admin")]
    username: String,
    /// The user's password (every pharmacy's the same); from the environment, so that ps does
    /// not show it. Not used with `--dialect peer`.
    #[arg(
        long,
        env = "TRICKLE_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    password: String,
    #[arg(long, default_value_t = 50)]
    login_concurrency: usize,
    /// Seconds between one pharmacy's rounds (a list and a sale).
    #[arg(long, default_value_t = 5.0)]
    every: f64,
    /// Seconds of trickle after the logins (at most 3,600).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The first seconds of the trickle, counted apart from the rest ("warm-up"): every
    /// pharmacy's first round comes in them, all at once, and what that backlog holds up
    /// after it. The cold wakes start after them.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// The first cold pharmacy's number, and how many to wake during the trickle.
    #[arg(long, default_value_t = 0)]
    cold_first: usize,
    #[arg(long, default_value_t = 0)]
    cold: usize,
    #[arg(long, default_value = "")]
    label: String,
    /// Write every request slower than `--slow-ms` to this file, a line each: when it started
    /// (Unix ms), its kind, host, milliseconds and status — to set beside the server's logs.
    #[arg(long)]
    slow_log: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 100)]
    slow_ms: u64,
    /// Whose API: apotheca, or peer (the django-tenants peer; no login, `--password` unused).
    #[arg(long, value_enum, default_value_t = Dialect::Apotheca)]
    dialect: Dialect,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Apotheca,
    Peer,
}

impl Dialect {
    fn list_path(self) -> &'static str {
        match self {
            Dialect::Apotheca => "/api/v1/medicines?per_page=50",
            Dialect::Peer => "/api/medicines/",
        }
    }

    /// A one-unit sale of `medicine`: its path and body.
    fn sale(self, medicine: i64) -> (&'static str, Value) {
        match self {
            Dialect::Apotheca => (
                "/api/v1/sales",
                json!({"payment_method": "card", "lines": [{"medicine_id": medicine, "quantity": 1}]}),
            ),
            Dialect::Peer => (
                "/api/bills/",
                json!({"customer_name": "trickle", "lines": [{"medicine_id": medicine, "qty": 1}]}),
            ),
        }
    }

    /// The first request of a pharmacy nothing has woken.
    fn cold_path(self) -> &'static str {
        match self {
            Dialect::Apotheca => "/login",
            Dialect::Peer => "/api/medicines/",
        }
    }
}

/// Seconds after the trickle's end that its last requests may take.
const CUT_OFF_SECS: u64 = 30;

#[derive(Default)]
struct Kind {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

impl Kind {
    fn add(&mut self, started: Instant, outcome: &Result<(u16, Bytes)>) {
        match outcome {
            Ok((status, _)) => {
                self.latencies_us
                    .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *self.statuses.entry(*status).or_default() += 1;
            }
            Err(_) => self.errors += 1,
        }
    }

    fn summary(&mut self) -> Value {
        self.latencies_us.sort_unstable();
        json!({
            "count": self.latencies_us.len(),
            "p50_ms": percentile(&self.latencies_us, 0.50),
            "p90_ms": percentile(&self.latencies_us, 0.90),
            "p99_ms": percentile(&self.latencies_us, 0.99),
            "max_ms": percentile(&self.latencies_us, 1.0),
            "statuses": self.statuses,
            "errors": self.errors,
        })
    }
}

#[derive(Default)]
struct Tally {
    login: Kind,
    /// Each pharmacy's first round after its login (its worker's caches, statements and
    /// catalog still cold, and every pharmacy's at once): counted apart from the others.
    first: Kind,
    /// Later rounds' requests that started within `--warmup`.
    warmup: Kind,
    list: Kind,
    sale: Kind,
    cold: Kind,
    /// Pharmacies whose login worked and which then had a medicine to sell.
    live: usize,
    /// Requests slower than `--slow-ms`, for `--slow-log`.
    slow: Vec<String>,
}

impl Tally {
    /// Notes a request that took longer than `slow` (its start as Unix time).
    fn note_slow(
        &mut self,
        slow: Duration,
        what: &str,
        host: &str,
        started: Instant,
        outcome: &Result<(u16, Bytes)>,
    ) {
        let took = started.elapsed();
        if took < slow {
            return;
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(took);
        let status = outcome.as_ref().map_or(0, |(s, _)| *s);
        self.slow.push(format!(
            "{} {what} {host} {} {status}",
            at.as_millis(),
            took.as_millis()
        ));
    }

    /// Where a request of `round` goes: the first round apart, then those of the warm-up,
    /// then lists and sales.
    fn kind(&mut self, round: u64, warming: bool, list: bool) -> &mut Kind {
        match (round, warming, list) {
            (1, _, _) => &mut self.first,
            (_, true, _) => &mut self.warmup,
            (_, false, true) => &mut self.list,
            (_, false, false) => &mut self.sale,
        }
    }
}

/// A browser's view of one pharmacy: its connection, session cookie and CSRF token.
struct Client {
    target: String,
    host: String,
    sender: SendRequest<Full<Bytes>>,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Client {
    /// A new connection to `target` for `host`, nobody logged in.
    async fn open(target: &str, host: String) -> Result<Self> {
        Ok(Self {
            target: target.to_owned(),
            host,
            sender: connect(target).await?,
            cookie: None,
            csrf: None,
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("accept", "application/json");
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        if let (Some(csrf), true) = (&self.csrf, method != "GET") {
            req = req.header("x-csrf-token", csrf);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        if self.sender.ready().await.is_err() {
            // The server closed it after the last answer: a new one, as a browser opens.
            self.sender = connect(&self.target).await?;
            self.sender.ready().await?;
        }
        let res = self.sender.send_request(req.body(body)?).await?;
        let status = res.status().as_u16();
        if let Some(cookie) = res.headers().get("set-cookie") {
            let cookie = cookie.to_str().unwrap_or_default();
            self.cookie = cookie.split(';').next().map(str::to_owned);
        }
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn host(pattern: &str, i: usize) -> String {
    pattern.replace("{i}", &i.to_string())
}

/// One live pharmacy: logs in (within the login limit), waits for the others, then trickles.
async fn pharmacy(
    args: Arc<TrickleArgs>,
    i: usize,
    logins: Arc<tokio::sync::Semaphore>,
    all_in: Arc<tokio::sync::Barrier>,
    tally: Arc<Mutex<Tally>>,
) {
    let logged_in = async {
        let _turn = logins.acquire().await?;
        let mut client = Client::open(&args.target, host(&args.host, i)).await?;
        if args.dialect == Dialect::Peer {
            return Ok(client);
        }
        let started = Instant::now();
        let outcome = client
            .send(
                "POST",
                "/api/v1/auth/login",
                Some(json!({"username": args.username, "password": args.password})),
            )
            .await;
        tally.lock().unwrap().login.add(started, &outcome);
        let (status, body) = outcome?;
        if status != 200 {
            bail!("login {}: {status}", client.host);
        }
        let answer: Value = serde_json::from_slice(&body)?;
        client.csrf = answer["csrf_token"].as_str().map(str::to_owned);
        Ok::<_, anyhow::Error>(client)
    }
    .await;
    all_in.wait().await;
    let Ok(mut client) = logged_in else { return };
    let start = Instant::now();
    let until = start + Duration::from_secs(args.duration.min(3_600));
    let warm = start + Duration::from_secs(args.warmup);
    let every = Duration::from_secs_f64(args.every.max(0.1));
    let mut due = Instant::now() + every.mul_f64(phase(i));
    let mut medicine: Option<i64> = None;
    let mut round = 0u64;
    let slow = Duration::from_millis(args.slow_ms);
    loop {
        // A pharmacy that fell behind does not make up its missed rounds after the end.
        if due >= until || Instant::now() >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        due += every;
        round += 1;
        let started = Instant::now();
        let outcome = client.send("GET", args.dialect.list_path(), None).await;
        {
            let mut t = tally.lock().unwrap();
            t.kind(round, started < warm, true).add(started, &outcome);
            t.note_slow(
                slow,
                if round == 1 { "first-list" } else { "list" },
                &client.host,
                started,
                &outcome,
            );
        }
        let Ok((200, body)) = outcome else { continue };
        if medicine.is_none() {
            medicine = sellable(&body);
            if medicine.is_some() {
                tally.lock().unwrap().live += 1;
            }
        }
        let Some(id) = medicine else { continue };
        let started = Instant::now();
        let (path, sale) = args.dialect.sale(id);
        let outcome = client.send("POST", path, Some(sale)).await;
        {
            let mut t = tally.lock().unwrap();
            t.kind(round, started < warm, false).add(started, &outcome);
            t.note_slow(
                slow,
                if round == 1 { "first-sale" } else { "sale" },
                &client.host,
                started,
                &outcome,
            );
        }
        if outcome.is_err() {
            // The connection is gone: a new one, as a browser would open.
            match connect(&args.target).await {
                Ok(sender) => client.sender = sender,
                Err(_) => break,
            }
        }
    }
}

/// The medicine with the most stock that needs no prescription (the peer's list has `results`
/// and no prescriptions).
fn sellable(body: &[u8]) -> Option<i64> {
    let list: Value = serde_json::from_slice(body).ok()?;
    list.get("items")
        .or_else(|| list.get("results"))?
        .as_array()?
        .iter()
        .filter(|m| m["prescription_only"] != true && m["stock"].as_i64() > Some(0))
        .max_by_key(|m| m["stock"].as_i64())
        .and_then(|m| m["id"].as_i64())
}

/// Where in the interval pharmacy `i` starts: spread evenly (golden-ratio steps), neighbours apart.
fn phase(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_75).fract()
}

pub async fn run(args: TrickleArgs) -> Result<()> {
    if args.tenants == 0 {
        bail!("--tenants must be at least 1");
    }
    if args.dialect == Dialect::Apotheca && args.password.is_empty() {
        bail!("--password (or TRICKLE_PASSWORD) is needed to log in");
    }
    connect(&args.target)
        .await
        .with_context(|| format!("the proxy at {}", args.target))?;
    let args = Arc::new(args);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let logins = Arc::new(tokio::sync::Semaphore::new(args.login_concurrency.max(1)));
    // Every pharmacy, and the cold waker.
    let all_in = Arc::new(tokio::sync::Barrier::new(args.tenants + 1));
    let started = Instant::now();
    let tasks: Vec<_> = (args.first..args.first + args.tenants)
        .map(|i| {
            tokio::spawn(pharmacy(
                args.clone(),
                i,
                logins.clone(),
                all_in.clone(),
                tally.clone(),
            ))
        })
        .collect();
    all_in.wait().await;
    let logins_s = started.elapsed().as_secs_f64();
    // The pharmacies' trickle starts now; its requests may run this long after its end.
    let cut_at =
        tokio::time::Instant::now() + Duration::from_secs(args.duration.min(3_600) + CUT_OFF_SECS);
    {
        let t = tally.lock().unwrap();
        let ok = t.login.statuses.get(&200).copied().unwrap_or(0);
        // The line a caller waits for before measuring the trickle.
        eprintln!("all logged in: {ok} of {} in {logins_s:.1} s", args.tenants);
    }
    // The cold ones, one at a time, spread over the trickle after the warm-up.
    if args.cold > 0 {
        let after = args.duration.min(3_600).saturating_sub(args.warmup);
        tokio::time::sleep(Duration::from_secs(args.duration.min(3_600) - after)).await;
        let gap = Duration::from_secs(after).div_f64(args.cold as f64 + 1.0);
        for k in 0..args.cold {
            tokio::time::sleep(gap).await;
            let started = Instant::now();
            let outcome = async {
                let mut client =
                    Client::open(&args.target, host(&args.host, args.cold_first + k)).await?;
                client.send("GET", args.dialect.cold_path(), None).await
            }
            .await;
            let mut t = tally.lock().unwrap();
            t.cold.add(started, &outcome);
            let host = host(&args.host, args.cold_first + k);
            t.note_slow(
                Duration::from_millis(args.slow_ms),
                "cold",
                &host,
                started,
                &outcome,
            );
        }
    }
    // Requests still unanswered at `cut_at` (a server that fell far behind, like the peer's
    // four processes under a thousand pharmacies) are counted, not awaited.
    let mut cut_off = 0;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(cut_at, t).await {
            Ok(joined) => joined?,
            Err(_) => {
                abort.abort();
                cut_off += 1;
            }
        }
    }
    let mut t = tally.lock().unwrap();
    let line = json!({
        "label": args.label,
        "tenants": args.tenants,
        "live": t.live,
        "every_s": args.every,
        "logins_s": (logins_s * 100.0).round() / 100.0,
        "login": t.login.summary(),
        "first_round": t.first.summary(),
        "warmup_s": args.warmup,
        "warmup": t.warmup.summary(),
        "list": t.list.summary(),
        "sale": t.sale.summary(),
        "cold": t.cold.summary(),
        "cut_off": cut_off,
    });
    println!("{line}");
    if let Some(path) = &args.slow_log {
        let mut text = t.slow.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
