//! The request path as one hyper service (`[proxy] http1 = "hyper"`): hyper's HTTP/1.1 server
//! ([`crate::http1_hyper`]) and its HTTP/2 server ([`crate::http2`]) call [`handle`] for every
//! request, and the worker is asked through hyper's client ([`crate::client`]). What hyper's
//! HTTP/1.1 server leaves to its user is done here as the proxy's own front does it
//! ([`crate::http1`]): exactly one `Host`, no transfer coding but `chunked` (501), no
//! expectation but `100-continue`, an absolute-form target routed by its authority, which must
//! agree with `Host`; the host's route ([`crate::forward`]); the body read whole (its length
//! checked first, then at most `max_body_bytes` within `client_body_timeout_ms`) before the
//! request takes a slot of its tenant; the proxy's headers; the answer's hop-by-hop headers
//! (those its `Connection` names too) dropped, its body read whole when it is small and its
//! length known (its worker connection and the slots free before the client is written to),
//! else passed on as it arrives; `Connection: close` when the client asked for it, when a body
//! was left unread and when the proxy stops. The access log line and the metrics are written
//! when the answer's body has gone (or was dropped).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};

use crate::accesslog::Entry;
use crate::client::{UpConn, Upstreamed};
use crate::forward::{self, Admitted, Counted, Edge, Forwarded, Route, X_REQUEST_ID};
use crate::host;
use crate::http1_hyper::{Busy, ConnState};
use crate::pages::{wants_json, Page};
use crate::upstreams::Using;
use crate::wire;

/// A worker's answer body of at most this many bytes, its length known, is read whole before
/// the answer goes on (one write to the client, the worker's connection free at once).
const WHOLE_ANSWER: u64 = 64 * 1024;

/// One client connection, as the service sees it.
pub struct Client {
    pub https: bool,
    pub ip: Option<IpAddr>,
    /// An HTTP/1.1 connection's state (its timeouts, the drain); `None` on HTTP/2.
    pub conn: Option<Arc<ConnState>>,
}

/// One request as it goes, and what its log line says (filled in as it goes). It ends — the
/// slots given back, the line logged, the request counted out — with its answer's body.
struct Req {
    edge: Arc<Edge>,
    started: Instant,
    method: Method,
    uri: Uri,
    request_id: String,
    /// Normalised; `-` until known.
    host: String,
    tenant: Option<Arc<str>>,
    status: u16,
    bytes: usize,
    worker: String,
    error: Option<String>,
    /// The tenant's and the box-wide slot, while held.
    admitted: Option<Admitted>,
    /// It was admitted (counted in the tenant's in-flight figure).
    counted_in: bool,
    json: bool,
    /// HTTP/1.x: answer with `Connection: close`.
    close: bool,
    h1: bool,
    hsts: bool,
    _in_flight: Counted,
    _busy: Option<Busy>,
}

impl Req {
    fn finish(mut self) {
        self.admitted = None;
        let path = self.uri.path().to_owned();
        self.edge.finish(
            &Entry {
                tenant: self.tenant.as_deref().unwrap_or("-"),
                host: &self.host,
                method: self.method.as_str(),
                path: &path,
                status: self.status,
                bytes: self.bytes,
                latency: self.started.elapsed(),
                worker: if self.worker.is_empty() {
                    "-"
                } else {
                    &self.worker
                },
                request_id: &self.request_id,
                error: self.error.take(),
            },
            self.counted_in,
        );
    }

    /// `X-Request-Id`, HSTS on HTTPS, and `Connection: close` when closing.
    fn own_headers(&self, headers: &mut HeaderMap) {
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            headers.insert(X_REQUEST_ID, id);
        }
        if self.hsts {
            let max_age = self.edge.settings.hsts_max_age_secs;
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
                headers.insert(header::STRICT_TRANSPORT_SECURITY, v);
            }
        }
        if self.close && self.h1 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// An answer's body: a whole one, or a worker's as it arrives; with its request, which ends
/// when the body has gone or is dropped.
pub struct Answer {
    whole: Option<Bytes>,
    stream: Option<Stream>,
    req: Option<Req>,
}

/// A worker's body, passed on as it arrives.
struct Stream {
    incoming: Incoming,
    /// The worker's connection, back to its pool once the body was read to the end.
    conn: Option<(UpConn, Using)>,
    /// Each piece must come within the upstream read timeout.
    read_timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl Answer {
    fn whole(data: Bytes, req: Req) -> Self {
        Self {
            whole: (!data.is_empty()).then_some(data),
            stream: None,
            req: Some(req),
        }
    }

    /// Gives the worker's connection back when its body was read to the end, the slots,
    /// and logs the line.
    fn end(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            if stream.ended || stream.incoming.is_end_stream() {
                if let Some((conn, using)) = stream.conn.take() {
                    using.endpoint().put_idle_hyper(conn);
                }
            } else if let Some(req) = &mut self.req {
                req.error
                    .get_or_insert_with(|| "the client went away during the answer".into());
            }
        }
        if let Some(req) = self.req.take() {
            req.finish();
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.end();
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.whole.take() {
            if let Some(req) = &mut this.req {
                req.bytes += data.len();
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(stream) = &mut this.stream else {
            this.end();
            return Poll::Ready(None);
        };
        match Pin::new(&mut stream.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                stream.sleep = None;
                if let (Some(data), Some(req)) = (frame.data_ref(), &mut this.req) {
                    req.bytes += data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                stream.ended = true;
                this.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(this.broke(e.to_string())))),
            Poll::Pending => {
                let timeout = stream.read_timeout;
                let sleep = stream
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    let e = this.broke("the worker stopped sending its answer".into());
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none()
            && self
                .stream
                .as_ref()
                .is_none_or(|s| s.ended || s.incoming.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.whole, &self.stream) {
            (Some(data), _) => SizeHint::with_exact(data.len() as u64),
            (None, Some(stream)) => stream.incoming.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

impl Answer {
    /// The worker's answer broke off: the client must see it broken (the connection closes).
    fn broke(&mut self, why: String) -> io::Error {
        tracing::warn!(error = %why, "the worker's answer broke off");
        if let Some(req) = &mut self.req {
            req.error = Some(format!("reading the answer: {why}"));
        }
        if let Some(stream) = &mut self.stream {
            stream.conn = None;
        }
        self.end();
        io::Error::other(why)
    }
}

/// Answers one request (of either HTTP version).
pub async fn handle(edge: &Arc<Edge>, client: &Client, req: Request<Incoming>) -> Response<Answer> {
    let started = Instant::now();
    let in_flight = edge.in_flight.enter();
    let busy = client.conn.as_ref().map(|c| c.begin());
    let stopping = client.conn.as_ref().is_some_and(|c| c.stopping());
    let (mut parts, body) = req.into_parts();
    let h1 = parts.version < Version::HTTP_2;
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let json = wants_json(accept, parts.uri.path());
    let request_id = edge.request_id(parts.headers.get(X_REQUEST_ID).map(|v| v.as_bytes()));
    let mut r = Req {
        edge: edge.clone(),
        started,
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        request_id,
        host: "-".to_owned(),
        tenant: None,
        status: 0,
        bytes: 0,
        worker: String::new(),
        error: None,
        admitted: None,
        counted_in: false,
        json,
        close: h1 && (stopping || wants_close(&parts)),
        h1,
        hsts: client.https && edge.settings.hsts_max_age_secs > 0,
        _in_flight: in_flight,
        _busy: busy,
    };
    if h1 {
        if let Err((page, why)) = check_h1(&parts) {
            r.close = true;
            r.error = Some(why.to_owned());
            return own(r, page);
        }
    }
    // Nothing below reads the body before admission; an answer given before then closes an
    // HTTP/1.1 connection when a body was on its way (it cannot be skipped safely).
    let unread_body = h1 && !body.is_end_stream();
    // What the request names as its host: the target's authority (HTTP/2's `:authority`, an
    // absolute-form target's), else `Host`.
    let raw_host: Option<HeaderValue> = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let Some(Ok(host)) = raw_host.as_ref().map(|h| {
        h.to_str()
            .map_err(|_| ())
            .and_then(|h| host::normalise(h).map_err(|_| ()))
    }) else {
        r.close |= unread_body;
        return own(r, Page::BadHost);
    };
    r.host = host;
    let target_str = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = match edge.route(&r.host, client.https, target_str).await {
        Route::Tenant(t) => t,
        Route::Answer(page) => {
            r.close |= unread_body;
            return own(r, page);
        }
        Route::Redirect(location) => {
            r.close |= unread_body;
            return redirect(r, &location);
        }
    };
    r.tenant = Some(target.schema.clone());

    let s = &edge.settings;
    let max = s.max_body_bytes;
    if body.size_hint().lower() > max as u64 {
        r.close |= unread_body;
        return own(r, Page::TooLarge);
    }
    let read = tokio::time::timeout(
        Duration::from_millis(s.client_body_timeout_ms),
        Limited::new(body, max).collect(),
    )
    .await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            r.close = true;
            let page = if e.is::<http_body_util::LengthLimitError>() {
                Page::TooLarge
            } else {
                Page::BadRequest
            };
            r.error = Some(e.to_string());
            return own(r, page);
        }
        Err(_) => {
            r.close = true;
            r.error = Some("the request body did not arrive in time".into());
            return own(r, Page::RequestTimeout);
        }
    };
    match edge.admit(&target).await {
        Ok(a) => {
            r.admitted = Some(a);
            r.counted_in = true;
        }
        Err(page) => return own(r, page),
    }

    let fwd = Forwarded {
        schema: &target.schema,
        client_ip: client.ip,
        https: client.https,
        host: &r.host,
        request_id: &r.request_id,
    };
    forward::forward_headers(
        &mut parts.headers,
        raw_host.unwrap_or(HeaderValue::from_static("")),
        !h1,
        &fwd,
        &parts.method,
        body.len(),
    );
    // The worker gets the origin form: the path and query.
    let uri = if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        parts.uri
    } else {
        parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()))
    };
    let idempotent = forward::idempotent(parts.method.as_str());
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers;
    match edge.send(&target, request, idempotent).await {
        Ok(up) => respond(r, up).await,
        Err((page, error)) => {
            r.admitted = None;
            r.error = Some(error);
            own(r, page)
        }
    }
}

/// Whether an HTTP/1.x client asked to close after this request.
fn wants_close(parts: &Parts) -> bool {
    let listed = |token: &str| {
        parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| wire::has_token(v.as_bytes(), token))
    };
    if parts.version == Version::HTTP_10 {
        !listed("keep-alive")
    } else {
        listed("close")
    }
}

/// What the proxy's own HTTP/1.1 front refuses and hyper lets through (hyper itself refuses
/// what it cannot parse, with a 400 or 431 of its own).
fn check_h1(parts: &Parts) -> Result<(), (Page, &'static str)> {
    let bad = |why| Err((Page::BadRequest, why));
    let h = &parts.headers;
    if h.get_all(header::HOST).iter().count() > 1 {
        return bad("more than one Host header");
    }
    // hyper has refused a last coding other than `chunked`; any other coding is unsupported.
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        if codings.next().is_some()
            || !first
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        {
            return Err((Page::NotImplemented, "unsupported transfer coding"));
        }
    }
    if h.get(header::EXPECT)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        return bad("unsupported Expect");
    }
    if h.get_all(header::CONNECTION).iter().count() > 2 {
        return bad("too many Connection headers");
    }
    let uri = &parts.uri;
    match (uri.scheme_str(), uri.authority()) {
        (None, None) => Ok(()),
        (Some(scheme), Some(authority)) => {
            let default_port = if scheme.eq_ignore_ascii_case("http") {
                80
            } else if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                return bad("the request target's scheme is not HTTP");
            };
            let authority = authority.as_str();
            if authority.is_empty() || authority.contains('@') {
                return bad("the request target's authority is bad");
            }
            if uri
                .path_and_query()
                .is_some_and(|p| !p.as_str().is_empty() && !p.as_str().starts_with('/'))
            {
                return bad("the request target has no path");
            }
            match h.get(header::HOST).map(|v| v.to_str()) {
                Some(Ok(host)) if host::same_authority(authority, host, default_port) => Ok(()),
                Some(_) => bad("the Host header does not agree with the request target"),
                None if parts.version == Version::HTTP_10 => Ok(()),
                None => bad("no Host header"),
            }
        }
        _ => bad("the request target must be a path"),
    }
}

/// The worker's answer on its way to the client.
async fn respond(mut r: Req, up: Upstreamed) -> Response<Answer> {
    r.worker = up.worker();
    let Upstreamed {
        response,
        conn,
        using,
    } = up;
    let (mut head, incoming) = response.into_parts();
    r.status = head.status.as_u16();
    let no_body = r.method == Method::HEAD
        || head.status == StatusCode::NOT_MODIFIED
        || head.status == StatusCode::NO_CONTENT;
    // The worker's hop-by-hop headers, those its Connection header names, and those the proxy
    // sets itself. A length goes on only where no body shows it (HEAD, 304).
    let mut gone: Vec<HeaderName> = Vec::new();
    for value in head.headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                gone.push(name);
            }
        }
    }
    let keep_length = |n: &HeaderName| no_body && *n == header::CONTENT_LENGTH;
    gone.extend(
        head.headers
            .keys()
            .filter(|n| !(keep_length(n) || forward::passed_on(n.as_str(), r.hsts)))
            .cloned(),
    );
    for name in gone.iter().filter(|n| !keep_length(n)) {
        head.headers.remove(name);
    }
    r.own_headers(&mut head.headers);
    let mut answer = Response::new(Answer {
        whole: None,
        stream: None,
        req: None,
    });
    *answer.status_mut() = head.status;
    if let Some(reason) = head.extensions.get::<hyper::ext::ReasonPhrase>() {
        answer.extensions_mut().insert(reason.clone());
    }
    *answer.headers_mut() = head.headers;

    let read_timeout = Duration::from_secs(r.edge.settings.upstream_read_timeout_secs);
    let known = incoming.size_hint().exact();
    if incoming.is_end_stream() || known.is_some_and(|n| n <= WHOLE_ANSWER) {
        // Read whole: the worker's connection and the slots are free before the client write.
        match tokio::time::timeout(read_timeout, incoming.collect()).await {
            Ok(Ok(body)) => {
                using.endpoint().put_idle_hyper(conn);
                r.admitted = None;
                *answer.body_mut() = Answer::whole(body.to_bytes(), r);
                answer
            }
            Ok(Err(e)) => {
                r.admitted = None;
                r.error = Some(format!("reading the answer: {e}"));
                own(r, Page::Unreachable)
            }
            Err(_) => {
                r.admitted = None;
                r.error = Some("the worker stopped sending its answer".into());
                own(r, Page::WorkerTimeout)
            }
        }
    } else {
        *answer.body_mut() = Answer {
            whole: None,
            stream: Some(Stream {
                incoming,
                conn: Some((conn, using)),
                read_timeout,
                sleep: None,
                ended: false,
            }),
            req: Some(r),
        };
        answer
    }
}

/// A page of the proxy's own (without its body for HEAD, its length said all the same).
fn own(mut r: Req, page: Page) -> Response<Answer> {
    let rendered = page.render(r.json);
    r.status = rendered.status;
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(rendered.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = rendered.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r.own_headers(&mut headers);
    let body = if r.method == Method::HEAD {
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(rendered.body.len()),
        );
        Bytes::new()
    } else {
        Bytes::from(rendered.body)
    };
    let mut response = Response::new(Answer::whole(body, r));
    *response.status_mut() =
        StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = headers;
    response
}

/// The HTTPS redirect (308, method and body kept by the client).
fn redirect(mut r: Req, location: &str) -> Response<Answer> {
    r.status = 308;
    let mut headers = HeaderMap::with_capacity(4);
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    r.own_headers(&mut headers);
    let mut response = Response::new(Answer::whole(Bytes::new(), r));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    *response.headers_mut() = headers;
    response
}

/// A page of the proxy's own as raw HTTP/1.1, for a connection hyper has given up (the
/// request head did not arrive in time): written, logged, then the connection closes.
pub fn refusal(edge: &Edge, page: Page) -> Vec<u8> {
    let started = Instant::now();
    let request_id = edge.request_id(None);
    let rendered = page.render(false);
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\
         x-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        rendered.content_type,
        rendered.body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&rendered.body);
    edge.finish(
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
            error: Some("the request head did not arrive in time".into()),
        },
        false,
    );
    out
}
