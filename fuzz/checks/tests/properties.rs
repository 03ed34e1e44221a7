//! The fuzz targets' checks as bounded property tests on stable (cargo fuzz needs nightly
//! features; see `fuzz/README.md`): each check over random bytes and over inputs shaped like
//! what it parses (host names with ports, brackets, dots and Unicode; request heads with
//! random headers and targets, absolute-form ones too; response heads with random framing
//! headers; chunked bodies with random chunk sizes, extensions and trailers, some bytes
//! changed; sale bodies with random values in every field). `PROPTEST_CASES` sets how many
//! cases each runs (256 by default).

use apotheca_fuzz_checks::{chunked, host, request_head, response_head, sale_body};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        "[0-9]{1,40}(\\.[0-9]{0,30})?(e-?[0-9]{1,3})?",
        "-?[0-9]{1,20}\\.[0-9]{1,4}".prop_map(|s| format!("\"{s}\"")),
        "\\PC{0,20}".prop_map(|s| serde_json::Value::String(s).to_string()),
        Just("\"cash\"".to_owned()),
        Just("\"card\"".to_owned()),
        Just("\"'; DROP TABLE invoices; --\"".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
    ]
}

fn sale() -> impl Strategy<Value = String> {
    let line = (json_value(), json_value())
        .prop_map(|(m, q)| format!(r#"{{"medicine_id": {m}, "quantity": {q}}}"#));
    (
        prop::collection::vec(line, 0..4),
        json_value(),
        json_value(),
        json_value(),
        json_value(),
        json_value(),
    )
        .prop_map(|(lines, pay, discount, received, name, phone)| {
            format!(
                r#"{{"payment_method": {pay}, "discount": {discount}, "amount_received": {received},
                   "customer_name": {name}, "customer_phone": {phone}, "lines": [{}]}}"#,
                lines.join(", ")
            )
        })
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        "[A-Za-z-]{1,12}: [ -~]{0,30}",
        Just("Host: a.example".to_owned()),
        "Host: [a-z.:0-9]{0,12}",
        Just("Content-Length: 5".to_owned()),
        "Content-Length: [0-9 ,-]{0,22}",
        "Transfer-Encoding: (chunked|gzip|chunked, gzip|identity)",
        "Connection: (close|keep-alive|upgrade, close)",
        Just("Expect: 100-continue".to_owned()),
    ];
    (
        "(GET|POST|HEAD|OPTIONS|PUT|[A-Z]{1,8})",
        "(/[ -~]{0,30}|\\*|[a-z]{1,5}|(http|HTTPS|ftp)://[a-z.:@0-9]{0,12}(/[ -~]{0,12}|\\?[a-z]{0,3})?)",
        "HTTP/1\\.[01]",
        prop::collection::vec(header, 0..8),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(m, t, v, hs, tail)| {
            let mut r = format!("{m} {t} {v}\r\n{}\r\n", hs.join("\r\n") + "\r\n").into_bytes();
            r.extend(tail);
            r
        })
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        "[A-Za-z-]{1,12}: [ -~]{0,30}",
        "Content-Length: [0-9 ,-]{0,22}",
        "Transfer-Encoding: (chunked|gzip|gzip, chunked|chunked, gzip|identity)",
        "Connection: (close|keep-alive|[A-Za-z-]{1,10}(, ?[A-Za-z-]{1,10}){0,2})",
        "X-[A-Za-z]{1,3}: [a-z]{0,5}",
    ];
    (
        "HTTP/1\\.[01]",
        "[0-9]{3}|[0-9]{1,4}",
        "[ -~]{0,20}",
        prop::collection::vec(header, 0..8),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(v, status, reason, hs, tail)| {
            let mut r =
                format!("{v} {status} {reason}\r\n{}\r\n", hs.join("\r\n") + "\r\n").into_bytes();
            r.extend(tail);
            r
        })
}

/// A chunked body: chunks of random sizes (hex in either case, some with extensions), the
/// last chunk, trailers, bytes after it; then a few bytes changed to anything.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..40),
        any::<bool>(),
        "(;[a-z]{0,4}(=[a-z0-9\"]{0,5})?)?",
    );
    (
        prop::collection::vec(chunk, 0..5),
        prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
        prop::collection::vec(any::<u8>(), 0..8),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(chunks, trailers, tail, changes)| {
            let mut b = Vec::new();
            for (data, upper, ext) in chunks {
                let size = if upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                b.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                b.extend_from_slice(&data);
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0\r\n");
            for t in trailers {
                b.extend_from_slice(format!("{t}\r\n").as_bytes());
            }
            b.extend_from_slice(b"\r\n");
            b.extend(tail);
            for (at, byte) in changes {
                let i = at.index(b.len());
                b[i] = byte;
            }
            b
        })
}

proptest! {
    #[test]
    fn hosts_from_any_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        host(&data);
    }

    #[test]
    fn hosts_shaped_like_hosts(raw in "\\[?[a-zA-Z0-9.:_\\-\u{e9}\u{df}\u{3b1}\u{4e2d}\u{ff21} ]{0,70}\\]?(:[0-9]{0,6})?\\.?") {
        host(raw.as_bytes());
    }

    #[test]
    fn request_heads_from_any_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        request_head(&data);
    }

    #[test]
    fn request_heads_shaped_like_requests(data in request()) {
        request_head(&data);
    }

    #[test]
    fn response_heads_from_any_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        response_head(&data);
    }

    #[test]
    fn response_heads_shaped_like_responses(data in response()) {
        response_head(&data);
    }

    #[test]
    fn chunked_bodies_from_any_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        chunked(&data);
    }

    #[test]
    fn chunked_bodies_shaped_like_chunked_bodies(data in chunked_body()) {
        chunked(&data);
    }

    #[test]
    fn sale_bodies_from_any_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        sale_body(&data);
    }

    #[test]
    fn sale_bodies_with_anything_in_every_field(body in sale()) {
        sale_body(body.as_bytes());
    }
}

/// Inputs that once mattered, checked every run (and seeds of the fuzz corpus).
#[test]
fn known_inputs() {
    for h in [
        "Acme.Example.COM.:8080",
        "[::1]:80",
        "xn--caf-dma.example",
        "café.example",
        "a..b",
        ":",
        "[",
        "[::1",
        "a:b:c",
    ] {
        host(h.as_bytes());
    }
    for r in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET HTTP://A.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"GET http://a.example/x?y HTTP/1.0\r\n\r\n",
    ] {
        request_head(r);
    }
    for r in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        // httparse takes any three digits; this once went on to the client as status 000.
        b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
        // A reason phrase that is not UTF-8: httparse gives a static "" outside the buffer,
        // and working out where it lay overflowed (cargo fuzz, response_head).
        b"HTTP/1.1 100 C\x80ntinue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 \xffK\r\nContent-Length: 0\r\n\r\n",
    ] {
        response_head(r);
    }
    for c in [
        &b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"[..],
        b"0\r\n\r\n",
        b"fffffffffffffff\r\n",
        b"1\r\nab\r\n",
        b"",
    ] {
        chunked(c);
    }
    for s in [
        &br#"{"payment_method": "card", "lines": [{"medicine_id": 1, "quantity": 1000001}]}"#[..],
        br#"{"payment_method": "cash", "discount": "-1", "lines": [{"medicine_id": 1, "quantity": 1}]}"#,
        br#"{"payment_method": "cash", "amount_received": "1e28", "lines": [{"medicine_id": 1, "quantity": 1}]}"#,
    ] {
        sale_body(s);
    }
}
