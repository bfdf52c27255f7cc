//! PROXY protocol (HAProxy) v1 and v2 header parser.
//!
//! [`parse_proxy_header`] is incremental: call it with whatever bytes have
//! arrived; `Ok(None)` means "need more bytes", `Ok(Some((header, n)))` means
//! the first `n` bytes were the header (TLVs included) and the application
//! stream starts at `buf[n..]`.
//!
//! A v1 header is at most 107 bytes; a v2 header at most 16 + 65535 bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest valid v1 line, CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// A parsed PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection was relayed on behalf of `source` (the real client),
    /// which connected to `destination` on the proxy.
    Proxy {
        version: u8,
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The proxy could not or would not tell (v1 `UNKNOWN`, v2 `AF_UNSPEC`,
    /// `AF_UNIX` or an unspecified transport): use the socket's peer address.
    Unknown { version: u8 },
    /// v2 `LOCAL`: the proxy itself opened the connection (e.g. a health
    /// check): use the socket's peer address.
    Local,
}

impl ProxyHeader {
    /// The real client address, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxy { source, .. } => Some(*source),
            _ => None,
        }
    }

    /// The address the client connected to, when the header carries one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxy { destination, .. } => Some(*destination),
            _ => None,
        }
    }
}

/// Why a buffer is not a valid PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes start with neither the v1 nor the v2 signature.
    NotProxyProtocol,
    /// A v1 line without CRLF within 107 bytes.
    V1TooLong,
    /// A malformed v1 line.
    InvalidV1(&'static str),
    /// A malformed v2 header.
    InvalidV2(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxyProtocol => f.write_str("not a PROXY protocol header"),
            ProxyError::V1TooLong => {
                write!(f, "PROXY v1 header longer than {V1_MAX_LEN} bytes")
            }
            ProxyError::InvalidV1(why) => write!(f, "invalid PROXY v1 header: {why}"),
            ProxyError::InvalidV2(why) => write!(f, "invalid PROXY v2 header: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses a PROXY protocol v1 or v2 header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is a valid prefix of a header but more bytes
/// are needed, `Ok(Some((header, consumed)))` on success and `Err` when the
/// bytes can never become a valid header.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        if buf.len() < V1_PREFIX.len() {
            return Ok(None);
        }
        return parse_v1(buf);
    }
    Err(ProxyError::NotProxyProtocol)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(ProxyError::InvalidV1("bare LF"));
        }
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    if cr + 1 >= window.len() {
        // CR is the last byte we have.
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(None)
        };
    }
    if window[cr + 1] != b'\n' {
        return Err(ProxyError::InvalidV1("CR not followed by LF"));
    }
    let consumed = cr + 2;
    let line = &window[V1_PREFIX.len()..cr];
    if line.iter().any(|&b| b == b'\n' || b == 0) {
        return Err(ProxyError::InvalidV1("control character in header"));
    }
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::InvalidV1("not ASCII"))?;
    if let Some(rest) = line.strip_prefix("UNKNOWN") {
        // Anything may follow UNKNOWN; receivers ignore it.
        if rest.is_empty() || rest.starts_with(' ') {
            return Ok(Some((ProxyHeader::Unknown { version: 1 }, consumed)));
        }
        return Err(ProxyError::InvalidV1("unknown protocol"));
    }
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    let want_v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(ProxyError::InvalidV1("unknown protocol")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ProxyError::InvalidV1("expected 5 space-separated fields"));
    };
    let src = parse_v1_ip(src, want_v4)?;
    let dst = parse_v1_ip(dst, want_v4)?;
    let sport = parse_v1_port(sport)?;
    let dport = parse_v1_port(dport)?;
    Ok(Some((
        ProxyHeader::Proxy {
            version: 1,
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        },
        consumed,
    )))
}

fn parse_v1_ip(s: &str, want_v4: bool) -> Result<IpAddr, ProxyError> {
    if want_v4 {
        s.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::InvalidV1("bad IPv4 address"))
    } else {
        s.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::InvalidV1("bad IPv6 address"))
    }
}

fn parse_v1_port(s: &str) -> Result<u16, ProxyError> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(ProxyError::InvalidV1("bad port"));
    }
    s.parse::<u16>()
        .map_err(|_| ProxyError::InvalidV1("bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    // Signature already checked; fixed part is 16 bytes.
    if buf.len() < 16 {
        // Validate what we can early so garbage fails fast.
        if let Some(&vc) = buf.get(12) {
            check_ver_cmd(vc)?;
        }
        return Ok(None);
    }
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let local = check_ver_cmd(ver_cmd)?;
    let family = fam >> 4;
    let transport = fam & 0x0f;
    if family > 3 {
        return Err(ProxyError::InvalidV2("unknown address family"));
    }
    if transport > 2 {
        return Err(ProxyError::InvalidV2("unknown transport protocol"));
    }
    let needed = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if !local && len < needed {
        return Err(ProxyError::InvalidV2(
            "address block shorter than the address family needs",
        ));
    }
    let total = 16 + len;
    if buf.len() < total {
        return Ok(None);
    }
    if local {
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let body = &buf[16..total];
    let header = match (family, transport) {
        (1, 1 | 2) => {
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sport = u16::from_be_bytes([body[8], body[9]]);
            let dport = u16::from_be_bytes([body[10], body[11]]);
            ProxyHeader::Proxy {
                version: 2,
                source: SocketAddr::new(IpAddr::V4(src), sport),
                destination: SocketAddr::new(IpAddr::V4(dst), dport),
            }
        }
        (2, 1 | 2) => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            let sport = u16::from_be_bytes([body[32], body[33]]);
            let dport = u16::from_be_bytes([body[34], body[35]]);
            ProxyHeader::Proxy {
                version: 2,
                source: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sport),
                destination: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), dport),
            }
        }
        _ => ProxyHeader::Unknown { version: 2 },
    };
    Ok(Some((header, total)))
}

/// Returns whether the command is LOCAL.
fn check_ver_cmd(vc: u8) -> Result<bool, ProxyError> {
    if vc >> 4 != 2 {
        return Err(ProxyError::InvalidV2("version is not 2"));
    }
    match vc & 0x0f {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(ProxyError::InvalidV2("unknown command")),
    }
}

/// Encodes a v2 PROXY header (used by tests and by an upstream-side sender).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(source).octets());
            out.extend_from_slice(&v6(destination).octets());
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_every_prefix_needs_more() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let (hdr, n) = parse_proxy_header(h).unwrap().unwrap();
        assert_eq!(n, h.len() - 5);
        assert_eq!(hdr.source(), Some(sa("192.0.2.1:56324")));
        assert_eq!(hdr.destination(), Some(sa("198.51.100.2:443")));
        for cut in 0..n {
            assert_eq!(parse_proxy_header(&h[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn v1_rejects() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
        ];
        for b in bad {
            assert!(
                parse_proxy_header(b).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'A'; 200]].concat();
        assert_eq!(parse_proxy_header(&long), Err(ProxyError::V1TooLong));
        assert_eq!(
            parse_proxy_header(b"GET / HTTP/1.1\r\n"),
            Err(ProxyError::NotProxyProtocol)
        );
    }

    #[test]
    fn v2_roundtrip_and_truncation() {
        let h = encode_v2(sa("[2001:db8::1]:1234"), sa("[2001:db8::2]:443"));
        let (hdr, n) = parse_proxy_header(&h).unwrap().unwrap();
        assert_eq!(n, h.len());
        assert_eq!(hdr.source(), Some(sa("[2001:db8::1]:1234")));
        for cut in 0..h.len() {
            assert_eq!(parse_proxy_header(&h[..cut]), Ok(None), "cut {cut}");
        }
    }
}
