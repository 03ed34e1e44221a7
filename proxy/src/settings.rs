//! `apotheca-proxy`'s typed settings (`[proxy]`, plus the shared `[database]`, `[private_db]`
//! and `[log]`; the other binaries' sections are accepted so one file serves all).

use std::path::PathBuf;

use apotheca_common::settings::{DatabaseSettings, LogSettings, PrivateDbSettings};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub private_db: PrivateDbSettings,
    pub log: LogSettings,
    pub proxy: ProxySettings,
    pub control: Option<IgnoredAny>,
    pub worker: Option<IgnoredAny>,
}

/// `[proxy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// Plain HTTP listener (127.0.0.1 or another local address).
    pub http_listen: String,
    /// HTTPS listener; unset: none. Needs `tls_cert` and `tls_key`.
    pub https_listen: Option<String>,
    /// The default (e.g. wildcard) certificate chain and key, PEM.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Per-domain certificates: `<domain>.crt` and `<domain>.key` (PEM) in this folder, chosen
    /// by SNI before the default; re-read on SIGHUP and when the folder changes.
    pub tls_cert_dir: Option<PathBuf>,
    /// Answer plain HTTP with a redirect to HTTPS (needs `https_listen`).
    pub redirect_https: bool,
    /// `Strict-Transport-Security: max-age=N` on HTTPS answers; 0: not sent.
    pub hsts_max_age_secs: u64,
    /// Hosts of the public site (landing page, sign-up).
    pub public_hosts: Vec<String>,
    /// An unknown host gets the public site instead of the "no pharmacy at this address" page.
    pub show_public_if_no_tenant_found: bool,
    /// The control daemon's API socket (`[control] socket`).
    pub control_socket: PathBuf,
    /// How long a request may wait for a sleeping tenant's worker to wake.
    pub wake_timeout_ms: u64,
    /// How long a request may wait in its tenant's queue for a free slot.
    pub queue_timeout_ms: u64,
    /// Upstream (worker) connect and read timeouts.
    pub upstream_connect_timeout_ms: u64,
    pub upstream_read_timeout_secs: u64,
    /// A request's head must arrive within this (408 after), at most `max_header_bytes` long
    /// (431 beyond), with at most 100 headers.
    pub client_header_timeout_ms: u64,
    pub max_header_bytes: usize,
    /// A request's body must arrive within this (408 after), at most `max_body_bytes` long
    /// (413 beyond); it is read whole before the request takes a slot of its tenant.
    pub client_body_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// The same for the operator console's import upload (`POST /operator/imports` on the
    /// public site, with an operator's cookie; see `Edge::limits`): a pharmacy's database of up
    /// to `[control] import_max_bytes` in a multipart form, so a little more than that.
    pub upload_timeout_secs: u64,
    pub max_upload_bytes: usize,
    /// Each write of an answer to a client must go through within this, else the connection
    /// is closed (a client that stops reading holds nothing for long).
    pub client_send_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout_secs: u64,
    /// Client connections open at once; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// Worker threads of the proxy (Pingora's default is 1).
    pub threads: usize,
    /// Stopping (SIGTERM, or once the sockets were handed over on SIGQUIT) no new connection
    /// is taken: the proxy stays at least `grace_period_secs` (requests already on their way),
    /// then until the requests in flight are answered, at most
    /// `graceful_shutdown_timeout_secs` more.
    pub grace_period_secs: u64,
    pub graceful_shutdown_timeout_secs: u64,
    /// Where a running proxy hands its listening sockets to its successor (SIGQUIT, then
    /// start the new one with `--upgrade`).
    pub upgrade_sock: PathBuf,
    /// Prometheus `/metrics` and `/health`; unset: off.
    pub admin_listen: Option<String>,
    /// One line per request on stderr (text or JSON per `[log] format`).
    pub access_log: bool,
    /// Requests at workers at once, over every tenant; the others wait their turn (at most
    /// `queue_timeout_ms`, then 503). 0: three per core of this host. See `forward::active`.
    pub max_active: usize,
    /// A request holds its box-wide slot at most this long, then lets the next one in.
    pub active_hold_ms: u64,
    /// Balancers that send the PROXY protocol (HAProxy's `send-proxy-v2`), as addresses or
    /// networks (`10.0.0.0/8`): a connection from one of them must start with its header, and
    /// its client's address is the header's. Empty: no connection is read so.
    pub proxy_protocol_from: Vec<String>,
    /// Balancers whose `X-Forwarded-For` is believed on the HTTP listener (HAProxy's `option
    /// forwardfor`, which appends the client's address): a request on a connection from one of
    /// them came from the header's last address. Those connections are not read for a PROXY
    /// header, so the balancer can reuse them for every client's requests. Empty: the
    /// header is never believed.
    pub forwarded_for_from: Vec<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            http_listen: "127.0.0.1:8080".to_owned(),
            https_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_cert_dir: None,
            redirect_https: false,
            hsts_max_age_secs: 0,
            public_hosts: vec!["localhost".to_owned()],
            show_public_if_no_tenant_found: false,
            control_socket: PathBuf::from("var/run/apotheca.sock"),
            wake_timeout_ms: 5000,
            queue_timeout_ms: 5000,
            upstream_connect_timeout_ms: 1000,
            upstream_read_timeout_secs: 60,
            client_header_timeout_ms: 10_000,
            max_header_bytes: 32 * 1024,
            client_body_timeout_ms: 30_000,
            max_body_bytes: 10 * 1024 * 1024,
            upload_timeout_secs: 600,
            max_upload_bytes: 65 * 1024 * 1024,
            client_send_timeout_ms: 30_000,
            keepalive_timeout_secs: 60,
            max_connections: 10_000,
            threads: 2,
            grace_period_secs: 1,
            graceful_shutdown_timeout_secs: 10,
            upgrade_sock: PathBuf::from("var/run/apotheca-proxy-upgrade.sock"),
            admin_listen: Some("127.0.0.1:9180".to_owned()),
            access_log: true,
            max_active: 0,
            active_hold_ms: 50,
            proxy_protocol_from: Vec::new(),
            forwarded_for_from: Vec::new(),
        }
    }
}

impl ProxySettings {
    /// `max_active`, 0 read as three per core.
    pub fn max_active(&self) -> usize {
        match self.max_active {
            0 => crate::forward::Active::default_max(),
            n => n,
        }
    }

    /// Settings that cannot work together, said before anything starts.
    pub fn check(&self) -> Result<(), String> {
        if self.https_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err("[proxy] https_listen needs tls_cert and tls_key".into());
        }
        if self.redirect_https && self.https_listen.is_none() {
            return Err("[proxy] redirect_https needs https_listen".into());
        }
        if self.threads == 0 {
            return Err("[proxy] threads must be at least 1".into());
        }
        if self.max_header_bytes < 1024 {
            return Err("[proxy] max_header_bytes must be at least 1024".into());
        }
        if self.max_upload_bytes < self.max_body_bytes {
            return Err("[proxy] max_upload_bytes must be at least max_body_bytes".into());
        }
        if self.max_connections == 0 {
            return Err("[proxy] max_connections must be at least 1".into());
        }
        for (name, v) in [
            ("client_header_timeout_ms", self.client_header_timeout_ms),
            ("client_body_timeout_ms", self.client_body_timeout_ms),
            ("upload_timeout_secs", self.upload_timeout_secs),
            ("client_send_timeout_ms", self.client_send_timeout_ms),
            ("keepalive_timeout_secs", self.keepalive_timeout_secs),
            (
                "upstream_connect_timeout_ms",
                self.upstream_connect_timeout_ms,
            ),
            (
                "upstream_read_timeout_secs",
                self.upstream_read_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err(format!("[proxy] {name} must be more than 0"));
            }
        }
        crate::proxyproto::Trusted::parse(&self.proxy_protocol_from)
            .map_err(|e| format!("[proxy] proxy_protocol_from: {e}"))?;
        crate::proxyproto::Trusted::parse(&self.forwarded_for_from)
            .map_err(|e| format!("[proxy] forwarded_for_from: {e}"))?;
        for host in &self.public_hosts {
            crate::host::normalise(host)
                .map_err(|e| format!("[proxy] public_hosts: {host:?}: {e}"))?;
        }
        Ok(())
    }
}
