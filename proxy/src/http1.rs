//! The HTTP/1.1 front: one client connection, its requests one after another (keep-alive and
//! pipelining), each read whole — its head within `client_header_timeout_ms` and at most
//! `max_header_bytes`, its body within `client_body_timeout_ms` and at most `max_body_bytes`
//! (a chunked body is decoded; the worker always gets a `Content-Length`) — before it takes a
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

use crate::accesslog::Entry;
use crate::forward::{self, Admitted, Answered, Edge, Forwarded, Route};
use crate::host;
use crate::pages::{wants_json, Page};
use crate::wire::{self, Chunked, Framing, HeadError, HeaderAt, RequestHead};

/// Read this much at a time from a client.
const READ_SIZE: usize = 8 * 1024;
/// An idle connection's buffers shrink back to this.
const IDLE_CAPACITY: usize = 4 * 1024;

/// Serves one client connection until it closes, misbehaves or the proxy stops.
pub async fn serve<S>(
    edge: Arc<Edge>,
    io: S,
    https: bool,
    ip: Option<IpAddr>,
    shutdown: ShutdownWatch,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut client = Client {
        edge: &edge,
        io,
        https,
        ip,
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

/// What the log line says about a request, filled in as it goes.
struct Outcome {
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
        let started = Instant::now();
        let edge = self.edge;
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
                .host
                .as_ref()
                .and_then(|r| std::str::from_utf8(&buf[r.clone()]).ok())
                .map(host::normalise);
            (json, request_id, host)
        };
        let mut outcome = Outcome {
            tenant: None,
            status: 0,
            bytes: 0,
            worker: String::new(),
            error: None,
            admitted: false,
        };
        let keep_alive = !head.close && !closing;
        let is_head = head.method(&self.buf) == "HEAD";
        let host = match host {
            Some(Ok(h)) => h,
            _ => {
                let kept = self
                    .own(
                        Page::BadHost,
                        json,
                        &request_id,
                        keep_alive,
                        head,
                        is_head,
                        &mut outcome,
                    )
                    .await;
                self.log(head, "-", &request_id, started, &outcome);
                return kept;
            }
        };
        let route = edge.route(&host, self.https, head.target(&self.buf)).await;
        let target = match route {
            Route::Tenant(t) => t,
            Route::Answer(page) => {
                let kept = self
                    .own(
                        page,
                        json,
                        &request_id,
                        keep_alive,
                        head,
                        is_head,
                        &mut outcome,
                    )
                    .await;
                self.log(head, &host, &request_id, started, &outcome);
                return kept;
            }
            Route::Redirect(location) => {
                let kept = self
                    .redirect(&location, &request_id, keep_alive, head, &mut outcome)
                    .await;
                self.log(head, &host, &request_id, started, &outcome);
                return kept;
            }
        };
        outcome.tenant = Some(target.schema.clone());

        let body = match self.read_body(head).await {
            Ok(body) => body,
            Err(page) => {
                if let Some(page) = page {
                    self.own(page, json, &request_id, false, head, is_head, &mut outcome)
                        .await;
                }
                self.log(head, &host, &request_id, started, &outcome);
                return None;
            }
        };
        let consumed = body.consumed;
        let admitted = match edge.admit(&target).await {
            Ok(a) => a,
            Err(page) => {
                let kept = self
                    .own(
                        page,
                        json,
                        &request_id,
                        keep_alive,
                        head,
                        is_head,
                        &mut outcome,
                    )
                    .await;
                self.log(head, &host, &request_id, started, &outcome);
                return kept.map(|_| consumed);
            }
        };
        outcome.admitted = true;
        {
            let buf = &self.buf;
            let fwd = Forwarded {
                schema: &target.schema,
                client_ip: self.ip,
                https: self.https,
                host: &host,
                request_id: &request_id,
            };
            let host_header = head.host.as_ref().map_or(&b""[..], |r| &buf[r.clone()]);
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
            .exchange(&target, &self.up, forward::idempotent(method), is_head)
            .await;
        let kept = match answered {
            Ok(answered) => {
                outcome.worker = answered.worker();
                self.respond(
                    answered,
                    admitted,
                    &request_id,
                    head.http10,
                    keep_alive,
                    &mut outcome,
                )
                .await
            }
            Err((page, error)) => {
                drop(admitted);
                outcome.error = Some(error);
                self.own(
                    page,
                    json,
                    &request_id,
                    keep_alive,
                    head,
                    is_head,
                    &mut outcome,
                )
                .await
                .is_some()
            }
        };
        self.log(head, &host, &request_id, started, &outcome);
        kept.then_some(consumed)
    }

    /// Reads the request's body: its place in `buf` (or, decoded, in `body`) and how many bytes
    /// of `buf` the request took. `Err(Some(page))`: refused with that page; `Err(None)`: the
    /// client went away.
    async fn read_body(&mut self, head: &RequestHead) -> Result<ReadBody, Option<Page>> {
        let s = &self.edge.settings;
        let max = s.max_body_bytes;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(s.client_body_timeout_ms);
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

    /// Sends the worker's answer on; whether the connection may go on.
    async fn respond(
        &mut self,
        mut answered: Answered,
        admitted: Admitted,
        request_id: &str,
        http10: bool,
        keep_alive: bool,
        outcome: &mut Outcome,
    ) -> bool {
        let s = &self.edge.settings;
        let read_timeout = Duration::from_secs(s.upstream_read_timeout_secs);
        let framing = answered.head.body;
        let dechunk = framing == Framing::Chunked && http10;
        let close = !keep_alive || framing == Framing::UntilClose || dechunk;
        outcome.status = answered.head.status;
        self.write_response_head(&answered, request_id, close, dechunk, http10);

        // The body: what came with the head, then the rest as it arrives.
        let mut chunked = Chunked::default();
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut first = true;
        let mut clean = true;
        let (done, worker_failed) = loop {
            let piece: &[u8] = if first {
                &answered.conn.buf[answered.head.len..]
            } else {
                match answered.conn.read_piece(read_timeout).await {
                    Ok(p) => p,
                    Err(e) => {
                        outcome.error = Some(format!("reading the answer: {e}"));
                        break (false, true);
                    }
                }
            };
            if !first && piece.is_empty() && framing != Framing::UntilClose {
                outcome.error =
                    Some("the worker closed the connection in the middle of its answer".into());
                break (false, true);
            }
            if !first {
                self.out.clear();
            }
            let before = self.out.len();
            let done = match framing {
                Framing::None => {
                    clean &= piece.is_empty();
                    true
                }
                Framing::Length(_) => {
                    let take = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&piece[..take]);
                    left -= take as u64;
                    clean &= take == piece.len();
                    left == 0
                }
                Framing::Chunked => {
                    let out = &mut self.out;
                    let used = match chunked.feed(piece, |data| {
                        if dechunk {
                            out.extend_from_slice(data)
                        }
                    }) {
                        Ok(used) => used,
                        Err(e) => {
                            outcome.error = Some(format!("the worker's answer: {e}"));
                            break (false, true);
                        }
                    };
                    if !dechunk {
                        out.extend_from_slice(&piece[..used]);
                    }
                    clean &= used == piece.len();
                    chunked.done()
                }
                Framing::UntilClose => {
                    self.out.extend_from_slice(piece);
                    !first && piece.is_empty()
                }
            };
            outcome.bytes += self.out.len() - before;
            first = false;
            if done {
                break (true, false);
            }
            if let Err(e) = self.send_out().await {
                outcome.error = Some(format!("writing to the client: {e}"));
                return false;
            }
        };
        // The worker's part is over: its connection and the tenant's slot are free before
        // the last write to the client, however slow that client is.
        if done {
            answered.release(clean);
        } else {
            drop(answered);
        }
        drop(admitted);
        if worker_failed {
            // Part of an answer was sent (at least its head): the client must see it broken.
            return false;
        }
        if let Err(e) = self.send_out().await {
            outcome.error = Some(format!("writing to the client: {e}"));
            return false;
        }
        !close
    }

    /// The worker's status line and headers, but the hop-by-hop ones, with the proxy's own.
    fn write_response_head(
        &mut self,
        answered: &Answered,
        request_id: &str,
        close: bool,
        dechunk: bool,
        http10: bool,
    ) {
        let s = &self.edge.settings;
        let hsts = self.https && s.hsts_max_age_secs > 0;
        let head = &answered.head;
        let buf = &answered.conn.buf;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, head.status);
        out.push(b' ');
        out.extend_from_slice(&buf[head.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        for h in &answered.conn.headers {
            let name = h.name(buf);
            let pass = if name.eq_ignore_ascii_case("content-length") {
                matches!(head.body, Framing::None | Framing::Length(_))
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.body == Framing::Chunked && !dechunk
            } else {
                forward::passed_on(name, hsts)
            };
            if pass {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        self.push_own_headers(request_id, close, http10);
    }

    /// `X-Request-Id`, HSTS on HTTPS, `Connection: close` when closing (an HTTP/1.0 client
    /// that stays is told `keep-alive`), and the blank line.
    fn push_own_headers(&mut self, request_id: &str, close: bool, http10: bool) {
        let s = &self.edge.settings;
        let out = &mut self.out;
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        if self.https && s.hsts_max_age_secs > 0 {
            out.extend_from_slice(b"strict-transport-security: max-age=");
            push_number(out, s.hsts_max_age_secs);
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Answers with a page of the proxy's own; `Some(bytes the request took)` when the
    /// connection may go on (a body not yet read closes it).
    #[allow(clippy::too_many_arguments)]
    async fn own(
        &mut self,
        page: Page,
        json: bool,
        request_id: &str,
        keep_alive: bool,
        head: &RequestHead,
        is_head: bool,
        outcome: &mut Outcome,
    ) -> Option<usize> {
        let consumed = self.consumed_without_reading(head);
        let close = !keep_alive || consumed.is_none();
        let page = page.render(json);
        outcome.status = page.status;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, page.status);
        out.push(b' ');
        out.extend_from_slice(reason(page.status).as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(page.content_type.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        push_number(out, page.body.len() as u64);
        out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
        if let Some(secs) = page.retry_after {
            out.extend_from_slice(b"retry-after: ");
            push_number(out, u64::from(secs));
            out.extend_from_slice(b"\r\n");
        }
        self.push_own_headers(request_id, close, head.http10);
        if !is_head {
            self.out.extend_from_slice(&page.body);
            outcome.bytes = page.body.len();
        }
        if let Err(e) = self.send_out().await {
            outcome.error = Some(format!("writing to the client: {e}"));
            return None;
        }
        if close {
            None
        } else {
            consumed
        }
    }

    /// The HTTPS redirect (308, method and body kept by the client).
    async fn redirect(
        &mut self,
        location: &str,
        request_id: &str,
        keep_alive: bool,
        head: &RequestHead,
        outcome: &mut Outcome,
    ) -> Option<usize> {
        let consumed = self.consumed_without_reading(head);
        let close = !keep_alive || consumed.is_none();
        outcome.status = 308;
        self.out.clear();
        self.out
            .extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\nlocation: ");
        self.out.extend_from_slice(location.as_bytes());
        self.out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
        self.push_own_headers(request_id, close, head.http10);
        self.send_out().await.ok()?;
        if close {
            None
        } else {
            consumed
        }
    }

    /// How many bytes a request took when its body (if any) is already all in `buf`.
    fn consumed_without_reading(&self, head: &RequestHead) -> Option<usize> {
        match head.body {
            Framing::None | Framing::UntilClose => Some(head.len),
            Framing::Length(n) => usize::try_from(n)
                .ok()
                .map(|n| head.len + n)
                .filter(|end| *end <= self.buf.len()),
            Framing::Chunked => None,
        }
    }

    /// A request that could not be read (malformed, too large, too slow): answered, then the
    /// connection closes.
    async fn refuse(&mut self, page: Page, error: Option<String>) {
        let started = Instant::now();
        let _counted = self.edge.in_flight.enter();
        let request_id = self.edge.request_id(None);
        let rendered = page.render(false);
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        push_status(&mut self.out, rendered.status);
        self.out.push(b' ');
        self.out
            .extend_from_slice(reason(rendered.status).as_bytes());
        self.out
            .extend_from_slice(b"\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: ");
        push_number(&mut self.out, rendered.body.len() as u64);
        self.out
            .extend_from_slice(b"\r\ncache-control: no-store\r\n");
        self.push_own_headers(&request_id, true, false);
        self.out.extend_from_slice(&rendered.body);
        let _ = self.send_out().await;
        self.edge.finish(
            &Entry {
                tenant: "-",
                host: "-",
                method: "-",
                path: "-",
                status: rendered.status,
                bytes: rendered.body.len(),
                latency: started.elapsed(),
                worker: "-",
                request_id: &request_id,
                error,
            },
            false,
        );
    }

    fn log(&self, head: &RequestHead, host: &str, request_id: &str, started: Instant, o: &Outcome) {
        self.edge.finish(
            &Entry {
                tenant: o.tenant.as_deref().unwrap_or("-"),
                host,
                method: head.method(&self.buf),
                path: path_of(head.target(&self.buf)),
                status: o.status,
                bytes: o.bytes,
                latency: started.elapsed(),
                worker: if o.worker.is_empty() { "-" } else { &o.worker },
                request_id,
                error: o.error.clone(),
            },
            o.admitted,
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

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

fn push_number(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "{n}");
}
