//! The listeners' application: every accepted connection (plain, or after the TLS handshake)
//! is counted against `[proxy] max_connections` and served by the HTTP/2 front when ALPN chose
//! `h2`, else by the HTTP/1.1 front. Pingora owns the listening sockets, TLS, the hand-over on
//! SIGQUIT and the stop; the request path is ours ([`crate::forward`]), because Pingora's
//! proxy cost twice nginx's CPU per request here (see `bench/RESULTS.md`).

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
        } else {
            http1::serve(edge.clone(), stream, self.https, ip, shutdown.clone()).await;
        }
        None
    }
}

/// An open connection, counted until it is dropped.
struct Open<'a>(&'a Edge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
