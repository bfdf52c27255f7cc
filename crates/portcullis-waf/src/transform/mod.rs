//! Transformations applied to a target value before an operator runs.
//! Each function returns `None` when the input is unchanged (so callers can reuse the input).
//!
//! This module is the [`Transform`] vocabulary and how chains run (which transformations can
//! change a value at all is known from its bytes, so most are skipped without a pass); the
//! transformations themselves are in `decode` (percent, HTML, JavaScript, CSS, hex and overlong
//! UTF-8), `from_base64` and `normalize` (whitespace, paths, command lines, comments, lowercase).

use std::borrow::Cow;

mod decode;
mod from_base64;
mod normalize;

pub use decode::{
    bytes_into_string, bytes_to_string, css_decode, fix_overlong, hex_decode, html_entity_decode,
    js_decode, url_decode_full, url_decode_once, utf8_overlong_percent,
};
pub use from_base64::{base64_decode, base64_decode_embedded, base64_text};
use normalize::lowercase_by_char;
pub use normalize::{cmdline, compress_whitespace, normalize_path, remove_comments};

/// Number of [`Transform`] variants (for per-transform tables).
pub const N_TRANSFORMS: usize = 18;

/// One transformation, as rule files name it (`transforms = ["url_decode", "lowercase"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Transform {
    /// `url_decode`: `%xx` escapes (and `%uXXXX`), `+` as space.
    UrlDecode,
    /// `html_entity_decode`: named, decimal and hexadecimal character references.
    HtmlEntityDecode,
    /// `js_decode`: JavaScript escapes (`\xHH`, `\uHHHH`, `\n`, ...).
    JsDecode,
    /// `css_decode`: CSS escapes (`\HH`).
    CssDecode,
    /// `lowercase`.
    Lowercase,
    /// `compress_whitespace`: runs of whitespace become one space.
    CompressWhitespace,
    /// `remove_whitespace`.
    RemoveWhitespace,
    /// `remove_nulls`: NUL bytes dropped.
    RemoveNulls,
    /// `normalize_path`: `.`/`..` segments resolved, `\` and repeated slashes folded.
    NormalizePath,
    /// `base64_decode`: the whole value decoded from base64.
    Base64Decode,
    /// `cmdline`: shell evasions undone (quotes, carets and backslashes dropped, separators
    /// folded to one space, lowercased).
    CmdLine,
    /// `remove_comments`: SQL, C and shell comments dropped.
    RemoveComments,
    /// `replace_comments`: comments replaced by a space.
    ReplaceComments,
    /// `utf8_overlong`: overlong UTF-8 encodings of ASCII (`%c0%af`) decoded.
    Utf8Overlong,
    /// `trim`: leading and trailing whitespace dropped.
    Trim,
    /// `length`: the value's length in bytes, as text.
    Length,
    /// `hex_decode`: the value as hexadecimal, when it decodes to text.
    HexDecode,
    /// `base64_decode_embedded`: long base64 runs inside the value decoded in place.
    Base64DecodeEmbedded,
}

impl Transform {
    /// The transformation a rule file names (`url_decode_uni` is `url_decode`); None for an
    /// unknown name.
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

    /// Every name [`Transform::parse`] knows, in variant order.
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

#[cfg(test)]
mod tests;
