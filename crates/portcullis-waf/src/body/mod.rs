//! Request body parsers: urlencoded, JSON, multipart/form-data and a tolerant XML tokenizer.
//! None of them panic on bad input; a malformed body of a declared type returns an error string
//! that the engine exposes as the `reqbody_error` target.

mod json;
mod multipart;
mod relaxed_json;
mod xml;

pub use json::{parse_json_into, JsonArgs, MAX_JSON_LEAVES};
pub use multipart::{boundary_of, sniff_boundary};
pub use xml::parse_xml_into;

use super::transform::{bytes_to_string, url_decode_once};
use multipart::parse_multipart;
use std::borrow::Cow;
use std::ops::Range;

/// A (name, value) argument, borrowed from the request wherever decoding
/// left it unchanged: most query and form arguments need no copy.
pub type Arg<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Maximum number of arguments taken from one query string or form body (rule 920271 refuses
/// far fewer); a JSON document has its own limit, [`MAX_JSON_LEAVES`].
pub const MAX_BODY_ARGS: usize = 2048;
/// Maximum JSON nesting depth walked.
pub const MAX_JSON_DEPTH: usize = 64;

/// What [`parse_body`] found in a body: its arguments (or JSON leaves), uploads and part
/// headers, and whether it could be parsed as the type it declared.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedBody<'a> {
    /// (name, value) argument pairs of urlencoded, multipart and XML bodies.
    pub args: Vec<Arg<'a>>,
    /// The leaves of a JSON body.
    pub json: JsonArgs<'a>,
    /// Multipart uploads: (field name, filename).
    pub files: Vec<(String, String)>,
    /// Multipart part headers: (name, value) (Content-Type of parts, etc.).
    pub part_headers: Vec<(String, String)>,
    /// Set when the declared type could not be parsed.
    pub error: Option<String>,
    /// Byte ranges of the body that were inspected as requests of their own (the parts of a
    /// batch): the raw-body rules do not read them again as text.
    pub structured: Vec<Range<usize>>,
    /// Body kind that was detected: "urlencoded", "json", "multipart", "xml" or "" (raw only).
    pub kind: &'static str,
}

impl ParsedBody<'_> {
    /// Every argument of the body as (name, value), in body order.
    pub fn arg_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.args
            .iter()
            .map(|(n, v)| (&**n, &**v))
            .chain(self.json.iter())
    }

    /// How many arguments the body has.
    pub fn arg_count(&self) -> usize {
        self.args.len() + self.json.len()
    }
}

/// How a body is parsed, by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// JSON (`application/json`, `+json` types).
    Json,
    /// `multipart/form-data`.
    Multipart,
    /// XML (`text/xml`, `application/xml`, `+xml` types).
    Xml,
    /// Any other type: the body is inspected as raw text only.
    Other,
    /// No Content-Type.
    None,
}

/// The [`BodyKind`] of a Content-Type header value (None when there is no header).
pub fn body_kind(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::None;
    };
    let ct = ct.trim().to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/x-www-form-urlencoded" {
        BodyKind::UrlEncoded
    } else if mime == "multipart/form-data"
        || mime == "multipart/mixed"
        || mime == "multipart/related"
    {
        BodyKind::Multipart
    } else if mime == "application/json" || mime.ends_with("+json") || mime == "text/json" {
        BodyKind::Json
    } else if mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml") {
        BodyKind::Xml
    } else {
        BodyKind::Other
    }
}

/// Parse a body according to its Content-Type. With no Content-Type a body that looks like
/// `k=v&k2=v2` is parsed as urlencoded (without errors).
pub fn parse_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
    truncated: bool,
) -> ParsedBody<'a> {
    parse_body_with(content_type, body, truncated, true)
}

/// [`parse_body`]; `batches`: whether the parts of a batch are read as requests (not inside a
/// batch's own request: nesting stops there).
fn parse_body_with<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
    truncated: bool,
    batches: bool,
) -> ParsedBody<'a> {
    let mut out = ParsedBody::default();
    if body.is_empty() {
        return out;
    }
    match body_kind(content_type) {
        BodyKind::UrlEncoded => {
            // jQuery and many SDKs post JSON documents under the form type, and most backends
            // read such a body as the JSON it is: its leaves are the arguments, not one giant
            // argument name.
            if let Some(json) = json_document(body) {
                out.kind = "json";
                out.json = json;
                return out;
            }
            out.kind = "urlencoded";
            parse_urlencoded_text(request_text(body), &mut out.args);
        }
        BodyKind::Json => {
            out.kind = "json";
            let parsed = parse_json_into(body, &mut out.json);
            if let Err(e) = parsed {
                if !truncated && !read_json_leniently(body, &mut out.json) {
                    out.error = Some(format!("malformed JSON body: {}", e));
                }
            }
            if out.json.skipped() {
                out.error = Some(format!(
                    "JSON body with more than {MAX_JSON_LEAVES} values or deeper than \
                     {MAX_JSON_DEPTH} levels: the rest cannot be inspected"
                ));
            }
        }
        BodyKind::Multipart => {
            out.kind = "multipart";
            let ct = content_type.unwrap_or("");
            // Without its boundary parameter, a body that shows its boundary is read by it; one
            // that does not is no multipart body at all (a backend cannot split it either) and
            // is left to the raw-body rules.
            if let Some(b) = boundary_of(ct).or_else(|| sniff_boundary(body)) {
                if let Err(e) = parse_multipart(body, &b, truncated, batches, &mut out) {
                    out.error = Some(format!("malformed multipart body: {}", e));
                }
            }
        }
        BodyKind::Xml => {
            out.kind = "xml";
            let mut args = Vec::new();
            let parsed = parse_xml_into(&bytes_to_string(body), &mut args, truncated);
            out.args.extend(owned_args(args));
            if let Err(e) = parsed {
                out.error = Some(format!("malformed XML body: {}", e));
            }
        }
        BodyKind::None => {
            if let Some(json) = json_document(body) {
                out.json = json;
                out.kind = "json";
                return out;
            }
            let text = request_text(body);
            // Like a form post: a single-line text body is split into arguments (a piece without
            // '=' becomes an argument name with an empty value). Binary data is no form.
            if !text.trim_end_matches(['\r', '\n']).contains('\n') && !is_binary(body) {
                out.kind = "urlencoded";
                let line = match text {
                    Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches(['\r', '\n'])),
                    Cow::Owned(s) => Cow::Owned(s.trim_end_matches(['\r', '\n']).to_string()),
                };
                parse_urlencoded_text(line, &mut out.args);
            }
        }
        BodyKind::Other => {
            // A batch sent as `text/plain` (its real type in the query string): read as the
            // multipart body it is when it parses as one.
            if let Some(b) = sniff_boundary(body) {
                let mut sniffed = ParsedBody::default();
                if parse_multipart(body, &b, truncated, batches, &mut sniffed).is_ok() {
                    sniffed.kind = "multipart";
                    return sniffed;
                }
            }
        }
    }
    out
}

/// The leaves of a body that is a whole, valid JSON document (an object or an array).
fn json_document(body: &[u8]) -> Option<JsonArgs<'_>> {
    let first = body.iter().find(|c| !c.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') {
        return None;
    }
    let mut json = JsonArgs::default();
    (parse_json_into(body, &mut json).is_ok() && !json.skipped()).then_some(json)
}

/// A declared JSON body that strict JSON refused, read the ways real clients write it: base64 of
/// a JSON document (analytics beacons send that under `application/json`), or relaxed JSON
/// (unquoted keys, single quotes, trailing commas; see [`relaxed_json`]). On success the leaves
/// replace what the strict parse found before its error, and the body is no error: all of it is
/// inspected.
fn read_json_leniently(body: &[u8], json: &mut JsonArgs<'_>) -> bool {
    let text = request_text(body);
    let document = base64_document(&text);
    let Some(strict) = relaxed_json::to_strict(document.as_deref().unwrap_or(&text)) else {
        return false;
    };
    let mut leaves = JsonArgs::default();
    if json::parse_json_copy(&strict, &mut leaves).is_err() {
        return false;
    }
    *json = leaves;
    true
}

/// The text a body that is one base64 run (standard or URL-safe, padded or not) decodes to, when
/// it decodes to UTF-8 text that starts like a JSON document.
fn base64_document(text: &str) -> Option<String> {
    use base64::Engine;
    let t = text.trim();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
    if t.len() < 8 || !t.trim_end_matches('=').bytes().all(b64) {
        return None;
    }
    let unpadded = t.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
        .ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    decoded
        .trim_start()
        .starts_with(['{', '['])
        .then_some(decoded)
}

/// Shortest run of text kept from a binary body by [`body_text`].
const MIN_TEXT_RUN: usize = 8;

/// Whether a body is binary data (protobuf, an image, compressed bytes) rather than text: it
/// holds a NUL, or one character in twenty is a control character or an invalid UTF-8 byte.
pub fn is_binary(b: &[u8]) -> bool {
    if memchr::memchr(0, b).is_some() {
        return true;
    }
    let (mut chars, mut odd) = (0usize, 0usize);
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            chars += 1;
            odd += usize::from(c.is_control() && !matches!(c, '\t' | '\r' | '\n'));
        }
        let invalid = chunk.invalid().len();
        chars += invalid;
        odd += invalid;
    }
    odd * 20 > chars
}

/// The body as the raw-`body` rules read it: its text, or for a binary body the runs of at
/// least `MIN_TEXT_RUN` (8) printable characters, one per line. An attack in a string field of a
/// binary format is such a run; byte pairs that only look like markup between binary fields
/// (`<?` followed by a space in a protobuf message) are not.
pub fn body_text(b: &[u8]) -> Cow<'_, str> {
    if !is_binary(b) {
        return request_text(b);
    }
    let mut out = String::new();
    let mut run = String::new();
    let end_run = |run: &mut String, out: &mut String| {
        if run.chars().count() >= MIN_TEXT_RUN {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(run);
        }
        run.clear();
    };
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\t' {
                end_run(&mut run, &mut out);
            } else {
                run.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            end_run(&mut run, &mut out);
        }
    }
    end_run(&mut run, &mut out);
    Cow::Owned(out)
}

/// Bytes of the request (a body, a header value) as text: borrowed when they
/// are UTF-8, repaired (overlong forms, invalid bytes) into a copy otherwise.
pub fn request_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes_to_string(bytes)),
    }
}

/// Arguments a parser built as owned strings.
fn owned_args<'a>(args: Vec<(String, String)>) -> impl Iterator<Item = Arg<'a>> {
    args.into_iter()
        .map(|(n, v)| (Cow::Owned(n), Cow::Owned(v)))
}

/// `parse_urlencoded_into` on text that may be a repaired copy of the body.
fn parse_urlencoded_text<'a>(text: Cow<'a, str>, args: &mut Vec<Arg<'a>>) {
    match text {
        Cow::Borrowed(s) => parse_urlencoded_into(s, args),
        Cow::Owned(s) => {
            let mut borrowed = Vec::new();
            parse_urlencoded_into(&s, &mut borrowed);
            args.extend(
                borrowed
                    .into_iter()
                    .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned()))),
            );
        }
    }
}

fn decode_component(s: &str) -> Cow<'_, str> {
    match url_decode_once(s, true) {
        Some(decoded) => Cow::Owned(decoded),
        None => Cow::Borrowed(s),
    }
}

/// Parse `a=1&b=2` (also used for query strings). Pieces without '=' become a name with empty value.
pub fn parse_urlencoded_into<'a>(s: &'a str, args: &mut Vec<Arg<'a>>) {
    // `&` and `=` are ASCII, so every cut below falls on a character boundary.
    let mut start = 0;
    for _ in 0..MAX_BODY_ARGS {
        if start > s.len() {
            break;
        }
        let end = memchr::memchr(b'&', &s.as_bytes()[start..]).map_or(s.len(), |p| start + p);
        let piece = &s[start..end];
        start = end + 1;
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match memchr::memchr(b'=', piece.as_bytes()) {
            Some(p) => (&piece[..p], &piece[p + 1..]),
            None => (piece, ""),
        };
        args.push((decode_component(k), decode_component(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_as_real_clients_send_it_is_read_whole() {
        // Relaxed JSON: unquoted keys, single quotes.
        let p = parse_body(
            Some("application/json"),
            br#"{publisherid:"72a9",q:'1\' or 1=1--'}"#,
            false,
        );
        assert!(p.error.is_none(), "{:?}", p.error);
        let pairs: Vec<(&str, &str)> = p.arg_pairs().collect();
        assert!(pairs.contains(&("publisherid", "72a9")));
        assert!(pairs.contains(&("q", "1' or 1=1--")));
        // Base64 of a JSON document (beacons), padded or not.
        for body in [&b"eyJhIjoiPHNjcmlwdD4ifQ=="[..], b"eyJhIjoiPHNjcmlwdD4ifQ"] {
            let p = parse_body(Some("application/json"), body, false);
            assert!(p.error.is_none());
            assert_eq!(p.arg_pairs().collect::<Vec<_>>(), vec![("a", "<script>")]);
        }
        // Neither: still malformed, and the strict parse's prefix is kept.
        let p = parse_body(Some("application/json"), br#"{"a":"x", b=1}"#, false);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.contains("malformed JSON")));
        assert_eq!(p.arg_pairs().collect::<Vec<_>>(), vec![("a", "x")]);
    }

    #[test]
    fn json_past_its_limits_is_an_error_not_a_blind_spot() {
        let doc = |n: usize| format!("[{}]", vec!["1"; n].join(","));
        let (small, large) = (doc(4000), doc(MAX_JSON_LEAVES + 1));
        let p = parse_body(Some("application/json"), small.as_bytes(), false);
        assert!(p.error.is_none() && p.json.len() == 4000);
        let p = parse_body(Some("application/json"), large.as_bytes(), false);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be inspected")));
        let deep = format!(
            "{}\"x\"{}",
            "[".repeat(MAX_JSON_DEPTH + 2),
            "]".repeat(MAX_JSON_DEPTH + 2)
        );
        let p = parse_body(Some("application/json"), deep.as_bytes(), false);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be inspected")));
    }

    #[test]
    fn binary_bodies_are_read_as_their_text_runs() {
        let protobuf = b"\x0a\x03<? \x12\x10SELECT * FROM users\x1a\x02\x00\x01";
        assert!(is_binary(protobuf));
        assert_eq!(body_text(protobuf), "SELECT * FROM users");
        assert!(!is_binary("plain text, caf\u{e9}\r\n".as_bytes()));
        assert_eq!(body_text(b"<?php echo 1; ?>"), "<?php echo 1; ?>");
        // A binary body without a Content-Type is no form post.
        let p = parse_body(None, b"x\x00", false);
        assert!(p.args.is_empty() && p.error.is_none());
        let p = parse_body(None, b"x=1&y=2", false);
        assert_eq!(p.args.len(), 2);
    }

    #[test]
    fn urlencoded() {
        let p = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"a=1&b=x+y%21&c",
            false,
        );
        assert_eq!(
            p.args,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), "".into())
            ]
        );
        let p = parse_body(None, b"var=1 OR 1=1", false);
        assert_eq!(p.args[0].1, "1 OR 1=1");
    }

    #[test]
    fn json_paths_and_errors() {
        let p = parse_body(
            Some("application/json; charset=utf-8"),
            br#"{"user":{"address":[{"street":"x"}],"$ne":1},"ok":true}"#,
            false,
        );
        let pairs: Vec<(&str, &str)> = p.arg_pairs().collect();
        assert!(pairs.contains(&("user.address[0].street", "x")));
        assert!(pairs.contains(&("user.$ne", "1")));
        assert_eq!(p.arg_count(), 3);
        assert!(p.error.is_none());
        // Escaped keys and values read unescaped; integers and booleans read as JSON writes them.
        let mut args = JsonArgs::default();
        parse_json_into(
            br#"{"a\u002eb":{"\u0024where":-5,"t":true,"f":false,"big":18446744073709551615,"e":"x\"y"}}"#,
            &mut args,
        )
        .unwrap();
        assert_eq!(
            args.iter().collect::<Vec<_>>(),
            [
                ("a.b.$where", "-5"),
                ("a.b.t", "true"),
                ("a.b.f", "false"),
                ("a.b.big", "18446744073709551615"),
                ("a.b.e", "x\"y")
            ]
        );
        let p = parse_body(Some("application/json"), b"{\"a\":", false);
        assert!(p.error.unwrap().contains("malformed JSON"));
        // truncated bodies are not reported as malformed
        let p = parse_body(Some("application/json"), b"{\"a\":", true);
        assert!(p.error.is_none());
        // deep nesting does not blow the stack
        let deep = "[".repeat(100_000);
        let p = parse_body(Some("application/json"), deep.as_bytes(), false);
        assert!(p.error.is_some());
    }

    #[test]
    fn json_keeps_duplicate_keys_order_and_the_prefix_of_a_broken_document() {
        let mut args = JsonArgs::default();
        parse_json_into(
            br#"{"q":"<script>","q":"ok","n":[1,2.5,null,{}]}"#,
            &mut args,
        )
        .unwrap();
        assert_eq!(
            args.iter().collect::<Vec<_>>(),
            [
                ("q", "<script>"),
                ("q", "ok"),
                ("n[0]", "1"),
                ("n[1]", "2.5"),
                ("n[2]", ""),
                ("n[3]", ""),
            ]
        );
        let mut args = JsonArgs::default();
        assert!(parse_json_into(br#"{"a":"union select","b":"#, &mut args).is_err());
        assert_eq!(args.iter().collect::<Vec<_>>(), [("a", "union select")]);
        let mut args = JsonArgs::default();
        assert!(parse_json_into(br#"{"a":1} trailing"#, &mut args).is_err());
        // Text is read as text; invalid UTF-8 in a string is an error, as serde_json reads bytes.
        let mut args = JsonArgs::default();
        parse_json_into("{\"ä\":\"ö\"}".as_bytes(), &mut args).unwrap();
        assert_eq!(args.iter().collect::<Vec<_>>(), [("ä", "ö")]);
        let mut args = JsonArgs::default();
        assert!(parse_json_into(b"{\"a\":\"x\",\"b\":\"\xff\"}", &mut args).is_err());
        assert_eq!(args.iter().collect::<Vec<_>>(), [("a", "x")]);
    }

    #[test]
    fn multipart() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello world\r\n--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.php\"\r\nContent-Type: application/octet-stream\r\n\r\n<?php x ?>\r\n--XyZ--\r\n";
        let p = parse_body(Some("multipart/form-data; boundary=XyZ"), body, false);
        assert!(p.error.is_none(), "{:?}", p.error);
        assert!(p.args.contains(&("title".into(), "hello world".into())));
        assert_eq!(p.files, vec![("up".into(), "a.php".into())]);
        let p = parse_body(
            Some("multipart/form-data; boundary=XyZ"),
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n",
            false,
        );
        assert!(p.error.is_some());
        // Without a boundary parameter: read by the boundary the body shows, or not at all
        // (no backend can split it either; the raw-body rules still read it).
        let p = parse_body(Some("multipart/form-data"), body, false);
        assert!(p.error.is_none() && p.args.contains(&("title".into(), "hello world".into())));
        let p = parse_body(Some("multipart/form-data"), b"whatever", false);
        assert!(p.error.is_none() && p.args.is_empty());
    }

    #[test]
    fn xml_values_are_read_with_their_references_decoded() {
        let p = parse_body(
            Some("application/xml"),
            b"<a x=\"&lt;b&gt;\">1 &amp; 2 &#39;x&#x27;</a>",
            false,
        );
        assert!(
            p.args.contains(&("xml:a@x".into(), "<b>".into())),
            "{:?}",
            p.args
        );
        assert!(
            p.args.contains(&("xml:a".into(), "1 & 2 'x'".into())),
            "{:?}",
            p.args
        );
    }

    #[test]
    fn xml() {
        let p = parse_body(
            Some("application/xml"),
            br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r a="1"><b>text &x;</b><![CDATA[raw]]></r>"#,
            false,
        );
        assert!(p.error.is_none(), "{:?}", p.error);
        assert!(p.args.contains(&("xml:r@a".into(), "1".into())));
        assert!(p.args.contains(&("xml:b".into(), "text &x;".into())));
        assert!(p.args.contains(&("xml:r".into(), "raw".into())));
        let p = parse_body(Some("text/xml"), b"<a><b></a>", false);
        assert!(p.error.is_some());
        let p = parse_body(Some("text/xml"), b"<a", false);
        assert!(p.error.is_some());
    }
}
