//! The request path: host → tenant (from memory), the tenant's admission, a ready worker (woken
//! through control when there is none), the forwarded headers, retries, and the access log.
//!
//! Retries: a request whose connection to a worker failed goes to another worker (the failed
//! socket is forgotten until control's feed says otherwise); an idempotent request whose
//! worker failed after it was sent is retried once; anything else is a 502. When every worker
//! the request knew has failed (the tenant's only worker was killed, say), it waits for
//! control to have another ready — as a request for a sleeping tenant waits for a wake —
//! rather than failing while a replacement is starting.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tokio::sync::OwnedSemaphorePermit;

use crate::accesslog::{AccessLog, Entry};
use crate::control::{Control, WakeError};
use crate::host;
use crate::metrics::Metrics;
use crate::pages::{wants_json, Page};
use crate::routes::Routes;
use crate::settings::ProxySettings;
use crate::upstreams::{Upstream, Upstreams, Using};

/// Limits of the public site, which has no row in `tenants`.
const PUBLIC_MAX_IN_FLIGHT: usize = 256;
const PUBLIC_QUEUE: usize = 1024;
/// Connection failures tolerated per request before it fails.
const MAX_CONNECT_FAILURES: usize = 3;

/// What every listener's service shares.
pub struct Shared {
    pub routes: Arc<Routes>,
    pub upstreams: Arc<Upstreams>,
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    /// None when `[proxy] access_log` is off.
    pub access_log: Option<Arc<AccessLog>>,
    pub public_hosts: HashSet<String>,
    pub settings: ProxySettings,
    /// Requests between their header and their log line (a stopping proxy waits for them).
    pub in_flight: Arc<InFlight>,
    /// `:port` of the HTTPS listener for redirects, empty on 443.
    https_port: String,
    request_ids: RequestIds,
}

impl Shared {
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
        Self {
            routes,
            upstreams,
            control,
            metrics,
            access_log,
            public_hosts,
            settings,
            in_flight: Arc::default(),
            https_port,
            request_ids: RequestIds::new(),
        }
    }
}

/// How many requests this process is serving, whatever their tenant or answer.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn enter(self: &Arc<Self>) -> Counted {
        self.0.fetch_add(1, Ordering::AcqRel);
        Counted(self.clone())
    }
}

/// One request counted in [`InFlight`] until it is dropped with the request's context.
#[derive(Debug)]
struct Counted(Arc<InFlight>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One listener's proxy (`https` says which scheme it serves).
pub struct Edge {
    pub shared: Arc<Shared>,
    pub https: bool,
}

#[derive(Default)]
pub struct Ctx {
    started: Option<Instant>,
    host: String,
    request_id: String,
    schema: Option<Arc<str>>,
    upstream: Option<Arc<Upstream>>,
    /// The tenant's slot, held until the request is logged.
    slot: Option<OwnedSemaphorePermit>,
    using: Option<Using>,
    /// Workers this request failed on.
    failed: Vec<PathBuf>,
    retried_after_send: bool,
    json: bool,
    /// A page of our own was sent (its status, for the log).
    own_answer: Option<u16>,
    _counted: Option<Counted>,
}

impl Edge {
    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, page: Page) -> Result<bool> {
        ctx.own_answer = Some(page.status());
        page.send(session, ctx.json).await?;
        Ok(true)
    }

    /// Makes sure the tenant has a ready worker, waking one through control if needed.
    async fn ensure_worker(&self, schema: &str, upstream: &Upstream) -> Result<(), Page> {
        if upstream.has_endpoints() {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.shared.settings.wake_timeout_ms);
        let started = Instant::now();
        let woken = tokio::time::timeout(timeout, async {
            let _one_wake = upstream.waking.lock().await;
            if upstream.has_endpoints() {
                return Ok(());
            }
            let left = timeout.saturating_sub(started.elapsed());
            // Counted here, once per call to control (not per request that waited for it).
            let asked = Instant::now();
            let answer = self.shared.control.wake(schema, left).await;
            self.shared
                .metrics
                .wake(schema, asked.elapsed(), answer.is_ok());
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
        let deadline = Instant::now() + Duration::from_millis(self.shared.settings.wake_timeout_ms);
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
            match self.shared.control.wake(schema, left).await {
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
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Some(Instant::now()),
            _counted: Some(self.shared.in_flight.enter()),
            ..Ctx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let req = session.req_header();
        ctx.json = wants_json(
            req.headers.get("accept").and_then(|v| v.to_str().ok()),
            req.uri.path(),
        );
        ctx.request_id = req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| sane_request_id(id))
            .map_or_else(|| self.shared.request_ids.next(), str::to_owned);
        // HTTP/2 names the host in `:authority`; HTTP/1.1 in `Host`.
        let raw = req
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        let Some(Ok(host)) = raw.as_deref().map(host::normalise) else {
            return self.answer(session, ctx, Page::BadHost).await;
        };
        ctx.host = host;

        if self.shared.settings.redirect_https && !self.https {
            ctx.own_answer = Some(308);
            // An IPv6 host was kept without its brackets.
            let host = if ctx.host.contains(':') {
                format!("[{}]", ctx.host)
            } else {
                ctx.host.clone()
            };
            let target = format!(
                "https://{host}{}{}",
                self.shared.https_port,
                req.uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut header = ResponseHeader::build(308, Some(3))?;
            header.insert_header("location", target)?;
            header.insert_header("content-length", "0")?;
            session
                .write_response_header(Box::new(header), true)
                .await?;
            return Ok(true);
        }

        let (schema, max, queue) = if self.shared.public_hosts.contains(&ctx.host) {
            (Arc::from("public"), PUBLIC_MAX_IN_FLIGHT, PUBLIC_QUEUE)
        } else {
            let routes = self.shared.routes.load();
            match routes.get(&ctx.host) {
                Some(t) if t.suspended => {
                    ctx.schema = Some(t.schema.clone());
                    return self.answer(session, ctx, Page::Suspended).await;
                }
                Some(t) => (t.schema.clone(), t.max_in_flight, t.queue_length),
                None if self.shared.settings.show_public_if_no_tenant_found => {
                    (Arc::from("public"), PUBLIC_MAX_IN_FLIGHT, PUBLIC_QUEUE)
                }
                None => return self.answer(session, ctx, Page::NoPharmacy).await,
            }
        };
        ctx.schema = Some(schema.clone());
        let upstream = self.shared.upstreams.get(&schema);
        let wait = Duration::from_millis(self.shared.settings.queue_timeout_ms);
        match upstream.admit(max, queue, wait).await {
            Ok(slot) => {
                self.shared.metrics.enter(&schema);
                ctx.slot = Some(slot);
            }
            Err(_) => return self.answer(session, ctx, Page::Overloaded).await,
        }
        if let Err(page) = self.ensure_worker(&schema, &upstream).await {
            return self.answer(session, ctx, page).await;
        }
        ctx.upstream = Some(upstream);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .upstream
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        let mut using = upstream.pick(&ctx.failed);
        if using.is_none() {
            if let Some(schema) = ctx.schema.clone() {
                using = self.replacement(&schema, &upstream, &ctx.failed).await;
            }
        }
        let using = using.ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectRefused,
                "no worker of this tenant is reachable",
            )
        })?;
        let path = using.endpoint().path.to_string_lossy().into_owned();
        let mut peer = HttpPeer::new_uds(&path, false, String::new())?;
        let s = &self.shared.settings;
        peer.options.connection_timeout =
            Some(Duration::from_millis(s.upstream_connect_timeout_ms));
        peer.options.read_timeout = Some(Duration::from_secs(s.upstream_read_timeout_secs));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        ctx.using = Some(using);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Skipped for this request only: one refused connect (a full backlog, a timeout) is
        // no proof the worker is gone, and control's feed says when it is.
        if let Some(using) = ctx.using.take() {
            ctx.failed.push(using.endpoint().path.clone());
        }
        e.set_retry(ctx.failed.len() < MAX_CONNECT_FAILURES);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("worker {peer}"));
        let idempotent = session.req_header().method.is_idempotent();
        let resendable = idempotent
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        // A pooled keep-alive connection the worker had already closed: the worker is fine,
        // the request goes again (to the same worker, on a new connection).
        if resendable && client_reused && matches!(e.retry, pingora::RetryType::ReusedOnly) {
            e.set_retry(true);
            return e;
        }
        // The worker failed after the request was sent: an idempotent request gets one more
        // try on another worker.
        let retry = resendable && !ctx.retried_after_send;
        if retry {
            ctx.retried_after_send = true;
            if let Some(using) = ctx.using.take() {
                ctx.failed.push(using.endpoint().path.clone());
            }
        }
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Nothing a client sends may pass for what the proxy says.
        let own: Vec<String> = upstream
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with("x-apotheca-") || k.starts_with("x-forwarded-"))
            .map(str::to_owned)
            .collect();
        for name in own {
            upstream.remove_header(&name);
        }
        for name in HOP_BY_HOP {
            upstream.remove_header(*name);
        }
        if let Some(schema) = &ctx.schema {
            upstream.insert_header("x-apotheca-tenant", schema.as_ref())?;
        }
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            upstream.insert_header("x-forwarded-for", ip.to_string())?;
        }
        upstream.insert_header(
            "x-forwarded-proto",
            if self.https { "https" } else { "http" },
        )?;
        upstream.insert_header("x-forwarded-host", ctx.host.as_str())?;
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        if upstream.uri.authority().is_some() {
            // HTTP/2 from the client, HTTP/1.1 to the worker: the host travels in `Host`.
            upstream.insert_header("host", ctx.host.as_str())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        response.insert_header("x-request-id", ctx.request_id.as_str())?;
        if self.https && self.shared.settings.hsts_max_age_secs > 0 {
            response.insert_header(
                "strict-transport-security",
                format!("max-age={}", self.shared.settings.hsts_max_age_secs),
            )?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let page = match e.etype() {
            ErrorType::HTTPStatus(400) => Some(Page::BadHost),
            ErrorType::HTTPStatus(_) => None,
            _ => match e.esource() {
                ErrorSource::Upstream => Some(Page::Unreachable),
                ErrorSource::Downstream => None,
                ErrorSource::Internal | ErrorSource::Unset => Some(Page::Unreachable),
            },
        };
        let code = match (page, e.etype()) {
            (Some(p), _) => p.status(),
            (None, ErrorType::HTTPStatus(c)) => *c,
            (None, _) => 0,
        };
        if session.response_written().is_none() {
            if let Some(page) = page {
                let _ = page.send(session, ctx.json).await;
            } else if code > 0 {
                let _ = session.respond_error(code).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_answer)
            .unwrap_or(0);
        let elapsed = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
        let tenant = ctx.schema.as_deref().unwrap_or("-");
        if let Some(log) = &self.shared.access_log {
            let req = session.req_header();
            let worker = ctx
                .using
                .as_ref()
                .and_then(|u| u.endpoint().path.file_name())
                .map(|n| n.to_string_lossy());
            log.log(&Entry {
                tenant,
                host: &ctx.host,
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                bytes: session.body_bytes_sent(),
                latency: elapsed,
                worker: worker.as_deref().unwrap_or("-"),
                request_id: &ctx.request_id,
                error: e.map(|e| e.to_string()),
            });
        }
        self.shared
            .metrics
            .request(tenant, status, elapsed, ctx.slot.is_some());
        ctx.using = None;
        ctx.slot = None;
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// A client's `X-Request-Id` is kept when it is short and plain.
fn sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Request ids: a random prefix per process and a counter.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Self {
            prefix: h.finish(),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:016x}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(sane_request_id("3f2a-77_b.c:1"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id(&"a".repeat(129)));
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
        assert!(sane_request_id(&ids.next()));
    }
}
