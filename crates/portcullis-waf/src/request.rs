//! Request representation handed to the engine, plus a tolerant raw HTTP/1.x parser used by the
//! replay tool and tests.

/// A borrowed view of one HTTP request, cheap to build from whatever the proxy holds.
///
/// Plain strings and bytes, not any HTTP library's types, so that a proxy on any stack (Pingora,
/// hyper, actix) hands its request over without converting it, and this crate's API does not
/// change when theirs does. Build one with [`HttpRequest::new`] (the fields may grow, so a struct
/// expression is not offered outside this crate).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpRequest<'a> {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Raw request-target as it appeared on the request line (path + optional query).
    pub uri: &'a str,
    /// `HTTP/1.1`, `HTTP/2`, ... (the protocol rules read it).
    pub version: &'a str,
    /// Header name/value pairs in arrival order (names in any case).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Buffered body, at most the inspection limit.
    pub body: &'a [u8],
    /// True when the body was cut at the inspection limit.
    pub body_truncated: bool,
    /// Query arguments whose every value the caller has already validated against a closed type
    /// (an API contract's integer, boolean, UUID, date or enum): their values are not scanned,
    /// their names still are. A value of such a type cannot hold an attack, and scanning it only
    /// costs time and false positives. Empty unless set with [`HttpRequest::with_typed_args`].
    pub typed_args: &'a [&'a str],
}

impl<'a> HttpRequest<'a> {
    /// A request without a body: method, request-target (path and query as sent), protocol
    /// version and header lines in arrival order.
    pub const fn new(
        method: &'a str,
        uri: &'a str,
        version: &'a str,
        headers: &'a [(&'a str, &'a [u8])],
    ) -> HttpRequest<'a> {
        HttpRequest {
            method,
            uri,
            version,
            headers,
            body: &[],
            body_truncated: false,
            typed_args: &[],
        }
    }

    /// The same request with its body: all of it, or the first [`Policy::body_limit`]
    /// bytes with `truncated` set when the body went on past them.
    ///
    /// [`Policy::body_limit`]: crate::Policy::body_limit
    pub const fn with_body(self, body: &'a [u8], truncated: bool) -> HttpRequest<'a> {
        HttpRequest {
            body,
            body_truncated: truncated,
            ..self
        }
    }

    /// The same request with query arguments whose values the caller validated against a closed
    /// type, by name (exact, as decoded): see [`HttpRequest::typed_args`]. The caller vouches for
    /// every value of each name; a name given twice where one value was validated must not be
    /// listed.
    pub const fn with_typed_args(self, names: &'a [&'a str]) -> HttpRequest<'a> {
        HttpRequest {
            typed_args: names,
            ..self
        }
    }

    /// Whether the query argument `name` was declared typed by the caller.
    pub fn is_typed_arg(&self, name: &str) -> bool {
        self.typed_args.contains(&name)
    }

    /// First header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }

    /// Every value of the header lines with this name (ASCII case-insensitive), in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// An owned request, produced by [`parse_raw_request`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OwnedRequest {
    /// The method.
    pub method: String,
    /// The request-target (path and query).
    pub uri: String,
    /// The protocol version.
    pub version: String,
    /// Header lines in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// True when the body was cut at the inspection limit.
    pub body_truncated: bool,
}

/// Borrowed form of an [`OwnedRequest`]; keeps the header slice alive.
pub struct RequestView<'a> {
    headers: Vec<(&'a str, &'a [u8])>,
    owner: &'a OwnedRequest,
}

impl<'a> RequestView<'a> {
    /// The request, borrowed.
    pub fn request(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.owner.method,
            uri: &self.owner.uri,
            version: &self.owner.version,
            headers: &self.headers,
            body: &self.owner.body,
            body_truncated: self.owner.body_truncated,
            typed_args: &[],
        }
    }
}

impl OwnedRequest {
    /// A request without headers or body.
    pub fn new(method: &str, uri: &str, version: &str) -> Self {
        OwnedRequest {
            method: method.to_string(),
            uri: uri.to_string(),
            version: version.to_string(),
            ..Default::default()
        }
    }

    /// The request with one more header line.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }

    /// The request with this body.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Borrowed view; call `.request()` on the result to get an [`HttpRequest`].
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect(),
            owner: self,
        }
    }

    /// Convenience: run `f` with a borrowed [`HttpRequest`].
    pub fn with_request<R>(&self, f: impl FnOnce(&HttpRequest<'_>) -> R) -> R {
        let v = self.view();
        let r = v.request();
        f(&r)
    }

    /// Alias kept for the API described in the design notes.
    pub fn as_request(&self) -> RequestView<'_> {
        self.view()
    }
}

fn find_crlfcrlf(raw: &[u8]) -> Option<(usize, usize)> {
    // Returns (end of head, start of body). Accepts CRLFCRLF or LFLF.
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            if raw.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if raw.get(i + 1) == Some(&b'\r') && raw.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Parse raw HTTP/1.x request bytes (request line, headers, blank line, body).
/// Tolerant: LF-only line endings are accepted, a missing blank line means no body,
/// chunked bodies are de-chunked when well-formed (kept raw otherwise).
pub fn parse_raw_request(raw: &[u8]) -> Result<OwnedRequest, String> {
    let (head, body) = match find_crlfcrlf(raw) {
        Some((h, b)) => (&raw[..h], &raw[b..]),
        None => (raw, &raw[raw.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = loop {
        match lines.next() {
            Some(l) if l.trim().is_empty() => continue,
            Some(l) => break l,
            None => return Err("empty request".to_string()),
        }
    };
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").trim();
    if method.is_empty() {
        return Err("missing method".to_string());
    }
    let rest = parts.next().unwrap_or("");
    let version = parts.next().unwrap_or("").trim();
    // Some targets contain spaces (malformed); keep everything up to the last " HTTP/".
    let (uri, version) = if version.starts_with("HTTP/") || version.is_empty() {
        (rest.to_string(), version.to_string())
    } else if let Some(pos) = request_line.rfind(" HTTP/") {
        let start = method.len() + 1;
        if pos > start {
            (
                request_line[start..pos].to_string(),
                request_line[pos + 1..].to_string(),
            )
        } else {
            (rest.to_string(), version.to_string())
        }
    } else {
        (format!("{} {}", rest, version), String::new())
    };
    let mut req = OwnedRequest::new(
        method,
        &uri,
        if version.is_empty() {
            "HTTP/1.1"
        } else {
            &version
        },
    );
    let mut last: Option<usize> = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if (line.starts_with(' ') || line.starts_with('\t')) && last.is_some() {
            // obsolete line folding: append to previous header
            if let Some(i) = last {
                req.headers[i].1.push(b' ');
                req.headers[i].1.extend_from_slice(line.trim().as_bytes());
            }
            continue;
        }
        match line.find(':') {
            Some(p) => {
                let name = line[..p].to_string();
                let value = line[p + 1..].trim().as_bytes().to_vec();
                req.headers.push((name, value));
                last = Some(req.headers.len() - 1);
            }
            None => {
                req.headers.push((line.to_string(), Vec::new()));
                last = Some(req.headers.len() - 1);
            }
        }
    }
    let chunked = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    req.body = if chunked {
        dechunk(body).unwrap_or_else(|| body.to_vec())
    } else {
        body.to_vec()
    };
    Ok(req)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let nl = b.iter().position(|&c| c == b'\n')?;
        let line = std::str::from_utf8(&b[..nl]).ok()?.trim();
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).ok()?;
        b = &b[nl + 1..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size {
            out.extend_from_slice(b);
            return Some(out);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size..];
        if b.starts_with(b"\r\n") {
            b = &b[2..];
        } else if b.starts_with(b"\n") {
            b = &b[1..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_request() {
        let r = parse_raw_request(
            b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/a?b=1");
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.body, b"hello");
        let v = r.view();
        assert_eq!(v.request().header("host"), Some(&b"x"[..]));
    }

    #[test]
    fn tolerant_of_garbage() {
        assert!(parse_raw_request(b"").is_err());
        assert!(parse_raw_request(b"GET").is_ok());
        let r = parse_raw_request(b"GET /a b c HTTP/1.1\nX: y\n\n").unwrap();
        assert_eq!(r.uri, "/a b c");
        let r = parse_raw_request(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
    }
}
