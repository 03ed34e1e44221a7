//! What the fuzz targets check, one function per target, each taking the fuzzer's bytes and
//! panicking when a promise breaks: [`host`] (the proxy's Host normalisation), [`request_head`]
//! (the proxy's HTTP/1.1 request-head parser, and the same head as `httparse` reads it),
//! [`response_head`] (its parser of a worker's response head), [`chunked`] (its chunked
//! decoder, fed whole and in pieces) and [`sale_body`] (the worker's sale request: JSON into
//! `SaleRequest`, then its validation). `fuzz/cargo-fuzz/fuzz_targets/` runs them under cargo
//! fuzz (libFuzzer); `tests/properties.rs` runs them as bounded property tests on stable, in
//! every test run.

use apotheca_pharmacy::sale::{Pending, SaleRequest};
use apotheca_pharmacy::Error;
use apotheca_proxy::{host as hosts, wire};

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
        (
            head.len,
            head.method.clone(),
            head.target.clone(),
            headers.len()
        )
    );
    same_as_httparse(data, &head, &headers);
}

/// The differential half of [`request_head`]: a head the proxy accepts, `httparse` alone
/// accepts too (the proxy only refuses more), with the same length, method, version, target
/// (an absolute-form one: scheme and authority, then what the worker gets) and headers.
fn same_as_httparse(data: &[u8], head: &wire::RequestHead, headers: &[wire::HeaderAt]) {
    let mut slots = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("the proxy took a head httparse reads as {other:?}"),
    };
    assert_eq!(len, head.len, "head length");
    assert_eq!(req.method, Some(head.method(data)), "method");
    assert_eq!(req.version == Some(0), head.http10, "version");
    let path = req.path.unwrap_or_default();
    match &head.authority {
        None => assert_eq!(path, head.target(data), "target"),
        Some(authority) => {
            let authority = std::str::from_utf8(&data[authority.clone()]).unwrap_or_default();
            let (scheme, rest) = path.split_once("://").expect("an absolute-form target");
            assert!(
                scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"),
                "{path:?}"
            );
            let origin = rest
                .strip_prefix(authority)
                .unwrap_or_else(|| panic!("{path:?} has not the authority {authority:?}"));
            let target = head.target(data);
            assert!(
                origin == target || (origin.is_empty() && target == "/"),
                "{path:?} → {target:?}"
            );
        }
    }
    assert_eq!(req.headers.len(), headers.len(), "header count");
    for (theirs, ours) in req.headers.iter().zip(headers) {
        assert_eq!(theirs.name, ours.name(data), "header name");
        assert_eq!(theirs.value, ours.value(data), "header value");
    }
}

/// A worker's response head the parser accepts (as the answer to a HEAD request or not) lies
/// within the bytes given and the size limit, every range in it within the head; its status is
/// 100 to 599; no body follows a HEAD, a 1xx, a 204 or a 304; a body read until the worker
/// closes means the connection closes; a length comes from a `Content-Length`; the headers a
/// `Connection` names are among those it lists; the head cut one byte short is never complete,
/// the head alone parses the same.
pub fn response_head(data: &[u8]) {
    for head_request in [false, true] {
        let mut headers = Vec::new();
        let Ok(Some(head)) = wire::parse_response(data, MAX_HEAD, head_request, &mut headers)
        else {
            continue;
        };
        assert!(head.len <= data.len() && head.len <= MAX_HEAD, "{head:?}");
        for range in
            std::iter::once(&head.reason).chain(headers.iter().flat_map(|h| [&h.name, &h.value]))
        {
            assert!(
                range.end <= head.len,
                "{range:?} outside a head of {}",
                head.len
            );
        }
        assert!((100..=599).contains(&head.status), "{head:?}");
        if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
            assert_eq!(head.body, wire::Framing::None, "{head:?}");
        }
        if head.body == wire::Framing::UntilClose {
            assert!(head.close, "{head:?}");
        }
        let named = |name: &str| {
            headers
                .iter()
                .any(|h| h.name(data).eq_ignore_ascii_case(name))
        };
        if let wire::Framing::Length(_) = head.body {
            assert!(named("content-length"), "{head:?}");
        }
        if head.connection_options {
            assert!(named("connection"), "{head:?}");
        }
        for h in &headers {
            let name = h.name(data);
            if head.named_by_connection(&headers, data, name) {
                assert!(
                    headers
                        .iter()
                        .any(|c| c.name(data).eq_ignore_ascii_case("connection")
                            && wire::has_token(c.value(data), name)),
                    "{name} is named by no Connection header"
                );
            }
        }
        let mut again = Vec::new();
        let short = wire::parse_response(&data[..head.len - 1], MAX_HEAD, head_request, &mut again);
        assert!(
            !matches!(short, Ok(Some(_))),
            "a complete head one byte short of {}",
            head.len
        );
        let alone = wire::parse_response(&data[..head.len], MAX_HEAD, head_request, &mut again)
            .unwrap_or_else(|e| panic!("the head alone is refused: {e}"))
            .unwrap_or_else(|| panic!("the head alone is incomplete"));
        assert_eq!(
            (
                alone.len,
                alone.status,
                alone.body,
                alone.close,
                alone.connection_options
            ),
            (
                head.len,
                head.status,
                head.body,
                head.close,
                head.connection_options
            )
        );
        assert_eq!(again.len(), headers.len());
    }
}

/// What the chunked decoder made of some bytes: the data it handed out, how many bytes the
/// body took (`None`: refused) and whether it ended.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    used: Option<usize>,
    done: bool,
}

fn decode_in_pieces(input: &[u8], piece: usize) -> Decoded {
    let mut c = wire::Chunked::default();
    let mut data = Vec::new();
    let mut used = 0;
    for part in input.chunks(piece.max(1)) {
        match c.feed(part, |d| data.extend_from_slice(d)) {
            Ok(n) => {
                assert!(n <= part.len(), "took {n} of {} bytes", part.len());
                used += n;
                if c.done() {
                    break;
                }
                assert_eq!(n, part.len(), "stopped early without the end of the body");
            }
            Err(_) => {
                return Decoded {
                    data,
                    used: None,
                    done: false,
                }
            }
        }
    }
    if c.done() {
        // Nothing more belongs to a body that ended.
        assert_eq!(c.feed(b"more", |_| panic!("data after the end")), Ok(0));
    }
    Decoded {
        data,
        used: Some(used),
        done: c.done(),
    }
}

/// The chunked decoder gives the same answer however its input is cut into pieces (one byte
/// at a time up to all at once): the same data, the same end of the body, the same refusal
/// (once refused, the data handed out before may be shorter, never different); it never hands
/// out more data than it took, nor takes bytes after the end; and what it decoded, encoded
/// again in chunks of another size, decodes to the same.
pub fn chunked(data: &[u8]) {
    let whole = decode_in_pieces(data, data.len());
    if let Some(used) = whole.used {
        assert!(used <= data.len());
        assert!(
            whole.data.len() <= used,
            "{} bytes of data from {used}",
            whole.data.len()
        );
    }
    for piece in [1, 2, 3, 7, 64] {
        let cut = decode_in_pieces(data, piece);
        if whole.used.is_some() {
            assert_eq!(cut, whole, "in pieces of {piece}");
        } else {
            assert_eq!(cut.used, None, "in pieces of {piece}: not refused");
            assert!(whole.data.starts_with(&cut.data) || cut.data.starts_with(&whole.data));
        }
    }
    if whole.done {
        let size = 1 + whole.data.len() % 5;
        let mut encoded = Vec::new();
        for chunk in whole.data.chunks(size) {
            encoded.extend_from_slice(format!("{:x};e=1\r\n", chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        let again = decode_in_pieces(&encoded, 3);
        assert_eq!(
            (again.data, again.used, again.done),
            (whole.data, Some(encoded.len()), true),
            "encoded again"
        );
    }
}

/// Any body the sale endpoint could get: JSON into `SaleRequest`, then validation, answers a
/// sale to post or a refusal naming what is wrong (the client's fault: invalid, not found or a
/// conflict, never unavailable or internal) — never a panic.
pub fn sale_body(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<SaleRequest>(data) else {
        return;
    };
    for key in [None, Some("k"), std::str::from_utf8(data).ok()] {
        if let Err(e) = Pending::new(1, "fuzz", &req, key) {
            assert!(
                matches!(
                    e,
                    Error::Invalid { .. } | Error::NotFound { .. } | Error::Conflict { .. }
                ),
                "{e:?} for {req:?}"
            );
            assert!(!e.to_string().is_empty(), "no message for {req:?}");
        }
    }
}
