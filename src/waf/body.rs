//! Request body parsers: urlencoded, JSON, multipart/form-data and a tolerant XML tokenizer.
//! None of them panic on bad input; a malformed body of a declared type returns an error string
//! that the engine exposes as the `reqbody_error` target.

use super::transform::{bytes_to_string, url_decode_once};
use std::borrow::Cow;
use std::ops::Range;

/// A (name, value) argument, borrowed from the request wherever decoding
/// left it unchanged: most query and form arguments need no copy.
pub type Arg<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Maximum number of arguments taken from one body.
pub const MAX_BODY_ARGS: usize = 2048;
/// Maximum JSON nesting depth walked.
pub const MAX_JSON_DEPTH: usize = 64;

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

/// The leaves of a JSON body, named by their paths (`user.address[0].street`).
///
/// A JSON API body has hundreds of leaves. The paths, and the values that
/// need a copy (strings with escapes, numbers), are written one after the
/// other into one text that the leaves index, and values without escapes
/// borrow the body: the whole document costs a few allocations instead of two
/// per leaf, and the engine's variables borrow from here in turn.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JsonArgs<'a> {
    text: String,
    leaves: Vec<JsonLeaf<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
struct JsonLeaf<'a> {
    /// The path, a range of `JsonArgs::text`.
    name: Range<usize>,
    value: LeafValue<'a>,
}

#[derive(Debug, Clone, PartialEq)]
enum LeafValue<'a> {
    /// Borrowed from the body, or static text (`true`, `false`, empty).
    Borrowed(&'a str),
    /// A range of `JsonArgs::text`.
    Written(Range<usize>),
}

impl<'a> JsonArgs<'a> {
    /// The leaves as (path, value), in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.leaves.iter().map(|leaf| {
            let value = match &leaf.value {
                LeafValue::Borrowed(v) => *v,
                LeafValue::Written(r) => &self.text[r.clone()],
            };
            (&self.text[leaf.name.clone()], value)
        })
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Records a leaf named `path` whose value borrows the body (or is static).
    fn push_borrowed(&mut self, path: &str, value: &'a str) {
        let name = self.write(path);
        self.leaves.push(JsonLeaf {
            name,
            value: LeafValue::Borrowed(value),
        });
    }

    /// Records a leaf named `path` whose value has to be written out.
    fn push_written(&mut self, path: &str, value: &str) {
        let name = self.write(path);
        let value = self.write(value);
        self.leaves.push(JsonLeaf {
            name,
            value: LeafValue::Written(value),
        });
    }

    fn write(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    UrlEncoded,
    Json,
    Multipart,
    Xml,
    Other,
    None,
}

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
    let mut out = ParsedBody::default();
    if body.is_empty() {
        return out;
    }
    match body_kind(content_type) {
        BodyKind::UrlEncoded => {
            out.kind = "urlencoded";
            parse_urlencoded_text(request_text(body), &mut out.args);
        }
        BodyKind::Json => {
            out.kind = "json";
            let parsed = parse_json_into(body, &mut out.json);
            if let Err(e) = parsed {
                if !truncated {
                    out.error = Some(format!("malformed JSON body: {}", e));
                }
            }
        }
        BodyKind::Multipart => {
            out.kind = "multipart";
            let ct = content_type.unwrap_or("");
            match boundary_of(ct) {
                Some(b) => {
                    if let Err(e) = parse_multipart(body, &b, truncated, &mut out) {
                        out.error = Some(format!("malformed multipart body: {}", e));
                    }
                }
                None => out.error = Some("multipart body without boundary".to_string()),
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
            let text = request_text(body);
            let first = text.trim_start();
            if first.starts_with('{') || first.starts_with('[') {
                let mut json = JsonArgs::default();
                if parse_json_into(body, &mut json).is_ok() {
                    out.json = json;
                    out.kind = "json";
                    return out;
                }
            }
            // Like a form post: a single-line body is split into arguments (a piece without '='
            // becomes an argument name with an empty value).
            if !text.trim_end_matches(['\r', '\n']).contains('\n') {
                out.kind = "urlencoded";
                let line = match text {
                    Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches(['\r', '\n'])),
                    Cow::Owned(s) => Cow::Owned(s.trim_end_matches(['\r', '\n']).to_string()),
                };
                parse_urlencoded_text(line, &mut out.args);
            }
        }
        BodyKind::Other => {}
    }
    out
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

/// Parse JSON and flatten it into path-style argument names: `user.address[0].street`.
///
/// Streams through the document (no `Value` tree), in document order, so every occurrence of a
/// duplicated key is inspected (a backend may keep the first while a tree keeps the last), and the
/// values before a syntax error (such as a truncated body) are still returned alongside the error.
pub fn parse_json_into<'a>(body: &'a [u8], out: &mut JsonArgs<'a>) -> Result<(), String> {
    // Paths and written values usually take less room than the document itself.
    out.text.reserve(body.len());
    // A body checked as UTF-8 once is read as text: serde_json then does not validate every
    // string on its own again, which is most of the cost of short strings.
    match std::str::from_utf8(body) {
        Ok(text) => flatten_json(serde_json::Deserializer::from_str(text), out),
        Err(_) => flatten_json(serde_json::Deserializer::from_slice(body), out),
    }
}

fn flatten_json<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
    out: &mut JsonArgs<'a>,
) -> Result<(), String> {
    use serde::de::DeserializeSeed;
    let mut path = String::new();
    JsonFlattener {
        path: &mut path,
        out,
        depth: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Serde visitor that records each JSON leaf under its path.
struct JsonFlattener<'p, 'de> {
    path: &'p mut String,
    out: &'p mut JsonArgs<'de>,
    depth: usize,
}

impl<'de> JsonFlattener<'_, 'de> {
    /// Past the argument or depth limit values are read but not recorded.
    fn full(&self) -> bool {
        self.out.len() >= MAX_BODY_ARGS || self.depth > MAX_JSON_DEPTH
    }

    fn leaf_borrowed(self, value: &'de str) {
        if !self.full() {
            self.out.push_borrowed(self.path, value);
        }
    }

    fn leaf_written(self, value: &str) {
        if !self.full() {
            self.out.push_written(self.path, value);
        }
    }

    fn child(&mut self) -> JsonFlattener<'_, 'de> {
        JsonFlattener {
            path: self.path,
            out: self.out,
            depth: self.depth + 1,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonFlattener<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonFlattener<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.leaf_borrowed(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.leaf_written(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.leaf_written(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // Written as serde_json writes numbers, so values read the same as before.
        let text = serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string());
        self.leaf_written(&text);
        Ok(())
    }
    /// A string without escapes, borrowed from the body.
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.leaf_borrowed(v);
        Ok(())
    }
    /// A string with escapes, unescaped by serde_json into a scratch buffer.
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.leaf_written(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf_borrowed("");
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut empty = true;
        loop {
            let len = self.path.len();
            // The key goes straight onto the path, without a String of its own.
            let Some(()) = map.next_key_seed(KeyOntoPath(self.path))? else {
                break;
            };
            empty = false;
            if self.full() {
                self.path.truncate(len);
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(self.child())?;
            self.path.truncate(len);
        }
        if empty && !self.path.is_empty() {
            self.leaf_borrowed("");
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            if self.full() {
                if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                continue;
            }
            let len = self.path.len();
            self.path.push('[');
            self.path.push_str(itoa::Buffer::new().format(i));
            self.path.push(']');
            let more = seq.next_element_seed(self.child())?;
            self.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// Appends an object key to the path (after a `.` unless the path is empty).
struct KeyOntoPath<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for KeyOntoPath<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyOntoPath<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        self.0.push_str(key);
        Ok(())
    }
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

fn parse_multipart(
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

/// Tolerant XML tokenizer: collects text nodes and attribute values as args named `xml:<element>`
/// (attributes as `xml:<element>@<attr>`). Errors on unbalanced tags or unterminated markup.
pub fn parse_xml_into(
    s: &str,
    args: &mut Vec<(String, String)>,
    truncated: bool,
) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut stack: Vec<String> = Vec::new();
    let mut steps = 0usize;
    let mut saw_element = false;
    while i < b.len() {
        steps += 1;
        if steps > 1_000_000 || args.len() >= MAX_BODY_ARGS {
            break;
        }
        if b[i] == b'<' {
            let rest = &s[i..];
            if rest.starts_with("<!--") {
                match rest.find("-->") {
                    Some(e) => i += e + 3,
                    None => {
                        return if truncated {
                            Ok(())
                        } else {
                            Err("unterminated comment".into())
                        }
                    }
                }
                continue;
            }
            if rest.starts_with("<![CDATA[") {
                match rest.find("]]>") {
                    Some(e) => {
                        let text = &rest[9..e];
                        if !text.trim().is_empty() {
                            args.push((xml_name(&stack), text.to_string()));
                        }
                        i += e + 3;
                    }
                    None => {
                        return if truncated {
                            Ok(())
                        } else {
                            Err("unterminated CDATA".into())
                        }
                    }
                }
                continue;
            }
            if rest.starts_with("<!") || rest.starts_with("<?") {
                // DOCTYPE (possibly with an internal subset) or processing instruction.
                let mut depth = 0i32;
                let mut end = None;
                for (k, c) in rest.char_indices().skip(1) {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        '>' if depth <= 0 => {
                            end = Some(k);
                            break;
                        }
                        _ => {}
                    }
                }
                match end {
                    Some(e) => i += e + 1,
                    None => {
                        return if truncated {
                            Ok(())
                        } else {
                            Err("unterminated declaration".into())
                        }
                    }
                }
                continue;
            }
            let Some(e) = find_tag_end(rest) else {
                return if truncated {
                    Ok(())
                } else {
                    Err("unterminated tag".into())
                };
            };
            let tag = &rest[1..e];
            i += e + 1;
            if let Some(close) = tag.strip_prefix('/') {
                let name = close.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    _ => return Err(format!("unbalanced closing tag </{}>", name)),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() {
                return Err("empty tag name".into());
            }
            saw_element = true;
            parse_attrs(&tag[name_end..], name, args);
            if !self_closing {
                if stack.len() >= MAX_JSON_DEPTH * 4 {
                    return Err("XML nesting too deep".into());
                }
                stack.push(name.to_string());
            }
        } else {
            let next = s[i..].find('<').map(|p| i + p).unwrap_or(b.len());
            let text = s[i..next].trim();
            if !text.is_empty() {
                args.push((xml_name(&stack), text.to_string()));
            }
            i = next;
        }
    }
    if !saw_element {
        return Err("no root element".into());
    }
    if !stack.is_empty() && !truncated {
        return Err(format!(
            "unclosed element <{}>",
            stack.last().map(|s| s.as_str()).unwrap_or("")
        ));
    }
    Ok(())
}

fn find_tag_end(rest: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (k, c) in rest.char_indices().skip(1) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '>' => return Some(k),
            None if c == '<' => return None,
            None => {}
        }
    }
    None
}

fn xml_name(stack: &[String]) -> String {
    format!("xml:{}", stack.last().map(|s| s.as_str()).unwrap_or(""))
}

fn parse_attrs(s: &str, elem: &str, args: &mut Vec<(String, String)>) {
    let mut rest = s;
    for _ in 0..256 {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (val, remaining) =
            if let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let inner = &after[1..];
                let end = inner.find(q).unwrap_or(inner.len());
                (&inner[..end], inner.get(end + 1..).unwrap_or(""))
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
        args.push((format!("xml:{}@{}", elem, name), val.to_string()));
        rest = remaining;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = parse_body(Some("multipart/form-data"), b"whatever", false);
        assert!(p.error.is_some());
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
