//! The listening sockets of a proxy that does not take them over from a predecessor: bound
//! here, before Pingora starts, then handed to Pingora the way a predecessor hands them over in
//! an upgrade (over `[proxy] upgrade_sock`). So a taken port is refused at once with its key
//! named (Pingora would retry it for 30 s inside a service thread), no other process can take a
//! port between a check and the bind, and port 0 gets a port from the system, which the proxy
//! logs (`proxy serving http=… https=… admin=…`). The keys then hold the bound addresses, under
//! which Pingora finds the sockets, and which a successor is started with.
//!
//! The cost: Pingora's receiving end looks for the sender once as it starts listening, and
//! again a second later, so a start takes about a second longer (and Pingora logs "No incoming
//! socket transfer" once).

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pingora::server::Fds;

use crate::settings::ProxySettings;

/// How long the hand-over may wait for Pingora to listen on `upgrade_sock`.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(10);

/// The bound sockets, until Pingora has its own copies.
pub struct Bound {
    listeners: Vec<(String, TcpListener)>,
}

/// Binds every listener of `p` and writes the bound addresses back into it (port 0 becomes
/// the port the system gave).
pub fn bind(p: &mut ProxySettings) -> Result<Bound, String> {
    let mut listeners = Vec::new();
    let keys = [
        ("http_listen", Some(&mut p.http_listen)),
        ("https_listen", p.https_listen.as_mut()),
        ("admin_listen", p.admin_listen.as_mut()),
    ];
    for (key, addr) in keys {
        let Some(addr) = addr else { continue };
        let failed = |e: std::io::Error| format!("[proxy] {key} {addr}: {e}");
        let listener = TcpListener::bind(addr.as_str()).map_err(failed)?;
        // As Pingora's own sockets are: its runtimes accept without blocking.
        listener.set_nonblocking(true).map_err(failed)?;
        let bound = listener.local_addr().map_err(failed)?.to_string();
        *addr = bound.clone();
        listeners.push((bound, listener));
    }
    Ok(Bound { listeners })
}

impl Bound {
    /// Hands the sockets to this process's Pingora, which is to receive them on `sock` (its
    /// bootstrap with `upgrade` set), from a thread of their own: the bootstrap blocks until
    /// they arrive. Our copies are closed once sent.
    pub fn hand_over(self, sock: &Path) -> std::thread::JoinHandle<Result<(), String>> {
        let sock = sock.to_path_buf();
        std::thread::spawn(move || {
            let mut fds = Fds::new();
            for (addr, listener) in &self.listeners {
                fds.add(addr.clone(), listener.as_raw_fd());
            }
            wait_for_socket(&sock)?;
            let path = sock.to_string_lossy().into_owned();
            fds.send_to_sock(path.as_str())
                .map(drop)
                .map_err(|e| format!("handing the listening sockets to Pingora over {path}: {e}"))
        })
    }
}

/// Readies `sock` for the hand-over: its folder made (Pingora's bootstrap binds the socket
/// there and cannot report a missing folder), and a file left there by a proxy that stopped
/// removed (the sockets are bound, so no proxy with these ports runs; and a stale file would
/// cost the sender's retry interval, 1 s).
pub fn prepare(sock: &Path) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("[proxy] upgrade_sock {}: {e}", sock.display());
    if let Some(dir) = sock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    match std::fs::remove_file(sock) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
        _ => Ok(()),
    }
}

/// Waits until Pingora's bootstrap has bound `sock`. (Not by connecting: the receiver takes the
/// first connection as the hand-over.)
fn wait_for_socket(sock: &PathBuf) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let started = Instant::now();
    loop {
        if std::fs::metadata(sock).is_ok_and(|m| m.file_type().is_socket()) {
            return Ok(());
        }
        if started.elapsed() > HAND_OVER_WITHIN {
            return Err(format!(
                "Pingora did not listen on {} within {HAND_OVER_WITHIN:?}",
                sock.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
