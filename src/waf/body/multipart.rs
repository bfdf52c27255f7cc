//! multipart bodies: form fields, file names and part headers.

use super::{ParsedBody, MAX_BODY_ARGS};
use crate::waf::transform::bytes_to_string;
use std::borrow::Cow;

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

pub(super) fn parse_multipart(
    body: &[u8],
    boundary: &str,
    truncated: bool,
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
            out.part_headers.push((hn.to_string(), hv.to_string()));
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
