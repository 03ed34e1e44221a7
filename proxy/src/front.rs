//! The listeners' application: every accepted connection (plain, or after the TLS handshake)
//! is counted against `[proxy] max_connections` and served by the HTTP/2 front when ALPN chose
//! `h2`, else by the HTTP/1.1 front. A plain connection is first moved onto the runtime of the
//! thread serving it (Pingora accepts on one thread's runtime and hands the connection to a
//! random one; left so, every read and write would be relayed between threads). Pingora owns the listening sockets, TLS, the hand-over on
//! SIGQUIT and the stop; the request path is ours ([`crate::forward`]), because Pingora's
//! proxy cost twice nginx's CPU per request here (see `bench/RESULTS.md`).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use crate::forward::Edge;
use crate::{http1, http2};

/// One listener's connections (`https` says which scheme it serves).
pub struct Front {
    pub edge: Arc<Edge>,
    pub https: bool,
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let edge = &self.edge;
        let open = edge.connections.fetch_add(1, Ordering::AcqRel);
        let _open = Open(edge);
        if open >= edge.settings.max_connections {
            tracing::warn!(open, "connection refused: [proxy] max_connections reached");
            return None;
        }
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            http2::serve(edge.clone(), stream, ip, shutdown.clone()).await;
        } else if self.https {
            http1::serve(edge.clone(), stream, true, ip, shutdown.clone()).await;
        } else {
            match on_this_runtime(&stream) {
                Ok(tcp) => {
                    drop(stream);
                    http1::serve(edge.clone(), tcp, false, ip, shutdown.clone()).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not take the connection over; serving it as it is");
                    http1::serve(edge.clone(), stream, false, ip, shutdown.clone()).await;
                }
            }
        }
        None
    }
}

/// The plain TCP connection under `stream`, registered with this thread's runtime (a duplicate
/// of its descriptor; the caller then drops `stream`, which deregisters and closes the
/// original). Nothing was read from it yet: the plain listener keeps no buffer of its own.
fn on_this_runtime(stream: &Stream) -> io::Result<tokio::net::TcpStream> {
    // SAFETY: `stream` owns this descriptor and stays alive for the whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.id()) };
    let tcp = std::net::TcpStream::from(fd.try_clone_to_owned()?);
    tcp.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(tcp)
}

/// An open connection, counted until it is dropped.
struct Open<'a>(&'a Edge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
