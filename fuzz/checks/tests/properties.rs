//! The fuzz targets' checks as bounded property tests on stable (cargo fuzz needs nightly
//! features; see `fuzz/README.md`): each check over random bytes and over inputs shaped like
//! what it parses (host names with ports, brackets, dots and Unicode; request heads with
//! random headers; sale bodies with random values in every field). `PROPTEST_CASES` sets how
//! many cases each runs (256 by default).

use apotheca_fuzz_checks::{host, request_head, sale_body};
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
        Just("Content-Length: 5".to_owned()),
        "Content-Length: [0-9 ,-]{0,22}",
        "Transfer-Encoding: (chunked|gzip|chunked, gzip|identity)",
        "Connection: (close|keep-alive|upgrade, close)",
        Just("Expect: 100-continue".to_owned()),
    ];
    (
        "(GET|POST|HEAD|OPTIONS|PUT|[A-Z]{1,8})",
        "(/[ -~]{0,30}|\\*|[a-z]{1,5})",
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
    ] {
        request_head(r);
    }
    for s in [
        &br#"{"payment_method": "card", "lines": [{"medicine_id": 1, "quantity": 1000001}]}"#[..],
        br#"{"payment_method": "cash", "discount": "-1", "lines": [{"medicine_id": 1, "quantity": 1}]}"#,
        br#"{"payment_method": "cash", "amount_received": "1e28", "lines": [{"medicine_id": 1, "quantity": 1}]}"#,
    ] {
        sale_body(s);
    }
}
