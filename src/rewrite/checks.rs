//! What a rule may emit: header values, paths, queries and redirect locations without CR, LF or
//! NUL, valid in a URI or a header, and at most [`MAX_VALUE_LEN`] long. Compiling applies these to
//! static values, evaluating to interpolated ones.

use http::HeaderValue;

use super::MAX_VALUE_LEN;

pub(super) fn has_crlf_nul(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

pub(super) fn check_header_value(s: &str) -> Result<HeaderValue, &'static str> {
    if has_crlf_nul(s) {
        return Err("interpolated value contains CR, LF or NUL");
    }
    if s.len() > MAX_VALUE_LEN {
        return Err("interpolated value is longer than 8 KiB");
    }
    HeaderValue::from_bytes(s.as_bytes())
        .map_err(|_| "interpolated value is not a valid header value")
}

pub(super) fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("path must start with '/'");
    }
    if has_crlf_nul(p) {
        return Err("path contains CR, LF or NUL");
    }
    if p.contains(['?', '#']) {
        return Err("path must not contain '?' or '#' (use `query`)");
    }
    if p.len() > MAX_VALUE_LEN {
        return Err("path is longer than 8 KiB");
    }
    http::uri::PathAndQuery::try_from(p)
        .map(|_| ())
        .map_err(|_| "path has characters not allowed in a URI")
}

pub(super) fn normalize_query(q: &str) -> &str {
    q.strip_prefix('?').unwrap_or(q).trim_matches('&')
}

pub(super) fn check_query(q: &str) -> Result<(), &'static str> {
    if has_crlf_nul(q) {
        return Err("query contains CR, LF or NUL");
    }
    if q.contains('#') {
        return Err("query must not contain '#'");
    }
    if q.len() > MAX_VALUE_LEN {
        return Err("query is longer than 8 KiB");
    }
    if q.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("query has characters not allowed in a URI");
    }
    Ok(())
}

pub(super) fn check_location(l: &str) -> Result<HeaderValue, &'static str> {
    if has_crlf_nul(l) {
        return Err("location contains CR, LF or NUL");
    }
    if l.is_empty() {
        return Err("location is empty");
    }
    if l.len() > MAX_VALUE_LEN {
        return Err("location is longer than 8 KiB");
    }
    if l.parse::<http::Uri>().is_err() {
        return Err("location is not a valid URI");
    }
    HeaderValue::from_str(l).map_err(|_| "location is not a valid header value")
}
