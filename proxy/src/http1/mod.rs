//! The HTTP/1.1 front: one client connection, its requests one after another (keep-alive and
//! pipelining), each read whole — its head within `client_header_timeout_ms` and at most
//! `max_header_bytes`, its body within `client_body_timeout_ms` and at most `max_body_bytes`
//! (the console's import upload: [`Edge::limits`]; a chunked body is decoded; the worker always gets a `Content-Length`) — before it takes a
//! slot of its tenant, so a slow client never holds a worker. The answer goes back in one write
//! when it came in one read (head and body together), else piece by piece as the worker sends
//! it, each write to the client bounded by `client_send_timeout_ms`; the worker's connection
//! goes back to its pool as soon as its answer was read to the end. An idle connection is
//! closed after `keepalive_timeout_secs`, or at once when the proxy stops; a new one must send
//! its first head within the header timeout, and is answered (with `Connection: close`) even
//! when the proxy stops meanwhile, so a hand-over on SIGQUIT fails no request.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod answer;

use crate::accesslog::Entry;
use crate::forward::{self, Edge, Forwarded, Route};
use crate::host;
use crate::pages::{wants_json, Page};
use crate::wire::{self, Chunked, Framing, HeadError, HeaderAt, RequestHead};

/// Read this much at a time from a client.
const READ_SIZE: usize = 8 * 1024;
/// An idle connection's buffers shrink back to this.
const IDLE_CAPACITY: usize = 4 * 1024;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The client itself (its address, or the one a PROXY header gave).
    Client(Option<IpAddr>),
    /// A balancer of `[proxy] forwarded_for_from`, whose requests each name their client as
    /// the last address of their `X-Forwarded-For`.
    Balancer(Option<IpAddr>),
}

/// Serves one client connection until it closes, misbehaves or the proxy stops.
pub async fn serve<S>(edge: Arc<Edge>, io: S, https: bool, peer: Peer, shutdown: ShutdownWatch)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut client = Client {
        edge: &edge,
        io,
        https,
        peer,
        ip: match peer {
            Peer::Client(ip) | Peer::Balancer(ip) => ip,
        },
        buf: Vec::with_capacity(IDLE_CAPACITY),
        headers: Vec::with_capacity(32),
        up: Vec::new(),
        out: Vec::new(),
        body: Vec::new(),
    };
    client.run(shutdown).await;
    let _ = client.io.shutdown().await;
}

struct Client<'a, S> {
    edge: &'a Edge,
    io: S,
    https: bool,
    peer: Peer,
    /// The current request's client.
    ip: Option<IpAddr>,
    /// Bytes received and not yet consumed: the current request first.
    buf: Vec<u8>,
    headers: Vec<HeaderAt>,
    /// The request as the worker gets it.
    up: Vec<u8>,
    /// What goes to the client next.
    out: Vec<u8>,
    /// A chunked request's body, decoded.
    body: Vec<u8>,
}

/// One request as it goes: what its answer needs, and what its log line says (filled in as
/// it goes).
struct Req {
    started: Instant,
    json: bool,
    request_id: String,
    /// Normalised; `-` until known.
    host: String,
    keep_alive: bool,
    is_head: bool,
    http10: bool,
    tenant: Option<Arc<str>>,
    status: u16,
    bytes: usize,
    worker: String,
    error: Option<String>,
    admitted: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Client<'_, S> {
    async fn run(&mut self, mut shutdown: ShutdownWatch) {
        let s = &self.edge.settings;
        let header_timeout = Duration::from_millis(s.client_header_timeout_ms);
        let max_head = s.max_header_bytes;
        let mut fresh = Some(self.edge.fresh.enter());
        loop {
            // A balancer's connection serves many clients: until a request names its own,
            // what is logged of it (a refused head) is the balancer's.
            if let Peer::Balancer(balancer) = self.peer {
                self.ip = balancer;
            }
            if self.buf.is_empty() {
                self.shrink();
                if !self.next_request(&mut shutdown, fresh.is_none()).await {
                    return;
                }
            }
            let deadline = tokio::time::Instant::now() + header_timeout;
            let head = loop {
                match wire::parse_request(&self.buf, max_head, &mut self.headers) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(e) => {
                        self.refuse(refusal(e), Some(e.to_string())).await;
                        return;
                    }
                }
                match tokio::time::timeout_at(deadline, self.read_more()).await {
                    Ok(Ok(n)) if n > 0 => {}
                    // Gone in the middle of a head: nobody to answer.
                    Ok(_) => return,
                    Err(_) => {
                        self.refuse(
                            Page::RequestTimeout,
                            Some("the request head did not arrive in time".into()),
                        )
                        .await;
                        return;
                    }
                }
            };
            let closing = *shutdown.borrow();
            let _counted = self.edge.in_flight.enter();
            fresh = None;
            match self.request(&head, closing).await {
                Some(consumed) => {
                    self.buf.drain(..consumed);
                }
                None => return,
            }
        }
    }

    /// Waits for the first bytes of the next request; false when the connection ends instead.
    /// A new connection must send its first head within the header timeout (so an idle one
    /// costs little), and is answered even when the proxy stops meanwhile: its client has sent
    /// a request or is about to. One that served requests idles up to the keep-alive timeout
    /// and, when the proxy stops, closes at once (after taking what already arrived).
    async fn next_request(&mut self, shutdown: &mut ShutdownWatch, served: bool) -> bool {
        let s = &self.edge.settings;
        let wait = if served {
            Duration::from_secs(s.keepalive_timeout_secs)
        } else {
            Duration::from_millis(s.client_header_timeout_ms)
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let stopping = *shutdown.borrow();
            if stopping && served {
                return matches!(self.read_more().now_or_never(), Some(Ok(n)) if n > 0);
            }
            tokio::select! {
                biased;
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() {
                        return false;
                    }
                }
                read = tokio::time::timeout_at(deadline, self.read_more()) => {
                    return matches!(read, Ok(Ok(n)) if n > 0);
                }
            }
        }
    }

    /// One request, its head in `buf`; how many bytes of `buf` it took when the connection
    /// goes on, `None` when it must close.
    async fn request(&mut self, head: &RequestHead, closing: bool) -> Option<usize> {
        let edge = self.edge;
        let mut unnamed = false;
        if let Peer::Balancer(_) = self.peer {
            let forwarded_for = self
                .headers
                .iter()
                .rev()
                .find(|h| h.name(&self.buf).eq_ignore_ascii_case("x-forwarded-for"))
                .map(|h| h.value(&self.buf));
            match last_forwarded_for(forwarded_for) {
                Some(client) => self.ip = Some(client),
                None => unnamed = true,
            }
        }
        let (json, request_id, host) = {
            let buf = &self.buf;
            let target = head.target(buf);
            let accept = head
                .accept
                .as_ref()
                .and_then(|r| std::str::from_utf8(&buf[r.clone()]).ok());
            let json = wants_json(accept, path_of(target));
            let request_id = edge.request_id(head.request_id.as_ref().map(|r| &buf[r.clone()]));
            let host = head
                .host(buf)
                .and_then(|h| std::str::from_utf8(h).ok())
                .map(host::normalise);
            (json, request_id, host)
        };
        let mut r = Req {
            started: Instant::now(),
            json,
            request_id,
            host: "-".to_owned(),
            keep_alive: !head.close && !closing,
            is_head: head.method(&self.buf) == "HEAD",
            http10: head.http10,
            tenant: None,
            status: 0,
            bytes: 0,
            worker: String::new(),
            error: None,
            admitted: false,
        };
        if unnamed {
            // Counted as the balancer's, every such client would share one set of limits.
            r.error =
                Some("a balancer's request without a client address in X-Forwarded-For".into());
            return self.own_and_log(Page::BadRequest, &mut r, head).await;
        }
        let Some(Ok(host)) = host else {
            return self.own_and_log(Page::BadHost, &mut r, head).await;
        };
        r.host = host;
        let route = edge
            .route(&r.host, self.https, head.target(&self.buf))
            .await;
        let target = match route {
            Route::Tenant(t) => t,
            Route::Answer(page) => return self.own_and_log(page, &mut r, head).await,
            Route::Redirect(location) => {
                let kept = self.redirect(&location, &mut r, head).await;
                self.log(head, &r);
                return kept;
            }
        };
        r.tenant = Some(target.schema.clone());

        let cookies = self
            .headers
            .iter()
            .filter(|h| h.name(&self.buf).eq_ignore_ascii_case("cookie"))
            .map(|h| h.value(&self.buf));
        let limits = match edge.limits(
            &target,
            head.method(&self.buf),
            head.target(&self.buf),
            cookies,
        ) {
            Ok(limits) => limits,
            Err(page) => return self.own_and_log(page, &mut r, head).await,
        };
        let body = match self.read_body(head, &limits).await {
            Ok(body) => body,
            Err(page) => {
                r.keep_alive = false;
                if let Some(page) = page {
                    self.own(page, &mut r, head).await;
                }
                self.log(head, &r);
                return None;
            }
        };
        let consumed = body.consumed;
        let admitted = match edge.admit(&target).await {
            Ok(a) => a,
            Err(page) => return self.own_and_log(page, &mut r, head).await.map(|_| consumed),
        };
        r.admitted = true;
        {
            let buf = &self.buf;
            let fwd = Forwarded {
                schema: &target.schema,
                client_ip: self.ip,
                https: self.https,
                host: &r.host,
                request_id: &r.request_id,
            };
            let host_header = head.host(buf).unwrap_or_default();
            let body_bytes = match &body.range {
                Some(r) => &buf[r.clone()],
                None => &self.body[..],
            };
            forward::write_request(
                &mut self.up,
                head.method(buf),
                head.target(buf),
                host_header,
                self.headers.iter().map(|h| (h.name(buf), h.value(buf))),
                |name| head.named_by_connection(buf, name),
                &fwd,
                body_bytes,
            );
        }
        let method = head.method(&self.buf);
        let answered = edge
            .exchange(
                &target,
                &self.up,
                forward::idempotent(method),
                r.is_head,
                limits.answer_within,
            )
            .await;
        let kept = match answered {
            Ok(answered) => {
                r.worker = answered.worker();
                self.respond(answered, admitted, &mut r).await
            }
            Err((page, error)) => {
                drop(admitted);
                r.error = Some(error);
                self.own(page, &mut r, head).await.is_some()
            }
        };
        self.log(head, &r);
        kept.then_some(consumed)
    }

    /// A page of the proxy's own, then the log line.
    async fn own_and_log(&mut self, page: Page, r: &mut Req, head: &RequestHead) -> Option<usize> {
        let kept = self.own(page, r, head).await;
        self.log(head, r);
        kept
    }

    /// Reads the request's body: its place in `buf` (or, decoded, in `body`) and how many bytes
    /// of `buf` the request took. `Err(Some(page))`: refused with that page; `Err(None)`: the
    /// client went away.
    async fn read_body(
        &mut self,
        head: &RequestHead,
        limits: &forward::Limits,
    ) -> Result<ReadBody, Option<Page>> {
        let max = limits.max_body;
        let deadline = tokio::time::Instant::now() + limits.body_within;
        match head.body {
            Framing::None | Framing::UntilClose => Ok(ReadBody {
                range: Some(head.len..head.len),
                consumed: head.len,
            }),
            Framing::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or(Some(Page::TooLarge))?;
                let end = head.len + n;
                if self.buf.len() < end && head.expect_continue {
                    self.continue_100().await.map_err(|_| None)?;
                }
                while self.buf.len() < end {
                    self.read_body_more(deadline).await?;
                }
                Ok(ReadBody {
                    range: Some(head.len..end),
                    consumed: end,
                })
            }
            Framing::Chunked => {
                let mut chunked = Chunked::default();
                let mut at = head.len;
                self.body.clear();
                let mut continued = false;
                loop {
                    let body = &mut self.body;
                    let mut too_large = false;
                    let used = chunked
                        .feed(&self.buf[at..], |data| {
                            if body.len() + data.len() > max {
                                too_large = true;
                            } else {
                                body.extend_from_slice(data);
                            }
                        })
                        .map_err(|_| Some(Page::BadRequest))?;
                    if too_large {
                        return Err(Some(Page::TooLarge));
                    }
                    at += used;
                    if chunked.done() {
                        return Ok(ReadBody {
                            range: None,
                            consumed: at,
                        });
                    }
                    if head.expect_continue && !continued {
                        continued = true;
                        self.continue_100().await.map_err(|_| None)?;
                    }
                    self.read_body_more(deadline).await?;
                }
            }
        }
    }

    async fn read_body_more(&mut self, deadline: tokio::time::Instant) -> Result<(), Option<Page>> {
        match tokio::time::timeout_at(deadline, self.read_more()).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(_) => Err(None),
            Err(_) => Err(Some(Page::RequestTimeout)),
        }
    }

    async fn continue_100(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.send_out().await
    }

    fn log(&self, head: &RequestHead, r: &Req) {
        self.edge.finish(
            &Entry {
                tenant: r.tenant.as_deref().unwrap_or("-"),
                host: &r.host,
                method: head.method(&self.buf),
                path: path_of(head.target(&self.buf)),
                status: r.status,
                bytes: r.bytes,
                latency: r.started.elapsed(),
                worker: if r.worker.is_empty() { "-" } else { &r.worker },
                request_id: &r.request_id,
                client: self.ip,
                error: r.error.clone(),
            },
            r.admitted,
        );
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.io.read_buf(&mut self.buf).await
    }

    async fn send_out(&mut self) -> io::Result<()> {
        let timeout = Duration::from_millis(self.edge.settings.client_send_timeout_ms);
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                ))
            })
    }

    /// Gives back the memory a large request or answer took, while the connection idles.
    fn shrink(&mut self) {
        for v in [&mut self.buf, &mut self.up, &mut self.out, &mut self.body] {
            if v.capacity() > 4 * IDLE_CAPACITY {
                v.clear();
                v.shrink_to(IDLE_CAPACITY);
            }
        }
    }
}

/// Where a request's body lies.
struct ReadBody {
    /// In `buf`; `None`: decoded into `body`.
    range: Option<std::ops::Range<usize>>,
    /// Bytes of `buf` the request took, head and body.
    consumed: usize,
}

fn refusal(e: HeadError) -> Page {
    match e {
        HeadError::TooLarge | HeadError::TooManyHeaders => Page::HeadersTooLarge,
        HeadError::Malformed(_) => Page::BadRequest,
        HeadError::UnsupportedCoding => Page::NotImplemented,
    }
}

/// The path of a request target, without its query.
fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(p, _)| p)
}

/// The last address of an `X-Forwarded-For` value (`client, proxy1, proxy2`): the one the
/// balancer that sent it added (an IPv4 address written as IPv6, `::ffff:a.b.c.d`, as IPv4).
/// None when there is none, or it is no address.
fn last_forwarded_for(value: Option<&[u8]>) -> Option<IpAddr> {
    let value = std::str::from_utf8(value?).ok()?;
    let ip: IpAddr = value.rsplit(',').next()?.trim().parse().ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_last_forwarded_for_address() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(last_forwarded_for(Some(b"127.0.0.5")), ip("127.0.0.5"));
        // What the client said itself comes first and is not believed.
        assert_eq!(
            last_forwarded_for(Some(b"6.6.6.6, 10.0.0.9 ,  2001:db8::7")),
            ip("2001:db8::7")
        );
        for bad in [&b""[..], b"unknown", b"1.2.3.4, ", b"\xff"] {
            assert_eq!(last_forwarded_for(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(last_forwarded_for(None), None);
        assert_eq!(last_forwarded_for(Some(b"::ffff:10.1.2.3")), ip("10.1.2.3"));
    }
}
