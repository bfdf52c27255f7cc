//! Value transforms applied to a match variable before an operator runs.

use std::borrow::Cow;

use serde::Deserialize;

/// One transform step. Steps run in the order they are listed in the
/// condition's `transforms` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Unicode lowercase.
    Lowercase,
    /// Unicode uppercase.
    Uppercase,
    /// Strip leading and trailing whitespace.
    Trim,
    /// Percent-decode (`%XX` only; `+` is left alone), repeated while the
    /// value keeps changing, at most 3 passes. Malformed escapes are kept
    /// verbatim; invalid UTF-8 produced by decoding becomes U+FFFD.
    UrlDecode,
    /// Remove NUL characters.
    RemoveNulls,
    /// Decode `&lt; &gt; &amp; &quot; &apos; &nbsp;` (nbsp becomes a plain
    /// space) and numeric references `&#DDD;` / `&#xHH;` (the `;` is optional
    /// for numeric references). Unknown or invalid references are kept.
    HtmlEntityDecode,
}

/// Maximum number of url_decode passes.
const URL_DECODE_PASSES: usize = 3;

impl Transform {
    /// Apply this transform.
    pub fn apply<'a>(self, input: Cow<'a, str>) -> Cow<'a, str> {
        match self {
            Transform::Lowercase => {
                if input.chars().any(|c| c.is_uppercase()) {
                    Cow::Owned(input.to_lowercase())
                } else {
                    input
                }
            }
            Transform::Uppercase => {
                if input.chars().any(|c| c.is_lowercase()) {
                    Cow::Owned(input.to_uppercase())
                } else {
                    input
                }
            }
            Transform::Trim => match input {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
                Cow::Owned(s) => {
                    let t = s.trim();
                    if t.len() == s.len() {
                        Cow::Owned(s)
                    } else {
                        Cow::Owned(t.to_string())
                    }
                }
            },
            Transform::UrlDecode => {
                let mut cur = input;
                for _ in 0..URL_DECODE_PASSES {
                    match percent_decode_once(&cur) {
                        Some(next) => cur = Cow::Owned(next),
                        None => break,
                    }
                }
                cur
            }
            Transform::RemoveNulls => {
                if input.contains('\0') {
                    Cow::Owned(input.chars().filter(|&c| c != '\0').collect())
                } else {
                    input
                }
            }
            Transform::HtmlEntityDecode => match html_entity_decode(&input) {
                Some(s) => Cow::Owned(s),
                None => input,
            },
        }
    }
}

/// Apply a list of transforms in order.
pub fn apply_all<'a>(transforms: &[Transform], input: &'a str) -> Cow<'a, str> {
    let mut v = Cow::Borrowed(input);
    for t in transforms {
        v = t.apply(v);
    }
    v
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One percent-decoding pass; `None` when nothing was decoded.
fn percent_decode_once(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let first = bytes.iter().position(|&b| b == b'%')?;
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut changed = false;
    let mut i = first;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h * 16 + l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    if !changed {
        return None;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Form-style decoding used for query and urlencoded body arguments:
/// `+` becomes a space and `%XX` escapes are decoded once.
pub fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let replaced = s.replace('+', " ");
    match percent_decode_once(&replaced) {
        Some(d) => Cow::Owned(d),
        None => Cow::Owned(replaced),
    }
}

fn html_entity_decode(s: &str) -> Option<String> {
    let first = s.find('&')?;
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..];
    let mut changed = false;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match decode_entity(rest) {
            Some((ch, consumed)) => {
                out.push(ch);
                rest = &rest[consumed..];
                changed = true;
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    if changed {
        Some(out)
    } else {
        None
    }
}

/// Decode one entity at the start of `s` (which begins with '&').
/// Returns the character and the number of bytes consumed.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.len() >= 3 && b[1] == b'#' {
        let (hex, start) = if b.len() > 3 && (b[2] == b'x' || b[2] == b'X') {
            (true, 3)
        } else {
            (false, 2)
        };
        let mut end = start;
        while end < b.len() && end - start < 8 {
            let ok = if hex {
                b[end].is_ascii_hexdigit()
            } else {
                b[end].is_ascii_digit()
            };
            if !ok {
                break;
            }
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end];
        let code = u32::from_str_radix(digits, if hex { 16 } else { 10 }).ok()?;
        let ch = char::from_u32(code)?;
        let consumed = if end < b.len() && b[end] == b';' {
            end + 1
        } else {
            end
        };
        return Some((ch, consumed));
    }
    const NAMED: &[(&str, char)] = &[
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&amp;", '&'),
        ("&quot;", '"'),
        ("&apos;", '\''),
        ("&nbsp;", ' '),
    ];
    for (name, ch) in NAMED {
        if b.len() >= name.len() && s.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return Some((*ch, name.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &[Transform], s: &str) -> String {
        apply_all(t, s).into_owned()
    }

    #[test]
    fn case_and_trim() {
        assert_eq!(run(&[Transform::Lowercase], "SqlMap/1.0"), "sqlmap/1.0");
        assert_eq!(run(&[Transform::Uppercase], "get"), "GET");
        assert_eq!(run(&[Transform::Trim], " \t x y \n"), "x y");
        assert!(matches!(
            apply_all(&[Transform::Lowercase], "already"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn url_decode_repeats_up_to_three_times() {
        assert_eq!(run(&[Transform::UrlDecode], "%3Cscript%3E"), "<script>");
        // %253C -> %3C -> <
        assert_eq!(run(&[Transform::UrlDecode], "%253C"), "<");
        // triple encoded: %25253C -> %253C -> %3C -> <
        assert_eq!(run(&[Transform::UrlDecode], "%25253C"), "<");
        // quadruple encoded stops after 3 passes
        assert_eq!(run(&[Transform::UrlDecode], "%2525253C"), "%3C");
        // malformed escapes stay, '+' stays
        assert_eq!(run(&[Transform::UrlDecode], "100%+%zz%4"), "100%+%zz%4");
        assert_eq!(run(&[Transform::UrlDecode], "a%2"), "a%2");
        assert_eq!(run(&[Transform::UrlDecode], "%41"), "A");
        // invalid utf-8 is replaced
        assert_eq!(run(&[Transform::UrlDecode], "%ff"), "\u{fffd}");
    }

    #[test]
    fn remove_nulls_and_html() {
        assert_eq!(run(&[Transform::RemoveNulls], "a\0b\0"), "ab");
        assert_eq!(
            run(
                &[Transform::HtmlEntityDecode],
                "&lt;script&GT;&#97;&#x62;&#99&amp;&nbsp;&bogus; &"
            ),
            "<script>abc& &bogus; &"
        );
        assert_eq!(
            run(&[Transform::HtmlEntityDecode], "&#xZZ; &#1114112;"),
            "&#xZZ; &#1114112;"
        );
    }

    #[test]
    fn chained_in_order() {
        assert_eq!(
            run(
                &[
                    Transform::UrlDecode,
                    Transform::HtmlEntityDecode,
                    Transform::Lowercase
                ],
                "%26lt%3BSCRIPT"
            ),
            "<script"
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert!(matches!(form_decode("plain"), Cow::Borrowed(_)));
    }
}
