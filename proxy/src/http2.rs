//! The HTTP/2 front (HTTPS with ALPN `h2`): hyper's HTTP/2 server for the connection and its
//! streams, and per stream the same request path as HTTP/1.1 ([`crate::forward`]): the host
//! from `:authority`, the body read whole (same limits) before admission, the request sent to
//! the worker as HTTP/1.1 (split `cookie` fields joined again, RFC 9113 §8.2.3), the answer's
//! hop-by-hop headers (those its `Connection` names too) dropped, its body passed on as it
//! arrives (a chunked one decoded).

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora::server::ShutdownWatch;

use crate::accesslog::Entry;
use crate::forward::{self, Admitted, Answered, Edge, Forwarded, Route};
use crate::host;
use crate::pages::{wants_json, Page};
use crate::wire::{Chunked, Framing};

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Serves one HTTP/2 connection until it ends or the proxy stops (then gracefully: a GOAWAY,
/// the streams in flight finish).
pub async fn serve<S>(edge: Arc<Edge>, io: S, ip: Option<IpAddr>, mut shutdown: ShutdownWatch)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let s = &edge.settings;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let for_streams = edge.clone();
    let service = hyper::service::service_fn(move |req| {
        let edge = for_streams.clone();
        async move { Ok::<_, Infallible>(handle(&edge, req, ip).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopping = async {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
        }
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(edge: &Edge, req: Request<Incoming>, ip: Option<IpAddr>) -> Response<Body> {
    let started = Instant::now();
    let _counted = edge.in_flight.enter();
    let (parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = parts.uri.path();
    let method = parts.method.as_str();
    let accept = parts.headers.get("accept").and_then(|v| v.to_str().ok());
    let json = wants_json(accept, path);
    let request_id = edge.request_id(parts.headers.get("x-request-id").map(|v| v.as_bytes()));
    let raw_host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get("host").and_then(|v| v.to_str().ok()));
    let log = |tenant: &str,
               host: &str,
               status: u16,
               bytes: usize,
               worker: &str,
               error: Option<String>,
               admitted: bool| {
        edge.finish(
            &Entry {
                tenant,
                host,
                method,
                path,
                status,
                bytes,
                latency: started.elapsed(),
                worker,
                request_id: &request_id,
                client: ip,
                error,
            },
            admitted,
        );
    };
    let own = |page: Page| own_page(edge, page, json, &request_id);
    // A page of the proxy's own instead of the worker's answer, and its log line.
    let refuse = |tenant: &str, host: &str, page: Page, error: Option<String>| {
        let (response, bytes) = own(page);
        log(tenant, host, page.status(), bytes, "-", error, false);
        response
    };

    let Some(Ok(host)) = raw_host.map(host::normalise) else {
        return refuse("-", "-", Page::BadHost, None);
    };
    let target = match edge.route(&host, true, target).await {
        Route::Tenant(t) => t,
        Route::Answer(page) => return refuse("-", &host, page, None),
        Route::Redirect(location) => {
            // HTTP/2 only comes over HTTPS, which is never redirected.
            let response = Response::builder()
                .status(308)
                .header("location", location)
                .body(empty())
                .unwrap_or_else(|_| Response::new(empty()));
            log("-", &host, 308, 0, "-", None, false);
            return response;
        }
    };
    let cookies = parts
        .headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes());
    let limits = match edge.limits(&target, method, path, cookies) {
        Ok(limits) => limits,
        Err(page) => return refuse(&target.schema, &host, page, None),
    };
    let limited = Limited::new(body, limits.max_body);
    let body = match tokio::time::timeout(limits.body_within, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            let page = if e.is::<http_body_util::LengthLimitError>() {
                Page::TooLarge
            } else {
                Page::BadRequest
            };
            return refuse(&target.schema, &host, page, Some(e.to_string()));
        }
        Err(_) => return refuse(&target.schema, &host, Page::RequestTimeout, None),
    };
    let admitted = match edge.admit(&target).await {
        Ok(a) => a,
        Err(page) => return refuse(&target.schema, &host, page, None),
    };

    let cookies = joined_cookies(&parts.headers);
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != hyper::header::COOKIE)
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .chain(cookies.as_deref().map(|c| ("cookie", c)));
    let mut up = Vec::new();
    forward::write_request(
        &mut up,
        method,
        target_of(&parts.uri),
        raw_host.map_or(&b""[..], str::as_bytes),
        headers,
        |_| false,
        &Forwarded {
            schema: &target.schema,
            client_ip: ip,
            https: true,
            host: &host,
            request_id: &request_id,
        },
        &body,
    );
    let answered = edge
        .exchange(
            &target,
            &up,
            forward::idempotent(method),
            method == "HEAD",
            limits.answer_within,
        )
        .await;
    match answered {
        Ok(answered) => {
            let worker = answered.worker();
            let status = answered.head.status;
            let (response, bytes) = respond(edge, answered, admitted, &request_id);
            log(&target.schema, &host, status, bytes, &worker, None, true);
            response
        }
        Err((page, error)) => {
            drop(admitted);
            let (response, bytes) = own(page);
            log(
                &target.schema,
                &host,
                page.status(),
                bytes,
                "-",
                Some(error),
                true,
            );
            response
        }
    }
}

/// The request target as HTTP/1.1 has it: the path and query.
fn target_of(uri: &hyper::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 needs them in one.
fn joined_cookies(headers: &hyper::HeaderMap) -> Option<Vec<u8>> {
    let mut values = headers.get_all(hyper::header::COOKIE).iter();
    let first = values.next()?;
    let mut joined = first.as_bytes().to_vec();
    for v in values {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some(joined)
}

/// The worker's answer as an HTTP/2 response, and its body's length when known now.
fn respond(
    edge: &Edge,
    answered: Answered,
    admitted: Admitted,
    request_id: &str,
) -> (Response<Body>, usize) {
    let s = &edge.settings;
    let head = &answered.head;
    let buf = &answered.conn.buf;
    let mut builder = Response::builder().status(head.status);
    for h in &answered.conn.headers {
        let name = h.name(buf);
        let pass = if name.eq_ignore_ascii_case("content-length") {
            matches!(head.body, Framing::None | Framing::Length(_))
        } else {
            answered.passes(name, s.hsts_max_age_secs > 0)
        };
        if !pass {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(h.value(buf)),
        ) {
            builder = builder.header(n, v);
        }
    }
    builder = builder.header("x-request-id", request_id);
    if s.hsts_max_age_secs > 0 {
        builder = builder.header(
            "strict-transport-security",
            format!("max-age={}", s.hsts_max_age_secs),
        );
    }
    let read_timeout = Duration::from_secs(s.upstream_read_timeout_secs);
    let framing = head.body;
    let first = &buf[head.len..];
    // The whole body came with the head (the usual case): one frame, the worker free now.
    let whole = match framing {
        Framing::None => Some((Bytes::new(), first.is_empty())),
        Framing::Length(n) if first.len() as u64 >= n => {
            let n = n as usize;
            Some((Bytes::copy_from_slice(&first[..n]), first.len() == n))
        }
        _ => None,
    };
    let mut state = Piece {
        answered: Some(answered),
        admitted: Some(admitted),
        chunked: Chunked::default(),
        left: match framing {
            Framing::Length(n) => n,
            _ => 0,
        },
        first: true,
        read_timeout,
        framing,
    };
    let (body, bytes) = match whole {
        Some((data, clean)) => {
            state.finish(clean);
            let n = data.len();
            (
                Full::new(data)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
                n,
            )
        }
        None => {
            let bytes = match framing {
                Framing::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => 0,
            };
            let stream = futures::stream::unfold(state, |mut state| async move {
                state.next().await.map(|item| (item, state))
            });
            (StreamBody::new(stream.boxed()).boxed_unsync(), bytes)
        }
    };
    let response = builder.body(body).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the worker's answer could not be passed on");
        let mut r = Response::new(empty());
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        r
    });
    (response, bytes)
}

/// A body streamed from the worker, a piece at a time.
struct Piece {
    answered: Option<Answered>,
    admitted: Option<Admitted>,
    chunked: Chunked,
    /// Bytes still to come of a body with a length.
    left: u64,
    /// The bytes that came with the head are yet to be passed on.
    first: bool,
    read_timeout: Duration,
    framing: Framing,
}

impl Piece {
    async fn next(&mut self) -> Option<Result<Frame<Bytes>, io::Error>> {
        let answered = self.answered.as_mut()?;
        let was_first = self.first;
        let piece: Vec<u8> = if self.first {
            self.first = false;
            answered.conn.buf[answered.head.len..].to_vec()
        } else {
            match answered.conn.read_piece(self.read_timeout).await {
                Ok(p) if p.is_empty() && self.framing != Framing::UntilClose => {
                    return self
                        .fail("the worker closed the connection in the middle of its answer")
                }
                Ok(p) => p.to_vec(),
                Err(e) => return self.fail(&e.to_string()),
            }
        };
        let (data, done, clean) = match self.framing {
            Framing::Length(_) => {
                let take = piece
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= take as u64;
                (piece[..take].to_vec(), self.left == 0, take == piece.len())
            }
            Framing::Chunked => {
                let mut data = Vec::with_capacity(piece.len());
                match self.chunked.feed(&piece, |d| data.extend_from_slice(d)) {
                    Ok(used) => (data, self.chunked.done(), used == piece.len()),
                    Err(e) => return self.fail(&e.to_string()),
                }
            }
            Framing::UntilClose => {
                let done = piece.is_empty() && !was_first;
                (piece, done, true)
            }
            Framing::None => (Vec::new(), true, piece.is_empty()),
        };
        if done {
            self.finish(clean);
        }
        if data.is_empty() {
            if done {
                return None;
            }
            // Only framing came in this piece: an empty frame, the next one follows.
            return Some(Ok(Frame::data(Bytes::new())));
        }
        Some(Ok(Frame::data(Bytes::from(data))))
    }

    /// The worker's part is over: its connection back to the pool when clean, the slot free.
    fn finish(&mut self, clean: bool) {
        if let Some(a) = self.answered.take() {
            a.release(clean);
        }
        self.admitted = None;
    }

    fn fail(&mut self, why: &str) -> Option<Result<Frame<Bytes>, io::Error>> {
        tracing::warn!(error = why, "the worker's answer broke off");
        self.answered = None;
        self.admitted = None;
        Some(Err(io::Error::other(why.to_owned())))
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A page of the proxy's own as a response, and its body's length.
fn own_page(edge: &Edge, page: Page, json: bool, request_id: &str) -> (Response<Body>, usize) {
    let rendered = page.render(json);
    let len = rendered.body.len();
    let mut builder = Response::builder()
        .status(rendered.status)
        .header("content-type", rendered.content_type)
        .header("cache-control", "no-store")
        .header("x-request-id", request_id);
    if let Some(secs) = rendered.retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    if edge.settings.hsts_max_age_secs > 0 {
        builder = builder.header(
            "strict-transport-security",
            format!("max-age={}", edge.settings.hsts_max_age_secs),
        );
    }
    let body = Full::new(Bytes::from(rendered.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    (
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(empty())),
        len,
    )
}
