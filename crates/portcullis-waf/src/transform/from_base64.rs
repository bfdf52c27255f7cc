//! Base64: a whole value (`base64_decode`, `base64_text`) or the long runs inside one
//! (`base64_decode_embedded`), kept only when they decode to text.

use super::bytes_to_string;

/// The whole (trimmed) value decoded from base64 (standard or URL-safe alphabet, whitespace
/// and padding ignored), as text with invalid UTF-8 replaced; None when it is not base64.
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

pub(super) fn is_text(b: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(b).ok()?;
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return None;
    }
    Some(t)
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
