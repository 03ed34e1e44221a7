//! The headers across the proxy: what a worker gets (the client's headers but the hop-by-hop
//! ones and anything that could pass for what the proxy says, then the proxy's own), which of a
//! worker's answer headers go on, and request ids (the client's when sane, else made here).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Method;

use super::Forwarded;
use crate::wire;

/// Whether a client header must not reach the worker: hop-by-hop and framing headers, and
/// anything that could pass for what the proxy itself says.
pub fn withheld(name: &str) -> bool {
    let prefixed = |p: &str| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    wire::is_hop_by_hop(name)
        || prefixed("x-apotheca-")
        || prefixed("x-forwarded-")
        || name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("expect")
        || name.eq_ignore_ascii_case("x-request-id")
        || name.eq_ignore_ascii_case("forwarded")
        || name.eq_ignore_ascii_case("x-real-ip")
}

/// Whether a worker's answer header goes on to the client (the framing headers are each
/// front's to decide; `hsts`: the proxy sets its own).
pub fn passed_on(name: &str, hsts: bool) -> bool {
    !(wire::is_hop_by_hop(name)
        || name.eq_ignore_ascii_case("x-request-id")
        || (hsts && name.eq_ignore_ascii_case("strict-transport-security")))
}

/// Writes the request for the worker into `out`: the request line, `Host` as the client sent
/// it, the client's headers but those [`withheld`] (and those `skip` names), the proxy's own,
/// the body's length and the body.
#[allow(clippy::too_many_arguments)]
pub fn write_request<'h>(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host_header: &[u8],
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    skip: impl Fn(&str) -> bool,
    fwd: &Forwarded,
    body: &[u8],
) {
    out.clear();
    out.reserve(512 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host_header);
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if withheld(name) || skip(name) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-apotheca-tenant: ");
    out.extend_from_slice(fwd.schema.as_bytes());
    if let Some(ip) = fwd.client_ip {
        let _ = write!(out, "\r\nx-forwarded-for: {ip}");
    }
    out.extend_from_slice(if fwd.https {
        b"\r\nx-forwarded-proto: https\r\nx-forwarded-host: "
    } else {
        b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: "
    });
    out.extend_from_slice(fwd.host.as_bytes());
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(fwd.request_id.as_bytes());
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE" | "TRACE") {
        let _ = write!(out, "\r\ncontent-length: {}", body.len());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

const X_APOTHECA_TENANT: HeaderName = HeaderName::from_static("x-apotheca-tenant");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// [`write_request`] for hyper's client: the client's headers made into the worker's in place.
/// Those [`withheld`] go, and those the request's `Connection` header names; HTTP/2's split
/// `cookie` fields are joined again (RFC 9113 §8.2.3); then `Host` as the client sent it, the
/// proxy's own, and the body's length (as [`write_request`] says it).
pub fn forward_headers(
    headers: &mut HeaderMap,
    host: HeaderValue,
    h2: bool,
    fwd: &Forwarded,
    method: &Method,
    body_len: usize,
) {
    let mut gone: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                gone.push(name);
            }
        }
    }
    gone.extend(headers.keys().filter(|n| withheld(n.as_str())).cloned());
    for name in &gone {
        headers.remove(name);
    }
    if h2 {
        let mut values = headers.get_all(header::COOKIE).iter();
        if let (Some(first), Some(_)) = (values.next(), values.next()) {
            let mut joined = first.as_bytes().to_vec();
            for v in headers.get_all(header::COOKIE).iter().skip(1) {
                joined.extend_from_slice(b"; ");
                joined.extend_from_slice(v.as_bytes());
            }
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(header::COOKIE, v);
            }
        }
    }
    headers.insert(header::HOST, host);
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-"));
    headers.insert(X_APOTHECA_TENANT, value(fwd.schema));
    if let Some(ip) = fwd.client_ip {
        headers.insert(X_FORWARDED_FOR, value(&ip.to_string()));
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if fwd.https { "https" } else { "http" }),
    );
    headers.insert(X_FORWARDED_HOST, value(fwd.host));
    headers.insert(X_REQUEST_ID, value(fwd.request_id));
    if body_len > 0
        || !matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
        )
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
}

/// Whether a method may be sent twice (RFC 9110 §9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// A client's `X-Request-Id` is kept when it is short and plain.
pub(super) fn sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Request ids: a random prefix per process and a counter.
pub(super) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub(super) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Self {
            prefix: h.finish(),
            next: AtomicU64::new(1),
        }
    }

    pub(super) fn next(&self) -> String {
        format!(
            "{:016x}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(sane_request_id("3f2a-77_b.c:1"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id(&"a".repeat(129)));
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
        assert!(sane_request_id(&ids.next()));
    }

    #[test]
    fn the_worker_gets_the_proxys_headers_and_none_forged() {
        let mut out = Vec::new();
        let headers = [
            ("Accept", &b"text/html"[..]),
            ("X-Apotheca-Tenant", b"other"),
            ("x-forwarded-for", b"6.6.6.6"),
            ("X-Request-Id", b"forged"),
            ("Connection", b"keep-alive, X-Drop"),
            ("X-Drop", b"1"),
            ("Transfer-Encoding", b"chunked"),
            ("Content-Length", b"99"),
            ("Cookie", b"a=1"),
        ];
        let fwd = Forwarded {
            schema: "acme",
            client_ip: Some("10.0.0.7".parse().unwrap()),
            https: true,
            host: "acme.example",
            request_id: "r-1",
        };
        write_request(
            &mut out,
            "POST",
            "/x?y=1",
            b"Acme.Example:8443",
            headers.iter().copied(),
            |n| n.eq_ignore_ascii_case("x-drop"),
            &fwd,
            b"body",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /x?y=1 HTTP/1.1\r\nhost: Acme.Example:8443\r\nAccept: text/html\r\nCookie: a=1\r\n\
             x-apotheca-tenant: acme\r\nx-forwarded-for: 10.0.0.7\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: acme.example\r\nx-request-id: r-1\r\ncontent-length: 4\r\n\r\nbody"
        );

        // The same through hyper's client, the client's headers changed in place.
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        forward_headers(
            &mut map,
            HeaderValue::from_static("Acme.Example:8443"),
            false,
            &fwd,
            &Method::POST,
            4,
        );
        let mut got: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let want = [
            ("accept", "text/html"),
            ("content-length", "4"),
            ("cookie", "a=1"),
            ("host", "Acme.Example:8443"),
            ("x-apotheca-tenant", "acme"),
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-host", "acme.example"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "r-1"),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );

        // HTTP/2's cookie fields are joined; a GET without a body gets no length.
        let mut map = HeaderMap::new();
        map.append(header::COOKIE, HeaderValue::from_static("a=1"));
        map.append(header::COOKIE, HeaderValue::from_static("b=2"));
        forward_headers(
            &mut map,
            HeaderValue::from_static("acme.example"),
            true,
            &fwd,
            &Method::GET,
            0,
        );
        assert_eq!(map.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(map[header::COOKIE], "a=1; b=2");
        assert!(map.get(header::CONTENT_LENGTH).is_none());
    }
}
