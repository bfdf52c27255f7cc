//! Decoders of the escapes attackers hide text in: percent-encoding (with `%uXXXX` and the
//! look-alikes of `.`, `/` and `\\` that lenient parsers fold), overlong UTF-8, HTML character
//! references, JavaScript and CSS escapes, and hexadecimal.

pub(super) fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Convert bytes to a String, decoding overlong UTF-8 forms of ASCII first (e.g. C0 AF -> '/').
pub fn bytes_to_string(b: &[u8]) -> String {
    bytes_into_string(b.to_vec())
}

/// [`bytes_to_string`] of bytes already owned: valid UTF-8 is kept without a copy.
pub fn bytes_into_string(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => {
            let fixed = fix_overlong(e.as_bytes());
            String::from_utf8_lossy(&fixed).into_owned()
        }
    }
}

/// Continuation bytes after an overlong lead byte, or 0 when `lead` cannot start one of an ASCII
/// character. Besides the 2-4 byte forms of UTF-8, the 5- and 6-byte forms of its first
/// definition (`F8`, `FC` leads) that some decoders still accept (`%f8%80%80%80%af` is `/`).
fn overlong_tail_len(lead: u8) -> usize {
    match lead {
        0xC0 | 0xC1 => 1,
        0xE0 => 2,
        0xF0 => 3,
        0xF8 => 4,
        0xFC => 5,
        _ => 0,
    }
}

/// The ASCII byte an overlong sequence at the start of `b` encodes, with the sequence's length.
fn overlong_ascii(b: &[u8]) -> Option<(u8, usize)> {
    let tail = overlong_tail_len(*b.first()?);
    if tail == 0 || b.len() <= tail {
        return None;
    }
    let lead_bits = b[0] & (0x7F >> (tail + 1));
    let mut v = u32::from(lead_bits);
    for &c in &b[1..=tail] {
        if c & 0xC0 != 0x80 {
            return None;
        }
        v = v << 6 | u32::from(c & 0x3F);
    }
    (v < 0x80).then_some((v as u8, tail + 1))
}

/// Replace overlong 2- to 6-byte encodings of code points < 0x80 with the ASCII byte.
pub fn fix_overlong(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some((ascii, len)) = overlong_ascii(&b[i..]) {
            out.push(ascii);
            i += len;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A `%uXXXX` or `\uXXXX` code point as path and markup parsers may read it: full-width ASCII
/// (U+FF01..U+FF5E) and the look-alikes of `.`, `/` and `\\` that Windows' best-fit mapping and
/// lenient normalisers turn into them (U+2215 division slash, U+2216 set minus, U+2044 fraction
/// slash, U+29F8 big solidus, U+FE68 small reverse solidus, U+2024 one-dot leader, U+FE52 small
/// full stop, U+3002 ideographic full stop, and the private-use U+EFC8 and U+F025 that IIS maps
/// to `/` and `\\`).
pub(super) fn fold_lookalike(cp: u32) -> u32 {
    match cp {
        0xFF01..=0xFF5E => cp - 0xFEE0,
        0x2215 | 0x2044 | 0x29F8 | 0xEFC8 => '/' as u32,
        0x2216 | 0xFE68 | 0xF025 => '\\' as u32,
        0x2024 | 0xFE52 | 0x3002 => '.' as u32,
        _ => cp,
    }
}

/// One pass of percent decoding (with %uXXXX and '+' -> space when `plus`). Returns None if unchanged.
pub fn url_decode_once(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    if plus && memchr::memchr(b'%', b).is_none() {
        // Most form values: only `+` to decode, byte for byte, in one vectorised pass.
        memchr::memchr(b'+', b)?;
        let spaced: Vec<u8> = b
            .iter()
            .map(|&c| if c == b'+' { b' ' } else { c })
            .collect();
        return Some(bytes_into_string(spaced));
    }
    let is_special = |c: u8| c == b'%' || (plus && c == b'+');
    let first = b.iter().position(|&c| is_special(c))?;
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut changed = false;
    let mut i = first;
    while i < b.len() {
        let c = b[i];
        if !is_special(c) {
            out.push(c);
            i += 1;
            continue;
        }
        match decode_escape_at(b, i, plus, &mut out) {
            0 => {
                out.push(c);
                i += 1;
            }
            used => {
                changed = true;
                i += used;
            }
        }
    }
    changed.then(|| bytes_into_string(out))
}

/// Decodes the escape at `b[i]` (a `%` or, with `plus`, a `+`) onto `out`: the bytes it used, or
/// 0 when it is no escape (a `%` without hex digits after it).
fn decode_escape_at(b: &[u8], i: usize, plus: bool, out: &mut Vec<u8>) -> usize {
    if b[i] == b'+' {
        if plus {
            out.push(b' ');
            return 1;
        }
        return 0;
    }
    if i + 5 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') {
        if let (Some(a), Some(bb), Some(cc), Some(d)) = (
            hexval(b[i + 2]),
            hexval(b[i + 3]),
            hexval(b[i + 4]),
            hexval(b[i + 5]),
        ) {
            let cp = (a as u32) << 12 | (bb as u32) << 8 | (cc as u32) << 4 | d as u32;
            // Full-width forms and slash and dot look-alikes map to ASCII, like IIS does.
            let cp = fold_lookalike(cp);
            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            return 6;
        }
    }
    if i + 2 < b.len() {
        if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
            out.push(h << 4 | l);
            return 3;
        }
    }
    0
}

/// Percent-decode repeatedly (at most 4 rounds) until stable.
pub fn url_decode_full(s: &str) -> Option<String> {
    let mut cur = url_decode_once(s, true)?;
    for _ in 0..3 {
        match url_decode_once(&cur, false) {
            Some(n) => cur = n,
            None => break,
        }
    }
    Some(cur)
}

/// Decode `%c0%af`-style overlong sequences still in percent-encoded form.
pub fn utf8_overlong_percent(s: &str) -> Option<String> {
    // Same test as "the lowercased input contains %c0, %c1, %e0, %f0, %f8 or %fc", without
    // allocating.
    let bytes = s.as_bytes();
    let found = memchr::memchr_iter(b'%', bytes).any(|p| {
        matches!(
            (
                bytes.get(p + 1).map(|c| c.to_ascii_lowercase()),
                bytes.get(p + 2)
            ),
            (Some(b'c'), Some(b'0' | b'1'))
                | (Some(b'e'), Some(b'0'))
                | (Some(b'f'), Some(b'0' | b'8' | b'c' | b'C'))
        )
    });
    if !found {
        return None;
    }
    // Decode only the overlong sequences; leave other escapes untouched.
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let hex_at = |j: usize| -> Option<u8> {
        if b.get(j) != Some(&b'%') {
            return None;
        }
        let h = hexval(*b.get(j + 1)?)?;
        let l = hexval(*b.get(j + 2)?)?;
        Some(h << 4 | l)
    };
    let mut changed = false;
    while i < b.len() {
        if let Some(first) = hex_at(i) {
            let need = overlong_tail_len(first);
            if need > 0 {
                let mut bytes = vec![first];
                let mut ok = true;
                for k in 0..need {
                    match hex_at(i + 3 * (k + 1)) {
                        Some(x) if x & 0xC0 == 0x80 => bytes.push(x),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    let fixed = fix_overlong(&bytes);
                    if fixed.len() == 1 {
                        out.push(fixed[0] as char);
                        i += 3 * (need + 1);
                        changed = true;
                        continue;
                    }
                }
            }
        }
        // push one char
        let ch_len = utf8_len(b[i]);
        let end = (i + ch_len).min(b.len());
        out.push_str(s.get(i..end).unwrap_or("\u{FFFD}"));
        i = end;
    }
    if changed {
        Some(out)
    } else {
        None
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        _ => 1,
    }
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name.to_ascii_lowercase().as_str() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "colon" => ':',
        "semi" => ';',
        "tab" => '\t',
        "newline" => '\n',
        "lpar" => '(',
        "rpar" => ')',
        "sol" => '/',
        "bsol" => '\\',
        "grave" => '`',
        "equals" => '=',
        "excl" => '!',
        "num" => '#',
        "period" => '.',
        "comma" => ',',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "lcub" | "lbrace" => '{',
        "rcub" | "rbrace" => '}',
        "plus" => '+',
        "percnt" => '%',
        "dollar" => '$',
        "quest" => '?',
        "ast" => '*',
        "vert" => '|',
        _ => return None,
    })
}

/// Decode HTML character references (named subset, decimal, hex; trailing ';' optional).
pub fn html_entity_decode(s: &str) -> Option<String> {
    memchr::memchr(b'&', s.as_bytes())?;
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        if b[i] == b'&' {
            let rest = &s[i + 1..];
            if let Some(after_hash) = rest.strip_prefix('#') {
                let (hex, start) = if after_hash.starts_with(['x', 'X']) {
                    (true, 2)
                } else {
                    (false, 1)
                };
                let digits: String = rest[start..]
                    .chars()
                    .take_while(|c| {
                        if hex {
                            c.is_ascii_hexdigit()
                        } else {
                            c.is_ascii_digit()
                        }
                    })
                    .take(10)
                    .collect();
                if !digits.is_empty() {
                    let cp =
                        u32::from_str_radix(&digits, if hex { 16 } else { 10 }).unwrap_or(0xFFFD);
                    let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                    let mut consumed = 1 + start + digits.len();
                    if rest.as_bytes().get(start + digits.len()) == Some(&b';') {
                        consumed += 1;
                    }
                    out.push(ch);
                    i += consumed;
                    changed = true;
                    continue;
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .take(10)
                    .collect();
                if let Some(ch) = named_entity(&name) {
                    let mut consumed = 1 + name.len();
                    if rest.as_bytes().get(name.len()) == Some(&b';') {
                        consumed += 1;
                    }
                    out.push(ch);
                    i += consumed;
                    changed = true;
                    continue;
                }
            }
            out.push('&');
            i += 1;
        } else {
            // Copy the run up to the next '&' at once ('&' is ASCII, so this is a char boundary).
            let end = memchr::memchr(b'&', &b[i..]).map_or(b.len(), |p| i + p);
            out.push_str(&s[i..end]);
            i = end;
        }
    }
    if changed {
        Some(out)
    } else {
        None
    }
}

/// Decode JavaScript escapes: \xHH, \uHHHH, \u{H..}, \OOO (octal), \n \t \r and \c -> c.
pub fn js_decode(s: &str) -> Option<String> {
    memchr::memchr(b'\\', s.as_bytes())?;
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = chars[i + 1];
        let hexn = |from: usize, len: usize| -> Option<u32> {
            if from + len > chars.len() {
                return None;
            }
            let st: String = chars[from..from + len].iter().collect();
            if st.chars().all(|c| c.is_ascii_hexdigit()) {
                u32::from_str_radix(&st, 16).ok()
            } else {
                None
            }
        };
        match n {
            'x' | 'X' => {
                if let Some(v) = hexn(i + 2, 2) {
                    out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                    i += 4;
                    continue;
                }
            }
            'u' | 'U' => {
                if chars.get(i + 2) == Some(&'{') {
                    let end = chars[i + 3..].iter().take(8).position(|&c| c == '}');
                    if let Some(e) = end {
                        if let Some(v) = hexn(i + 3, e) {
                            out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                            i += 4 + e;
                            continue;
                        }
                    }
                }
                if let Some(v) = hexn(i + 2, 4) {
                    let v = fold_lookalike(v);
                    out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                    i += 6;
                    continue;
                }
            }
            '0'..='7' => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 3 && i + 1 + k < chars.len() && ('0'..='7').contains(&chars[i + 1 + k]) {
                    v = v * 8 + (chars[i + 1 + k] as u32 - '0' as u32);
                    k += 1;
                }
                out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                i += 1 + k;
                continue;
            }
            'n' => {
                out.push('\n');
                i += 2;
                continue;
            }
            't' => {
                out.push('\t');
                i += 2;
                continue;
            }
            'r' => {
                out.push('\r');
                i += 2;
                continue;
            }
            _ => {}
        }
        out.push(n);
        i += 2;
    }
    Some(out)
}

/// Decode CSS escapes: \H..H (1-6 hex digits, optional trailing whitespace) and \c -> c.
pub fn css_decode(s: &str) -> Option<String> {
    memchr::memchr(b'\\', s.as_bytes())?;
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut k = 0;
        let mut v = 0u32;
        while k < 6 && i + 1 + k < chars.len() && chars[i + 1 + k].is_ascii_hexdigit() {
            v = v * 16 + chars[i + 1 + k].to_digit(16).unwrap_or(0);
            k += 1;
        }
        if k > 0 {
            out.push(
                char::from_u32(v)
                    .filter(|&c| c != '\0')
                    .unwrap_or('\u{FFFD}'),
            );
            i += 1 + k;
            if i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
        } else if chars[i + 1] == '\n' {
            i += 2;
        } else {
            out.push(chars[i + 1]);
            i += 2;
        }
    }
    Some(out)
}

/// The value (with or without `0x`) decoded from hexadecimal, when it decodes to text; None
/// otherwise.
pub fn hex_decode(s: &str) -> Option<String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.len() < 2 || !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = t
        .as_bytes()
        .chunks(2)
        .map(|c| hexval(c[0]).unwrap_or(0) << 4 | hexval(c[1]).unwrap_or(0))
        .collect();
    Some(bytes_to_string(&bytes))
}
