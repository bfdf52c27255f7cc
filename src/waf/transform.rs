//! Transformations applied to a target value before an operator runs.
//! Each function returns `None` when the input is unchanged (so callers can reuse the input).

use std::borrow::Cow;

/// Number of [`Transform`] variants (for per-transform tables).
pub const N_TRANSFORMS: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Transform {
    UrlDecode,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    Lowercase,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    NormalizePath,
    Base64Decode,
    CmdLine,
    RemoveComments,
    ReplaceComments,
    Utf8Overlong,
    Trim,
    Length,
    HexDecode,
    Base64DecodeEmbedded,
}

impl Transform {
    pub fn parse(name: &str) -> Option<Transform> {
        Some(match name {
            "url_decode" | "url_decode_uni" => Transform::UrlDecode,
            "html_entity_decode" => Transform::HtmlEntityDecode,
            "js_decode" => Transform::JsDecode,
            "css_decode" => Transform::CssDecode,
            "lowercase" => Transform::Lowercase,
            "compress_whitespace" => Transform::CompressWhitespace,
            "remove_whitespace" => Transform::RemoveWhitespace,
            "remove_nulls" => Transform::RemoveNulls,
            "normalize_path" => Transform::NormalizePath,
            "base64_decode" => Transform::Base64Decode,
            "cmdline" => Transform::CmdLine,
            "remove_comments" => Transform::RemoveComments,
            "replace_comments" => Transform::ReplaceComments,
            "utf8_overlong" => Transform::Utf8Overlong,
            "trim" => Transform::Trim,
            "length" => Transform::Length,
            "hex_decode" => Transform::HexDecode,
            "base64_decode_embedded" => Transform::Base64DecodeEmbedded,
            _ => return None,
        })
    }

    pub const NAMES: &'static [&'static str] = &[
        "url_decode",
        "html_entity_decode",
        "js_decode",
        "css_decode",
        "lowercase",
        "compress_whitespace",
        "remove_whitespace",
        "remove_nulls",
        "normalize_path",
        "base64_decode",
        "cmdline",
        "remove_comments",
        "replace_comments",
        "utf8_overlong",
        "trim",
        "length",
        "hex_decode",
        "base64_decode_embedded",
    ];

    /// Apply; `None` means unchanged.
    pub fn apply(self, s: &str) -> Option<String> {
        match self {
            Transform::UrlDecode => url_decode_full(s),
            Transform::HtmlEntityDecode => html_entity_decode(s),
            Transform::JsDecode => js_decode(s),
            Transform::CssDecode => css_decode(s),
            Transform::Lowercase => {
                if s.is_ascii() {
                    // Same result as the Unicode path for ASCII input, without the char walk.
                    if s.bytes().any(|b| b.is_ascii_uppercase()) {
                        Some(s.to_ascii_lowercase())
                    } else {
                        None
                    }
                } else {
                    // A capital sigma, whose lowercase depends on its neighbours, takes the
                    // general path.
                    let lower = lowercase_by_char(s).unwrap_or_else(|| s.to_lowercase());
                    (lower != s).then_some(lower)
                }
            }
            Transform::CompressWhitespace => compress_whitespace(s),
            Transform::RemoveWhitespace => {
                if s.is_ascii() {
                    // ASCII whitespace per `char::is_whitespace`: \t \n \x0b \x0c \r and space.
                    let ws = |b: u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
                    if !s.bytes().any(ws) {
                        return None;
                    }
                    let out: Vec<u8> = s.bytes().filter(|&b| !ws(b)).collect();
                    return String::from_utf8(out).ok();
                }
                if s.chars().any(|c| c.is_whitespace()) {
                    Some(s.chars().filter(|c| !c.is_whitespace()).collect())
                } else {
                    None
                }
            }
            Transform::RemoveNulls => {
                if memchr::memchr(0, s.as_bytes()).is_some() {
                    Some(s.replace('\0', ""))
                } else {
                    None
                }
            }
            Transform::NormalizePath => normalize_path(s),
            Transform::Base64Decode => base64_decode(s),
            Transform::CmdLine => cmdline(s),
            Transform::RemoveComments => remove_comments(s, false),
            Transform::ReplaceComments => remove_comments(s, true),
            Transform::Utf8Overlong => utf8_overlong_percent(s),
            Transform::Trim => {
                let t = s.trim();
                if t.len() != s.len() {
                    Some(t.to_string())
                } else {
                    None
                }
            }
            Transform::Length => Some(s.len().to_string()),
            Transform::HexDecode => hex_decode(s),
            Transform::Base64DecodeEmbedded => base64_decode_embedded(s),
        }
    }
}

/// Byte-presence set (256 bits) of a text, as used by [`Transform::may_change`].
#[inline]
pub fn byte_set(s: &[u8]) -> [u64; 4] {
    let mut present = [0u64; 4];
    if s.len() < LONG_BYTE_SET {
        for &b in s {
            present[(b >> 6) as usize] |= 1u64 << (b & 63);
        }
        return present;
    }
    // Long texts (bodies): one plain store per byte, folded into bits at the end, instead of a
    // read-modify-write of the same four words for every byte.
    let mut seen = [false; 256];
    for &b in s {
        seen[b as usize] = true;
    }
    for (b, _) in seen.iter().enumerate().filter(|(_, &seen)| seen) {
        present[b >> 6] |= 1u64 << (b & 63);
    }
    present
}

/// From this length on, [`byte_set`] marks bytes in a table first.
const LONG_BYTE_SET: usize = 256;

const fn mask_of(bytes: &[u8], high: bool) -> [u64; 4] {
    let mut m = [0u64; 4];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        m[(b >> 6) as usize] |= 1u64 << (b & 63);
        i += 1;
    }
    if high {
        m[2] = u64::MAX;
        m[3] = u64::MAX;
    }
    m
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const M_URL: [u64; 4] = mask_of(b"%+", false);
const M_PCT: [u64; 4] = mask_of(b"%", false);
const M_AMP: [u64; 4] = mask_of(b"&", false);
const M_BSL: [u64; 4] = mask_of(b"\\", false);
const M_LOWER: [u64; 4] = mask_of(UPPER, true);
const M_WS: [u64; 4] = mask_of(b"\t\n\x0b\x0c\r ", true);
const M_NUL: [u64; 4] = mask_of(b"\0", false);
const M_PATH: [u64; 4] = mask_of(b"\\/.", false);
const M_CMD: [u64; 4] = {
    let mut m = mask_of(b"\\\"'^ \t\n\r,;", true);
    let u = mask_of(UPPER, false);
    m[1] |= u[1];
    m
};
const M_COMMENT: [u64; 4] = mask_of(b"#-*", false);
/// Bytes a value may hold and still decode as base64 (both alphabets, padding, whitespace): a value
/// with any other byte is rejected by both decoders, so the transformation cannot change it.
const M_NOT_BASE64: [u64; 4] = {
    let m = mask_of(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\t\n\x0b\x0c\r ",
        false,
    );
    [!m[0], !m[1], !m[2], !m[3]]
};

impl Transform {
    /// False when `apply` is certain to return `None` (leave the value unchanged) for any text whose
    /// byte-presence set (see [`byte_set`]) is `present`: the text has none of the bytes the
    /// transformation acts on. True means "call `apply` to find out".
    #[inline]
    pub fn may_change(self, present: &[u64; 4]) -> bool {
        if self == Transform::Base64Decode {
            // The other way round: one byte outside the alphabets and the value cannot decode.
            return !intersects(&M_NOT_BASE64, present);
        }
        self.trigger_bytes()
            .is_none_or(|bytes| intersects(bytes, present))
    }

    /// The bytes without which the transformation leaves a value unchanged, or None when no byte
    /// set says so (`base64_decode`, `hex_decode`, `base64_decode_embedded`, `length`).
    pub const fn trigger_bytes(self) -> Option<&'static [u64; 4]> {
        Some(match self {
            Transform::UrlDecode => &M_URL,
            Transform::Utf8Overlong => &M_PCT,
            Transform::HtmlEntityDecode => &M_AMP,
            Transform::JsDecode | Transform::CssDecode => &M_BSL,
            Transform::Lowercase => &M_LOWER,
            Transform::CompressWhitespace | Transform::RemoveWhitespace | Transform::Trim => &M_WS,
            Transform::RemoveNulls => &M_NUL,
            Transform::NormalizePath => &M_PATH,
            Transform::CmdLine => &M_CMD,
            Transform::RemoveComments | Transform::ReplaceComments => &M_COMMENT,
            Transform::Base64Decode
            | Transform::Length
            | Transform::HexDecode
            | Transform::Base64DecodeEmbedded => return None,
        })
    }
}

/// Whether two byte-presence sets (see [`byte_set`]) share a byte.
#[inline]
pub fn intersects(a: &[u64; 4], b: &[u64; 4]) -> bool {
    (a[0] & b[0]) | (a[1] & b[1]) | (a[2] & b[2]) | (a[3] & b[3]) != 0
}

/// Every transformation, in discriminant order (`ALL_TRANSFORMS[t as usize] == t`).
pub const ALL_TRANSFORMS: [Transform; N_TRANSFORMS] = [
    Transform::UrlDecode,
    Transform::HtmlEntityDecode,
    Transform::JsDecode,
    Transform::CssDecode,
    Transform::Lowercase,
    Transform::CompressWhitespace,
    Transform::RemoveWhitespace,
    Transform::RemoveNulls,
    Transform::NormalizePath,
    Transform::Base64Decode,
    Transform::CmdLine,
    Transform::RemoveComments,
    Transform::ReplaceComments,
    Transform::Utf8Overlong,
    Transform::Trim,
    Transform::Length,
    Transform::HexDecode,
    Transform::Base64DecodeEmbedded,
];

/// A set of transformations, one bit each ([`Transform::bit`]).
pub type TransformSet = u32;

impl Transform {
    /// This transformation's bit in a [`TransformSet`].
    pub const fn bit(self) -> TransformSet {
        1 << self as u8
    }
}

/// The transformations of a chain, as a set.
pub fn chain_set(chain: &[Transform]) -> TransformSet {
    chain.iter().fold(0, |set, t| set | t.bit())
}

/// The transformations that may change a text whose byte-presence set is `present`
/// ([`Transform::may_change`]). Computed once per value, it makes "does this chain leave the
/// value as it is?" one AND with [`chain_set`]: a value that no step may change passes every
/// step unchanged, since each step sees the value unchanged too.
pub fn may_change_set(present: &[u64; 4]) -> TransformSet {
    ALL_TRANSFORMS
        .iter()
        .filter(|t| t.may_change(present))
        .fold(0, |set, t| set | t.bit())
}

/// A text's byte-presence set ([`byte_set`]) and [`may_change_set`], in one pass over a short
/// text: each byte adds the transformations it triggers from a table.
#[inline]
pub fn scan_value(s: &[u8]) -> ([u64; 4], TransformSet) {
    if s.len() >= LONG_BYTE_SET {
        let present = byte_set(s);
        return (present, may_change_set(&present));
    }
    let mut present = [0u64; 4];
    let mut set = ALWAYS_MAY_CHANGE;
    for &b in s {
        present[(b >> 6) as usize] |= 1u64 << (b & 63);
        set |= CHANGED_BY_BYTE[b as usize];
    }
    if Transform::Base64Decode.may_change(&present) {
        set |= Transform::Base64Decode.bit();
    }
    (present, set)
}

/// The transformations without trigger bytes other than `base64_decode` (whose test is the
/// other way round): they may change any text.
const ALWAYS_MAY_CHANGE: TransformSet = {
    let mut set = 0;
    let mut i = 0;
    while i < N_TRANSFORMS {
        let t = ALL_TRANSFORMS[i];
        if t.trigger_bytes().is_none() && !matches!(t, Transform::Base64Decode) {
            set |= t.bit();
        }
        i += 1;
    }
    set
};

/// For each byte, the transformations whose trigger bytes include it.
const CHANGED_BY_BYTE: [TransformSet; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < N_TRANSFORMS {
            let t = ALL_TRANSFORMS[i];
            if let Some(m) = t.trigger_bytes() {
                if m[b >> 6] & (1u64 << (b & 63)) != 0 {
                    table[b] |= t.bit();
                }
            }
            i += 1;
        }
        b += 1;
    }
    table
};

/// Apply a chain of transformations.
pub fn apply_chain<'a>(chain: &[Transform], s: &'a str) -> Cow<'a, str> {
    let mut cur: Cow<'a, str> = Cow::Borrowed(s);
    for t in chain {
        if let Some(n) = t.apply(&cur) {
            cur = Cow::Owned(n);
        }
    }
    cur
}

fn hexval(b: u8) -> Option<u8> {
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
fn fold_lookalike(cp: u32) -> u32 {
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

pub fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    let t = s.trim();
    if t.len() < 4 {
        return None;
    }
    let cleaned: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    let eng_std = base64::engine::general_purpose::STANDARD_NO_PAD;
    let eng_url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let trimmed = cleaned.trim_end_matches('=');
    let dec = eng_std
        .decode(trimmed)
        .or_else(|_| eng_url.decode(trimmed))
        .ok()?;
    Some(bytes_to_string(&dec))
}

/// Shortest value [`base64_text`] reads as base64 (`fCBpZA==` is `| id`).
const MIN_BASE64_VALUE: usize = 8;

/// The text a value that is base64 as a whole (standard or URL-safe alphabet, padded or not)
/// decodes to, when that is printable text with at least one character that is neither a letter
/// nor a digit: what an application that base64-decodes the field would read. Ordinary words and
/// tokens decode to binary and are left alone.
pub fn base64_text(s: &str) -> Option<String> {
    use base64::Engine;
    let b = s.as_bytes();
    if b.len() < MIN_BASE64_VALUE {
        return None;
    }
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2
        || !body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_'))
    {
        return None;
    }
    let standard = !body.bytes().any(|c| matches!(c, b'-' | b'_'));
    let decoded = if standard {
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(body)
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body)
    }
    .ok()?;
    let text = is_text(&decoded)?;
    let worded = text.chars().any(|c| !c.is_alphanumeric());
    (worded && text.chars().count() >= 4).then(|| text.to_string())
}

fn is_text(b: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(b).ok()?;
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return None;
    }
    Some(t)
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
fn lowercase_by_char(s: &str) -> Option<String> {
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

/// Bytes of either base64 alphabet: 0 = not base64, 1 = letter or digit (both alphabets),
/// 2 = `+` or `/` (standard only), 3 = `-` or `_` (URL-safe only).
static B64_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphanumeric() {
            1
        } else if c == b'+' || c == b'/' {
            2
        } else if c == b'-' || c == b'_' {
            3
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Replace every run of at least 12 base64 characters that decodes to printable text with the
/// decoded text (the whole value when it is one such run). Binary results are left encoded.
///
/// This runs on nearly every fresh value, and most runs it finds are identifiers, numbers and
/// words that are not base64 at all, so the cheap rejections come first: a run of a length no
/// unpadded base64 has, a run mixing both alphabets, and a run whose first three decoded bytes are
/// already not text. Only the rest is decoded whole, into one buffer reused for the whole value.
pub fn base64_decode_embedded(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut decoded: Vec<u8> = Vec::new();
    let mut last = 0;
    let mut from = 0;
    while let Some((start, stop)) = next_long_run(b, from) {
        let run = &s[start..stop];
        let (mut standard_only, mut url_only) = (false, false);
        for &c in run.as_bytes() {
            match B64_CLASS[c as usize] {
                2 => standard_only = true,
                3 => url_only = true,
                _ => {}
            }
        }
        let mut end = stop;
        while end < b.len() && b[end] == b'=' && end - stop < 2 {
            end += 1;
        }
        // Unpadded base64 never has a length of 1 mod 4, and one run cannot use both alphabets.
        let decodable = run.len() % 4 != 1 && !(standard_only && url_only);
        if let Some(text) = decodable
            .then(|| decode_text(run, url_only, &mut decoded))
            .flatten()
        {
            out.push_str(&s[last..start]);
            out.push_str(text);
            last = end;
        }
        // Resume just after a byte outside the alphabet, as `next_long_run` requires.
        from = end.max(stop + 1);
    }
    if last == 0 {
        return None;
    }
    out.push_str(&s[last..]);
    Some(out)
}

/// The shortest run of base64 characters that `base64_decode_embedded` decodes.
const MIN_EMBEDDED_RUN: usize = 12;

/// The next maximal run of base64-alphabet bytes, at least [`MIN_EMBEDDED_RUN`] long, at or after
/// `from` (which is 0 or just after a byte outside the alphabet): (start, end).
///
/// It probes the last byte of each window of that length: a byte outside the alphabet there
/// rules out every run inside the window, so text with spaces or punctuation costs about one
/// lookup per twelve bytes, and only a window whose probe is in the alphabet is scanned whole.
fn next_long_run(b: &[u8], mut from: usize) -> Option<(usize, usize)> {
    let in_alphabet = |i: usize| B64_CLASS[b[i] as usize] != 0;
    while from + MIN_EMBEDDED_RUN <= b.len() {
        let probe = from + MIN_EMBEDDED_RUN - 1;
        if !in_alphabet(probe) {
            from = probe + 1;
            continue;
        }
        // The run through the probe cannot start before `from`: the byte before it is not base64.
        let mut start = probe;
        while start > from && in_alphabet(start - 1) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < b.len() && in_alphabet(end) {
            end += 1;
        }
        if end - start >= MIN_EMBEDDED_RUN {
            return Some((start, end));
        }
        from = end + 1;
    }
    None
}

/// Decodes `run` (one alphabet, unpadded) into `buf`; the text, or None when it is not text.
fn decode_text<'b>(run: &str, url_safe: bool, buf: &'b mut Vec<u8>) -> Option<&'b str> {
    use base64::Engine;
    let engine = if url_safe {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    // The first four characters decode to three whole bytes: reject most non-base64 runs there.
    let mut head = [0u8; 3];
    if engine.decode_slice(&run[..4], &mut head).is_err() || !text_prefix(&head) {
        return None;
    }
    buf.clear();
    engine.decode_vec(run, buf).ok()?;
    is_text(buf)
}

/// False when `b` cannot begin a text that [`is_text`] accepts: invalid UTF-8 (a sequence cut at
/// the end is allowed) or a control character other than tab, CR and LF.
fn text_prefix(b: &[u8]) -> bool {
    let valid = match std::str::from_utf8(b) {
        Ok(t) => t,
        // A sequence cut by the end of the three bytes: check what came before it.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tr: &str, s: &str) -> String {
        let t = Transform::parse(tr).unwrap();
        t.apply(s).unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn url_decoding() {
        assert_eq!(t("url_decode", "a%20b+c"), "a b c");
        assert_eq!(t("url_decode", "..%252f..%252fetc"), "../../etc");
        assert_eq!(t("url_decode", "%u003cscript"), "<script");
        assert_eq!(t("url_decode", "%uff1cx"), "<x");
        assert_eq!(t("url_decode", "%c0%afetc"), "/etc");
        assert_eq!(t("url_decode", "100%"), "100%");
        assert_eq!(t("url_decode", "%zz%4"), "%zz%4");
        assert_eq!(t("utf8_overlong", "..%c0%af..%e0%80%afx"), "../../x");
    }

    #[test]
    fn entity_and_js() {
        assert_eq!(
            t("html_entity_decode", "&lt;a&#x3e;&#60&colon;&amp"),
            "<a><:&"
        );
        assert_eq!(t("html_entity_decode", "AT&T &unknown;"), "AT&T &unknown;");
        assert_eq!(t("js_decode", r"\x61\u0062\143\n\'"), "abc\n'");
        assert_eq!(t("css_decode", r"\6a \61 vascript"), "javascript");
    }

    #[test]
    fn whitespace_nulls_trim_length() {
        assert_eq!(t("compress_whitespace", "a  \t\n b"), "a b");
        assert_eq!(t("remove_whitespace", "a b\tc"), "abc");
        assert_eq!(t("remove_nulls", "a\0b"), "ab");
        assert_eq!(t("trim", "  x "), "x");
        assert_eq!(t("length", "abcd"), "4");
        assert_eq!(t("lowercase", "SeLeCT"), "select");
    }

    #[test]
    fn paths() {
        assert_eq!(t("normalize_path", "/a/./b//c/../d"), "/a/b/d");
        assert_eq!(
            t("normalize_path", "..\\..\\windows\\win.ini"),
            "../../windows/win.ini"
        );
        assert_eq!(t("normalize_path", "/a/../../etc/passwd"), "/../etc/passwd");
    }

    #[test]
    fn cmd_and_comments_and_b64() {
        assert_eq!(t("cmdline", "c^a\"t /e't'c/pa\\sswd"), "cat/etc/passwd");
        assert_eq!(t("cmdline", "W'h'O\"am\"I"), "whoami");
        assert_eq!(t("cmdline", "a;  b,c"), "a; b c");
        // Overlong forms up to six bytes, and the slash and dot look-alikes of %u escapes.
        assert_eq!(t("url_decode", "%f8%80%80%80%ae%fc%80%80%80%80%af"), "./");
        assert_eq!(
            t("url_decode", "..%u2215..%uEFC8x%u2216y%uF025%uff0e"),
            "../../x\\y\\."
        );
        assert_eq!(t("utf8_overlong", "%f8%80%80%80%ae%e0%80%ae%c0%af"), "../");
        assert_eq!(fix_overlong(b"\xc0\xae\xc0"), b".\xc0");
        assert_eq!(
            t("remove_comments", "un/**/ion sel/*x*/ect -- c"),
            "union select "
        );
        assert_eq!(t("replace_comments", "union/**/select"), "union select");
        assert_eq!(t("base64_decode", "PHNjcmlwdD4="), "<script>");
        assert_eq!(t("base64_decode", "not base64!"), "not base64!");
        assert_eq!(t("hex_decode", "0x414243"), "ABC");
        assert_eq!(
            t(
                "base64_decode_embedded",
                r#"{"id":"MSBhbmQgMT0yIHNlbGVjdCB2ZXJzaW9uKCkgLS0="}"#
            ),
            r#"{"id":"1 and 1=2 select version() --"}"#
        );
        assert_eq!(
            t("base64_decode_embedded", "abcdefghijklmnop"),
            "abcdefghijklmnop"
        );
    }

    /// The byte-at-a-time decoder `url_decode_once` must agree with.
    fn url_decode_reference(s: &str, plus: bool) -> Option<String> {
        let b = s.as_bytes();
        let mut out: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |k: usize| b.get(k).copied().and_then(hexval);
            if b[i] == b'%' && i + 5 < b.len() && matches!(b[i + 1], b'u' | b'U') {
                if let (Some(a), Some(c), Some(d), Some(e)) =
                    (hex(i + 2), hex(i + 3), hex(i + 4), hex(i + 5))
                {
                    let cp = (a as u32) << 12 | (c as u32) << 8 | (d as u32) << 4 | e as u32;
                    let cp = fold_lookalike(cp);
                    let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                    out.extend_from_slice(ch.to_string().as_bytes());
                    i += 6;
                    continue;
                }
            }
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(if plus && b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
        (out != b).then(|| bytes_to_string(&out))
    }

    #[test]
    fn byte_sets_of_long_texts_agree_with_the_bit_per_byte_loop() {
        let all: Vec<u8> = (0..=255).collect();
        let mut texts = vec![all.repeat(2), b"ab".repeat(LONG_BYTE_SET)];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [LONG_BYTE_SET - 1, LONG_BYTE_SET, 1000] {
            texts.push(
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 97) as u8 + 100
                    })
                    .collect(),
            );
        }
        for t in &texts {
            let mut want = [0u64; 4];
            for &b in t {
                want[(b >> 6) as usize] |= 1u64 << (b & 63);
            }
            assert_eq!(byte_set(t), want, "length {}", t.len());
        }
    }

    #[test]
    fn url_decode_agrees_with_the_byte_at_a_time_decoder() {
        let mut samples: Vec<String> = [
            "",
            "plain",
            "a+b",
            "%41%42",
            "%4",
            "%",
            "%%41",
            "100%",
            "%zz%41+",
            "%u0041%uFF0E%u002",
            "%U00e9x",
            "%c0%af",
            "%ff%fe",
            "a%2",
            "+%2b+",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        samples.extend(random_strings(
            0x2545_f491_4f6c_dd1d,
            b"%+uU0aF9gz. ",
            1..24,
            60,
        ));
        for s in &samples {
            for plus in [false, true] {
                assert_eq!(
                    url_decode_once(s, plus),
                    url_decode_reference(s, plus),
                    "{s:?} plus={plus}"
                );
            }
        }
    }

    #[test]
    fn lowercase_by_char_agrees_with_unicode_lowercase() {
        // Every character alone, then texts that mix Latin-1 with characters beyond it.
        for c in (0u32..0x3_0000)
            .filter_map(char::from_u32)
            .filter(|&c| c != '\u{3a3}')
        {
            let one = c.to_string();
            assert_eq!(lowercase_by_char(&one), Some(one.to_lowercase()), "{c:?}");
        }
        let latin1: String = (0u32..0x100).filter_map(char::from_u32).collect();
        for text in [
            latin1.as_str(),
            "\u{c3}\u{83}\u{c2}\u{a9} CAF\u{c9} \u{d7}\u{de}\u{df}",
            "\u{c3}\u{a9}\u{2028}\u{130}X\u{1e9e}\u{c9}\u{10400}",
            // A titlecase letter is not uppercase, yet lowercases.
            "\u{1c5}a \u{4e2d}\u{1c5}",
        ] {
            assert_eq!(lowercase_by_char(text), Some(text.to_lowercase()));
            assert_eq!(t("lowercase", text), text.to_lowercase());
        }
        // A capital sigma lowercases by its neighbours: the general path decides.
        assert_eq!(lowercase_by_char("\u{c9}\u{3a3}"), None);
        for text in ["O\u{3a3} \u{3a3}A", "\u{c9}O\u{3a3}"] {
            assert_eq!(t("lowercase", text), text.to_lowercase());
        }
        assert_eq!(t("lowercase", "\u{100}\u{c9}"), "\u{101}\u{e9}");
        assert_eq!(t("lowercase", "d\u{e9}j\u{e0} vu"), "d\u{e9}j\u{e0} vu");
    }

    /// `per_length` strings over `alphabet` for each length in `lengths`, from a xorshift generator
    /// seeded with `seed`: the differential tests below see the same strings on every run.
    fn random_strings(
        seed: u64,
        alphabet: &[u8],
        lengths: std::ops::Range<usize>,
        per_length: usize,
    ) -> Vec<String> {
        let mut x = seed;
        let mut out = Vec::new();
        for len in lengths {
            for _ in 0..per_length {
                let v: String = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        alphabet[(x % alphabet.len() as u64) as usize] as char
                    })
                    .collect();
                out.push(v);
            }
        }
        out
    }

    /// The plain algorithm `base64_decode_embedded` must agree with: every run of 12 or more
    /// characters of either alphabet, decoded with the standard alphabet or else the URL-safe
    /// one, replaced when the result is text.
    fn embedded_reference(s: &str) -> Option<String> {
        use base64::Engine;
        let is_b64 = |c: u8| c.is_ascii_alphanumeric() || b"+/-_".contains(&c);
        let b = s.as_bytes();
        let (mut out, mut last, mut i) = (String::new(), 0, 0);
        while i < b.len() {
            if !is_b64(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && is_b64(b[i]) {
                i += 1;
            }
            let mut end = i;
            while end < b.len() && b[end] == b'=' && end - i < 2 {
                end += 1;
            }
            let run = &s[start..i];
            let std = base64::engine::general_purpose::STANDARD_NO_PAD;
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            if run.len() >= 12 {
                if let Ok(dec) = std.decode(run).or_else(|_| url.decode(run)) {
                    if let Some(text) = is_text(&dec) {
                        out.push_str(&s[last..start]);
                        out.push_str(text);
                        last = end;
                    }
                }
            }
            i = end.max(i);
        }
        (last != 0).then(|| out + &s[last..])
    }

    #[test]
    fn embedded_base64_agrees_with_the_plain_algorithm() {
        use base64::Engine;
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let texts = [
            "1 union select password from users",
            "<script>alert(1)</script>",
            "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e ?>",
            "tab\tand\nnewline",
            "bell\u{7} inside",
            "\u{1F600} smile ~~~ ???",
        ];
        let mut samples: Vec<String> = Vec::new();
        for t in texts {
            for enc in [std.encode(t), url.encode(t)] {
                samples.push(enc.clone());
                samples.push(format!("{{\"v\":\"{enc}\",\"n\":1}}"));
                samples.push(format!("a={enc}&b=__preventCache1688382990852"));
            }
        }
        // Identifiers, numbers and mixed alphabets that look like base64 runs.
        samples.extend(random_strings(
            0x9e37_79b9_7f4a_7c15,
            b"abcXYZ019+/-_=.&",
            8..48,
            20,
        ));
        // Runs of every length around the shortest decoded one, between separators at every
        // offset (the run search probes every twelfth byte).
        samples.extend(random_strings(
            0x2545_f491_4f6c_dd1d,
            b"QUJDaaaa b=",
            1..64,
            40,
        ));
        for len in 10..=14 {
            for pad in 0..3 {
                let run = &std.encode("xyz".repeat(8))[..len];
                samples.push(format!("{}{run}{}", " ".repeat(pad), "=".repeat(pad)));
                samples.push(format!("{run}.{run}"));
            }
        }
        let decoded = samples.iter().filter(|s| embedded_reference(s).is_some());
        assert!(decoded.count() >= 24, "the samples must exercise decoding");
        for s in &samples {
            assert_eq!(
                base64_decode_embedded(s),
                embedded_reference(s),
                "value {s:?}"
            );
        }
    }

    /// Values with and without the bytes that the transforms act on, for the tests that check
    /// which transforms and chains may leave a value unchanged.
    const UNCHANGED_SAMPLES: &[&str] = &[
        "plain",
        "Mixed Case",
        "a%20b",
        "x+y",
        "&lt;",
        "\\x41",
        "a\0b",
        "/a/./b",
        "..\\x",
        "A;b,c",
        "un/**/ion",
        "a--b",
        "#x",
        "  trim ",
        "caf\u{e9}",
        "\u{c9}T\u{c9}",
        "a\tb",
        "%c0%af",
        "zz",
        "abc/def",
        "x.y",
        "q'r\"s^t",
        "SGVsbG8gV29ybGQ=",
        "0x4142",
        "aGVsbG8gd29ybGQgdGhpcw",
        "U0VMRUNU IDEg",
        "YWJj\tZGVm\n",
        "a-b_c+d/e==",
        "Mixed",
        "a b",
        "\u{c9}T",
        "q'r",
        "id_42",
        "2023-07-03",
    ];

    #[test]
    fn may_change_is_conservative() {
        for &s in UNCHANGED_SAMPLES {
            let set = byte_set(s.as_bytes());
            for (i, name) in Transform::NAMES.iter().enumerate() {
                let t = Transform::parse(name).unwrap();
                assert_eq!(t as usize, i);
                if !t.may_change(&set) {
                    assert!(t.apply(s).is_none(), "{} changed {:?}", name, s);
                }
            }
        }
    }

    #[test]
    fn one_pass_scan_agrees_with_the_byte_set_and_each_transformation() {
        let mut texts: Vec<Vec<u8>> = UNCHANGED_SAMPLES
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        texts.extend((0..=255u8).map(|b| vec![b]));
        texts.extend([
            b"SGVsbG8=".to_vec(),
            b"a b".repeat(LONG_BYTE_SET),
            Vec::new(),
        ]);
        for t in &texts {
            let present = byte_set(t);
            let (scanned, set) = scan_value(t);
            assert_eq!(scanned, present, "{t:?}");
            for tr in ALL_TRANSFORMS {
                assert_eq!(set & tr.bit() != 0, tr.may_change(&present), "{tr:?} {t:?}");
            }
        }
    }

    #[test]
    fn all_transforms_are_listed_in_order() {
        for (i, t) in ALL_TRANSFORMS.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(Transform::parse(Transform::NAMES[i]), Some(*t));
        }
    }

    #[test]
    fn a_chain_leaves_values_it_may_not_change_unchanged() {
        let chains: Vec<Vec<Transform>> = [
            &["url_decode", "lowercase"][..],
            &[
                "url_decode",
                "utf8_overlong",
                "html_entity_decode",
                "js_decode",
                "remove_nulls",
                "lowercase",
            ],
            &["cmdline", "compress_whitespace"],
            &["normalize_path", "remove_comments", "trim"],
            &["url_decode", "base64_decode_embedded"],
            &["url_decode", "base64_decode"],
        ]
        .iter()
        .map(|names| names.iter().map(|n| Transform::parse(n).unwrap()).collect())
        .collect();
        let mut unchanged_by_set = 0;
        for chain in &chains {
            for &s in UNCHANGED_SAMPLES {
                if may_change_set(&byte_set(s.as_bytes())) & chain_set(chain) == 0 {
                    unchanged_by_set += 1;
                    assert!(
                        matches!(apply_chain(chain, s), Cow::Borrowed(_)),
                        "{chain:?} {s:?}"
                    );
                }
            }
        }
        assert!(
            unchanged_by_set >= 10,
            "the samples must exercise the shortcut"
        );
        // A transformation with no trigger bytes is in every value's set.
        assert_ne!(
            may_change_set(&byte_set(b"plain")) & Transform::Length.bit(),
            0
        );
    }

    #[test]
    fn chain() {
        let c = [Transform::UrlDecode, Transform::Lowercase];
        assert_eq!(apply_chain(&c, "%53ELECT"), "select");
        assert!(matches!(apply_chain(&c, "plain"), Cow::Borrowed(_)));
    }
}
