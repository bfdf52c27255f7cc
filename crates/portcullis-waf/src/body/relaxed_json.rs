//! JSON as browsers' scripts and lenient backends write it: unquoted keys (`{price:"189"}`),
//! single-quoted strings, trailing commas, comments, `undefined`. Real sites send such bodies
//! with `Content-Type: application/json`, and backends built on JavaScript parsers (JSON5,
//! `eval`-style readers) accept them. A strict parser calls them malformed, which blocked real
//! traffic (rule 920120) and left their values uninspected.
//!
//! [`to_strict`] rewrites such text into strict JSON, which the streaming flattener then reads
//! like any other body: every value the lenient backend would see is inspected. Text that is not
//! JSON-like even then (`a=b`, binary) stays an error.

/// Longest input rewritten: bodies are already capped at the inspection limit.
const MAX_INPUT: usize = 4 * 1024 * 1024;

/// Rewrites relaxed JSON into strict JSON, or None when the text is not JSON-like.
pub fn to_strict(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() > MAX_INPUT {
        return None;
    }
    let first = b.iter().position(|c| !c.is_ascii_whitespace())?;
    if !matches!(b[first], b'{' | b'[') {
        return None;
    }
    let mut out = String::with_capacity(b.len() + b.len() / 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                let end = string_end(b, i, b'"')?;
                out.push_str(&text[i..end]);
                i = end;
            }
            b'\'' => {
                let end = string_end(b, i, b'\'')?;
                push_single_quoted(&text[i + 1..end - 1], &mut out);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |p| i + 2 + p + 2);
            }
            b'}' | b']' => {
                // A trailing comma (comments and spaces may sit between it and the bracket).
                let kept = out.trim_end().len();
                if out[..kept].ends_with(',') {
                    out.truncate(kept - 1);
                }
                out.push(c as char);
                i += 1;
            }
            b'{' | b'[' | b':' | b',' => {
                out.push(c as char);
                i += 1;
            }
            c if c.is_ascii_whitespace() => {
                out.push(c as char);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'-' | b'+' | b'.') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| {
                        !(c.is_ascii_alphanumeric()
                            || matches!(c, b'_' | b'$' | b'-' | b'+' | b'.'))
                    })
                    .map_or(b.len(), |p| i + p);
                push_bare(&text[i..end], &mut out);
                i = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The index just past the string that opens at `start` with `quote`.
fn string_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A single-quoted string's content as a double-quoted JSON string: `\'` needs no escape there,
/// a bare `"` does.
fn push_single_quoted(content: &str, out: &mut String) {
    out.push('"');
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\'') => out.push('\''),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push_str("\\\\"),
            },
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A bare word: a JSON literal or number as it is, anything else (a key, `undefined`, `NaN`,
/// `0x1F`) as a string, so that it is inspected like one.
fn push_bare(word: &str, out: &mut String) {
    let literal = matches!(word, "true" | "false" | "null");
    if literal || serde_json::from_str::<serde_json::Number>(word).is_ok() {
        out.push_str(word);
    } else {
        out.push('"');
        out.push_str(word);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::to_strict;

    fn strict(s: &str) -> serde_json::Value {
        let t = to_strict(s).unwrap_or_else(|| panic!("not rewritten: {s}"));
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("{s} -> {t}: {e}"))
    }

    #[test]
    fn relaxed_forms_become_strict_json() {
        assert_eq!(
            strict(r#"{publisherid:"72a9",price:"189"}"#),
            serde_json::json!({"publisherid": "72a9", "price": "189"})
        );
        assert_eq!(
            strict(r#"{ RawUrl : "lang=en-us&x=1"  }"#),
            serde_json::json!({"RawUrl": "lang=en-us&x=1"})
        );
        assert_eq!(
            strict("{'a': 'it\\'s \"quoted\"', b: [1, 2,], c: undefined, /* note */ d: -1.5e3, // end\n}"),
            serde_json::json!({"a": "it's \"quoted\"", "b": [1, 2], "c": "undefined", "d": -1500.0})
        );
        assert_eq!(strict("[0x1F, NaN]"), serde_json::json!(["0x1F", "NaN"]));
    }

    #[test]
    fn values_keep_what_an_attack_needs() {
        let v = strict("{q:'1\\' or 1=1--'}");
        assert_eq!(v["q"], "1' or 1=1--");
    }

    #[test]
    fn text_that_is_not_json_like_is_refused() {
        for s in [
            "a=b&c=d", "", "   ", "hello {", "{a=1}", "{\"open", "{'open", "<x/>",
        ] {
            assert!(to_strict(s).is_none(), "{s:?}");
        }
    }
}
