//! A stand-in worker that answers every request with what it received (schema, method, path,
//! every header in order, and the body, as JSON), for what only a worker can see: the headers
//! the proxy forwards; that names a header of its answer in `Connection` at
//! [`CONNECTION_PATH`]; and that holds a request at [`wait_path`] until a file exists, for a
//! request in flight at a worker for as long as a test needs. It is the test binary itself,
//! run by the daemon through a small script (see [`script`]) into a `#[test]` that calls
//! [`run`]; it keeps the process contract with control (`ready` on the control channel, exit on
//! `drain` or when the channel closes).

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The worker's command line, passed from the script to the test binary.
const ARGS: &str = "APOTHECA_ECHO_WORKER_ARGS";

/// A script for `[control.serve] worker_bin` that runs `entry` (a `#[test]` calling [`run`])
/// of the current test binary as the worker.
pub fn script(dir: &Path, entry: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = dir.join("echo-worker");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{ARGS}=\"$*\" exec '{}' --exact {entry} --include-ignored \
             --test-threads 1 >/dev/null 2>>'{}'\n",
            exe.display(),
            dir.join("echo-worker.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The daemon with the stand-in worker for every tenant: `entry` is the calling test binary's
/// `#[test]` that calls [`run`] (see [`script`]).
pub async fn daemon(a: &super::Apotheca, entry: &str) -> super::daemon::Daemon {
    let echo = script(a.dir.path(), entry);
    a.serve(&[(
        "APOTHECA_CONTROL__SERVE__WORKER_BIN",
        echo.to_str().unwrap(),
    )])
    .await
}

/// Serves as the worker when started by [`script`]; returns at once otherwise.
pub fn run() {
    let Ok(args) = std::env::var(ARGS) else {
        return;
    };
    let args: Vec<&str> = args.split_whitespace().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("echo worker: no {name} in {args:?}"))
    };
    let schema = value("--schema").to_owned();
    let socket = PathBuf::from(
        value("--listen")
            .strip_prefix("unix:")
            .expect("a unix: address"),
    );
    let fd: i32 = value("--control-fd").parse().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(serve(schema, socket, fd));
}

async fn serve(schema: String, socket: PathBuf, fd: i32) {
    let listener = UnixListener::bind(&socket).unwrap();
    // SAFETY: control gave this process its end of the socketpair as this descriptor, and
    // nothing else here uses it.
    let channel = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    writeln!(&channel, "ready unix:{}", socket.display()).unwrap();
    channel.set_nonblocking(true).unwrap();
    let mut channel = UnixStream::from_std(channel).unwrap();
    let mut said = [0u8; 256];
    loop {
        tokio::select! {
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    tokio::spawn(answer(schema.clone(), stream));
                }
            }
            // "drain", or the channel closed: stop.
            n = channel.read(&mut said) => {
                if !matches!(n, Ok(n) if n > 0 && !said[..n].starts_with(b"drain")) {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&socket);
}

/// Answers each request on one (keep-alive) connection with what it received.
async fn answer(schema: String, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = vec![];
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            headers.push(serde_json::json!([name, value]));
        }
        let mut body = vec![0u8; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next(), parts.next());
        wait_for_file(path).await;
        let echo = serde_json::json!({
            "schema": schema,
            "method": method,
            "path": path,
            "body": String::from_utf8_lossy(&body),
            "headers": headers,
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{}content-length: {}\r\n\r\n{echo}",
            extra_headers(path),
            echo.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The path at which the echo worker's answer names headers of its own in `Connection`
/// (`x-hop`, which a proxy must drop), beside one it must pass on (`x-end`).
pub const CONNECTION_PATH: &str = "/_echo/connection";

fn extra_headers(path: Option<&str>) -> &'static str {
    if path == Some(CONNECTION_PATH) {
        "connection: keep-alive, X-Hop\r\nx-hop: secret\r\nx-end: kept\r\n"
    } else {
        ""
    }
}

/// A request path the echo worker answers only once `file` exists.
pub fn wait_path(file: &Path) -> String {
    format!("/_echo/wait?until={}", file.display())
}

/// Holds a [`wait_path`] request until its file exists (at most a minute).
async fn wait_for_file(path: Option<&str>) {
    let Some(file) = path.and_then(|p| p.strip_prefix("/_echo/wait?until=")) else {
        return;
    };
    let started = tokio::time::Instant::now();
    while !Path::new(file).exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The values of header `name` in an echo, in the order received.
pub fn values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .filter(|h| h[0] == name)
                .map(|h| h[1].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
