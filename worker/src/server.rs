//! Where and how the worker listens: a Unix socket or a loopback TCP port, the ready line on
//! an inherited descriptor once it listens, and a graceful stop on SIGTERM (stop accepting,
//! finish in-flight requests) bounded by a deadline.

use std::future::Future;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, UnixListener};

/// `--listen`: `unix:/path/to.sock` or `tcp:127.0.0.1:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/apotheca/acme.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            let addr: std::net::SocketAddr =
                addr.parse().map_err(|e| format!("tcp:{addr}: {e}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "tcp:{addr}: a worker listens on loopback only (the proxy is its only client)"
                ));
            }
            return Ok(Self::Tcp(addr));
        }
        Err(format!(
            "{s:?}: use unix:/path/to.sock or tcp:127.0.0.1:PORT"
        ))
    }
}

/// A bound listener and the address to announce.
pub enum Bound {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener, std::net::SocketAddr),
}

impl Bound {
    pub async fn bind(listen: &Listen) -> std::io::Result<Self> {
        match listen {
            Listen::Unix(path) => {
                // A socket file left by a crashed worker would make bind fail.
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
                        std::fs::remove_file(path)?;
                    }
                    Ok(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a socket", path.display()),
                        ))
                    }
                    Err(_) => {}
                }
                Ok(Self::Unix(UnixListener::bind(path)?, path.clone()))
            }
            Listen::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                Ok(Self::Tcp(listener, local))
            }
        }
    }

    /// `unix:/path` or `tcp:127.0.0.1:PORT` (with the port actually bound).
    pub fn describe(&self) -> String {
        match self {
            Self::Unix(_, path) => format!("unix:{}", path.display()),
            Self::Tcp(_, addr) => format!("tcp:{addr}"),
        }
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
    /// `deadline`. The Unix socket file is removed afterwards.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
        deadline: Duration,
    ) -> std::io::Result<()> {
        match self {
            Self::Unix(listener, path) => {
                let served = serve_until(listener, app, shutdown, deadline).await;
                let _ = std::fs::remove_file(path);
                served
            }
            Self::Tcp(listener, _) => serve_until(listener, app, shutdown, deadline).await,
        }
    }
}

/// Serves until `shutdown`, then waits for in-flight requests at most `deadline`.
async fn serve_until<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    deadline: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let overtime = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        r = served => r,
        () = overtime => {
            tracing::warn!("in-flight requests outlived the shutdown deadline");
            Ok(())
        }
    }
}

/// Writes the ready line (`ready <address>`) on the inherited descriptor. The descriptor is
/// left open: control keeps talking to the worker over it.
pub fn announce_ready(fd: i32, address: &str) -> std::io::Result<()> {
    // SAFETY: the descriptor was handed to us by our parent for exactly this; we wrap it
    // without closing it (ManuallyDrop), so ownership stays with the process.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut file = std::mem::ManuallyDrop::new(file);
    writeln!(file, "ready {address}")?;
    file.flush()
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the worker can still be killed; just never stop gracefully.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
        _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(Listen::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:0".parse(),
            Ok(Listen::Tcp("127.0.0.1:0".parse().unwrap()))
        );
        assert!("tcp:0.0.0.0:80"
            .parse::<Listen>()
            .unwrap_err()
            .contains("loopback"));
        assert!("unix:".parse::<Listen>().is_err());
        assert!("127.0.0.1:80".parse::<Listen>().is_err());
    }
}
