//! HAProxy (Debian's `haproxy`) in front of two Apotheca hosts, with
//! `deploy/multi-host/haproxy.cfg` itself: its addresses come from the environment as the file
//! documents, the frontends on free ports of 127.0.0.1, checked in the kernel's table of
//! listening sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;

use super::daemon::PATIENCE;
use super::proxy::{listening, Proxy};

pub struct Haproxy {
    pub child: Child,
    pub http: u16,
    pub https: u16,
    pub log: PathBuf,
    /// Its runtime API (the `stats socket` of the file).
    pub socket: PathBuf,
}

/// The `haproxy` program: on PATH, else where Debian puts it (/usr/sbin is not on every user's
/// PATH).
fn program() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("haproxy"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

/// `deploy/multi-host/haproxy.cfg`.
pub fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/multi-host/haproxy.cfg")
}

/// A port of 127.0.0.1 the system just gave out, free again (HAProxy takes no port 0).
fn some_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Haproxy {
    /// HAProxy in front of `a` and `b` (host-a and host-b), its log in `dir`. A port taken by
    /// someone else meanwhile makes HAProxy exit: it is started again on others.
    pub async fn start(dir: &Path, a: &Proxy, b: &Proxy) -> Self {
        let log = dir.join("haproxy.log");
        for _ in 0..10 {
            let (http, https) = (some_port(), some_port());
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = tokio::process::Command::new(program());
            cmd.args(["-db", "-f"])
                .arg(config())
                .env("APOTHECA_HTTP_BIND", format!("127.0.0.1:{http}"))
                .env("APOTHECA_HTTPS_BIND", format!("127.0.0.1:{https}"))
                .env("APOTHECA_HAPROXY_SOCKET", dir.join("haproxy.sock"))
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .kill_on_drop(true);
            for (name, p) in [("A", a), ("B", b)] {
                let tls = p.https.unwrap_or(p.http);
                cmd.env(
                    format!("APOTHECA_HOST_{name}_HTTP"),
                    format!("127.0.0.1:{}", p.http),
                )
                .env(
                    format!("APOTHECA_HOST_{name}_HTTPS"),
                    format!("127.0.0.1:{tls}"),
                )
                .env(format!("APOTHECA_HOST_{name}_ADMIN_ADDR"), "127.0.0.1")
                .env(
                    format!("APOTHECA_HOST_{name}_ADMIN_PORT"),
                    p.admin.to_string(),
                );
            }
            let mut child = cmd
                .spawn()
                .expect("starting haproxy (apt-get install haproxy)");
            let pid = child.id().expect("haproxy running");
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let bound = listening(pid);
                let lo = std::net::Ipv4Addr::LOCALHOST;
                if http != https && bound.contains(&(lo, http)) && bound.contains(&(lo, https)) {
                    return Self {
                        child,
                        http,
                        https,
                        log,
                        socket: dir.join("haproxy.sock"),
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "haproxy did not listen: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!(
            "haproxy could not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// One command on the runtime API (`set server apotheca_http/host-a state drain`); its
    /// answer.
    pub async fn command(&self, line: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut api = tokio::net::UnixStream::connect(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("haproxy's socket {}: {e}", self.socket.display()));
        api.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(PATIENCE, api.read_to_string(&mut answer))
            .await
            .expect("haproxy answered in time")
            .unwrap();
        answer
    }

    /// Whether `backend/server` takes requests: up by its checks (operational state 2) and
    /// neither drained nor in maintenance (administrative state 0), as `show servers state`
    /// has it.
    pub async fn serving(&self, backend: &str, server: &str) -> bool {
        let table = self.command(&format!("show servers state {backend}")).await;
        let row = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 6 && f[1] == backend && f[3] == server)
            .unwrap_or_else(|| panic!("no {backend}/{server} in:\n{table}"));
        row[5] == "2" && row[6] == "0"
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
