//! The proxy's HTTP/1.1 on the wire, through a raw connection in front of the stand-in worker
//! of `apotheca_testkit::system::echo`: pipelined requests answered in order, a chunked body reaching the
//! worker whole with its length, 100-continue, HTTP/1.0 keep-alive, smuggling framings and
//! malformed requests refused, an oversized body refused from its length; absolute-form
//! targets routed by their authority; headers a worker's `Connection` names dropped; a
//! worker's internal routes out of reach however they are spelled.

use apotheca_testkit::system::echo::values;
use apotheca_testkit::system::Apotheca;

/// Not a test: the stand-in worker of the test below (see `apotheca_testkit::system::echo`).
#[test]
#[ignore = "run by the daemon as a stand-in worker"]
fn echo_worker() {
    apotheca_testkit::system::echo::run();
}

/// A raw client connection to the proxy, reading answers as they come.
struct Wire {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(port: u16) -> Self {
        Self {
            stream: tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(raw).await.unwrap();
    }

    /// The next answer (each has a `Content-Length`, or none for a 1xx): status, head, body.
    async fn answer(&mut self) -> (u16, String, String) {
        use tokio::io::AsyncReadExt;
        let read = async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if self.buf.len() >= end + 4 + len {
                        let status = head[9..12].parse().unwrap();
                        let body =
                            String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                        self.buf.drain(..end + 4 + len);
                        return (status, head, body);
                    }
                }
                let mut chunk = [0u8; 4096];
                let got = self.stream.read(&mut chunk).await.unwrap();
                assert!(
                    got > 0,
                    "closed before an answer: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..got]);
            }
        };
        tokio::time::timeout(apotheca_testkit::system::proxy::CLIENT_TIMEOUT, read)
            .await
            .expect("no answer in time")
    }
}

#[tokio::test]
async fn the_wire_chunked_bodies_pipelining_http10_and_smuggling() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    let d = apotheca_testkit::system::echo::daemon(&a, "echo_worker").await;
    let p = a.proxy(&d, &[]).await;
    assert_eq!(p.health("alpha.localhost").await, Ok("alpha".into()));

    // Three requests in one write (pipelined), the second with a chunked body with an
    // extension and a trailer, the third waiting for 100-continue: answered in order on one
    // connection, the worker getting each body whole with its length.
    let mut w = Wire::connect(p.http).await;
    w.send(
        b"GET /one HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: alpha.localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n\
          POST /three HTTP/1.1\r\nHost: alpha.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await;
    let mut echoes = Vec::new();
    for _ in 0..2 {
        let (status, _, body) = w.answer().await;
        assert_eq!(status, 200, "{body}");
        echoes.push(serde_json::from_str::<serde_json::Value>(&body).unwrap());
    }
    // The third's body only once the proxy asked for it.
    assert_eq!(w.answer().await.0, 100);
    w.send(b"body").await;
    let (status, _, body) = w.answer().await;
    assert_eq!(status, 200, "{body}");
    echoes.push(serde_json::from_str(&body).unwrap());
    assert_eq!(echoes[0]["path"], "/one");
    assert_eq!(
        (&echoes[1]["path"], &echoes[1]["body"]),
        (&"/two".into(), &"hello world".into())
    );
    assert_eq!(values(&echoes[1], "content-length"), ["11"]);
    assert!(values(&echoes[1], "transfer-encoding").is_empty());
    assert_eq!(
        (&echoes[2]["path"], &echoes[2]["body"]),
        (&"/three".into(), &"body".into())
    );
    assert!(values(&echoes[2], "expect").is_empty());

    // HTTP/1.0: kept alive only when asked, and told so.
    let mut w = Wire::connect(p.http).await;
    w.send(b"GET /a HTTP/1.0\r\nHost: alpha.localhost\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let (_, head, _) = w.answer().await;
    assert!(
        head.to_ascii_lowercase().contains("connection: keep-alive"),
        "{head}"
    );
    w.send(b"GET /b HTTP/1.0\r\nHost: alpha.localhost\r\n\r\n")
        .await;
    let (_, head, _) = w.answer().await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    // Smuggling and framing the proxy refuses before any worker sees them; each closes.
    for (raw, want) in [
        (
            "POST /s HTTP/1.1\r\nHost: alpha.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST /s HTTP/1.1\r\nHost: alpha.localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
            400,
        ),
        (
            "POST /s HTTP/1.1\r\nHost: alpha.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        // An absolute-form target whose authority is not the Host.
        ("GET http://bravo.localhost/s HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n", 400),
    ] {
        let mut w = Wire::connect(p.http).await;
        w.send(raw.as_bytes()).await;
        let (status, head, body) = w.answer().await;
        assert_eq!(status, want, "{raw:?}: {body}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{raw:?}");
    }
    // No Host: 400, the connection may go on.
    let mut w = Wire::connect(p.http).await;
    w.send(b"GET /s HTTP/1.1\r\n\r\nGET /t HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n")
        .await;
    assert_eq!(w.answer().await.0, 400);
    assert_eq!(w.answer().await.0, 200);
    // A body over max_body_bytes is refused from its length alone.
    let mut w = Wire::connect(p.http).await;
    w.send(b"POST /big HTTP/1.1\r\nHost: alpha.localhost\r\nContent-Length: 99999999999\r\n\r\n")
        .await;
    assert_eq!(w.answer().await.0, 413);
    p.stop().await;
    d.stop().await;
}

#[tokio::test]
async fn absolute_form_connection_options_and_internal_paths() {
    let a = Apotheca::migrated().await;
    a.create("alpha").await;
    a.create("bravo").await;
    let d = apotheca_testkit::system::echo::daemon(&a, "echo_worker").await;
    let p = a.proxy(&d, &[]).await;
    let echo = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    // Absolute-form targets (RFC 9112 §3.2.2): routed by their authority, which agrees with
    // Host (any case, a trailing dot, the scheme's port said or not); the worker gets the
    // origin form.
    let mut w = Wire::connect(p.http).await;
    for (raw, schema, path, host) in [
        (
            "GET http://alpha.localhost/s?x=1 HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n",
            "alpha",
            "/s?x=1",
            "alpha.localhost",
        ),
        (
            "GET HTTP://Bravo.LocalHost:80/t HTTP/1.1\r\nHost: bravo.localhost.\r\n\r\n",
            "bravo",
            "/t",
            "Bravo.LocalHost:80",
        ),
        (
            "GET http://alpha.localhost HTTP/1.1\r\nHost: alpha.localhost:80\r\n\r\n",
            "alpha",
            "/",
            "alpha.localhost",
        ),
    ] {
        w.send(raw.as_bytes()).await;
        let (status, _, body) = w.answer().await;
        assert_eq!(status, 200, "{raw:?}: {body}");
        let e = echo(&body);
        assert_eq!(
            (&e["schema"], &e["path"]),
            (&schema.into(), &path.into()),
            "{raw:?}"
        );
        assert_eq!(values(&e, "host"), [host], "{raw:?}");
    }
    // HTTP/1.0 may leave Host out: the authority routes alone.
    let mut w = Wire::connect(p.http).await;
    w.send(b"GET http://bravo.localhost/u HTTP/1.0\r\n\r\n")
        .await;
    let (status, _, body) = w.answer().await;
    assert_eq!(
        (status, &echo(&body)["schema"]),
        (200, &"bravo".into()),
        "{body}"
    );
    // Disagreeing with Host, or without one in HTTP/1.1: 400, and the connection closes.
    for raw in [
        "GET http://alpha.localhost/s HTTP/1.1\r\nHost: bravo.localhost\r\n\r\n",
        "GET http://alpha.localhost:8080/s HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n",
        "GET http://alpha.localhost/s HTTP/1.1\r\n\r\n",
        "GET http://user@alpha.localhost/s HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n",
    ] {
        let mut w = Wire::connect(p.http).await;
        w.send(raw.as_bytes()).await;
        let (status, head, body) = w.answer().await;
        assert_eq!(status, 400, "{raw:?}: {body}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{raw:?}"
        );
    }

    // A header the worker's answer names in its Connection header is hop-by-hop: dropped;
    // the others go on, and the connection stays open.
    let mut w = Wire::connect(p.http).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n",
        apotheca_testkit::system::echo::CONNECTION_PATH
    );
    for _ in 0..2 {
        w.send(request.as_bytes()).await;
        let (status, head, body) = w.answer().await;
        assert_eq!(status, 200, "{body}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nx-end: kept"), "{head}");
        assert!(!head.contains("x-hop"), "{head}");
        assert!(!head.contains("connection:"), "{head}");
    }

    // A worker's internal routes, however spelled: the proxy's own 404, nothing reaches the
    // stand-in worker (which would answer anything with 200).
    let mut w = Wire::connect(p.http).await;
    for path in [
        "/_apotheca/stats",
        "/_apotheca/health",
        "/_APOTHECA/stats",
        "/%5Fapotheca/stats",
        "/%5f%41POTHECA%2fstats",
        "/%255Fapotheca/stats",
        "//_apotheca/stats",
        "/./_apotheca/stats",
        "/x/../_apotheca/stats",
        "/x/%2E%2E/_apotheca/stats",
        "/_apotheca;x/stats",
        "/_apotheca",
        "/_apotheca/stats?x=1",
        "http://alpha.localhost/_apotheca/stats",
    ] {
        w.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: alpha.localhost\r\nAccept: application/json\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let (status, _, body) = w.answer().await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(echo(&body)["error"]["code"], "not_found", "{path}: {body}");
    }
    // A path that only looks like them still reaches the worker.
    w.send(b"GET /x/_apotheca/stats HTTP/1.1\r\nHost: alpha.localhost\r\n\r\n")
        .await;
    let (status, _, body) = w.answer().await;
    assert_eq!(
        (status, &echo(&body)["path"]),
        (200, &"/x/_apotheca/stats".into())
    );
    p.stop().await;
    d.stop().await;
}
