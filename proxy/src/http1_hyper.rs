//! The HTTP/1.1 front on hyper's server (`[proxy] http1 = "hyper"`): hyper reads the requests
//! of one client connection (keep-alive, pipelining, `100-continue`, HTTP/1.0, the chunked
//! coding, heads of at most `max_header_bytes` and 100 headers) and calls [`crate::service`]
//! for each. What hyper does not do the proxy's way is done here, around it: the connection's
//! timeouts (a request head must arrive within `client_header_timeout_ms` of its first byte,
//! else a 408 page and the connection closes; an idle connection closes after
//! `keepalive_timeout_secs`, a new one that sent nothing after the header timeout), each write
//! to the client bounded by `client_send_timeout_ms` ([`Watched`]), and the stop: an idle
//! connection that served requests closes at once, one in the middle of a request after its
//! answer, and a new one is still answered (with `Connection: close`): its client is sending.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::forward::{Counted, Edge};
use crate::pages::Page;
use crate::service;
use crate::wire::MAX_HEADERS;

/// One client connection's state, shared by its timeouts ([`serve`]), its reads
/// ([`Watched`]) and its requests ([`service::handle`]).
pub struct ConnState {
    born: Instant,
    /// Requests between their head and the end of their answer.
    active: AtomicUsize,
    /// It has had a request.
    served: AtomicBool,
    /// The proxy is stopping: answers close the connection.
    stopping: AtomicBool,
    /// When the first byte of the next head came (ms since `born`, plus one); 0: none yet.
    head_at: AtomicU64,
    /// When the last answer ended (ms since `born`).
    last: AtomicU64,
    /// Counted as a new connection ([`Edge::fresh`]) until its first request.
    fresh: Mutex<Option<Counted>>,
}

/// A request in progress on a connection, until dropped.
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        s.last.store(s.ms(), Ordering::Release);
        s.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the connection's clock says.
enum Watch {
    /// Look again then.
    Until(Instant),
    /// Idle too long: close.
    Idle,
    /// A head started and did not complete in time: 408.
    Head,
}

impl ConnState {
    fn new(fresh: Counted) -> Self {
        Self {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            head_at: AtomicU64::new(0),
            last: AtomicU64::new(0),
            fresh: Mutex::new(Some(fresh)),
        }
    }

    fn ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A request's head has arrived.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_at.store(0, Ordering::Release);
        if !self.served.swap(true, Ordering::AcqRel) {
            self.fresh.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        Busy(self.clone())
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Bytes came while no request was in progress: the next head has started.
    fn read_some(&self) {
        if self.active.load(Ordering::Acquire) == 0 && self.head_at.load(Ordering::Acquire) == 0 {
            self.head_at.store(self.ms() + 1, Ordering::Release);
        }
    }

    fn idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0 && self.head_at.load(Ordering::Acquire) == 0
    }

    fn watch(&self, header: Duration, keepalive: Duration) -> Watch {
        let now = self.ms();
        let at = |ms: u64| self.born + Duration::from_millis(ms);
        if self.active.load(Ordering::Acquire) > 0 {
            return Watch::Until(at(now) + header.min(keepalive));
        }
        let head_at = self.head_at.load(Ordering::Acquire);
        let (since, limit, expired) = if head_at > 0 {
            (head_at - 1, header, Watch::Head)
        } else if self.served.load(Ordering::Acquire) {
            (self.last.load(Ordering::Acquire), keepalive, Watch::Idle)
        } else {
            (0, header, Watch::Idle)
        };
        let deadline = since + limit.as_millis() as u64;
        if now >= deadline {
            expired
        } else {
            Watch::Until(at(deadline))
        }
    }
}

/// Serves one client connection with hyper until it closes, misbehaves or the proxy stops.
pub async fn serve<S>(
    edge: Arc<Edge>,
    io: S,
    https: bool,
    ip: Option<IpAddr>,
    mut shutdown: ShutdownWatch,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = &edge.settings;
    let header = Duration::from_millis(s.client_header_timeout_ms);
    let keepalive = Duration::from_secs(s.keepalive_timeout_secs);
    let send_timeout = Duration::from_millis(s.client_send_timeout_ms);
    let state = Arc::new(ConnState::new(edge.fresh.enter()));
    let client = Arc::new(service::Client {
        https,
        ip,
        conn: Some(state.clone()),
    });
    let for_requests = edge.clone();
    let service = hyper::service::service_fn(move |req| {
        let (edge, client) = (for_requests.clone(), client.clone());
        async move { Ok::<_, Infallible>(service::handle(&edge, &client, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The header timeout is ours (hyper's would close without an answer, and bound the
        // keep-alive wait by it too).
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_header_size(s.max_header_bytes);
    let io = Watched {
        io,
        state: state.clone(),
        send_timeout,
        write_deadline: None,
    };
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let mut stopping = false;
    let mut watching_stop = true;
    let sleep = tokio::time::sleep(header);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            // What the client already sent is taken before a stop is looked at.
            biased;
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, client = ?ip, "HTTP/1.1 connection ended");
                }
                return;
            }
            changed = shutdown.changed(), if watching_stop && !stopping => {
                if changed.is_err() {
                    watching_stop = false;
                    continue;
                }
                if !*shutdown.borrow() {
                    continue;
                }
                stopping = true;
                state.stopping.store(true, Ordering::Release);
                // A connection that served requests closes once idle (at once if it is); a
                // new one is answered first (its answer says close).
                if state.served.load(Ordering::Acquire) && (state.idle() || state.active.load(Ordering::Acquire) > 0) {
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
            () = &mut sleep => match state.watch(header, keepalive) {
                Watch::Until(at) => sleep.as_mut().reset(at),
                Watch::Idle => return,
                Watch::Head => {
                    let _counted = edge.in_flight.enter();
                    let page = service::refusal(&edge, Page::RequestTimeout);
                    let mut io = conn.into_parts().io.into_inner();
                    let _ = io.write_all(&page).await;
                    let _ = io.shutdown().await;
                    return;
                }
            },
        }
    }
}

/// The client's connection as hyper reads and writes it: reads tell [`ConnState`] when a head
/// starts; a write that cannot go through within `client_send_timeout_ms` fails (a client that
/// stops reading holds nothing for long).
pub struct Watched<S> {
    io: S,
    state: Arc<ConnState>,
    send_timeout: Duration,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Unpin> Watched<S> {
    /// A write is pending: fails once it has been pending for the send timeout.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.send_timeout;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn written<T>(
        &mut self,
        done: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match done {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending_write(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.read_some();
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_write(cx, buf);
        this.written(done, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.written(done, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.io).poll_flush(cx);
        this.written(done, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
