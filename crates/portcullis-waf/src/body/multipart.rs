//! multipart bodies: form fields, file names and part headers, and the requests of a batch.
//!
//! A batch (`multipart/mixed` whose parts are `application/http`: OData `$batch`, Google's and
//! Microsoft Graph's batch endpoints) carries whole HTTP requests in its parts. The gateway
//! behind the edge runs each of them, so each is inspected as a request: its target's path and
//! query arguments, and its body by its own Content-Type. Read as plain text, the same parts
//! looked like request smuggling (an embedded request line) and response splitting (a header
//! after a line break), and an attack inside one was inspected as one long string.

use super::{parse_body_with, ParsedBody, MAX_BODY_ARGS};
use crate::transform::bytes_to_string;
use std::borrow::Cow;

/// The boundary of a body that starts as a multipart body does (`--boundary` on its first line)
/// and has that boundary's closing delimiter: a multipart body whose Content-Type lacks the
/// parameter, or one sent as `text/plain` (Google's batch endpoints take the real type from the
/// query string to avoid a CORS preflight).
pub fn sniff_boundary(body: &[u8]) -> Option<String> {
    let line_end = memchr::memchr(b'\n', body)?;
    let line = body[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&body[..line_end]);
    let boundary = line.strip_prefix(b"--")?;
    let bchar = |c: &u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(c);
    if boundary.is_empty() || boundary.len() > 70 || !boundary.iter().all(bchar) {
        return None;
    }
    let mut closing = b"--".to_vec();
    closing.extend_from_slice(boundary);
    closing.extend_from_slice(b"--");
    memchr::memmem::find(&body[line_end..], &closing)?;
    Some(String::from_utf8_lossy(boundary).into_owned())
}

/// Extract the `boundary` parameter of a multipart Content-Type.
pub fn boundary_of(ct: &str) -> Option<String> {
    for part in ct.split(';').skip(1) {
        let part = part.trim();
        if let Some(p) = part.find('=') {
            if part[..p].trim().eq_ignore_ascii_case("boundary") {
                let b = part[p + 1..].trim().trim_matches('"');
                if !b.is_empty() && b.len() <= 200 {
                    return Some(b.to_string());
                }
            }
        }
    }
    None
}

fn disposition_param(line: &str, key: &str) -> Option<String> {
    // Finds key="value" or key=value in a Content-Disposition header (case-insensitive key).
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(key) {
        let at = from + p;
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b';' | b'\t');
        let after = at + key.len();
        let rest = &line[after..];
        let rest_t = rest.trim_start();
        if before_ok && rest_t.starts_with('=') {
            let v = rest_t[1..].trim_start();
            if let Some(stripped) = v.strip_prefix('"') {
                let end = stripped.find('"').unwrap_or(stripped.len());
                return Some(stripped[..end].to_string());
            }
            let end = v.find(';').unwrap_or(v.len());
            return Some(v[..end].trim().to_string());
        }
        from = after;
    }
    None
}

/// Parses a multipart body into `out`. `nested_ok`: the parts of a batch may be read as requests
/// (false inside a batch's own request, so a batch inside a batch stays text).
pub(super) fn parse_multipart(
    body: &[u8],
    boundary: &str,
    truncated: bool,
    nested_ok: bool,
    out: &mut ParsedBody,
) -> Result<(), String> {
    let delim = format!("--{}", boundary);
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let positions: Vec<usize> = finder.find_iter(body).take(MAX_BODY_ARGS).collect();
    if positions.is_empty() {
        return Err("no boundary found".to_string());
    }
    let mut closed = false;
    for (idx, &pos) in positions.iter().enumerate() {
        let after = pos + delim.len();
        if body[after..].starts_with(b"--") {
            closed = true;
            break;
        }
        let end = positions.get(idx + 1).copied().unwrap_or(body.len());
        if end < after {
            continue;
        }
        let mut part = &body[after..end];
        // Strip the line break after the delimiter and the one before the next delimiter.
        if part.starts_with(b"\r\n") {
            part = &part[2..];
        } else if part.starts_with(b"\n") {
            part = &part[1..];
        }
        if part.ends_with(b"\r\n") {
            part = &part[..part.len() - 2];
        } else if part.ends_with(b"\n") {
            part = &part[..part.len() - 1];
        }
        let (head, content) = match memchr::memmem::find(part, b"\r\n\r\n") {
            Some(p) => (&part[..p], &part[p + 4..]),
            None => match memchr::memmem::find(part, b"\n\n") {
                Some(p) => (&part[..p], &part[p + 2..]),
                None => {
                    if idx + 1 == positions.len() && truncated {
                        break;
                    }
                    return Err("part without header terminator".to_string());
                }
            },
        };
        let head = bytes_to_string(head);
        let mut name: Option<String> = None;
        let mut filename: Option<String> = None;
        let mut embedded_request = false;
        for line in head.lines() {
            let line = line.trim_end_matches('\r');
            let Some(c) = line.find(':') else { continue };
            let hn = line[..c].trim();
            let hv = line[c + 1..].trim();
            if hn.eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(hv, "name");
                filename = disposition_param(hv, "filename")
                    .or_else(|| disposition_param(hv, "filename*"));
            }
            if hn.eq_ignore_ascii_case("content-type") {
                let mime = hv.split(';').next().unwrap_or("").trim();
                embedded_request = mime.eq_ignore_ascii_case("application/http");
            }
            out.part_headers.push((hn.to_string(), hv.to_string()));
        }
        if embedded_request && nested_ok && read_embedded_request(content, out) {
            let start = content.as_ptr() as usize - body.as_ptr() as usize;
            out.structured.push(start..start + content.len());
            continue;
        }
        let name = name.unwrap_or_default();
        match filename {
            Some(f) => {
                out.files.push((name.clone(), f.clone()));
                out.args.push((Cow::Owned(name), Cow::Owned(f)));
            }
            None => out
                .args
                .push((Cow::Owned(name), Cow::Owned(bytes_to_string(content)))),
        }
    }
    if !closed && !truncated {
        return Err("missing closing boundary".to_string());
    }
    Ok(())
}

/// Reads the HTTP request in a batch part (`GET /path?a=1 HTTP/1.1`, headers, body) into `out`:
/// its target's path and query arguments (named `batch:path` and by their own names) and the
/// arguments of its body. False when the part does not hold a request line.
fn read_embedded_request(part: &[u8], out: &mut ParsedBody) -> bool {
    let text = bytes_to_string(part);
    let text = text.trim_start_matches(['\r', '\n']);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(p) => (&text[..p], &text[p + 4..]),
        None => match text.find("\n\n") {
            Some(p) => (&text[..p], &text[p + 2..]),
            None => (text, ""),
        },
    };
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(request_line) else {
        return false;
    };
    let mut content_type = None;
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let arg = |n: &str, v: &str| (Cow::Owned(n.to_string()), Cow::Owned(v.to_string()));
    out.args.push(arg("batch:method", method));
    out.args.push(arg("batch:path", path));
    let mut query_args = Vec::new();
    super::parse_urlencoded_into(query, &mut query_args);
    out.args.extend(
        query_args
            .into_iter()
            .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned()))),
    );
    let inner = parse_body_with(content_type.as_deref(), body.as_bytes(), false, false);
    out.args.extend(inner.arg_pairs().map(|(n, v)| arg(n, v)));
    if let Some(e) = inner.error {
        out.error.get_or_insert(format!("in a batch request: {e}"));
    }
    true
}

/// The method and target of an HTTP/1 request line.
fn request_line(line: &str) -> Option<(&str, &str)> {
    let mut it = line.trim_end_matches('\r').split(' ');
    let (method, target, version) = (it.next()?, it.next()?, it.next()?);
    let token = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphabetic());
    (token(method) && version.starts_with("HTTP/") && it.next().is_none())
        .then_some((method, target))
}
