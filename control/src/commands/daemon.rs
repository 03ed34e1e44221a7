//! The daemon and the commands that talk to it: `serve` runs it; `wake`, `status` and
//! `restart` ask it over its socket; `scale` changes a tenant's policy in the database, which a
//! running daemon follows through NOTIFY.

use std::time::Duration;

use super::{ensure_public_migrated, Context};
use crate::cli::ScaleArgs;
use crate::error::{ControlError, Result};
use crate::serve::client::Client;
use apotheca_protocol::api::{Restarted, StatusReport, TenantStatus, Woken};
use apotheca_tenancy::tenants::policy::{self, PolicyChange};

fn client(ctx: &Context) -> Client {
    Client::new(&ctx.settings.control.serve.socket)
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

fn timeout_query(timeout: Option<Duration>) -> String {
    timeout.map_or_else(String::new, |t| {
        format!("?timeout_ms={}", t.as_millis().max(1))
    })
}

pub(super) async fn serve(ctx: &Context) -> Result<()> {
    let db = ctx.database().await?;
    let client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let secret = ctx.secret(&client).await?;
    drop(client);
    let migrations = ctx.migrations()?;
    crate::serve::run(
        &ctx.settings,
        db,
        secret,
        migrations,
        ctx.config_file.as_deref(),
    )
    .await
}

/// `status --cluster`: the hosts from `public.hosts`, then each tenant's hosts.
pub(super) async fn cluster(ctx: &Context, json: bool) -> Result<()> {
    let client = ctx.database().await?.connect().await?;
    ensure_public_migrated(&client).await?;
    let gone_after = Duration::from_secs(ctx.settings.control.serve.host_gone_secs);
    let hosts = crate::serve::hosts::list(&client, gone_after).await?;
    if json {
        println!("{}", to_json(&hosts)?);
        return Ok(());
    }
    if hosts.is_empty() {
        println!("no host has run `apotheca serve` on this database yet");
        return Ok(());
    }
    println!(
        "{:<20} {:<22} {:<9} {:<8} {:>10}  TENANTS (worker processes)",
        "HOST", "ADDRESS", "VERSION", "STATE", "LAST BEAT"
    );
    let mut tenants: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for h in &hosts {
        let ago = format!("{:.0} s ago", h.beat_secs_ago.max(0.0));
        let held: Vec<String> = h
            .workers
            .iter()
            .map(|(s, n)| format!("{s} ({n})"))
            .collect();
        println!(
            "{:<20} {:<22} {:<9} {:<8} {:>10}  {}",
            h.name,
            if h.address.is_empty() {
                "-"
            } else {
                &h.address
            },
            h.version,
            h.state,
            ago,
            if held.is_empty() {
                "-".to_owned()
            } else {
                held.join(", ")
            }
        );
        for (schema, n) in &h.workers {
            tenants
                .entry(schema)
                .or_default()
                .push(format!("{} ({n})", h.name));
        }
    }
    let shared: Vec<_> = tenants.iter().filter(|(_, on)| on.len() > 1).collect();
    for (schema, on) in shared {
        println!(
            "note: {schema} has workers on {} hosts: {}",
            on.len(),
            on.join(", ")
        );
    }
    Ok(())
}

pub(super) async fn wake(
    ctx: &Context,
    schema: &str,
    timeout: Option<Duration>,
    json: bool,
) -> Result<()> {
    let path = format!("/v1/tenants/{schema}/wake{}", timeout_query(timeout));
    let woken: Woken = client(ctx).post(&path).await?;
    if json {
        println!("{}", to_json(&woken)?);
    } else {
        println!("{schema}: ready at {}", woken.endpoints.join(" "));
    }
    Ok(())
}

pub(super) async fn status(ctx: &Context, schema: Option<&str>, json: bool) -> Result<()> {
    let c = client(ctx);
    match schema {
        Some(schema) => {
            let t: TenantStatus = c.get(&format!("/v1/tenants/{schema}")).await?;
            if json {
                println!("{}", to_json(&t)?);
            } else {
                print_tenant(&t);
            }
        }
        None => {
            let report: StatusReport = c.get("/v1/status").await?;
            if json {
                println!("{}", to_json(&report)?);
            } else {
                let t = &report.totals;
                println!(
                    "control daemon pid {}, up {}; API unix:{}",
                    report.pid,
                    human_duration(report.uptime_ms),
                    report.socket
                );
                println!(
                    "{} tenant(s), {} live; {} worker(s), RSS {:.1} MB in all",
                    t.tenants,
                    t.live_tenants,
                    t.workers,
                    t.rss_bytes as f64 / 1_048_576.0
                );
                match t.database {
                    Some(db) => println!(
                        "PostgreSQL: {} connection(s) of {} allowed, {} of them the workers'",
                        db.connections, db.max_connections, db.tenant_connections
                    ),
                    None => println!("PostgreSQL: connection figures unavailable"),
                }
                for t in &report.tenants {
                    print_tenant(t);
                }
            }
        }
    }
    Ok(())
}

fn print_tenant(t: &TenantStatus) {
    let p = &t.policy;
    let mut line = format!(
        "{}: {}, {} worker(s) (target {}), restarts {}, policy min {} max {} idle {}s in-flight {}",
        t.schema,
        t.state,
        t.workers.len(),
        t.target,
        t.restarts,
        p.min_workers,
        p.max_workers,
        p.idle_timeout_secs,
        p.max_in_flight
    );
    if let Some(node) = &t.node {
        line.push_str(&format!(", on node {node}"));
    }
    if let Some(ms) = t.restart_in_ms {
        line.push_str(&format!(", restarting in {ms} ms"));
    }
    if !t.shared_with.is_empty() {
        line.push_str(&format!(
            "; also served by {} (no caches meanwhile)",
            t.shared_with.join(", ")
        ));
    }
    println!("{line}");
    if let Some(exit) = &t.last_exit {
        println!(
            "  last exit: {}{}",
            exit.reason,
            if exit.crash { " (crash)" } else { "" }
        );
    }
    for w in &t.workers {
        println!(
            "  pid {:<7} {:<9} up {:<8} in flight {:<4} served {:<8} RSS {:.1} MB  {}",
            w.pid,
            w.state,
            human_duration(w.uptime_ms),
            w.in_flight,
            w.served,
            w.rss_bytes as f64 / 1_048_576.0,
            w.address
        );
    }
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub(super) async fn restart(
    ctx: &Context,
    schema: Option<&str>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<()> {
    let c = client(ctx);
    let query = timeout_query(timeout);
    let done: Vec<Restarted> = match schema {
        Some(schema) => vec![
            c.post(&format!("/v1/tenants/{schema}/restart{query}"))
                .await?,
        ],
        None => c.post(&format!("/v1/restart{query}")).await?,
    };
    if json {
        println!("{}", to_json(&done)?);
    } else {
        for r in &done {
            let pids: Vec<String> = r.pids.iter().map(i32::to_string).collect();
            println!(
                "{}: replaced {} worker(s); running now: {}",
                r.schema,
                r.replaced,
                if pids.is_empty() {
                    "none".to_owned()
                } else {
                    format!("pid {}", pids.join(", "))
                }
            );
        }
    }
    Ok(())
}

pub(super) async fn scale(ctx: &Context, args: ScaleArgs) -> Result<()> {
    let change = PolicyChange {
        min_workers: args.min,
        max_workers: args.max,
        idle_timeout_secs: args.idle_timeout.map(|d| d.as_secs()),
        max_inflight_per_worker: args.max_inflight,
    };
    if args.idle_timeout.is_some_and(|d| d.subsec_millis() != 0) {
        return Err(ControlError::invalid(
            "--idle-timeout is counted in whole seconds",
        ));
    }
    change.check()?;
    let db = ctx.database().await?;
    let mut client = db.connect().await?;
    ensure_public_migrated(&client).await?;
    let p = policy::set(&mut client, args.schema.as_str(), &change).await?;
    if args.json {
        println!("{}", to_json(&p)?);
    } else {
        println!(
            "{}: min {} max {} workers, idle timeout {}s, max in-flight {} per worker",
            args.schema,
            p.min_workers,
            p.max_workers,
            p.idle_timeout_secs,
            p.max_inflight_per_worker
        );
    }
    Ok(())
}
