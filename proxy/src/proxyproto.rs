//! The PROXY protocol (HAProxy's `send-proxy` and `send-proxy-v2`): a balancer in front of
//! this proxy says, before the client's bytes, who the client is. Only connections from the
//! addresses in `[proxy] proxy_protocol_from` are read this way, and each of those must start
//! with a header (version 1, text, or version 2, binary), else it is closed; the client's
//! address is then the header's source. A `LOCAL` header (the balancer's own health check)
//! keeps the connection's own address. Exactly the header is read: what follows (the TLS
//! handshake, the request) is left in the socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::io::AsyncReadExt;

/// Version 2's first twelve bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, CRLF included.
const V1_MAX: usize = 107;

/// Addresses and networks (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<(IpAddr, u8)>);

impl Trusted {
    /// Parses `proxy_protocol_from`'s entries.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries {
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (entry.as_str(), None),
            };
            let addr: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{entry:?}: the prefix length must be 0 to {max}"))?,
            };
            // An IPv4 network written in IPv6 (`::ffff:10.0.0.0/104`) is kept as IPv4, as the
            // addresses it is compared with are.
            let net = match addr {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) if bits >= 96 => (IpAddr::V4(v4), bits - 96),
                    Some(_) => {
                        return Err(format!(
                            "{entry:?}: an IPv4-mapped network needs a prefix of 96 or more"
                        ))
                    }
                    None => (addr, bits),
                },
                v4 => (v4, bits),
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the addresses or in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, bits)| match (canonical(*net), ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => prefix(&n.octets(), &a.octets(), *bits),
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix(&n.octets(), &a.octets(), *bits),
                _ => false,
            })
    }
}

/// An IPv4 address mapped into IPv6 as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix(net: &[u8], addr: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if net[..whole] != addr[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        net[whole] & mask == addr[whole] & mask
    }
}

/// Why a connection's header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("a malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Reads one header from `io`: the client's address, or None for `LOCAL` (and `UNKNOWN`).
pub async fn read<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<IpAddr>, std::io::Error> {
    let invalid = |e: HeaderError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut head = [0u8; 16];
    io.read_exact(&mut head[..6]).await?;
    if &head[..6] == b"PROXY " {
        // Version 1: the rest of the line, a byte at a time (nothing past it may be read).
        let mut line = head[..6].to_vec();
        loop {
            let b = io.read_u8().await?;
            line.push(b);
            if line.ends_with(b"\r\n") {
                break;
            }
            if line.len() >= V1_MAX {
                return Err(invalid(HeaderError::Malformed("a version 1 line too long")));
            }
        }
        return parse_v1(&line).map_err(invalid);
    }
    if head[..6] != V2_SIGNATURE[..6] {
        return Err(invalid(HeaderError::Missing));
    }
    io.read_exact(&mut head[6..]).await?;
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    parse_v2(&head, &body).map_err(invalid)
}

fn parse_v1(line: &[u8]) -> Result<Option<IpAddr>, HeaderError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| HeaderError::Malformed("version 1 is not text"))?
        .trim_end_matches("\r\n");
    let mut words = text.split(' ');
    let _proxy = words.next();
    match words.next() {
        Some("UNKNOWN") => Ok(None),
        Some(family @ ("TCP4" | "TCP6")) => words
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .filter(|ip| ip.is_ipv4() == (family == "TCP4"))
            .map(Some)
            .ok_or(HeaderError::Malformed(
                "version 1 without a source address of its family",
            )),
        _ => Err(HeaderError::Malformed("version 1 of an unknown protocol")),
    }
}

fn parse_v2(head: &[u8; 16], body: &[u8]) -> Result<Option<IpAddr>, HeaderError> {
    if head[..12] != V2_SIGNATURE {
        return Err(HeaderError::Missing);
    }
    if head[12] >> 4 != 2 {
        return Err(HeaderError::Malformed("not version 2"));
    }
    match head[12] & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err(HeaderError::Malformed("an unknown version 2 command")),
    }
    let short = HeaderError::Malformed("a version 2 address too short");
    match head[13] >> 4 {
        1 if body.len() < 12 => Err(short),
        1 => Ok(Some(IpAddr::V4(Ipv4Addr::new(
            body[0], body[1], body[2], body[3],
        )))),
        2 if body.len() < 36 => Err(short),
        2 => {
            let octets: [u8; 16] = body[..16].try_into().unwrap_or_default();
            Ok(Some(IpAddr::V6(Ipv6Addr::from(octets))))
        }
        // Unspecified, or a Unix socket: no address to take.
        0 | 3 => Ok(None),
        _ => Err(HeaderError::Malformed(
            "an unknown version 2 address family",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> (Result<Option<IpAddr>, std::io::Error>, Vec<u8>) {
        let mut io = bytes;
        let got = read(&mut io).await;
        (got, io.to_vec())
    }

    #[tokio::test]
    async fn version_1_and_what_follows() {
        let (ip, rest) = read_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nGET /").await;
        assert_eq!(ip.unwrap(), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(rest, b"GET /");
        let (ip, _) = read_all(b"PROXY TCP6 2001:db8::5 ::1 1 2\r\n").await;
        assert_eq!(ip.unwrap(), Some("2001:db8::5".parse().unwrap()));
        let (e, _) = read_all(b"PROXY TCP4 2001:db8::5 ::1 1 2\r\n").await;
        assert!(e.is_err(), "an IPv6 source for TCP4");
        let (ip, _) = read_all(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(ip.unwrap(), None);
        let (e, _) = read_all(b"GET / HTTP/1.1\r\n").await;
        assert!(e.is_err());
        let (e, _) = read_all(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat()).await;
        assert!(e.is_err());
    }

    #[tokio::test]
    async fn version_2_and_what_follows() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 1, 187,
        ]);
        v4.extend_from_slice(b"\x16\x03\x01");
        let (ip, rest) = read_all(&v4).await;
        assert_eq!(ip.unwrap(), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01", "the TLS hello is left");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read_all(&local).await.0.unwrap(), None);
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(read_all(&short).await.0.is_err());
    }

    #[test]
    fn trusted_addresses_and_networks() {
        let t =
            Trusted::parse(&["10.0.0.0/8".into(), "127.0.0.1".into(), "fd00::/8".into()]).unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(!t.contains("192.0.2.1".parse().unwrap()));
        assert!(Trusted::parse(&["10.0.0.0/33".into()]).is_err());
        let mapped =
            Trusted::parse(&["::ffff:10.0.0.1".into(), "::ffff:192.0.2.0/120".into()]).unwrap();
        assert!(mapped.contains("10.0.0.1".parse().unwrap()));
        assert!(mapped.contains("192.0.2.77".parse().unwrap()));
        assert!(!mapped.contains("10.0.0.2".parse().unwrap()));
        assert!(Trusted::parse(&["::ffff:10.0.0.0/64".into()]).is_err());
        assert!(Trusted::parse(&["example.com".into()]).is_err());
    }
}
