//! `apotheca serve` as a test drives it: the real daemon with real workers, talked to over
//! its Unix socket the way the proxy and the CLI do, and plain HTTP to the workers' sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use super::Apotheca;

/// Generous: the box is small and shared. Only ever an upper bound on a wait.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The worker binary of this build, refused when missing or stale ([`crate::binary`]).
pub fn worker_bin() -> PathBuf {
    crate::binary("apotheca-worker")
}

pub struct Daemon {
    pub log: PathBuf,
    pub child: Child,
    pub socket: PathBuf,
    pub worker_dir: PathBuf,
    pub stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Apotheca {
    /// Starts `apotheca serve` with these extra settings (APOTHECA_* variables) and waits for
    /// its "API on" line.
    pub async fn serve(&self, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.command(&["serve"]);
        // The daemon's log and its workers' (they inherit it), for when a test fails.
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        cmd.env("APOTHECA_CONTROL__SERVE__WORKER_BIN", worker_bin())
            .stderr(log)
            .env("APOTHECA_CONTROL__SERVE__REPORT_INTERVAL_MS", "200")
            .env("RUST_LOG", "warn,apotheca_control=info")
            .stdout(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting apotheca serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("apotheca serve said nothing within the deadline")
            .unwrap()
            .unwrap_or_else(|| panic!("apotheca serve exited: {:?}", child.try_wait()));
        assert!(first.starts_with("apotheca serve: API on unix:"), "{first}");
        let run = self.dir.path().join("var/run");
        Daemon {
            log: self.dir.path().join("serve.log"),
            child,
            socket: run.join("apotheca.sock"),
            worker_dir: run.join("workers"),
            stdout,
        }
    }
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("daemon running") as i32
    }

    pub async fn call(&self, method: Method, path: &str) -> (u16, Value) {
        let (status, body) = http(&self.socket, method, path)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, json)
    }

    pub async fn wake(&self, schema: &str) -> Vec<String> {
        let (status, body) = self
            .call(Method::POST, &format!("/v1/tenants/{schema}/wake"))
            .await;
        assert_eq!(status, 200, "wake {schema}: {body}");
        assert_eq!(body["schema"], schema);
        body["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn status(&self) -> Value {
        let (status, body) = self.call(Method::GET, "/v1/status").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn tenant(&self, schema: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("/v1/tenants/{schema}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls a tenant's status until `done` holds (at most [`PATIENCE`]); returns it. A
    /// tenant the daemon does not know (yet) is waited for too.
    pub async fn wait_for(&self, schema: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            let (status, t) = self
                .call(Method::GET, &format!("/v1/tenants/{schema}"))
                .await;
            assert!(status == 200 || status == 404, "{status}: {t}");
            if status == 200 && done(&t) {
                return t;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{schema}: still not {what} after {PATIENCE:?}: {t:#}\nlog:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of the daemon's log (its workers' too).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The pids of a tenant's workers in the ready state.
    pub async fn ready_pids(&self, schema: &str) -> Vec<i32> {
        ready_pids(&self.tenant(schema).await)
    }

    /// SIGKILL, as when its host dies (its workers see their channel close and exit); waits
    /// until it is gone.
    pub async fn kill(mut self) {
        signal(self.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("apotheca serve did not die in time");
    }

    /// SIGTERM, then the exit status (within [`PATIENCE`]).
    pub async fn stop(mut self) -> std::process::ExitStatus {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("apotheca serve did not stop in time")
            .unwrap()
    }
}

pub fn ready_pids(tenant: &Value) -> Vec<i32> {
    workers_in(tenant, "ready")
}

pub fn workers_in(tenant: &Value, state: &str) -> Vec<i32> {
    tenant["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == state)
        .map(|w| w["pid"].as_i64().unwrap() as i32)
        .collect()
}

pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// Whether `pid` still runs: it exists and is not a zombie (a zombie has exited; whoever
/// its parent is now reaps it).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits until none of `pids` runs (at most [`PATIENCE`]).
pub async fn wait_gone(pids: &[i32]) {
    let started = tokio::time::Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
        assert!(started.elapsed() < PATIENCE, "still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The socket files in a folder.
pub fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::symlink_metadata(p)
                        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One HTTP/1.1 request on a fresh connection to a Unix socket (`unix:` prefix optional).
pub async fn http(socket: &Path, method: Method, path: &str) -> Result<(u16, Bytes), String> {
    http_with(socket, method, path, &[]).await
}

/// [`http`] with extra request headers.
pub async fn http_with(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// GET `path` from a worker endpoint (`unix:/path`).
pub async fn get(endpoint: &str, path: &str) -> Result<(u16, Bytes), String> {
    let socket = endpoint.strip_prefix("unix:").expect("a unix: endpoint");
    http(Path::new(socket), Method::GET, path).await
}

/// The worker answers its health check for `schema`.
pub async fn assert_serves(endpoint: &str, schema: &str) {
    let (status, body) = get(endpoint, "/_apotheca/health")
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["schema"]),
        (200, &Value::from(schema)),
        "{body}"
    );
}
