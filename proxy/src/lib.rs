//! Apotheca edge proxy (`apotheca-proxy`): every pharmacy's host served on Pingora's
//! listeners by a request path of our own ([`front`], [`http1`], [`http2`], [`forward`]). This
//! file owns the command line and the assembly — the first route load, the listeners (HTTP and,
//! when configured, HTTPS with certificates by SNI and HTTP/2; the admin listener), the
//! background tasks (route follower, control's endpoint feed, certificate watcher, the drain
//! when stopping) and Pingora's process settings (threads, SIGQUIT socket hand-over).
//!
//! Stopping (SIGTERM, or after the hand-over on SIGQUIT): Pingora stops accepting; the proxy
//! stays `grace_period_secs` for requests already on their way, then until the requests in
//! flight are answered (at most `graceful_shutdown_timeout_secs` more), and exits 0. Pingora
//! alone would cancel whatever is in flight once its grace period ends.

pub mod accesslog;
pub mod conn;
pub mod control;
pub mod forward;
pub mod front;
pub mod host;
pub mod http1;
pub mod http2;
pub mod listen;
pub mod metrics;
pub mod pages;
pub mod proxyproto;
pub mod routes;
pub mod settings;
pub mod tls;
pub mod upstreams;
pub mod wire;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apotheca_common::devdb::PrivateCluster;
use apotheca_common::settings as loader;
use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::control::Control;
use crate::forward::{Edge, InFlight};
use crate::front::{Front, Handshake};
use crate::metrics::{Admin, Metrics};
use crate::routes::Routes;
use crate::settings::Settings;
use crate::upstreams::Upstreams;

#[derive(Debug, Parser)]
#[command(
    name = "apotheca-proxy",
    version,
    about = "Apotheca edge proxy: routes every host to its tenant's workers",
    long_about = "Apotheca edge proxy: routes every host to its tenant's workers.\n\n\
        SIGTERM drains and exits; SIGQUIT hands the listening sockets to a successor started \
        with --upgrade (zero-downtime upgrade); SIGHUP reloads the certificates.\n\n\
        Under systemd (Type=forking, PIDFile= the upgrade_sock's .pid): ExecStart runs it with \
        --daemon; ExecReload sends SIGQUIT to $MAINPID, then starts the successor with \
        --daemon --upgrade, whose PID file systemd reads once the old process has drained \
        (deploy/nginx-free/apotheca-proxy.service)."
)]
pub struct Cli {
    /// Settings file (default: $APOTHECA_CONFIG, else ./apotheca.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Load and check the settings and exit.
    #[arg(long)]
    pub validate_config: bool,
    /// The database with the tenant and domain tables (default: [database] url, else the
    /// private cluster, which must be running).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Take the listening sockets over from a running proxy that was sent SIGQUIT.
    #[arg(long)]
    pub upgrade: bool,
    /// Run in the background: once the routes are loaded (and, with --upgrade, the sockets
    /// taken over) the proxy forks, the command exits 0 and the proxy's PID is written beside
    /// [proxy] upgrade_sock (its .pid file). Logs still go to the inherited stderr. The proxy
    /// then runs in /, so the paths in [proxy] must be absolute.
    #[arg(long)]
    pub daemon: bool,
}

impl Cli {
    /// What the command line asks of Pingora.
    fn opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            ..Opt::default()
        }
    }

    /// A successor finds its sockets by address, so it needs the ports, not 0; a daemon runs
    /// in `/`, where a relative path would name another file.
    fn check(&self, p: &settings::ProxySettings) -> Result<(), String> {
        if self.upgrade {
            let listeners = [
                ("http_listen", Some(&p.http_listen)),
                ("https_listen", p.https_listen.as_ref()),
                ("admin_listen", p.admin_listen.as_ref()),
            ];
            for (key, addr) in listeners {
                if let Some(addr) =
                    addr.filter(|a| a.rsplit_once(':').is_some_and(|(_, port)| port == "0"))
                {
                    return Err(format!(
                        "--upgrade takes the sockets over by address: [proxy] {key} must name the \
                         port the running proxy listens on (it logged it: \"proxy serving\"), not {addr}"
                    ));
                }
            }
        }
        if !self.daemon {
            return Ok(());
        }
        let paths = [
            ("control_socket", Some(&p.control_socket)),
            ("upgrade_sock", Some(&p.upgrade_sock)),
            ("tls_cert", p.tls_cert.as_ref()),
            ("tls_key", p.tls_key.as_ref()),
            ("tls_cert_dir", p.tls_cert_dir.as_ref()),
        ];
        for (key, path) in paths {
            if let Some(path) = path.filter(|p| p.is_relative()) {
                return Err(format!(
                    "--daemon runs in /: [proxy] {key} must be an absolute path, not {}",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

/// Why the proxy did not start: its exit status (2: the settings or the command line; 1: the
/// machine, such as a port taken or no routes) and what to say.
struct Refused(u8, String);

impl Refused {
    fn settings(message: impl Into<String>) -> Self {
        Self(2, message.into())
    }

    fn world(message: impl Into<String>) -> Self {
        Self(1, message.into())
    }
}

pub fn run(cli: Cli) -> ExitCode {
    match start(cli) {
        // Pingora serves until the proxy is stopped, and ends the process itself.
        Ok(Some(server)) => server.run_forever(),
        // --validate-config
        Ok(None) => ExitCode::SUCCESS,
        Err(Refused(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Everything before serving: the settings, the database, the certificates, the listening
/// sockets, the first routes, then Pingora's server with every service added. `None`: the
/// settings were only to be checked.
fn start(cli: Cli) -> Result<Option<Server>, Refused> {
    let loaded = loader::load::<Settings>(cli.config.as_deref())
        .map_err(|e| Refused::settings(e.to_string()))?;
    let mut settings = loaded.settings;
    settings
        .proxy
        .check()
        .and_then(|()| cli.check(&settings.proxy))
        .map_err(Refused::settings)?;
    if cli.validate_config {
        println!("settings OK");
        return Ok(None);
    }
    apotheca_common::telemetry::init(settings.log.format, "info,pingora=warn");

    let url = match settings.database.resolve(cli.database_url.as_deref()) {
        Some(url) => url,
        None => PrivateCluster::new(&settings.private_db)
            .and_then(|c| c.admin_url())
            .map_err(|e| {
                Refused::settings(format!(
                    "no database configured and the private cluster is unusable: {e}"
                ))
            })?,
    };
    let certificates = certificates(&settings.proxy)?;
    // A successor (--upgrade) gets the sockets of the proxy it replaces instead.
    let bound = if cli.upgrade {
        None
    } else {
        let bound = listen::bind(&mut settings.proxy).map_err(Refused::world)?;
        listen::prepare(&settings.proxy.upgrade_sock).map_err(Refused::world)?;
        Some(bound)
    };
    // The routes before the first request: a proxy that cannot route does not serve.
    let routes = Arc::new(Routes::default());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(routes.load_first(&url, Duration::from_secs(10))))
        .map_err(Refused::world)?;

    let p = &settings.proxy;
    let mut opt = cli.opt();
    // Sockets bound here reach Pingora the way a predecessor's do.
    opt.upgrade |= bound.is_some();
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(p));
    let handed = bound.map(|b| b.hand_over(&p.upgrade_sock));
    server.bootstrap();
    if let Some(handed) = handed {
        handed
            .join()
            .map_err(|_| Refused::world("the socket hand-over panicked"))?
            .map_err(Refused::world)?;
    }

    let upstreams = Arc::new(Upstreams::default());
    let control = Arc::new(Control::new(&p.control_socket));
    let metrics = Arc::new(Metrics::default());
    let access_log = p.access_log.then(|| {
        Arc::new(accesslog::AccessLog::new(matches!(
            settings.log.format,
            apotheca_common::settings::LogFormat::Json
        )))
    });
    let edge = Arc::new(Edge::new(
        routes.clone(),
        upstreams.clone(),
        control.clone(),
        metrics.clone(),
        access_log.clone(),
        p.clone(),
    ));
    add_listeners(&mut server, p, &edge, certificates.as_ref())?;
    if let Some(addr) = &p.admin_listen {
        // A listener of Pingora's, so that an upgrade hands it over with the others.
        let mut admin = pingora::services::listening::Service::new(
            "apotheca admin".to_owned(),
            Admin {
                metrics: metrics.clone(),
                control: control.clone(),
            },
        );
        admin.threads = Some(1);
        admin.add_tcp(addr);
        server.add_service(admin);
    }
    server.add_service(background_service(
        "apotheca background",
        Background {
            routes,
            url,
            control,
            upstreams,
            certificates,
            in_flight: edge.in_flight.clone(),
            fresh: edge.fresh.clone(),
            drain: Drain {
                grace: Duration::from_secs(p.grace_period_secs),
                timeout: Duration::from_secs(p.graceful_shutdown_timeout_secs),
            },
            access_log,
        },
    ));
    tracing::info!(
        http = %p.http_listen,
        https = %p.https_listen.as_deref().unwrap_or("-"),
        admin = %p.admin_listen.as_deref().unwrap_or("-"),
        "proxy serving"
    );
    Ok(Some(server))
}

/// The certificates, when HTTPS is configured.
fn certificates(p: &settings::ProxySettings) -> Result<Option<Arc<tls::Certificates>>, Refused> {
    match (&p.tls_cert, &p.tls_key) {
        (Some(cert), Some(key)) if p.https_listen.is_some() => {
            tls::Certificates::new(cert, key, p.tls_cert_dir.as_deref())
                .map(Some)
                .map_err(|e| Refused::settings(format!("certificates: {e}")))
        }
        _ => Ok(None),
    }
}

/// Pingora's process settings.
fn server_conf(p: &settings::ProxySettings) -> ServerConf {
    ServerConf {
        threads: p.threads,
        // One single-threaded runtime per thread, each connection staying on its own (as
        // nginx's processes do): work stealing woke idle threads across the process, about one
        // futex and half an eventfd write per request (strace), for no gain in throughput.
        work_stealing: false,
        // Only a backstop: the drain (see `Background`) ends the process before this.
        grace_period_seconds: Some(p.grace_period_secs + p.graceful_shutdown_timeout_secs + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: p.upgrade_sock.to_string_lossy().into_owned(),
        pid_file: p
            .upgrade_sock
            .with_extension("pid")
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    }
}

/// The HTTP listener, and the HTTPS one when configured.
fn add_listeners(
    server: &mut Server,
    p: &settings::ProxySettings,
    edge: &Arc<Edge>,
    certificates: Option<&Arc<tls::Certificates>>,
) -> Result<(), Refused> {
    // The fronts keep buffers of their own (Pingora's would only add a copy) and do the TLS
    // handshake themselves, on the thread that serves the connection.
    let listener = |addr: &str| ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::unbuffered());
    let mut http = pingora::services::listening::Service::new(
        "apotheca http".to_owned(),
        Front {
            edge: edge.clone(),
            tls: None,
        },
    );
    http.add_listener(listener(&p.http_listen));
    server.add_service(http);
    if let (Some(addr), Some(certs)) = (&p.https_listen, certificates) {
        let acceptor = tls::acceptor().map_err(Refused::settings)?;
        let mut https = pingora::services::listening::Service::new(
            "apotheca https".to_owned(),
            Front {
                edge: edge.clone(),
                tls: Some(Handshake {
                    acceptor,
                    certificates: tls::Callback(certs.clone()),
                }),
            },
        );
        https.add_listener(listener(addr));
        server.add_service(https);
    }
    Ok(())
}

/// How a stopping proxy lets its requests finish.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Stay at least this long (requests already on their way).
    grace: Duration,
    /// Then at most this much longer for the requests in flight.
    timeout: Duration,
}

/// The proxy's tasks beside the request path, on Pingora's background runtime, and the drain
/// once Pingora stops accepting.
struct Background {
    routes: Arc<Routes>,
    url: String,
    control: Arc<Control>,
    upstreams: Arc<Upstreams>,
    certificates: Option<Arc<tls::Certificates>>,
    in_flight: Arc<InFlight>,
    fresh: Arc<InFlight>,
    drain: Drain,
    access_log: Option<Arc<accesslog::AccessLog>>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The routes and endpoints keep following while the proxy drains.
        let mut tasks = vec![
            tokio::spawn(self.routes.clone().follow(self.url.clone())),
            tokio::spawn(self.control.clone().follow(self.upstreams.clone())),
        ];
        if let Some(log) = &self.access_log {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.flush_periodically().await }));
        }
        match &self.certificates {
            Some(certs) => tasks.push(tokio::spawn(certs.clone().watch())),
            // SIGHUP's default action would end the process without a drain.
            None => tasks.push(tokio::spawn(ignore_hangups())),
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        let started = Instant::now();
        tracing::info!(
            in_flight = self.in_flight.count(),
            "draining: no new connections; waiting for the requests in flight"
        );
        let deadline = started + self.drain.grace + self.drain.timeout;
        while started.elapsed() < self.drain.grace
            || (self.in_flight.count() + self.fresh.count() > 0 && Instant::now() < deadline)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.in_flight.count();
        if left > 0 {
            tracing::warn!(in_flight = left, "drain timed out; stopping anyway");
        }
        for t in tasks {
            t.abort();
        }
        if let Some(log) = &self.access_log {
            log.flush();
        }
        tracing::info!(
            after_ms = started.elapsed().as_millis() as u64,
            "drained; exiting"
        );
        // Pingora would only cancel the requests in flight at the end of its grace period;
        // nothing is left to wait for (OpenSSL registers no exit handler from Rust).
        std::process::exit(0);
    }
}

/// Without certificates SIGHUP has nothing to reload; it is caught so it cannot end the proxy.
async fn ignore_hangups() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: no certificates to reload");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGHUP"),
    }
}
