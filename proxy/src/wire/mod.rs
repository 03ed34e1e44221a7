//! HTTP/1.1 on the wire, for both sides of the proxy: request and response heads parsed with
//! `httparse` into offsets of the connection's own buffer (nothing is copied until it is
//! written on), the framing rules of RFC 9112 §6 with the strictness an edge needs against
//! request smuggling (no `Content-Length` beside `Transfer-Encoding`, no conflicting lengths,
//! no coding but `chunked`), the chunked coding, and the headers that never cross the proxy.
//! A request target in absolute form (RFC 9112 §3.2.2) is taken apart into its authority,
//! which must agree with `Host`, and the origin-form path and query the worker gets.

use std::ops::Range;

mod chunked;

pub use chunked::{BadChunk, Chunked};

/// Headers a head may carry, either side.
pub const MAX_HEADERS: usize = 100;

/// Where one header's name and value lie in the buffer the head was parsed from.
#[derive(Debug, Clone)]
pub struct HeaderAt {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

impl HeaderAt {
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a str {
        // httparse checked the name's bytes are a token: ASCII.
        std::str::from_utf8(&buf[self.name.clone()]).unwrap_or("")
    }

    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.clone()]
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (or an empty one).
    None,
    Length(u64),
    Chunked,
    /// A response read until the worker closes (requests never are).
    UntilClose,
}

/// Why a head could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the head is larger than allowed")]
    TooLarge,
    #[error("more headers than allowed")]
    TooManyHeaders,
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A transfer coding other than `chunked`.
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
}

/// A client's request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Bytes of the head, its blank line included.
    pub len: usize,
    pub method: Range<usize>,
    /// The origin-form target (path and query, or `*`); of an absolute-form target, the part
    /// after its authority (empty when it has no path: [`RequestHead::target`] says `/`).
    pub target: Range<usize>,
    /// An absolute-form target's authority (`host[:port]`): what the request is routed by.
    pub authority: Option<Range<usize>>,
    pub http10: bool,
    pub host: Option<Range<usize>>,
    pub accept: Option<Range<usize>>,
    pub request_id: Option<Range<usize>>,
    pub body: Framing,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
    pub expect_continue: bool,
    /// The `Connection` header's values: the headers they name are hop-by-hop too.
    pub connection: [Option<Range<usize>>; 2],
}

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a str {
        std::str::from_utf8(&buf[self.method.clone()]).unwrap_or("")
    }

    /// The target as the worker gets it: origin form (`/` for an absolute-form target
    /// without a path).
    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a str {
        match std::str::from_utf8(&buf[self.target.clone()]).unwrap_or("") {
            "" => "/",
            t => t,
        }
    }

    /// What the request names as its host: an absolute-form target's authority, else `Host`.
    pub fn host<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.authority
            .as_ref()
            .or(self.host.as_ref())
            .map(|r| &buf[r.clone()])
    }

    /// Whether `name` is listed in the request's `Connection` header.
    pub fn named_by_connection(&self, buf: &[u8], name: &str) -> bool {
        self.connection
            .iter()
            .flatten()
            .any(|r| has_token(&buf[r.clone()], name))
    }
}

/// Parses a request head at the start of `buf`; `Ok(None)` until it is complete. The header
/// positions go to `headers` (cleared first; kept by the caller so its memory is reused).
pub fn parse_request(
    buf: &[u8],
    max_len: usize,
    headers: &mut Vec<HeaderAt>,
) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_len => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_len => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x request")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let (authority, default_port, origin) =
        if target.starts_with('/') || (method == "OPTIONS" && target == "*") {
            (None, 0, target)
        } else {
            let (authority, default_port, origin) = absolute_form(target)?;
            (Some(authority), default_port, origin)
        };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let mut head = RequestHead {
        len,
        method: at(method.as_bytes()),
        target: at(origin.as_bytes()),
        authority: authority.map(|a| at(a.as_bytes())),
        http10: version == 0,
        host: None,
        accept: None,
        request_id: None,
        body: Framing::None,
        close: version == 0,
        expect_continue: false,
        connection: [None, None],
    };
    headers.clear();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name;
        let value = at(h.value);
        headers.push(HeaderAt {
            name: at(name.as_bytes()),
            value: value.clone(),
        });
        if name.eq_ignore_ascii_case("host") {
            if head.host.is_some() {
                return Err(HeadError::Malformed("more than one Host header"));
            }
            head.host = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(HeadError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked {
                // A coding after `chunked`: nothing else is supported.
                return Err(HeadError::UnsupportedCoding);
            }
            chunked = only_chunked(h.value)?;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                head.close = true;
            } else if head.http10 && has_token(h.value, "keep-alive") {
                head.close = false;
            }
            match &mut head.connection {
                [slot @ None, _] | [Some(_), slot @ None] => *slot = Some(value),
                _ => return Err(HeadError::Malformed("too many Connection headers")),
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(HeadError::Malformed("unsupported Expect"));
            }
            head.expect_continue = !head.http10;
        } else if name.eq_ignore_ascii_case("accept") {
            head.accept.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("x-request-id") {
            head.request_id.get_or_insert(value);
        }
    }
    head.body = match (chunked, length) {
        (true, Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ))
        }
        (true, None) if head.http10 => {
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"))
        }
        (true, None) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    if let Some(authority) = authority {
        match &head.host {
            Some(host) => {
                let host = std::str::from_utf8(&buf[host.clone()]).unwrap_or("");
                if !crate::host::same_authority(authority, host, default_port) {
                    return Err(HeadError::Malformed(
                        "the Host header does not agree with the request target",
                    ));
                }
            }
            None if !head.http10 => return Err(HeadError::Malformed("no Host header")),
            None => {}
        }
    }
    Ok(Some(head))
}

/// An absolute-form target, `http[s]://authority[/path][?query]`: its authority, its scheme's
/// default port and the rest (its path and query, or empty). A target without a path but with
/// a query, one with user information and one with an empty authority are refused.
fn absolute_form(target: &str) -> Result<(&str, u16, &str), HeadError> {
    let scheme_end = target
        .find("://")
        .ok_or(HeadError::Malformed("the request target must be a path"))?;
    let default_port = match &target[..scheme_end] {
        s if s.eq_ignore_ascii_case("http") => 80,
        s if s.eq_ignore_ascii_case("https") => 443,
        _ => {
            return Err(HeadError::Malformed(
                "the request target's scheme is not HTTP",
            ))
        }
    };
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(HeadError::Malformed(
            "the request target's authority is bad",
        ));
    }
    if !(origin.is_empty() || origin.starts_with('/')) {
        return Err(HeadError::Malformed("the request target has no path"));
    }
    Ok((authority, default_port, origin))
}

/// A worker's response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub body: Framing,
    /// The worker will close the connection after this response.
    pub close: bool,
    /// A `Connection` header names other headers: they are hop-by-hop too (RFC 9110 §7.6.1),
    /// see [`ResponseHead::named_by_connection`].
    pub connection_options: bool,
}

impl ResponseHead {
    /// Whether `name` is listed in one of the response's `Connection` headers (`headers` and
    /// `buf`: where the head was parsed).
    pub fn named_by_connection(&self, headers: &[HeaderAt], buf: &[u8], name: &str) -> bool {
        self.connection_options
            && headers.iter().any(|h| {
                h.name(buf).eq_ignore_ascii_case("connection") && has_token(h.value(buf), name)
            })
    }
}

/// Parses a response head at the start of `buf` (`head_request`: the request was a HEAD, so no
/// body follows whatever the headers say); `Ok(None)` until complete.
pub fn parse_response(
    buf: &[u8],
    max_len: usize,
    head_request: bool,
    headers: &mut Vec<HeaderAt>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_len => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_len => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x response")),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    // Three digits are all httparse asks; a status is 100 to 599 (RFC 9110 §15).
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed("a status code out of range"));
    }
    let base = buf.as_ptr() as usize;
    // Where a slice httparse gave lies in `buf`. A reason phrase that is not UTF-8 comes back
    // as a static "" outside `buf` (found by the response_head fuzz target: the subtraction
    // overflowed): it is passed on as no reason at all.
    let at = |s: &[u8]| match (s.as_ptr() as usize).checked_sub(base) {
        Some(start) if start + s.len() <= buf.len() => start..start + s.len(),
        _ => 0..0,
    };
    let reason = at(res.reason.unwrap_or("").as_bytes());
    headers.clear();
    let mut length: Option<u64> = None;
    let mut transfer: Option<bool> = None;
    let mut close = version == 0;
    let mut connection_options = false;
    for h in res.headers.iter() {
        headers.push(HeaderAt {
            name: at(h.name.as_bytes()),
            value: at(h.value),
        });
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(HeadError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides: chunked, or read until the worker closes.
            transfer = Some(last_token_is(h.value, "chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, "close");
            connection_options |= h
                .value
                .split(|b| *b == b',')
                .map(trim)
                .any(|t| !t.is_empty() && !is_hop_by_hop_token(t));
        }
    }
    let body = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::None
    } else {
        match (transfer, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if body == Framing::UntilClose {
        close = true;
    }
    Ok(Some(ResponseHead {
        len,
        status,
        reason,
        body,
        close,
        connection_options,
    }))
}

/// A `Connection` option that names no header the proxy would pass on anyway.
fn is_hop_by_hop_token(t: &[u8]) -> bool {
    t.eq_ignore_ascii_case(b"close") || std::str::from_utf8(t).is_ok_and(is_hop_by_hop)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the framing headers, which each side of the proxy
/// sets for itself.
pub fn is_hop_by_hop(name: &str) -> bool {
    const NAMES: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// `Content-Length`: digits, or a list of equal numbers (RFC 9110 §8.6).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|b| *b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// A request's `Transfer-Encoding`: only `chunked`, once.
fn only_chunked(value: &[u8]) -> Result<bool, HeadError> {
    let mut codings = value.split(|b| *b == b',').map(trim);
    match (codings.next(), codings.next()) {
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(true),
        _ => Err(HeadError::UnsupportedCoding),
    }
}

fn last_token_is(value: &[u8], token: &str) -> bool {
    value
        .rsplit(|b| *b == b',')
        .map(trim)
        .find(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether a comma-separated header value lists `token`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(raw.as_bytes(), 8192, &mut Vec::new())
    }

    #[test]
    fn a_plain_request() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: Acme.Example\r\nX-Request-Id: r1\r\nAccept: */*\r\n\r\nrest";
        let mut headers = Vec::new();
        let head = parse_request(raw.as_bytes(), 8192, &mut headers)
            .unwrap()
            .unwrap();
        let buf = raw.as_bytes();
        assert_eq!(head.len, raw.len() - 4);
        assert_eq!(head.method(buf), "GET");
        assert_eq!(head.target(buf), "/a?b=1");
        assert_eq!(&buf[head.host.clone().unwrap()], b"Acme.Example");
        assert_eq!(&buf[head.request_id.clone().unwrap()], b"r1");
        assert_eq!(head.body, Framing::None);
        assert!(!head.close && !head.http10);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[1].name(buf), "X-Request-Id");
    }

    #[test]
    fn partial_too_large_and_malformed() {
        assert!(request("GET / HTTP/1.1\r\nHost: a").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(request(&big).unwrap_err(), HeadError::TooLarge);
        assert_eq!(
            request(&format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000))).unwrap_err(),
            HeadError::TooLarge
        );
        let many: String = (0..101).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            request(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            HeadError::TooManyHeaders
        );
        assert!(matches!(
            request("GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            request("GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            request("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(request("OPTIONS * HTTP/1.1\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn absolute_form_targets() {
        let raw =
            "GET HTTP://Acme.Example:8080/a/b?c=1 HTTP/1.1\r\nHost: acme.example:8080\r\n\r\n";
        let head = request(raw).unwrap().unwrap();
        let buf = raw.as_bytes();
        assert_eq!(head.target(buf), "/a/b?c=1");
        assert_eq!(head.host(buf), Some(&b"Acme.Example:8080"[..]));
        // No path: the worker gets `/`; the default port may be left out on either side.
        let raw = "OPTIONS https://acme.example HTTP/1.1\r\nHost: acme.example:443\r\n\r\n";
        let head = request(raw).unwrap().unwrap();
        assert_eq!(head.target(raw.as_bytes()), "/");
        // HTTP/1.0 needs no Host: the target's authority routes.
        let raw = "GET http://acme.example/x HTTP/1.0\r\n\r\n";
        let head = request(raw).unwrap().unwrap();
        assert_eq!(head.host(raw.as_bytes()), Some(&b"acme.example"[..]));
        for bad in [
            // Host must agree with the target's authority.
            "GET http://acme.example/x HTTP/1.1\r\nHost: beta.example\r\n\r\n",
            "GET http://acme.example:8080/x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
            "GET https://acme.example/x HTTP/1.1\r\nHost: acme.example:80\r\n\r\n",
            "GET http://acme.example/x HTTP/1.1\r\n\r\n",
            // Not a target the proxy can route.
            "GET http:///x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
            "GET http://user@acme.example/x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
            "GET http://acme.example?x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
            "GET acme.example/x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
            "GET mailto://acme.example/x HTTP/1.1\r\nHost: acme.example\r\n\r\n",
        ] {
            assert!(
                matches!(request(bad), Err(HeadError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_framing_is_strict() {
        let body = |raw: &str| request(raw).map(|h| h.unwrap().body);
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(body(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
        for unsupported in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        ] {
            assert_eq!(
                body(unsupported),
                Err(HeadError::UnsupportedCoding),
                "{unsupported:?}"
            );
        }
    }

    #[test]
    fn connection_and_expect() {
        let raw = "GET / HTTP/1.1\r\nConnection: close, X-Secret\r\n\r\n";
        let head = request(raw).unwrap().unwrap();
        assert!(head.close);
        assert!(head.named_by_connection(raw.as_bytes(), "x-secret"));
        assert!(!head.named_by_connection(raw.as_bytes(), "x-other"));
        assert!(request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().close);
        assert!(
            !request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
        let e = request("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(e.unwrap().unwrap().expect_continue);
        assert!(matches!(
            request("POST / HTTP/1.1\r\nExpect: something\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    fn response(raw: &str, head: bool) -> ResponseHead {
        parse_response(raw.as_bytes(), 8192, head, &mut Vec::new())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn response_framing() {
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!(
            (r.status, r.body, r.close),
            (200, Framing::Length(5), false)
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).body,
            Framing::None
        );
        assert_eq!(
            response(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false
            )
            .body,
            Framing::None
        );
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            )
            .body,
            Framing::Chunked
        );
        let r = response("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.body, r.close), (Framing::UntilClose, true));
        assert!(
            response(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            )
            .close
        );
        assert!(response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).close);
        assert_eq!(response("HTTP/1.1 100 Continue\r\n\r\n", false).status, 100);
        for bad in [
            "HTTP/1.1 000 Zero\r\n\r\n",
            "HTTP/1.1 099 X\r\n\r\n",
            "HTTP/1.1 600 X\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(bad.as_bytes(), 8192, false, &mut Vec::new()),
                    Err(HeadError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_a_response_names_in_connection() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                   connection: X-Other\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n";
        let mut headers = Vec::new();
        let head = parse_response(raw.as_bytes(), 8192, false, &mut headers)
            .unwrap()
            .unwrap();
        let named = |name| head.named_by_connection(&headers, raw.as_bytes(), name);
        assert!(head.connection_options && !head.close);
        assert!(named("x-secret") && named("X-OTHER"));
        assert!(!named("x-kept") && !named("content-length"));
        let plain = response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false);
        assert!(!plain.connection_options && plain.close);
    }

    #[test]
    fn hop_by_hop_and_tokens() {
        assert!(is_hop_by_hop("Connection") && is_hop_by_hop("transfer-encoding"));
        assert!(!is_hop_by_hop("cookie"));
        assert!(has_token(b" Keep-Alive , Upgrade", "upgrade"));
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b""), None);
    }
}
