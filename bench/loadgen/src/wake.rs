//! `wake`: times cold wakes through the control daemon's API, as the proxy will see them:
//! `POST /v1/tenants/{schema}/wake` (spawn → ready), then the first request to the endpoint it
//! returns (→ first response). One tenant after another, or all at once. Prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;

use crate::{connect, percentile};

#[derive(clap::Args)]
pub struct WakeArgs {
    /// The daemon's API socket: unix:/path/to/apotheca.sock
    #[arg(long)]
    control: String,
    /// The tenants to wake (each should be cold); repeatable.
    #[arg(long = "schema", required = true)]
    schemas: Vec<String>,
    /// Wake them all at once instead of one after another.
    #[arg(long)]
    together: bool,
    /// The first request sent to each woken worker.
    #[arg(long, default_value = "/_apotheca/health")]
    path: String,
    /// Give up on one wake after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[arg(long, default_value = "")]
    label: String,
}

/// One wake: (until the API answered, until the first response), in µs.
async fn one(args: &WakeArgs, schema: &str) -> Result<(u32, u32)> {
    let started = Instant::now();
    let mut api = connect(&args.control).await?;
    let req = Request::post(format!("/v1/tenants/{schema}/wake"))
        .header("host", "control")
        .body(Full::new(Bytes::new()))?;
    let res = api.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("wake {schema}: {status} {}", String::from_utf8_lossy(&body));
    }
    let woken = started.elapsed();
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let endpoint = answer["endpoints"][0]
        .as_str()
        .with_context(|| format!("wake {schema}: no endpoint in {answer}"))?;
    let mut worker = connect(endpoint).await?;
    let req = Request::get(&args.path)
        .header("host", "bench.localhost")
        .body(Full::new(Bytes::new()))?;
    let res = worker.send_request(req).await?;
    let status = res.status();
    res.into_body().collect().await?;
    if !status.is_success() {
        bail!("{schema}: first request answered {status}");
    }
    let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
    Ok((us(woken), us(started.elapsed())))
}

pub async fn wake(args: WakeArgs) -> Result<()> {
    let args = Arc::new(args);
    let limit = Duration::from_secs(args.timeout.max(1));
    let timed = |schema: String| {
        let args = args.clone();
        async move {
            match tokio::time::timeout(limit, one(&args, &schema)).await {
                Ok(r) => r,
                Err(_) => bail!("{schema}: no answer within {} s", limit.as_secs()),
            }
        }
    };
    let started = Instant::now();
    let mut outcomes: Vec<Result<(u32, u32)>> = Vec::new();
    if args.together {
        let tasks: Vec<_> = args
            .schemas
            .iter()
            .cloned()
            .map(|s| tokio::spawn(timed(s)))
            .collect();
        for t in tasks {
            outcomes.push(t.await?);
        }
    } else {
        for s in args.schemas.iter().cloned() {
            outcomes.push(timed(s).await);
        }
    }
    let wall = started.elapsed();
    let mut ready = Vec::new();
    let mut first = Vec::new();
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Ok((r, f)) => {
                ready.push(r);
                first.push(f);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    ready.sort_unstable();
    first.sort_unstable();
    let mean = |v: &[u32]| {
        let n = v.len().max(1) as f64;
        (v.iter().map(|x| f64::from(*x)).sum::<f64>() / n / 10.0).round() / 100.0
    };
    let line = serde_json::json!({
        "label": args.label, "together": args.together, "wakes": args.schemas.len(),
        "ok": first.len(), "errors": errors.len(), "first_errors": errors.iter().take(3).collect::<Vec<_>>(),
        "wall_ms": (wall.as_secs_f64() * 10000.0).round() / 10.0,
        "first_min_ms": percentile(&first, 0.0), "first_p50_ms": percentile(&first, 0.50),
        "first_p90_ms": percentile(&first, 0.90), "first_p99_ms": percentile(&first, 0.99),
        "first_max_ms": percentile(&first, 1.0), "first_mean_ms": mean(&first),
        "ready_p50_ms": percentile(&ready, 0.50), "ready_p99_ms": percentile(&ready, 0.99),
        "ready_max_ms": percentile(&ready, 1.0),
    });
    println!("{line}");
    if !errors.is_empty() {
        bail!("{} wake(s) failed", errors.len());
    }
    Ok(())
}
