//! What the fuzz targets check, one function per target, each taking the fuzzer's bytes and
//! panicking when a promise breaks: [`host`] (the proxy's Host normalisation), [`request_head`]
//! (the proxy's HTTP/1.1 request-head parser) and [`sale_body`] (the worker's sale request:
//! JSON into `SaleRequest`, then its validation). `fuzz/fuzz_targets/` runs them under cargo
//! fuzz (libFuzzer); `tests/properties.rs` runs them as bounded property tests on stable, in
//! every test run.

use apotheca_proxy::{host as hosts, wire};
use apotheca_worker::domain::sale::{Pending, SaleRequest};

/// The largest head the proxy takes by default (`[proxy] max_header_bytes`).
pub const MAX_HEAD: usize = 32 * 1024;

/// A Host the proxy accepts is stored-domain form: not empty, at most 253 bytes, lowercase
/// ASCII, no port, no trailing dot, no character a host cannot have — and normalising it again
/// changes nothing (an IPv6 literal, stored without brackets, given with them). Anything else is refused with a reason, never a panic.
pub fn host(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(h) = hosts::normalise(raw) else {
        return;
    };
    assert!(!h.is_empty(), "{raw:?} → empty");
    assert!(h.len() <= 253, "{raw:?} → {} bytes", h.len());
    assert!(h.is_ascii(), "{raw:?} → {h:?} is not ASCII");
    assert!(
        !h.bytes().any(|b| b.is_ascii_uppercase()),
        "{raw:?} → {h:?}"
    );
    assert!(!h.ends_with('.'), "{raw:?} → {h:?} ends with a dot");
    assert!(
        !h.contains(['/', '@', '\\', ' ', '?', '#', '[', ']']),
        "{raw:?} → {h:?}"
    );
    // An IPv6 literal comes out without its brackets; it goes in again with them.
    let again = if h.contains(':') {
        assert!(
            h.parse::<std::net::Ipv6Addr>().is_ok(),
            "{raw:?} → {h:?} keeps a port"
        );
        format!("[{h}]")
    } else {
        h.clone()
    };
    assert_eq!(
        hosts::normalise(&again).as_deref(),
        Ok(h.as_str()),
        "{raw:?}: normalising {h:?} again changes it"
    );
}

/// A head the parser accepts lies within the bytes it was given and within the size limit,
/// its method, target and headers within the head; the same bytes cut one short are never a
/// complete head; bytes after the head do not change it. Anything else is `Ok(None)` (more to
/// come) or an error, never a panic.
pub fn request_head(data: &[u8]) {
    let mut headers = Vec::new();
    let Ok(Some(head)) = wire::parse_request(data, MAX_HEAD, &mut headers) else {
        return;
    };
    assert!(head.len <= data.len() && head.len <= MAX_HEAD, "{head:?}");
    for range in [&head.method, &head.target]
        .into_iter()
        .chain(head.host.as_ref())
        .chain(head.accept.as_ref())
        .chain(head.request_id.as_ref())
        .chain(head.connection.iter().flatten())
        .chain(headers.iter().flat_map(|h| [&h.name, &h.value]))
    {
        assert!(
            range.end <= head.len,
            "{range:?} outside a head of {}",
            head.len
        );
    }
    assert!(!head.method(data).is_empty(), "{head:?}");
    let target = head.target(data);
    assert!(target.starts_with('/') || target == "*", "{target:?}");
    if matches!(head.body, wire::Framing::Chunked) {
        assert!(!head.http10, "chunked in HTTP/1.0: {head:?}");
    }
    let mut again = Vec::new();
    let short = wire::parse_request(&data[..head.len - 1], MAX_HEAD, &mut again);
    assert!(
        !matches!(short, Ok(Some(_))),
        "a complete head one byte short of {}",
        head.len
    );
    let alone = wire::parse_request(&data[..head.len], MAX_HEAD, &mut again);
    let alone = alone.unwrap_or_else(|e| panic!("the head alone is refused: {e}"));
    let alone = alone.unwrap_or_else(|| panic!("the head alone is incomplete"));
    assert_eq!(
        (alone.len, alone.method, alone.target, again.len()),
        (head.len, head.method, head.target, headers.len())
    );
}

/// Any body the sale endpoint could get: JSON into `SaleRequest`, then validation, answers a
/// sale to post or a 4xx naming what is wrong — never a panic, never a 5xx.
pub fn sale_body(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<SaleRequest>(data) else {
        return;
    };
    for key in [None, Some("k"), std::str::from_utf8(data).ok()] {
        if let Err(e) = Pending::new(1, "fuzz", &req, key) {
            assert!(
                e.status.is_client_error(),
                "{}: {} for {req:?}",
                e.status,
                e.message
            );
            assert!(!e.message.is_empty(), "no message for {req:?}");
        }
    }
}
