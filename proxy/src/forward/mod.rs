//! The request path both fronts share (HTTP/1.1 in [`crate::http1`], HTTP/2 in
//! [`crate::http2`]): the host's route (from memory; a worker's internal routes, `/_apotheca/`
//! however spelled, refused with a 404: [`is_internal`]), the tenant's admission, a ready worker
//! (woken through control when there is none), the request written to it over a pooled
//! Unix-socket connection with the proxy's own headers, retries, and the response head read
//! back; then the access log line and the metrics. The fronts own the client's side.
//!
//! Retries: a request whose connection to a worker failed goes to another worker (the failed
//! socket is skipped for this request only; control's feed says when a worker is gone); a
//! pooled keep-alive connection the worker had closed is replaced by a new one to the same
//! worker (checked before a non-idempotent request is sent on it, so a sale is never sent
//! twice); an idempotent request whose worker failed after it was sent is retried once;
//! anything else is a 502, and a worker that does not answer within the read timeout a 504.
//! When every worker the request knew has failed (the tenant's only worker was killed, say),
//! it waits for control to have another ready — as a request for a sleeping tenant waits for a
//! wake — rather than failing while a replacement is starting.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::accesslog::{AccessLog, Entry};
use crate::conn::{ReadError, WorkerConn};
use crate::control::{Control, WakeError};
use crate::host;
use crate::metrics::Metrics;
use crate::pages::Page;
use crate::routes::Routes;
use crate::settings::ProxySettings;
use crate::upstreams::{Upstream, Upstreams, Using};
use crate::wire::ResponseHead;

mod active;
mod headers;

pub use active::Active;
use active::ActiveSlot;

pub use headers::{idempotent, passed_on, withheld, write_request};
use headers::{sane_request_id, RequestIds};

/// Limits of the public site, which has no row in `tenants`.
const PUBLIC_MAX_IN_FLIGHT: usize = 256;
const PUBLIC_QUEUE: usize = 1024;
/// Connection failures tolerated per request before it fails.
const MAX_CONNECT_FAILURES: usize = 3;

/// What every listener shares.
pub struct Edge {
    pub routes: Arc<Routes>,
    pub upstreams: Arc<Upstreams>,
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    /// None when `[proxy] access_log` is off.
    pub access_log: Option<Arc<AccessLog>>,
    pub settings: ProxySettings,
    /// Requests between their head and their log line (a stopping proxy waits for them).
    pub in_flight: Arc<InFlight>,
    /// Connections accepted whose first request has not arrived yet (a stopping proxy waits
    /// for those too: their clients are sending).
    pub fresh: Arc<InFlight>,
    /// Client connections open, against `[proxy] max_connections`.
    pub connections: AtomicUsize,
    /// Requests at workers, box-wide, against `[proxy] max_active`.
    pub active: Active,
    public_hosts: HashSet<String>,
    /// `:port` of the HTTPS listener for redirects, empty on 443.
    https_port: String,
    request_ids: RequestIds,
    /// Turns of the import uploads ([`UPLOADS_AT_ONCE`]).
    uploads: Arc<tokio::sync::Semaphore>,
    /// `[proxy] proxy_protocol_from`.
    pub proxy_from: crate::proxyproto::Trusted,
    /// `[proxy] forwarded_for_from`.
    pub forwarded_from: crate::proxyproto::Trusted,
}

/// Where a request goes.
pub enum Route {
    /// An answer of the proxy's own.
    Answer(Page),
    /// To HTTPS, at this location.
    Redirect(String),
    Tenant(Target),
}

/// Import uploads read at once, over every client: each may hold `max_upload_bytes`.
pub const UPLOADS_AT_ONCE: usize = 2;

/// What one request's body and answer may take ([`Edge::limits`]).
pub struct Limits {
    pub max_body: usize,
    pub body_within: Duration,
    /// The worker's answer head within this.
    pub answer_within: Duration,
    /// An import upload's turn, held until the request is done.
    _upload: Option<OwnedSemaphorePermit>,
}

/// Whether a `Cookie` header's value carries the operator console's session cookie (any
/// value: the site and control check it; this only keeps strangers to the small body limit).
fn has_operator_cookie(value: &[u8]) -> bool {
    value.split(|b| *b == b';').any(|pair| {
        pair.trim_ascii_start()
            .strip_prefix(b"apotheca_operator=")
            .is_some_and(|v| !v.is_empty())
    })
}

/// A tenant (or the public site) and its limits.
pub struct Target {
    pub schema: Arc<str>,
    upstream: Arc<Upstream>,
    max_in_flight: usize,
    queue: usize,
}

/// A request's place in its tenant's in-flight cap and its box-wide slot, held until it is
/// answered.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _active: ActiveSlot,
}

/// A worker's answer: the connection it came on (its buffer starts with the head) and the
/// hold on that worker.
pub struct Answered {
    pub conn: WorkerConn,
    pub head: ResponseHead,
    pub using: Using,
}

impl Answered {
    /// The worker's socket's file name, for the log.
    pub fn worker(&self) -> String {
        self.using
            .endpoint()
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// Whether the answer's header `name` goes on to the client ([`passed_on`]), and is not
    /// one the answer's own `Connection` header names (hop-by-hop, RFC 9110 §7.6.1).
    pub fn passes(&self, name: &str, hsts: bool) -> bool {
        passed_on(name, hsts)
            && !self
                .head
                .named_by_connection(&self.conn.headers, &self.conn.buf, name)
    }

    /// The connection back to its worker's pool, when its answer was read to the end and
    /// nothing else came with it.
    pub fn release(self, clean: bool) {
        if clean && !self.head.close {
            self.using.endpoint().put_idle(self.conn);
        }
    }
}

/// Who the request came from and where it goes: the headers the proxy sets on it.
pub struct Forwarded<'a> {
    pub schema: &'a str,
    pub client_ip: Option<IpAddr>,
    pub https: bool,
    /// The normalised host.
    pub host: &'a str,
    pub request_id: &'a str,
}

impl Edge {
    pub fn new(
        routes: Arc<Routes>,
        upstreams: Arc<Upstreams>,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
        access_log: Option<Arc<AccessLog>>,
        settings: ProxySettings,
    ) -> Self {
        let public_hosts = settings
            .public_hosts
            .iter()
            .filter_map(|h| host::normalise(h).ok())
            .collect();
        // A redirect to the default port would miss a listener on another one.
        let https_port = settings
            .https_listen
            .as_deref()
            .and_then(|addr| addr.rsplit_once(':'))
            .map(|(_, port)| port)
            .filter(|port| *port != "443")
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        // Checked with the settings before anything starts.
        let proxy_from =
            crate::proxyproto::Trusted::parse(&settings.proxy_protocol_from).unwrap_or_default();
        let forwarded_from =
            crate::proxyproto::Trusted::parse(&settings.forwarded_for_from).unwrap_or_default();
        Self {
            routes,
            upstreams,
            control,
            metrics,
            access_log,
            in_flight: Arc::default(),
            fresh: Arc::default(),
            connections: AtomicUsize::new(0),
            active: Active::new(
                settings.max_active(),
                Duration::from_millis(settings.active_hold_ms),
            ),
            settings,
            public_hosts,
            https_port,
            request_ids: RequestIds::new(),
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
            proxy_from,
            forwarded_from,
        }
    }

    /// The client's `X-Request-Id` when it is a sane one, else a new id.
    pub fn request_id(&self, client: Option<&[u8]>) -> String {
        match client.and_then(|id| std::str::from_utf8(id).ok()) {
            Some(id) if sane_request_id(id) => id.to_owned(),
            _ => self.request_ids.next(),
        }
    }

    /// Where a request for `host` (normalised) goes; `target` is its path and query. A host
    /// the map does not know while a change it was told of is being loaded waits for that
    /// load (at most a second), so a pharmacy just signed up for is found at once.
    pub async fn route(&self, host: &str, https: bool, target: &str) -> Route {
        // The workers' own routes are for control and local tools only.
        if is_internal(target) {
            return Route::Answer(Page::NotFound);
        }
        if self.settings.redirect_https && !https {
            // An IPv6 host was kept without its brackets.
            let location = if host.contains(':') {
                format!("https://[{host}]{}{target}", self.https_port)
            } else {
                format!("https://{host}{}{target}", self.https_port)
            };
            return Route::Redirect(location);
        }
        if self.public_hosts.contains(host) {
            return self.public();
        }
        if let Some(route) = self.tenant(host) {
            return route;
        }
        // Perhaps a host just added: every change committed before now heard, then reloaded.
        self.routes.sync(Duration::from_millis(500)).await;
        self.routes.caught_up(Duration::from_secs(1)).await;
        match self.tenant(host) {
            Some(route) => route,
            None if self.settings.show_public_if_no_tenant_found => self.public(),
            None => Route::Answer(Page::NoPharmacy),
        }
    }

    /// What one request's body and answer may take. The operator console's import upload
    /// (`POST /operator/imports` on the public site, with an operator's session cookie) may be
    /// `max_upload_bytes` long and take `upload_timeout_secs` to arrive and to be answered, at
    /// most [`UPLOADS_AT_ONCE`] at a time over every client (503 beyond); its confirmation
    /// (`POST /operator/imports/{token}`) may take as long to be answered. Every other request
    /// has `max_body_bytes`, `client_body_timeout_ms` and `upstream_read_timeout_secs`.
    pub fn limits<'a>(
        &self,
        to: &Target,
        method: &str,
        target: &str,
        mut cookies: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Limits, Page> {
        let s = &self.settings;
        let mut limits = Limits {
            max_body: s.max_body_bytes,
            body_within: Duration::from_millis(s.client_body_timeout_ms),
            answer_within: Duration::from_secs(s.upstream_read_timeout_secs),
            _upload: None,
        };
        if &*to.schema != "public" || method != "POST" {
            return Ok(limits);
        }
        let path = target.split('?').next().unwrap_or(target);
        let upload = Duration::from_secs(s.upload_timeout_secs);
        if path == "/operator/imports" && cookies.any(has_operator_cookie) {
            let turn = self
                .uploads
                .clone()
                .try_acquire_owned()
                .map_err(|_| Page::Overloaded)?;
            limits.max_body = s.max_upload_bytes;
            limits.body_within = upload;
            limits.answer_within = upload;
            limits._upload = Some(turn);
        } else if path.starts_with("/operator/imports/") {
            limits.answer_within = upload;
        }
        Ok(limits)
    }

    fn public(&self) -> Route {
        Route::Tenant(Target {
            upstream: self.upstreams.get("public"),
            schema: Arc::from("public"),
            max_in_flight: PUBLIC_MAX_IN_FLIGHT,
            queue: PUBLIC_QUEUE,
        })
    }

    fn tenant(&self, host: &str) -> Option<Route> {
        let routes = self.routes.load();
        let t = routes.get(host)?;
        Some(if t.suspended {
            Route::Answer(Page::Suspended)
        } else {
            Route::Tenant(Target {
                upstream: self.upstreams.get(&t.schema),
                schema: t.schema.clone(),
                max_in_flight: t.max_in_flight,
                queue: t.queue_length,
            })
        })
    }

    /// A slot in the tenant's in-flight cap (at once, or after waiting in its bounded queue),
    /// then a ready worker, woken through control when there is none, then a box-wide slot
    /// ([`Active`]; the same wait at most).
    pub async fn admit(&self, target: &Target) -> Result<Admitted, Page> {
        let wait = Duration::from_millis(self.settings.queue_timeout_ms);
        let queued = Instant::now();
        let slot = target
            .upstream
            .admit(target.max_in_flight, target.queue, wait)
            .await
            .map_err(|_| Page::Overloaded)?;
        self.ensure_worker(&target.schema, &target.upstream).await?;
        let active = self
            .active
            .enter(wait.saturating_sub(queued.elapsed()))
            .await
            .ok_or(Page::Overloaded)?;
        // Counted out by `finish` with `admitted`.
        self.metrics.enter(&target.schema);
        Ok(Admitted {
            _slot: slot,
            _active: active,
        })
    }

    /// Sends `request` (head and body, written by [`write_request`]) to one of the tenant's
    /// workers and reads the answer's head (within `read_timeout`), retrying as the module's
    /// doc says.
    pub async fn exchange(
        &self,
        target: &Target,
        request: &[u8],
        idempotent: bool,
        head_request: bool,
        read_timeout: Duration,
    ) -> Result<Answered, (Page, String)> {
        let s = &self.settings;
        let connect_timeout = Duration::from_millis(s.upstream_connect_timeout_ms);
        let mut failed: Vec<PathBuf> = Vec::new();
        let mut retried_after_send = false;
        loop {
            let using = match target.upstream.pick(&failed) {
                Some(u) => u,
                None => self
                    .replacement(&target.schema, &target.upstream, &failed)
                    .await
                    .ok_or_else(|| {
                        (
                            Page::Unreachable,
                            "no worker of this tenant is reachable".to_owned(),
                        )
                    })?,
            };
            let endpoint = using.endpoint().clone();
            // A pooled connection first; one the worker closed meanwhile is dropped.
            let pooled = loop {
                match endpoint.take_idle() {
                    Some(c) if !idempotent && c.closed_while_idle() => continue,
                    other => break other,
                }
            };
            let mut conn = match pooled {
                Some(c) => c,
                None => match WorkerConn::connect(&endpoint.path, connect_timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(worker = %endpoint.path.display(), error = %e, "connect failed");
                        failed.push(endpoint.path.clone());
                        if failed.len() >= MAX_CONNECT_FAILURES {
                            return Err((Page::Unreachable, format!("connect: {e}")));
                        }
                        continue;
                    }
                },
            };
            let reused = conn.reused;
            let (sent, answer) = match conn.send(request).await {
                Ok(()) => (true, conn.read_head(read_timeout, head_request).await),
                Err(e) => (false, Err(ReadError::Io(e))),
            };
            match answer {
                Ok(head) => return Ok(Answered { conn, head, using }),
                Err(ReadError::Timeout) => {
                    return Err((Page::WorkerTimeout, ReadError::Timeout.to_string()))
                }
                // The worker had closed this keep-alive connection before the request reached
                // it: the same worker, on a new connection. (A request that must not be sent
                // twice only when it could not be written: the connection was checked before.)
                Err(ReadError::Closed | ReadError::Io(_)) if reused && (idempotent || !sent) => {
                    tracing::debug!(worker = %endpoint.path.display(), "stale pooled connection");
                    continue;
                }
                Err(e) if idempotent && !retried_after_send => {
                    tracing::debug!(worker = %endpoint.path.display(), error = %e, "retrying on another worker");
                    retried_after_send = true;
                    failed.push(endpoint.path.clone());
                }
                Err(e) => return Err((Page::Unreachable, e.to_string())),
            }
        }
    }

    /// Makes sure the tenant has a ready worker, waking one through control if needed.
    async fn ensure_worker(&self, schema: &str, upstream: &Upstream) -> Result<(), Page> {
        if upstream.has_endpoints() {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.settings.wake_timeout_ms);
        let started = Instant::now();
        let woken = tokio::time::timeout(timeout, async {
            let _one_wake = upstream.waking.lock().await;
            if upstream.has_endpoints() {
                return Ok(());
            }
            let left = timeout.saturating_sub(started.elapsed());
            // Counted here, once per call to control (not per request that waited for it).
            let asked = Instant::now();
            let answer = self.control.wake(schema, left).await;
            self.metrics.wake(schema, asked.elapsed(), answer.is_ok());
            upstream.set(&answer?);
            Ok::<_, WakeError>(())
        })
        .await;
        match woken {
            Ok(Ok(())) if upstream.has_endpoints() => Ok(()),
            Ok(Ok(())) => Err(Page::Waking),
            Ok(Err(WakeError::Refused(404, _))) => Err(Page::NoPharmacy),
            Ok(Err(WakeError::Refused(409, _))) => Err(Page::Suspended),
            Ok(Err(e)) => {
                tracing::warn!(tenant = schema, error = %e, "could not wake a worker");
                Err(Page::Waking)
            }
            Err(_) => {
                tracing::warn!(
                    tenant = schema,
                    "no worker became ready within the wake timeout"
                );
                Err(Page::Waking)
            }
        }
    }

    /// A ready worker other than those this request failed on, once every one it knew has
    /// failed: asks control (which answers once the tenant has a ready worker, starting one if
    /// needed) and watches the endpoint feed, until the wake timeout.
    async fn replacement(
        &self,
        schema: &str,
        upstream: &Upstream,
        failed: &[PathBuf],
    ) -> Option<Using> {
        let deadline = Instant::now() + Duration::from_millis(self.settings.wake_timeout_ms);
        let mut pause = Duration::from_millis(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    tenant = schema,
                    "no other worker became ready within the wake timeout"
                );
                return None;
            }
            match self.control.wake(schema, left).await {
                Ok(endpoints) => {
                    upstream.set(&endpoints);
                    if let Some(using) = upstream.pick(failed) {
                        return Some(using);
                    }
                }
                // Suspended or deleted meanwhile.
                Err(WakeError::Refused(404 | 409, _)) => return None,
                Err(e) => {
                    tracing::debug!(tenant = schema, error = %e, "waiting for another worker")
                }
            }
            // Control still lists the worker that failed (it has not reaped it yet).
            tokio::time::sleep(pause.min(left)).await;
            if let Some(using) = upstream.pick(failed) {
                return Some(using);
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The request's access log line and metrics (`admitted`: it held a slot).
    pub fn finish(&self, entry: &Entry, admitted: bool) {
        if let Some(log) = &self.access_log {
            log.log(entry);
        }
        self.metrics
            .request(entry.tenant, entry.status, entry.latency, admitted);
    }
}

/// The path prefix of a worker's internal routes (`/_apotheca/health`, `/_apotheca/stats`),
/// which no client may reach through the proxy.
const INTERNAL: &str = "_apotheca";

/// Whether a request target names a worker's internal routes, however it is spelled: any
/// case, percent-encoded (once or more), with dot segments, doubled slashes, backslashes or
/// `;` parameters. Stricter than any worker's routing, so no spelling gets through.
pub fn is_internal(target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or("");
    // Every request passes here: without a `%`, only a path that spells the name itself can
    // be one, and most do not (no allocation for them).
    if !path.contains('%')
        && !path
            .as_bytes()
            .windows(INTERNAL.len())
            .any(|w| w.eq_ignore_ascii_case(INTERNAL.as_bytes()))
    {
        return false;
    }
    // Decoded until nothing changes (`%255F` is `%5F` is `_`), a few rounds at most.
    let mut path = path.as_bytes().to_vec();
    for _ in 0..4 {
        let decoded = percent_decode(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|b| *b == b'/' || *b == b'\\') {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments
        .first()
        .is_some_and(|s| s.trim_ascii().eq_ignore_ascii_case(INTERNAL.as_bytes()))
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match (
            s[i],
            s.get(i + 1).and_then(|b| hex(*b)),
            s.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// How many requests (or fresh connections) this process is serving, whatever their tenant.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    pub fn enter(self: &Arc<Self>) -> Counted {
        self.0.fetch_add(1, Ordering::AcqRel);
        Counted(self.clone())
    }
}

/// One request counted in [`InFlight`] until it is dropped.
#[derive(Debug)]
pub struct Counted(Arc<InFlight>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::{has_operator_cookie, is_internal};

    #[test]
    fn the_operator_cookie_among_others() {
        assert!(has_operator_cookie(b"apotheca_operator=abc"));
        assert!(has_operator_cookie(b"a=1; apotheca_operator=abc; b=2"));
        assert!(!has_operator_cookie(b"apotheca_operator="));
        assert!(!has_operator_cookie(b"x_apotheca_operator=abc"));
        assert!(!has_operator_cookie(b"apotheca_csrf=abc"));
    }

    #[test]
    fn internal_paths_however_spelled() {
        for target in [
            "/_apotheca/stats",
            "/_apotheca/health?x=1",
            "/_apotheca",
            "/_APOTHECA/stats",
            "/_Apotheca/Health",
            "/%5fapotheca/stats",
            "/%5F%61potheca/stats",
            "/_apotheca%2fstats",
            "/%255Fapotheca/stats",
            "//_apotheca/stats",
            "/./_apotheca/stats",
            "/x/../_apotheca/stats",
            "/x/%2e%2e/_apotheca/stats",
            "/../../_apotheca/stats",
            "/\\_apotheca/stats",
            "/_apotheca;a=b/stats",
            "/_apotheca/",
        ] {
            assert!(is_internal(target), "{target} must be refused");
        }
        for target in [
            "/",
            "*",
            "/login",
            "/api/v1/medicines?q=_apotheca",
            "/x/_apotheca/stats",
            "/_apothecary/stats",
            "/static/_apotheca.css",
            "/%",
            "/%zz_apotheca",
        ] {
            assert!(!is_internal(target), "{target} is no internal path");
        }
    }
}
