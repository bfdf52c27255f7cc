//! A small, strict reader for the TLS ClientHello, used before the handshake
//! to apply a listener's SSL policy (rustls does not expose the versions a
//! client offers to the certificate resolver).

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloInfo {
    /// Protocol versions (from `supported_versions`, else the legacy field).
    pub versions: Vec<u16>,
    pub cipher_suites: Vec<u16>,
}

pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// Outcome of reading the records buffered so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The ClientHello is complete.
    Hello(HelloInfo),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello.
    NotTls,
}

/// Largest ClientHello accepted (several records).
pub const MAX_HELLO: usize = 64 * 1024;

/// Parses the handshake records at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut handshake = Vec::new();
    let mut rest = buf;
    // Reassemble handshake records until the ClientHello message is complete.
    loop {
        if rest.len() < 5 {
            return Parsed::Incomplete;
        }
        if rest[0] != 0x16 || rest[1] != 0x03 {
            return Parsed::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16384 + 256 {
            return Parsed::NotTls;
        }
        if rest.len() < 5 + len {
            return Parsed::Incomplete;
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Parsed::NotTls;
            }
            let msg_len = (usize::from(handshake[1]) << 16)
                | (usize::from(handshake[2]) << 8)
                | usize::from(handshake[3]);
            if msg_len > MAX_HELLO {
                return Parsed::NotTls;
            }
            if handshake.len() >= 4 + msg_len {
                return client_hello(&handshake[4..4 + msg_len])
                    .map_or(Parsed::NotTls, Parsed::Hello);
            }
        }
    }
}

/// Whether bytes that are not TLS start like an HTTP/1 request line: a method token of
/// uppercase letters, then a space (`GET /`, `POST /`, `PRI * HTTP/2.0` for cleartext h2).
pub fn looks_like_http(buf: &[u8]) -> bool {
    let method = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && buf.get(method) == Some(&b' ')
}

/// A cursor over a byte slice where every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn pairs(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn client_hello(body: &[u8]) -> Option<HelloInfo> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.take(32)?; // random
    r.vec8()?; // session id
    let cipher_suites = pairs(r.vec16()?);
    r.vec8()?; // compression methods
    let mut versions = vec![legacy_version];
    if let Some(exts) = r.vec16() {
        let mut e = Reader(exts);
        while let (Some(kind), Some(data)) = (e.u16(), e.vec16()) {
            if kind == 43 {
                // supported_versions: a u8-length list of u16 versions.
                versions = pairs(Reader(data).vec8()?);
            }
        }
    }
    Some(HelloInfo {
        versions,
        cipher_suites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(versions: Option<&[u16]>, suites: &[u16]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        if let Some(v) = versions {
            exts.extend_from_slice(&43u16.to_be_bytes());
            exts.extend_from_slice(&((v.len() * 2 + 1) as u16).to_be_bytes());
            exts.push((v.len() * 2) as u8);
            for x in v {
                exts.extend_from_slice(&x.to_be_bytes());
            }
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn reads_versions_and_suites() {
        let rec = hello(Some(&[TLS13, TLS12]), &[0x1301, 0xc02b]);
        assert_eq!(
            parse(&rec),
            Parsed::Hello(HelloInfo {
                versions: vec![TLS13, TLS12],
                cipher_suites: vec![0x1301, 0xc02b]
            })
        );
        let rec = hello(None, &[0xc02b]);
        assert_eq!(
            parse(&rec),
            Parsed::Hello(HelloInfo {
                versions: vec![TLS12],
                cipher_suites: vec![0xc02b]
            })
        );
    }

    #[test]
    fn incomplete_and_garbage() {
        let rec = hello(Some(&[TLS13]), &[0x1301]);
        for cut in 0..rec.len() {
            assert_eq!(parse(&rec[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::NotTls);
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(looks_like_http(b"PRI * HTTP/2.0\r\n"));
        assert!(!looks_like_http(b"get / HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!looks_like_http(b"GE"));
        assert!(!looks_like_http(&rec));
        let mut bad = rec.clone();
        bad[9] = 0xff; // corrupt the hello's legacy version length area
        let _ = parse(&bad); // must not panic
    }
}
