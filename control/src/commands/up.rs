//! `apotheca up`, the development all-in-one: the private PostgreSQL (when no database is
//! configured), migrations, the spares, the demo tenants (created and seeded on an empty
//! system), then the control daemon in this process and the proxy as its child, on HTTP and
//! HTTPS (`[proxy] https_listen`, else 127.0.0.1:8443; without `[proxy] tls_cert`, a
//! self-signed certificate made on first use). Ctrl-C (or SIGTERM) stops the proxy,
//! drains the workers, and stops the database if `up` started it: nothing is left running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use apotheca_common::devdb::PrivateCluster;
use apotheca_common::names::{DomainName, SchemaName};
use nix::sys::signal::{kill, raise, Signal};
use nix::unistd::Pid;

use super::{print_summary, print_tenants, seed_tenant, top_up_spares, Context};
use crate::error::{ControlError, Result};
use apotheca_tenancy::migrate::{self, Target};

use crate::progress::Reporter;
use apotheca_tenancy::tenants;

/// The demo tenants `up` creates on an empty system: (schema, name, domain).
const DEMO_TENANTS: [(&str, &str, &str); 2] = [
    ("acme", "Acme Pharmacy", "acme.localhost"),
    ("beta", "Beta Pharmacy", "beta.localhost"),
];

/// Where `up` serves HTTPS when the settings name no HTTPS listener.
const DEV_HTTPS: &str = "127.0.0.1:8443";

pub(super) async fn up(ctx: &Context) -> Result<()> {
    // Only a cluster `up` starts is stopped when it ends.
    let private = match ctx.settings.database.resolve(ctx.cli_url.as_deref()) {
        Some(_) => None,
        None => Some(PrivateCluster::new(&ctx.settings.private_db)?),
    };
    let started_cluster = private.as_ref().is_some_and(|c| !c.is_running());
    let served = prepare_and_serve(ctx).await;
    if started_cluster {
        if let Some(cluster) = private {
            match cluster.stop().await {
                Ok(_) => println!("stopped the private database"),
                Err(e) => eprintln!("error: stopping the private database: {e}"),
            }
        }
    }
    served
}

async fn prepare_and_serve(ctx: &Context) -> Result<()> {
    let db = ctx.database().await?;
    let set = ctx.migrations()?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = db.pool(jobs + 1)?;
    let summary = migrate::run(
        &pool,
        &set,
        &Target::All,
        false,
        jobs,
        &Reporter::new(false),
    )
    .await?;
    print_summary(&summary);
    if summary.failed().count() > 0 {
        return Err(apotheca_tenancy::Error::MigrationsFailed(summary.failed().count()).into());
    }
    top_up_spares(ctx, &db, &set).await;
    let mut client = db.connect().await?;
    if tenants::list(&client).await?.is_empty() {
        let secret = ctx.secret(&client).await?;
        let provisioner = ctx.provisioner(&db, &secret, &set);
        for (schema, name, domain) in DEMO_TENANTS {
            let schema = SchemaName::parse(schema)?;
            let domain = DomainName::parse(domain)?;
            provisioner
                .create(&mut client, name, &schema, &domain, None)
                .await?;
            println!("created demo tenant {name:?} (schema {schema}) on {domain}");
            seed_tenant(ctx, &db, &client, &schema, false).await?;
        }
    }
    println!();
    let list = tenants::list(&client).await?;
    print_tenants(&list);
    drop(client);

    let proxy = &ctx.settings.proxy;
    let mut env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db.admin_url().to_owned()),
        (
            "APOTHECA_PROXY__CONTROL_SOCKET",
            absolute(&ctx.settings.control.serve.socket)?
                .to_string_lossy()
                .into_owned(),
        ),
    ];
    // HTTPS always: on DEV_HTTPS unless a listener is set, with the development certificate
    // unless one is.
    let https = proxy
        .https_listen
        .clone()
        .unwrap_or_else(|| DEV_HTTPS.to_owned());
    if proxy.https_listen.is_none() {
        env.push(("APOTHECA_PROXY__HTTPS_LISTEN", https.clone()));
    }
    let dev_certificate_dir = match proxy.tls_cert {
        Some(_) => None,
        None => {
            let domains: Vec<String> = list.iter().flat_map(|t| t.domains.clone()).collect();
            let (cert, key) = dev_certificate(&ctx.settings.control.state_dir, &domains)?;
            env.push((
                "APOTHECA_PROXY__TLS_CERT",
                cert.to_string_lossy().into_owned(),
            ));
            env.push((
                "APOTHECA_PROXY__TLS_KEY",
                key.to_string_lossy().into_owned(),
            ));
            cert.parent().map(Path::to_path_buf)
        }
    };
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .map_or(String::new(), |(_, p)| format!(":{p}"))
    };
    println!("\nApotheca is up. Each pharmacy on its own host (*.localhost reaches this machine):");
    for t in &list {
        for domain in &t.domains {
            println!(
                "  http://{domain}{}/   https://{domain}{}/",
                port(&proxy.http_listen),
                port(&https)
            );
        }
    }
    println!(
        "  the public site: http://localhost{}/",
        port(&proxy.http_listen)
    );
    println!(
        "  the operator console: http://localhost{}/operator/ (a login: apotheca create-operator --username NAME)",
        port(&proxy.http_listen)
    );
    if let Some(dir) = dev_certificate_dir {
        println!(
            "  (HTTPS uses a self-signed certificate from {})",
            dir.display()
        );
    }
    if let Some(first) = list.first().and_then(|t| t.domains.first()) {
        println!("From a shell without *.localhost:");
        println!(
            "  curl -H 'Host: {first}' http://{}/api/v1/auth/me",
            proxy.http_listen
        );
    }
    if let Some(admin) = &proxy.admin_listen {
        println!("Metrics: http://{admin}/metrics");
    }
    println!("Workers: target/release/apotheca status");
    println!("Ctrl-C stops everything.\n");

    let program = std::env::current_exe()
        .map_err(ControlError::io("cannot find this program"))?
        .with_file_name("apotheca-proxy");
    let mut command = tokio::process::Command::new(&program);
    if let Some(file) = &ctx.config_file {
        command.arg("--config").arg(file);
    }
    // Its own process group: a terminal's Ctrl-C reaches `up` alone, which then stops the proxy
    // itself (after the workers drained) instead of seeing it exit as a failure.
    command.envs(env).process_group(0).kill_on_drop(true);
    let mut child = command.spawn().map_err(ControlError::io(format!(
        "cannot start {}",
        program.display()
    )))?;
    let proxy_pid = child.id().map(|p| Pid::from_raw(p as i32));

    let daemon = super::daemon::serve(ctx);
    tokio::pin!(daemon);
    let served = tokio::select! {
        served = &mut daemon => served,
        exited = child.wait() => {
            eprintln!("error: the proxy exited ({}); stopping", exited.map_or_else(|e| e.to_string(), |s| s.to_string()));
            // The daemon drains its workers on SIGTERM, as on Ctrl-C.
            let _ = raise(Signal::SIGTERM);
            let _ = daemon.await;
            return Err(ControlError::Other("the proxy stopped".into()));
        }
    };
    if let Some(pid) = proxy_pid {
        let _ = kill(pid, Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            let _ = child.kill().await;
        }
    }
    served
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(ControlError::io(path.display().to_string()))
}

/// A self-signed certificate for localhost and the demo domains, made once into
/// `<state_dir>/tls/` (with the `openssl` command).
fn dev_certificate(state_dir: &Path, domains: &[String]) -> Result<(PathBuf, PathBuf)> {
    let dir = absolute(&state_dir.join("tls"))?;
    let (cert, key) = (dir.join("dev.crt"), dir.join("dev.key"));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(ControlError::io(dir.display().to_string()))?;
    let mut names = vec![
        "DNS:localhost".to_owned(),
        "DNS:*.localhost".to_owned(),
        "IP:127.0.0.1".to_owned(),
    ];
    names.extend(domains.iter().map(|d| format!("DNS:{d}")));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "825",
        ])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg(format!("subjectAltName={}", names.join(",")))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            ControlError::Other(format!(
                "cannot run openssl to make a development certificate: {e}"
            ))
        })?;
    if !status.success() {
        return Err(ControlError::Other(format!(
            "openssl could not make {} ({status})",
            cert.display()
        )));
    }
    Ok((cert, key))
}
