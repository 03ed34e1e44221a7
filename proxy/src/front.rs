//! The listeners' application. Every accepted connection is counted against
//! `[proxy] max_connections`, moved onto the runtime of the thread serving it (Pingora accepts
//! on one thread's runtime and hands the connection to a random one; left so, every read and
//! write would be relayed between threads), its PROXY protocol header read when it comes from
//! a balancer of `proxy_protocol_from` ([`proxyproto`]) (on the HTTP listener, a balancer of
//! `forwarded_for_from` is not: its requests name their clients), then, on the HTTPS listener, taken
//! through the TLS
//! handshake here (certificates by SNI, ALPN preferring `h2`, within
//! `client_header_timeout_ms`), and served by the HTTP/2 front when ALPN chose `h2`, else by
//! the HTTP/1.1 front. Pingora owns the listening sockets, the hand-over on SIGQUIT and the
//! stop; the request path is ours ([`crate::forward`]), because Pingora's proxy cost four
//! times nginx's CPU per request here (see `bench/RESULTS.md`).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::tls::ssl::SslAcceptor;

use crate::forward::Edge;
use crate::{http1, http2, proxyproto, tls};

/// One listener's connections.
pub struct Front {
    pub edge: Arc<Edge>,
    /// The HTTPS listener's handshake; `None` on the plain one.
    pub tls: Option<Handshake>,
}

/// What a TLS handshake needs: the acceptor ([`tls::acceptor`]) and the certificate store.
pub struct Handshake {
    pub acceptor: SslAcceptor,
    pub certificates: tls::Callback,
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
        let mut tcp = match on_this_runtime(&stream) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "could not take a connection over; closing it");
                return None;
            }
        };
        drop(stream);
        let within = Duration::from_millis(edge.settings.client_header_timeout_ms);
        // A balancer's HTTP connection, shared by its clients: each request says whose it is.
        let forwarded = self.tls.is_none() && ip.is_some_and(|b| edge.forwarded_from.contains(b));
        let ip = match ip {
            _ if forwarded => ip,
            Some(balancer) if edge.proxy_from.contains(balancer) => {
                match tokio::time::timeout(within, proxyproto::read(&mut tcp)).await {
                    Ok(Ok(client)) => client.or(ip),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %balancer, "PROXY protocol header refused; closing");
                        return None;
                    }
                    Err(_) => {
                        tracing::debug!(%balancer, "no PROXY protocol header in time; closing");
                        return None;
                    }
                }
            }
            ip => ip,
        };
        let Some(handshake) = &self.tls else {
            let client = if forwarded {
                http1::Peer::Balancer(ip)
            } else {
                http1::Peer::Client(ip)
            };
            http1::serve(edge.clone(), tcp, false, client, shutdown.clone()).await;
            return None;
        };
        let l4 = pingora::protocols::l4::stream::Stream::from(tcp);
        let shaken = tokio::time::timeout(
            within,
            handshake_with_callback(&handshake.acceptor, l4, &handshake.certificates),
        )
        .await;
        let tls = match shaken {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, client = ?ip, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(client = ?ip, "TLS handshake timed out");
                return None;
            }
        };
        if tls.ssl().selected_alpn_protocol() == Some(b"h2") {
            http2::serve(edge.clone(), tls, ip, shutdown.clone()).await;
        } else {
            http1::serve(
                edge.clone(),
                tls,
                true,
                http1::Peer::Client(ip),
                shutdown.clone(),
            )
            .await;
        }
        None
    }
}

/// The TCP connection under `stream`, registered with this thread's runtime (a duplicate of
/// its descriptor; the caller then drops `stream`, which deregisters and closes the original).
/// Nothing was read from it yet: the listeners keep no buffer of their own and do no TLS.
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
