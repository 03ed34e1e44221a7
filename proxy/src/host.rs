//! Host normalisation: what a request names (the `Host` header, or HTTP/2's `:authority`)
//! turned into the form domains are stored in — lowercase, no port, no trailing dot, IDNA
//! punycode — or refused.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHost(&'static str);

impl fmt::Display for BadHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The longest host name DNS allows.
const MAX_LEN: usize = 253;

/// `raw` as stored in `public.domains`: lowercase ASCII (punycode for IDNs), without a port or
/// a trailing dot. IP literals are kept as they are (bracketed IPv6 without brackets).
pub fn normalise(raw: &str) -> Result<String, BadHost> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(BadHost("the host is empty"));
    }
    if raw.len() > MAX_LEN + 7 {
        return Err(BadHost("the host is too long"));
    }
    if raw.contains(['/', '@', '\\', ' ', '?', '#']) {
        return Err(BadHost(
            "the host contains characters a host name cannot have",
        ));
    }
    // [v6]:port
    if let Some(rest) = raw.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or(BadHost("an IPv6 host lacks its closing bracket"))?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| BadHost("not an IPv6 address"))?;
        port(after.strip_prefix(':'), after.is_empty())?;
        return Ok(ip.to_string());
    }
    let (name, port_part) = match raw.rsplit_once(':') {
        Some((name, p)) => (name, Some(p)),
        None => (raw, None),
    };
    port(port_part, port_part.is_none())?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(BadHost("the host is empty"));
    }
    let ascii = if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(name).map_err(|_| BadHost("not a valid internationalised name"))?
    };
    if ascii.len() > MAX_LEN {
        return Err(BadHost("the host is too long"));
    }
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(BadHost(
                "a part of the host is empty or longer than 63 characters",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(BadHost(
                "the host contains characters a host name cannot have",
            ));
        }
    }
    Ok(ascii)
}

/// Whether two authorities (an absolute-form request target's and the `Host` header, say) name
/// the same host and port: both valid, equal once normalised, their ports equal (an absent one
/// is `default_port`).
pub fn same_authority(a: &str, b: &str, default_port: u16) -> bool {
    let port_of = |raw: &str| {
        let raw = raw.trim();
        let after = match raw.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
            None => raw.rsplit_once(':').map_or("", |(_, p)| p),
        };
        let digits = after.strip_prefix(':').unwrap_or(after);
        if digits.is_empty() {
            Some(default_port)
        } else {
            digits.parse::<u16>().ok()
        }
    };
    match (normalise(a), normalise(b)) {
        (Ok(x), Ok(y)) => x == y && port_of(a).is_some() && port_of(a) == port_of(b),
        _ => false,
    }
}

fn port(p: Option<&str>, absent: bool) -> Result<(), BadHost> {
    match p {
        None if absent => Ok(()),
        None => Err(BadHost("unexpected text after the host")),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u32>() {
                Ok(n) if n <= 65535 => Ok(()),
                _ => Err(BadHost("the port is out of range")),
            }
        }
        Some(_) => Err(BadHost("the port is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_what_browsers_send() {
        for (raw, want) in [
            ("acme.localhost", "acme.localhost"),
            ("ACME.Localhost:8080", "acme.localhost"),
            ("acme.example.com.", "acme.example.com"),
            ("acme.example.com.:443", "acme.example.com"),
            ("Bücher.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn authorities_agree_on_host_and_port() {
        for (a, b) in [
            ("acme.localhost", "ACME.localhost"),
            ("acme.localhost:8080", "acme.localhost.:8080"),
            ("acme.localhost:80", "acme.localhost"),
            ("[::1]:80", "[::1]"),
        ] {
            assert!(same_authority(a, b, 80), "{a} {b}");
            assert!(same_authority(b, a, 80), "{b} {a}");
        }
        for (a, b) in [
            ("acme.localhost", "beta.localhost"),
            ("acme.localhost:8080", "acme.localhost"),
            ("acme.localhost:443", "acme.localhost"),
            ("[::1]:8080", "[::1]"),
            ("-bad", "-bad"),
            ("acme.localhost", ""),
        ] {
            assert!(!same_authority(a, b, 80), "{a} {b}");
            assert!(!same_authority(b, a, 80), "{b} {a}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for raw in [
            "",
            " ",
            ":8080",
            "acme.localhost:port",
            "acme.localhost:99999",
            "acme..localhost",
            "-acme.localhost",
            "acme.localhost/evil",
            "user@acme.localhost",
            "acme localhost",
            "[::1",
            "[nonsense]:80",
            "a:b:c",
            &"a".repeat(64),
            &format!("{}.com", ["abc"; 70].join(".")),
        ] {
            assert!(normalise(raw).is_err(), "{raw:?} must be refused");
        }
    }
}
