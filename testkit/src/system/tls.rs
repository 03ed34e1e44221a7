//! Certificates and TLS clients for the proxy's HTTPS listener, through the `openssl` command
//! (the workspace's one TLS stack): self-signed certificates made for a test, the subject a
//! handshake presents for a server name (SNI), and a whole HTTPS request.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::proxy::CLIENT_TIMEOUT;

async fn openssl(args: &[&str], input: Option<&str>) -> (bool, String, String) {
    let mut child = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running openssl");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.map(str::to_owned);
    // Written (and closed) beside reading the output, so neither side waits on the other.
    let writer = tokio::spawn(async move {
        if let Some(text) = input {
            let _ = stdin.write_all(text.as_bytes()).await;
        }
    });
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("openssl {args:?} did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap();
    let _ = writer.await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate with subject `CN=<cn>` (and `cn` as its DNS name) into
/// `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
pub async fn make_cert(dir: &Path, stem: &str, cn: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let crt = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let (ok, _, err) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(ok, "openssl could not make a certificate: {err}");
}

/// What `openssl s_client` printed for a handshake with the listener on `port` with this
/// server name (no SNI at all when `None`) and `extra` arguments.
pub async fn handshake(port: u16, server_name: Option<&str>, extra: &[&str]) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec!["s_client", "-connect", &connect];
    match server_name {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    args.extend_from_slice(extra);
    let (_, out, err) = openssl(&args, Some("")).await;
    format!("{out}\n{err}")
}

/// The subject CN of the certificate the listener on `port` presents for `server_name`
/// (no SNI at all when `None`).
pub async fn served_cn(port: u16, server_name: Option<&str>) -> String {
    let out = handshake(port, server_name, &[]).await;
    let pem = out
        .find("-----BEGIN CERTIFICATE-----")
        .and_then(|start| {
            let end = out[start..].find("-----END CERTIFICATE-----")?;
            Some(&out[start..start + end + "-----END CERTIFICATE-----".len()])
        })
        .unwrap_or_else(|| panic!("no certificate from port {port} for {server_name:?}:\n{out}"));
    let (ok, subject, err) = openssl(
        &["x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        Some(&format!("{pem}\n")),
    )
    .await;
    assert!(ok, "openssl x509: {err}");
    subject
        .trim()
        .strip_prefix("subject=")
        .and_then(|s| s.split(',').find_map(|part| part.strip_prefix("CN=")))
        .unwrap_or_else(|| panic!("no CN in {subject:?}"))
        .to_owned()
}

/// GET `path` over HTTPS to `port` with this SNI name and `Host`: the answer's status, its
/// header block and its body (HTTP/1.1, the connection closed after it).
pub async fn https_get(
    port: u16,
    server_name: &str,
    host: &str,
    path: &str,
) -> (u16, String, String) {
    let connect = format!("127.0.0.1:{port}");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (_, out, err) = openssl(
        &[
            "s_client",
            "-quiet",
            "-connect",
            &connect,
            "-servername",
            server_name,
        ],
        Some(&request),
    )
    .await;
    let status = out
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer over TLS from {connect}:\n{out}\n{err}"));
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A request over HTTPS with HTTP/2 (ALPN `h2`), through the `curl` command: the HTTP version
/// the answer came in, its status and its body. `extra` goes to curl as is (headers, data).
pub async fn h2_request(
    port: u16,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (String, u16, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let mut args = vec![
        "--silent",
        "--show-error",
        "--insecure",
        "--http2",
        "--resolve",
        &resolve,
        "--write-out",
        "\n%{http_version} %{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = tokio::time::timeout(
        CLIENT_TIMEOUT,
        tokio::process::Command::new("curl")
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("curl {args:?} did not finish within {CLIENT_TIMEOUT:?}"))
    .expect("running curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (version, status) = last.split_once(' ').unwrap_or(("", "0"));
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        version.to_owned(),
        status.parse().unwrap_or(0),
        body.to_owned(),
    )
}
