//! `apotheca-loadgen`: the benchmarks' load generator. wrk cannot speak HTTP over a Unix
//! socket, which is how the proxy reaches workers, so this drives N keep-alive HTTP/1.1
//! connections (Unix socket or TCP) for a fixed time and prints one JSON line: requests/s,
//! latency percentiles, statuses. `startup` times a command from spawn to its first answered
//! request; `wake` times cold wakes through the control daemon ([`wake`]); `trickle` keeps many
//! pharmacies live at once with logged-in users ([`trickle`]). Everything it does
//! is bounded in time and stops by itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;

mod relay;
mod trickle;
mod wake;

#[derive(Parser)]
#[command(about = "Bench-only load generator (keep-alive HTTP/1.1 over a Unix socket or TCP)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load one request shape for a while.
    Run(RunArgs),
    /// Spawn a command and time it until `target` answers a GET of `path` with 2xx.
    Startup {
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "/_apotheca/health")]
        path: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Time cold wakes through the control daemon: wake, then the first answered request.
    Wake(wake::WakeArgs),
    /// Many pharmacies live at once: each logs in by password, then lists and sells every few
    /// seconds; cold ones woken meanwhile ([`trickle`]).
    Trickle(trickle::TrickleArgs),
    /// Copy bytes between TCP clients and a worker's Unix socket, nothing else: the floor
    /// under any hop, measured beside nginx and the proxy.
    Relay(relay::RelayArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// unix:/path/to.sock or tcp:127.0.0.1:PORT
    #[arg(long)]
    target: String,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long)]
    path: String,
    /// A request body (sent as application/json).
    #[arg(long)]
    body: Option<String>,
    /// Extra headers, "Name: value" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of load (at most 60).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// A label for the output line.
    #[arg(long, default_value = "")]
    label: String,
    /// Rotate over this many ids: in the path and body, `{n}` becomes `cycle_base + k % cycle`
    /// and `{m}` the next id, k counting this connection's requests (offset per connection),
    /// so writes spread over rows the way real traffic does.
    #[arg(long, default_value_t = 1)]
    cycle: u64,
    #[arg(long, default_value_t = 0)]
    cycle_base: u64,
    /// Requests per second in all, spread evenly over the connections (0: each connection as
    /// fast as it is answered). A request sent late because the last answer came late counts
    /// from when it was due, so a slow answer shows in the ones it delayed too.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many requests in all (0: run for the whole duration), e.g. 200 logins
    /// 50 at a time.
    #[arg(long, default_value_t = 0)]
    requests: u64,
}

async fn connect(target: &str) -> Result<SendRequest<Full<Bytes>>> {
    let sender = if let Some(path) = target.strip_prefix("unix:") {
        let stream = tokio::net::UnixStream::connect(PathBuf::from(path))
            .await
            .with_context(|| format!("connecting to {path}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        sender
    } else if let Some(addr) = target.strip_prefix("tcp:") {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        sender
    } else {
        bail!("target must be unix:/path or tcp:host:port");
    };
    Ok(sender)
}

fn request(args: &RunArgs, k: u64) -> Result<Request<Full<Bytes>>> {
    let cycle = args.cycle.max(1);
    let n = (args.cycle_base + k % cycle).to_string();
    let m = (args.cycle_base + (k + 1) % cycle).to_string();
    let fill = |t: &str| t.replace("{n}", &n).replace("{m}", &m);
    let mut req = Request::builder()
        .method(args.method.as_str())
        .uri(fill(&args.path));
    // A Host given with --header replaces the default one.
    if !args
        .headers
        .iter()
        .any(|h| h.trim_start().to_ascii_lowercase().starts_with("host:"))
    {
        req = req.header("host", "bench.localhost");
    }
    for h in &args.headers {
        let (k, v) = h.split_once(':').context("headers are \"Name: value\"")?;
        req = req.header(k.trim(), v.trim());
    }
    let body = match &args.body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(fill(b)))
        }
        None => Full::new(Bytes::new()),
    };
    Ok(req.body(body)?)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

async fn worker(
    args: RunArgs,
    until: Instant,
    offset: u64,
    phase: f64,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let mut k = offset;
    let mut sender = None;
    // At a fixed rate: this connection's share, its first request `phase` of an interval in.
    let interval = (args.rate > 0.0)
        .then(|| Duration::from_secs_f64(args.connections.max(1) as f64 / args.rate));
    let mut due = interval.map(|i| Instant::now() + i.mul_f64(phase));
    while Instant::now() < until {
        if sender.is_none() {
            match connect(&args.target).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        if args.requests > 0
            && budget
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(1)
                })
                .is_err()
        {
            break;
        }
        k += 1;
        let Ok(req) = request(&args, k) else {
            return tally;
        };
        let started = match (due, interval) {
            (Some(at), Some(every)) => {
                due = Some(at + every);
                if Instant::now() >= at {
                    // Late because the last answer was: the wait counts.
                    at
                } else {
                    // On time: from when it is sent (the timer wakes up to a millisecond late).
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                }
            }
            _ => Instant::now(),
        };
        if started >= until {
            break;
        }
        let outcome = async {
            s.ready().await?;
            let res = s.send_request(req).await?;
            let status = res.status().as_u16();
            res.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        }
        .await;
        match outcome {
            Ok(status) => {
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(args: RunArgs) -> Result<()> {
    let duration = Duration::from_secs(args.duration.clamp(1, 60));
    // Fail fast on a wrong target, before the timed run.
    connect(&args.target).await?;
    let started = Instant::now();
    let until = started + duration;
    let n = args.connections.max(1);
    let budget = Arc::new(AtomicU64::new(args.requests));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(worker(
                args.clone(),
                until,
                i as u64 * 7,
                i as f64 / n as f64,
                budget.clone(),
            ))
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.latencies_us.extend(t.latencies_us);
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        all.errors += t.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let ok: u64 = all
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let total = all.latencies_us.len() as u64;
    let line = serde_json::json!({
        "label": args.label, "target": args.target, "method": args.method, "path": args.path,
        "connections": args.connections, "rate": args.rate, "seconds": (elapsed * 100.0).round() / 100.0,
        "requests": total, "rps": (total as f64 / elapsed).round(), "ok_rps": (ok as f64 / elapsed).round(),
        "p50_ms": percentile(&all.latencies_us, 0.50), "p90_ms": percentile(&all.latencies_us, 0.90),
        "p99_ms": percentile(&all.latencies_us, 0.99), "max_ms": percentile(&all.latencies_us, 1.0),
        "statuses": all.statuses, "errors": all.errors,
    });
    println!("{line}");
    Ok(())
}

async fn startup(target: String, path: String, timeout: u64, command: Vec<String>) -> Result<()> {
    let started = Instant::now();
    // Not our stdout: a caller capturing it would wait for the child to close it.
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = started + Duration::from_secs(timeout);
    let ready = loop {
        if Instant::now() > deadline {
            break None;
        }
        if let Ok(mut s) = connect(&target).await {
            let req = Request::get(&path)
                .header("host", "bench.localhost")
                .body(Full::new(Bytes::new()))?;
            if let Ok(res) = s.send_request(req).await {
                if res.status().is_success() {
                    break Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    let pid = child.id();
    // The measured process is ours; leave it running for the caller to inspect and stop.
    let line = serde_json::json!({
        "startup_ms": ready.map(|d| (d.as_secs_f64() * 10000.0).round() / 10.0),
        "pid": pid,
    });
    println!("{line}");
    if ready.is_none() {
        child.kill().await.ok();
        bail!("no answer within {timeout} s");
    }
    // Detach: the caller stops it by PID.
    std::mem::forget(child);
    Ok(())
}

fn main() -> Result<()> {
    let runtime = || tokio::runtime::Runtime::new();
    match Cli::parse().command {
        Cmd::Run(args) => runtime()?.block_on(run(args)),
        Cmd::Startup {
            target,
            path,
            timeout,
            command,
        } => runtime()?.block_on(startup(target, path, timeout, command)),
        Cmd::Wake(args) => runtime()?.block_on(wake::wake(args)),
        Cmd::Trickle(args) => runtime()?.block_on(trickle::run(args)),
        // Runtimes of its own, one per thread.
        Cmd::Relay(args) => relay::relay(args),
    }
}
