//! Normalisers: whitespace, paths, command lines, comments, and lowercase.

/// Each run of whitespace (no-break spaces too) becomes one space; None when unchanged.
pub fn compress_whitespace(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let needs = b.iter().enumerate().any(|(i, &c)| {
        matches!(c, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
            || (c == b' ' && b.get(i + 1) == Some(&b' '))
            || c >= 0x80
    });
    if !needs {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut prev_ws = false;
    let mut changed = false;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{0b}' || c == '\u{a0}' {
            if prev_ws {
                changed = true;
                continue;
            }
            if c != ' ' {
                changed = true;
            }
            out.push(' ');
            prev_ws = true;
        } else {
            out.push(c);
            prev_ws = false;
        }
    }
    if changed {
        Some(out)
    } else {
        None
    }
}

/// Normalise a path: backslashes to '/', collapse '//', drop '/./', resolve '../' (never above root;
/// leading '../' segments are kept so traversal stays visible).
pub fn normalize_path(s: &str) -> Option<String> {
    // Same test as: contains '\\', "//", "/." or "./", or starts with '.'.
    let bs = s.as_bytes();
    let needs = bs.first() == Some(&b'.')
        || memchr::memchr3_iter(b'\\', b'/', b'.', bs).any(|p| match bs[p] {
            b'\\' => true,
            b'/' => matches!(bs.get(p + 1), Some(b'/' | b'.')),
            _ => bs.get(p + 1) == Some(&b'/'),
        });
    if !needs {
        return None;
    }
    let t = s.replace('\\', "/");
    let absolute = t.starts_with('/');
    let trailing = t.ends_with('/');
    let mut segs: Vec<&str> = Vec::new();
    for seg in t.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if matches!(segs.last(), Some(l) if *l != "..") {
                    segs.pop();
                } else {
                    segs.push("..");
                }
            }
            other => segs.push(other),
        }
    }
    let mut out = String::with_capacity(t.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segs.join("/"));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    if out == s {
        None
    } else {
        Some(out)
    }
}

/// `str::to_lowercase` worked character by character, with ASCII and Latin-1 done on the bytes;
/// None when the text has a capital sigma, whose lowercase depends on its neighbours (the caller
/// takes the general path).
///
/// Mojibake and Western European text are mostly Latin-1, and `str::to_lowercase` looks every
/// non-ASCII character up in the Unicode tables: a 160 KB JSON body of `\u00c3` escapes spent a
/// quarter of its inspection there, and a single character beyond Latin-1 used to send the whole
/// text back to that path. In Latin-1 the capitals U+00C0..=U+00DE (but U+00D7, the
/// multiplication sign) lowercase to the character 0x20 above, the same second UTF-8 byte + 0x20;
/// other characters are lowercased one at a time, as `str::to_lowercase` does.
pub(super) fn lowercase_by_char(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c @ 0..=0x7f => {
                out.push(c.to_ascii_lowercase());
                i += 1;
            }
            lead @ (0xc2 | 0xc3) => {
                let c = *b.get(i + 1)?;
                let capital = lead == 0xc3 && (0x80..=0x9e).contains(&c) && c != 0x97;
                out.extend_from_slice(&[lead, if capital { c + 0x20 } else { c }]);
                i += 2;
            }
            _ => {
                // `i` is a character boundary: every arm above consumes whole characters.
                let c = s.get(i..)?.chars().next()?;
                if c == '\u{3a3}' {
                    return None;
                }
                let mut buf = [0u8; 4];
                for l in c.to_lowercase() {
                    out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
                }
                i += c.len_utf8();
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Command-line normalisation: drop \ " ' ^ and backticks pairs' quotes, turn ',' and whitespace into single spaces
/// (';' is kept so command separators stay visible),
/// collapse whitespace, remove spaces before '/' and '(', lowercase.
pub fn cmdline(s: &str) -> Option<String> {
    if !s.bytes().any(|c| {
        matches!(
            c,
            b'\\' | b'"' | b'\'' | b'^' | b' ' | b'\t' | b'\n' | b'\r' | b',' | b';' | b'A'..=b'Z'
        ) || c >= 0x80
    }) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.chars() {
        match c {
            '\\' | '"' | '\'' | '^' => continue,
            ' ' | '\t' | '\n' | '\r' | ',' => {
                if !prev_space {
                    out.push(' ');
                }
                prev_space = true;
            }
            '/' | '(' => {
                if prev_space {
                    out.pop();
                }
                out.push(c);
                prev_space = false;
            }
            _ => {
                for l in c.to_lowercase() {
                    out.push(l);
                }
                prev_space = false;
            }
        }
    }
    if out == s {
        None
    } else {
        Some(out)
    }
}

/// Remove (or replace with a space) SQL/C comments: /* ... */, -- to end of line, # to end of line.
pub fn remove_comments(s: &str, replace: bool) -> Option<String> {
    // Same test as: contains "/*", "--", '#' or "*/".
    let bs = s.as_bytes();
    let needs = memchr::memchr3_iter(b'#', b'-', b'*', bs).any(|p| match bs[p] {
        b'#' => true,
        b'-' => bs.get(p + 1) == Some(&b'-'),
        _ => (p > 0 && bs[p - 1] == b'/') || bs.get(p + 1) == Some(&b'/'),
    });
    if !needs {
        return None;
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = memchr::memmem::find(&b[i + 2..], b"*/")
                .map(|p| i + 2 + p + 2)
                .unwrap_or(b.len());
            if replace {
                out.push(b' ');
            }
            i = end;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            i += 2;
        } else if (b[i] == b'-' && b.get(i + 1) == Some(&b'-')) || b[i] == b'#' {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map(|p| i + p)
                .unwrap_or(b.len());
            if replace {
                out.push(b' ');
            }
            i = end;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
