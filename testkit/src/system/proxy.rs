//! `apotheca-proxy` as a test drives it: the real binary in front of a real daemon (see
//! [`super::daemon`]), on ports of 127.0.0.1 it binds itself (port 0), with its settings in a file of its
//! own, and plain HTTP/1.1 requests to it, each on a fresh connection and bounded in time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

use super::daemon::{signal, Daemon, PATIENCE};
use super::Apotheca;

/// How long a client waits for a whole answer: a request that takes longer hangs, and
/// that is a failure.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxy binary of this build, refused when missing or stale ([`crate::binary`]).
pub fn proxy_bin() -> PathBuf {
    crate::binary("apotheca-proxy")
}

/// Log files of this test process's proxies, numbered.
static STARTED: AtomicUsize = AtomicUsize::new(0);

pub struct Proxy {
    pub child: Child,
    pub http: u16,
    pub https: Option<u16>,
    pub admin: u16,
    /// Its settings file (an upgrade starts the successor with the same one).
    pub config: PathBuf,
    pub log: PathBuf,
    /// Where the daemon's settings are: the test folder.
    dir: PathBuf,
    database_url: String,
}

impl Apotheca {
    /// Starts the proxy in front of `daemon` with these `[proxy]` keys (values in TOML, e.g.
    /// `("public_hosts", r#"["localhost"]"#)`) over the test defaults, and waits until it
    /// listens. With a `tls_cert` key it also listens for HTTPS. Its listeners are on port 0:
    /// the proxy binds them and logs the ports it got, which are then written into its
    /// settings file (a successor started with it takes over the same sockets).
    pub async fn proxy(&self, daemon: &Daemon, keys: &[(&str, &str)]) -> Proxy {
        let https = keys.iter().any(|(k, _)| *k == "tls_cert");
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let config = self.dir.path().join(format!("proxy-{n}.toml"));
        let mut settings: Vec<(String, String)> = vec![
            ("http_listen".into(), "\"127.0.0.1:0\"".into()),
            ("admin_listen".into(), "\"127.0.0.1:0\"".into()),
            ("control_socket".into(), toml_path(&daemon.socket)),
            (
                "upgrade_sock".into(),
                toml_path(&self.dir.path().join(format!("var/run/proxy-{n}.upgrade"))),
            ),
            // A worker may take a while to start on a busy machine; a test that wants a
            // wake to time out says so.
            ("wake_timeout_ms".into(), "30000".into()),
        ];
        if https {
            settings.push(("https_listen".into(), "\"127.0.0.1:0\"".into()));
        }
        for (k, v) in keys {
            settings.retain(|(key, _)| key != k);
            settings.push(((*k).to_owned(), (*v).to_owned()));
        }
        write_settings(&config, &settings);
        let mut child = spawn(self.dir.path(), &self.db.url(), &config, n, false);
        let log = self.dir.path().join(format!("proxy-{n}.log"));
        let serving = match serving_line(&mut child, &log).await {
            Ok(line) => line,
            Err(e) => panic!("{e}"),
        };
        let port = |key: &str| logged_port(&serving, key);
        let (http, admin) = (port("http"), port("admin"));
        let (Some(http), Some(admin)) = (http, admin) else {
            panic!("no ports in the proxy's line {serving:?}");
        };
        let https = https.then(|| port("https").expect("the HTTPS port in the proxy's line"));
        for (key, port) in [
            ("http_listen", Some(http)),
            ("https_listen", https),
            ("admin_listen", Some(admin)),
        ] {
            if let (Some(port), Some(entry)) = (port, settings.iter_mut().find(|(k, _)| k == key)) {
                entry.1 = format!("\"127.0.0.1:{port}\"");
            }
        }
        write_settings(&config, &settings);
        Proxy {
            child,
            http,
            https,
            admin,
            log,
            config,
            dir: self.dir.path().to_path_buf(),
            database_url: self.db.url(),
        }
    }
}

fn write_settings(config: &Path, settings: &[(String, String)]) {
    let text: String = std::iter::once("[proxy]\n".to_owned())
        .chain(settings.iter().map(|(k, v)| format!("{k} = {v}\n")))
        .collect();
    std::fs::write(config, text).unwrap();
}

/// The port of `key` (`http`, `https`, `admin`) in a proxy's line "proxy serving http=…
/// https=… admin=…".
pub fn logged_port(line: &str, key: &str) -> Option<u16> {
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The last 30 lines of a log file.
fn tail(log: &Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits for the line in which a starting proxy names the addresses it listens on (the
/// sockets are bound then: connections wait in their backlog until Pingora accepts them).
async fn serving_line(child: &mut Child, log: &Path) -> Result<String, String> {
    let started = tokio::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("proxy serving")) {
            return Ok(line.to_owned());
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "apotheca-proxy exited ({status}) before it listened:\n{}",
                tail(log)
            ));
        }
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "apotheca-proxy did not listen within {PATIENCE:?}:\n{}",
                tail(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn(dir: &Path, database_url: &str, config: &Path, n: usize, upgrade: bool) -> Child {
    let log = std::fs::File::create(dir.join(format!("proxy-{n}.log"))).unwrap();
    let mut cmd = tokio::process::Command::new(proxy_bin());
    cmd.arg("--config")
        .arg(config)
        .current_dir(dir)
        .env_remove("APOTHECA_CONFIG")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.spawn().expect("starting apotheca-proxy")
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("a UTF-8 test path"))
}

/// The TCP ports `pid` listens on: its socket descriptors matched against the kernel's table
/// of listening sockets (so a port someone else holds never counts as ours).
pub fn listening_ports(pid: u32) -> HashSet<u16> {
    listening(pid).into_iter().map(|(_, port)| port).collect()
}

/// The addresses `pid` listens on, as [`listening_ports`] finds them (IPv4 ones with their
/// address; IPv6 ones as unspecified).
pub fn listening(pid: u32) -> HashSet<(std::net::Ipv4Addr, u16)> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    link.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (10th column); 0A is LISTEN.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let Some((addr, port)) = f[1].rsplit_once(':') else {
                    continue;
                };
                let Ok(port) = u16::from_str_radix(port, 16) else {
                    continue;
                };
                // IPv4 in the table is the address's bytes in host (little-endian) order.
                let ip = u32::from_str_radix(addr, 16)
                    .ok()
                    .filter(|_| addr.len() == 8)
                    .map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| {
                        std::net::Ipv4Addr::from(n.swap_bytes())
                    });
                found.insert((ip, port));
            }
        }
    }
    found
}

/// Whether something (anyone) listens on this port of 127.0.0.1. Asked by connecting, not by
/// binding: with tests in parallel, another test's outgoing connection may hold the same number
/// as its local port, and binding then fails though nothing listens.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(1),
    )
    .is_ok()
}

impl Proxy {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("proxy running") as i32
    }

    /// Waits until the process holds listening sockets on every port in `ports`.
    async fn wait_listening(&mut self, ports: &[u16]) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "apotheca-proxy exited ({status}) before it listened:\n{}",
                    self.log_tail()
                ));
            }
            let pid = self.child.id().unwrap();
            let listening = listening_ports(pid);
            if ports.iter().all(|p| listening.contains(p)) {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                return Err(format!(
                    "apotheca-proxy did not listen on {ports:?} within {PATIENCE:?} (it holds {listening:?}):\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a successor with the same settings and `--upgrade` (after SIGQUIT was sent to
    /// this one) and waits until it holds every listener.
    pub async fn upgrade(&self) -> Proxy {
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let mut next = Proxy {
            child: spawn(&self.dir, &self.database_url, &self.config, n, true),
            http: self.http,
            https: self.https,
            admin: self.admin,
            log: self.dir.join(format!("proxy-{n}.log")),
            config: self.config.clone(),
            dir: self.dir.clone(),
            database_url: self.database_url.clone(),
        };
        let mut wanted = vec![self.http, self.admin];
        wanted.extend(self.https);
        match next.wait_listening(&wanted).await {
            Ok(()) => next,
            Err(e) => panic!("the successor did not take over: {e}"),
        }
    }

    /// The end of the proxy's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// A request on a fresh connection to the HTTP listener; an error when there is no
    /// whole answer within [`CLIENT_TIMEOUT`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> Result<Reply, String> {
        request(self.http, method, path, headers, body).await
    }

    /// GET `path` with this `Host`, expecting an answer.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.get_with(host, path, &[]).await
    }

    /// GET `path` with this `Host` and more headers, expecting an answer.
    pub async fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        self.request(Method::GET, path, &all, "")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GET {path} for {host}: {e}\nproxy log:\n{}",
                    self.log_tail()
                )
            })
    }

    /// A request for `host`'s home page, and the tenant whose worker answered it: clients
    /// never reach a worker's `/_apotheca/health`, so this is read from the proxy's access log
    /// (its line for the request, found by the request's id, names the tenant it was routed to
    /// and the worker that answered; a worker only answers for its own tenant, 421 otherwise).
    /// `None`: the proxy answered itself.
    pub async fn answered_by(&self, host: &str) -> (Reply, Option<String>) {
        static ASKED: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "answered-by-{}-{}",
            std::process::id(),
            ASKED.fetch_add(1, Ordering::Relaxed)
        );
        let reply = self.get_with(host, "/", &[("x-request-id", &id)]).await;
        let needle = format!("request_id={id}");
        let line = self
            .access_line(|l| l.split_whitespace().any(|f| f == needle))
            .await;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("-")
                .to_owned()
        };
        let tenant = (field("worker") != "-").then(|| field("tenant"));
        (reply, tenant)
    }

    /// The first access log line `matches` takes, once the proxy has written it out (it does
    /// every 100 ms), at most [`PATIENCE`].
    pub async fn access_line(&self, matches: impl Fn(&str) -> bool) -> String {
        let started = tokio::time::Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(" access: ") && matches(l)) {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no such access log line\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The schema whose worker answered a request for `host` (with a success or a redirect),
    /// or the status and body of whatever answered instead (see [`Proxy::answered_by`]).
    pub async fn health(&self, host: &str) -> Result<String, String> {
        match self.answered_by(host).await {
            (reply, Some(schema)) if reply.status < 400 => Ok(schema),
            (reply, _) => Err(format!("{} {}", reply.status, reply.text())),
        }
    }

    /// Polls until a request for `host` is answered by `want`'s worker (`Some(schema)`) or
    /// refused with `status`, at most [`PATIENCE`]; returns how long it took.
    pub async fn wait_route(&self, host: &str, want: Result<&str, u16>) -> Duration {
        let started = tokio::time::Instant::now();
        loop {
            let got = match self.answered_by(host).await {
                (reply, Some(schema)) if reply.status < 400 => Ok(schema),
                (reply, _) => Err(reply.status),
            };
            if got.as_deref().map_err(|s| *s) == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{host}: still {got:?}, not {want:?}, after {PATIENCE:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One metric's value from `/metrics` on the admin listener (`name{labels}` exactly as
    /// rendered), if it is there.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let reply = request(
            self.admin,
            Method::GET,
            "/metrics",
            &[("host", "admin")],
            "",
        )
        .await
        .unwrap_or_else(|e| panic!("/metrics: {e}"));
        assert_eq!(reply.status, 200);
        reply.text().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Sends a request's headers promising a body of `len` bytes, and `partial` of it: the
    /// proxy has admitted it and holds its tenant's slot until the rest comes or the
    /// connection closes.
    pub async fn hold(&self, host: &str, path: &str, len: usize, partial: &str) -> Held {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.http))
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n{partial}"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        Held { stream }
    }

    /// SIGTERM, then the exit status (within [`PATIENCE`]).
    pub async fn stop(mut self) -> std::process::ExitStatus {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        self.wait().await
    }

    /// SIGKILL, as when its host dies; waits until it is gone.
    pub async fn kill(mut self) {
        signal(self.pid(), nix::sys::signal::Signal::SIGKILL);
        self.wait().await;
    }

    /// Stops it (SIGTERM: it drains) and starts a new one with the same settings, on the same
    /// ports, as a host's proxy is restarted in an upgrade; waits until it listens.
    pub async fn restart(self) -> Proxy {
        let (dir, database_url, config) = (
            self.dir.clone(),
            self.database_url.clone(),
            self.config.clone(),
        );
        let (http, https, admin) = (self.http, self.https, self.admin);
        assert!(self.stop().await.success());
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let mut next = Proxy {
            child: spawn(&dir, &database_url, &config, n, false),
            http,
            https,
            admin,
            log: dir.join(format!("proxy-{n}.log")),
            config,
            dir,
            database_url,
        };
        let mut wanted = vec![http, admin];
        wanted.extend(https);
        match next.wait_listening(&wanted).await {
            Ok(()) => next,
            Err(e) => panic!("the restarted proxy did not listen: {e}"),
        }
    }

    /// The exit status (within [`PATIENCE`]).
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the proxy did not exit in time\n{}", self.log_tail()))
            .unwrap()
    }
}

/// A request whose body is still coming.
pub struct Held {
    stream: tokio::net::TcpStream,
}

impl Held {
    /// Sends the rest of the body and reads the answer's status line.
    pub async fn finish(mut self, rest: &str) -> Result<u16, String> {
        self.stream
            .write_all(rest.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.status().await
    }

    /// Reads the answer's status line without sending the rest (for an answer the proxy
    /// gives before the body is whole).
    pub async fn status(mut self) -> Result<u16, String> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let mut got = 0;
        let read = async {
            while got < 12 {
                let n = self.stream.read(&mut buf[got..]).await?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(CLIENT_TIMEOUT, read)
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&buf[..got]).into_owned();
        line.get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh connection to 127.0.0.1:`port`; `headers` go as given (no `Host`
/// unless one is among them).
pub async fn request(
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Result<Reply, String> {
    request_from([127, 0, 0, 1].into(), port, method, path, headers, body).await
}

/// [`request`] from the client address `from` (any of 127.0.0.0/8 on loopback), which the
/// proxy passes on as the client's (`X-Forwarded-For`).
pub async fn request_from(
    from: std::net::IpAddr,
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Result<Reply, String> {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body.as_ref())))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        // A port bound before connecting must be free of every socket, TIME_WAIT ones too,
        // while one connect picks may be shared by connections to other addresses: with a
        // fresh connection per request, a soak's thousands of requests ran out of ports
        // ("bind 127.0.0.1: Address already in use"). So only another source address is
        // bound, and a port in TIME_WAIT may be taken again.
        if from != std::net::IpAddr::from([127, 0, 0, 1]) {
            socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
            socket
                .bind((from, 0).into())
                .map_err(|e| format!("bind {from}: {e}"))?;
        }
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .map_err(|e| format!("connect 127.0.0.1:{port} from {from}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {CLIENT_TIMEOUT:?}"))?
}
