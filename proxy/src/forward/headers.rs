//! The headers across the proxy: what a worker gets (the client's headers but the hop-by-hop
//! ones and anything that could pass for what the proxy says, then the proxy's own), which of a
//! worker's answer headers go on, and request ids (the client's when sane, else made here).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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
    }
}
