//! Protocol checks, before any rule: the edge forwards exactly one
//! unambiguous framing, and refuses what a backend might read differently.
//! Pingora's parser already refuses many malformed requests (conflicting
//! Content-Length values, unknown Transfer-Encodings, whitespace before a
//! colon, obsolete line folding, NUL bytes); these checks close the rest and
//! apply the configured size limits.

use crate::config::Limits;
use pingora::http::RequestHeader;

/// Why a request was refused, and with which status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Violation {
    Violation {
        status: 400,
        reason,
    }
}

/// Checks a request head. `raw_head` is the exact bytes of an HTTP/1 head
/// (`None` for HTTP/2, whose framing the h2 layer has already checked).
pub fn check_head(
    req: &RequestHeader,
    raw_head: Option<&[u8]>,
    limits: &Limits,
) -> Result<(), Violation> {
    // Before the head's size: a target too long to fit the head is still a target too long.
    let target_len = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(Violation {
            status: 414,
            reason: "request-target too long",
        });
    }
    if let Some(raw) = raw_head {
        check_raw_head(raw, limits)?;
    } else {
        check_h2_headers(req)?;
    }
    if req.headers.len() > limits.max_header_count {
        return Err(Violation {
            status: 431,
            reason: "too many header fields",
        });
    }
    check_framing(req, limits)?;
    let args = req
        .uri
        .query()
        .map_or(0, |q| q.split('&').filter(|a| !a.is_empty()).count());
    if args > limits.max_args {
        return Err(bad("too many query arguments"));
    }
    Ok(())
}

/// Byte-level rules that a parser may be lenient about. This runs on every
/// request, so it costs little more than reading the head once: one
/// branch-free pass for control bytes over the whole head, then a `memchr`
/// walk over the line ends, looking closer only at lines that could be a
/// framing header.
fn check_raw_head(raw: &[u8], limits: &Limits) -> Result<(), Violation> {
    if raw.len() > limits.max_header_bytes {
        return Err(Violation {
            status: 431,
            reason: "request header section too large",
        });
    }
    if raw
        .iter()
        .fold(false, |seen, &b| seen | forbidden_in_head(b))
    {
        return Err(bad("control character in request head"));
    }
    let (mut has_cl, mut has_te) = (false, false);
    let mut start = 0;
    let mut first = true;
    while start < raw.len() {
        let (line, next) = match memchr::memchr(b'\n', &raw[start..]) {
            Some(at) => {
                let end = start + at;
                if end == 0 || raw[end - 1] != b'\r' {
                    return Err(bad("bare LF in request head"));
                }
                (&raw[start..end - 1], end + 1)
            }
            None => (&raw[start..], raw.len()),
        };
        if memchr::memchr(b'\r', line).is_some() {
            return Err(bad("bare CR in request head"));
        }
        if first {
            check_request_line(line)?;
            first = false;
        } else if may_be_framing_header(line) {
            let name = check_framing_header_line(line)?;
            has_cl |= name.eq_ignore_ascii_case(b"content-length");
            has_te |= name.eq_ignore_ascii_case(b"transfer-encoding");
        }
        start = next;
    }
    if first {
        check_request_line(b"")?;
    }
    // Checked on the raw head: the parser drops Content-Length when both are sent.
    if has_cl && has_te {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    Ok(())
}

/// Control bytes other than tab and the CR and LF that end lines (those are
/// checked by the line walk), and DEL.
fn forbidden_in_head(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') | (b == 0x7f)
}

/// Only `Content-Length` and `Transfer-Encoding` lines need a closer look.
fn may_be_framing_header(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'c' | b'C' | b't' | b'T'))
}

/// Exactly three parts separated by single spaces, no tabs.
fn check_request_line(line: &[u8]) -> Result<(), Violation> {
    if memchr::memchr_iter(b' ', line).count() != 2 || line.contains(&b'\t') {
        return Err(bad("malformed request line"));
    }
    Ok(())
}

/// Content-Length and Transfer-Encoding lines must be written plainly: one
/// optional space after the colon, no tabs, no padding. Obfuscated framing
/// headers are how request smuggling starts. Returns the header name.
fn check_framing_header_line(line: &[u8]) -> Result<&[u8], Violation> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(bad("header line without a colon"));
    };
    let name = &line[..colon];
    let is_framing = name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"content-length");
    if !is_framing {
        return Ok(name);
    }
    let value = &line[colon + 1..];
    let value = value.strip_prefix(b" ").unwrap_or(value);
    if value.first().is_some_and(|b| b.is_ascii_whitespace())
        || value.last().is_some_and(|b| b.is_ascii_whitespace())
    {
        return Err(bad("padded framing header"));
    }
    Ok(name)
}

/// One unambiguous body framing.
fn check_framing(req: &RequestHeader, limits: &Limits) -> Result<(), Violation> {
    let mut te = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    let cl = req.headers.get_all(http::header::CONTENT_LENGTH);
    if let Some(first_te) = te.next() {
        if cl.iter().next().is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if te.next().is_some() || !first_te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(bad("Transfer-Encoding other than a single chunked"));
        }
        return Ok(());
    }
    let mut length = None;
    for v in cl.iter().map(|v| v.as_bytes()) {
        let n = parse_content_length(v).ok_or_else(|| bad("invalid Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length values"));
        }
        length = Some(n);
    }
    if length.is_some_and(|l| l > limits.max_body_bytes) {
        return Err(Violation {
            status: 413,
            reason: "request body too large",
        });
    }
    Ok(())
}

/// Digits only (no sign, no spaces), fitting in a u64.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// HTTP/2 forbids connection-specific headers (RFC 9113 8.2.2); a downgrade
/// to HTTP/1.1 must not let them through.
fn check_h2_headers(req: &RequestHeader) -> Result<(), Violation> {
    const CONNECTION_SPECIFIC: [&str; 5] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ];
    if CONNECTION_SPECIFIC
        .iter()
        .any(|h| req.headers.contains_key(*h))
    {
        return Err(bad("connection-specific header in HTTP/2"));
    }
    if req
        .headers
        .get(http::header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        return Err(bad("TE other than trailers in HTTP/2"));
    }
    Ok(())
}

/// Collapses repeated identical Content-Length headers into one before forwarding.
pub fn normalize_content_length(req: &mut RequestHeader) -> pingora::Result<()> {
    let values: Vec<http::HeaderValue> = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .cloned()
        .collect();
    if values.len() > 1 {
        req.insert_header(http::header::CONTENT_LENGTH, values[0].clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> Result<(), Violation> {
        check_raw_head(raw, &Limits::default())
    }

    #[test]
    fn raw_head_rules() {
        assert!(head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert_eq!(
            head(b"GET / HTTP/1.1\nHost: a\r\n\r\n").unwrap_err().reason,
            "bare LF in request head"
        );
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n")
                .unwrap_err()
                .reason,
            "bare CR in request head"
        );
        assert_eq!(
            head(b"GET /a\x01 HTTP/1.1\r\n\r\n").unwrap_err().reason,
            "control character in request head"
        );
        assert_eq!(
            head(b"GET /a b HTTP/1.1\r\n\r\n").unwrap_err().reason,
            "malformed request line"
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding:  chunked\r\n\r\n")
                .unwrap_err()
                .reason,
            "padded framing header"
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n")
                .unwrap_err()
                .reason,
            "padded framing header"
        );
        assert!(
            head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Pad:   ok  \r\n\r\n").is_ok()
        );
        assert_eq!(head(b"").unwrap_err().reason, "malformed request line");
        assert_eq!(
            head(b"GET\t/ HTTP/1.1\r\n\r\n").unwrap_err().reason,
            "malformed request line"
        );
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n")
                .unwrap_err()
                .reason,
            "control character in request head"
        );
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nX: a\r").unwrap_err().reason,
            "bare CR in request head"
        );
        assert_eq!(
            head(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .reason,
            "both Content-Length and Transfer-Encoding"
        );
        assert!(head(b"GET / HTTP/1.1\r\nX-Tab: a\tb\r\n\r\n").is_ok());
    }
}
