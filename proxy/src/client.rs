//! hyper's HTTP/1.1 client to the workers (`[proxy] http1 = "hyper"`): one connection per
//! Unix-socket stream, its hyper connection task on the runtime of the thread that opened it,
//! pooled per worker and thread ([`crate::upstreams::Endpoint`]) between requests, and the
//! exchange with the retries of [`crate::forward`]'s module doc: another worker after a failed
//! connect, a new connection for a pooled one the worker had closed (a request that must not be
//! sent twice only when hyper gives it back unsent), an idempotent request once more on another
//! worker after a failure, 504 when the head does not come within the read timeout, else 502.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::conn::MAX_IDLE;
use crate::forward::{Edge, Target, MAX_CONNECT_FAILURES};
use crate::pages::Page;
use crate::upstreams::{Pooled, Using};

/// A worker's response head may not be larger than this.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 connection to a worker, through hyper.
pub struct UpConn {
    sender: SendRequest<Full<Bytes>>,
    idle_since: Instant,
    /// It came from the pool (it served an earlier request).
    reused: bool,
}

impl UpConn {
    /// Connects to the worker's socket; hyper's connection task runs on this thread's runtime
    /// until the connection closes.
    pub async fn connect(path: &Path, timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_header_size(MAX_RESPONSE_HEAD)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "worker connection ended");
            }
        });
        Ok(Self {
            sender,
            idle_since: Instant::now(),
            reused: false,
        })
    }
}

impl Pooled for UpConn {
    fn expired(&self) -> bool {
        self.sender.is_closed() || self.idle_since.elapsed() > MAX_IDLE
    }

    fn idle(mut self) -> Self {
        self.idle_since = Instant::now();
        self.reused = true;
        self
    }
}

/// A worker's answer (its head; the body still to read from `response`), the connection it came
/// on and the hold on that worker.
pub struct Upstreamed {
    pub response: Response<Incoming>,
    pub conn: UpConn,
    pub using: Using,
}

impl Upstreamed {
    /// The worker's socket's file name, for the log.
    pub fn worker(&self) -> String {
        self.using
            .endpoint()
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

impl Edge {
    /// Sends `request` to one of the tenant's workers and waits for the answer's head,
    /// retrying as the module's doc says.
    pub async fn send(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
        idempotent: bool,
    ) -> Result<Upstreamed, (Page, String)> {
        let s = &self.settings;
        let connect_timeout = Duration::from_millis(s.upstream_connect_timeout_ms);
        let read_timeout = Duration::from_secs(s.upstream_read_timeout_secs);
        let mut failed: Vec<PathBuf> = Vec::new();
        let mut retried_after_send = false;
        let mut request = Some(request);
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
            // A pooled connection first (ready for its next request: hyper's task has seen
            // the last answer's end); one the worker closed meanwhile is dropped.
            let mut pooled = None;
            while let Some(mut c) = endpoint.take_idle_hyper() {
                if c.sender.ready().await.is_ok() {
                    pooled = Some(c);
                    break;
                }
            }
            let mut conn = match pooled {
                Some(c) => c,
                None => match UpConn::connect(&endpoint.path, connect_timeout).await {
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
            let Some(req) = request.take() else {
                return Err((Page::Unreachable, "nothing left to send".to_owned()));
            };
            // Another go after the worker had the request needs a copy of it.
            let spare = idempotent.then(|| copy(&req));
            let answer =
                tokio::time::timeout(read_timeout, conn.sender.try_send_request(req)).await;
            let mut e = match answer {
                Ok(Ok(response)) => {
                    return Ok(Upstreamed {
                        response,
                        conn,
                        using,
                    })
                }
                // Dropping the request closes its connection (hyper cannot abort one request).
                Err(_) => {
                    return Err((
                        Page::WorkerTimeout,
                        "the worker did not answer within the read timeout".to_owned(),
                    ))
                }
                Ok(Err(e)) => e,
            };
            // hyper gives the request back when it never reached the connection.
            let unsent = e.take_message();
            let sent = unsent.is_none();
            request = unsent.or(spare);
            let e = e.into_error();
            if reused && (idempotent || !sent) {
                // The worker had closed this keep-alive connection before the request reached
                // it: the same worker, on a new connection.
                tracing::debug!(worker = %endpoint.path.display(), error = %e, "stale pooled connection");
                continue;
            }
            if idempotent && !retried_after_send {
                tracing::debug!(worker = %endpoint.path.display(), error = %e, "retrying on another worker");
                retried_after_send = true;
                failed.push(endpoint.path.clone());
                continue;
            }
            return Err((Page::Unreachable, format!("the worker's answer: {e}")));
        }
    }
}

/// A request to send again: its method, target, headers and (shared) body.
fn copy(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}
