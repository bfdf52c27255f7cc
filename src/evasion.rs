//! The evasion corpus: every payload of a list re-emitted through the encodings attackers use to
//! slip past signatures and the places a request can carry it, as labelled requests that
//! [`crate::waf::replay`] scores like any other corpus.
//!
//! A WAF that catches `' OR '1'='1` in a query string but not in base64 in a cookie, or in a JSON
//! field, or written with `\u0027`, is walked past with the first encoding an attacker tries. The
//! benign look-alikes of the list go through the same encodings and placements, so a decoding
//! step that turns harmless text into something that looks like an attack shows as a false
//! positive here.
//!
//! Deterministic: the same list gives the same requests in the same order. Each case's category
//! is `encoding/placement/class`, so a replay report can be cut by any of the three.
//!
//! The list format (`tests/corpora/evasion/payloads.tsv`): `label<TAB>class<TAB>payload` per
//! line, `#` comments; `\r`, `\n` and `\t` in a payload stand for those characters.

use anyhow::{anyhow, Result};
use base64::Engine;
use std::fmt::Write as _;

use crate::waf::parse_raw_request;
use crate::waf::replay::{Case, Label};

/// One payload of the list.
#[derive(Debug, Clone)]
pub struct Payload {
    pub label: Label,
    pub class: String,
    pub text: String,
}

/// How the value is written: the application undoes it before use (decoding a parameter twice,
/// a base64 field, a JSON or HTML string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As it is (the transport's own encoding only).
    Plain,
    /// Percent-encoded once more than the transport needs (`%2527`).
    DoubleUrl,
    /// IIS `%uXXXX` escapes for every character that is not a letter or digit.
    IisUnicode,
    /// Overlong two-byte UTF-8 (`%c0%ae`) for the characters of paths and markup.
    OverlongUtf8,
    /// Base64 with padding.
    Base64,
    /// Base64 without padding, URL-safe alphabet.
    Base64UrlNoPad,
    /// JavaScript / JSON `\uXXXX` escapes for every character that is not a letter or digit.
    JsEscape,
    /// HTML / XML numeric character references (`&#39;`, `&#x3c;`).
    HtmlEntities,
}

impl Encoding {
    pub const ALL: [Encoding; 8] = [
        Encoding::Plain,
        Encoding::DoubleUrl,
        Encoding::IisUnicode,
        Encoding::OverlongUtf8,
        Encoding::Base64,
        Encoding::Base64UrlNoPad,
        Encoding::JsEscape,
        Encoding::HtmlEntities,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::DoubleUrl => "double_url",
            Encoding::IisUnicode => "iis_unicode",
            Encoding::OverlongUtf8 => "overlong_utf8",
            Encoding::Base64 => "base64",
            Encoding::Base64UrlNoPad => "base64url_nopad",
            Encoding::JsEscape => "js_escape",
            Encoding::HtmlEntities => "html_entities",
        }
    }

    /// The value written this way.
    pub fn apply(self, text: &str) -> String {
        let escape_each = |f: &dyn Fn(char, &mut String)| {
            let mut out = String::with_capacity(text.len() * 4);
            for c in text.chars() {
                if c.is_ascii_alphanumeric() {
                    out.push(c);
                } else {
                    f(c, &mut out);
                }
            }
            out
        };
        match self {
            Encoding::Plain => text.to_string(),
            Encoding::DoubleUrl => percent_encode(text),
            Encoding::IisUnicode => escape_each(&|c, out| {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "%u{u:04x}");
                }
            }),
            Encoding::OverlongUtf8 => {
                let mut out = String::with_capacity(text.len() * 6);
                for c in text.chars() {
                    match c {
                        // The two-byte overlong form of an ASCII character: 110000xx 10xxxxxx.
                        '.' | '/' | '\\' | '<' | '>' | '\'' | '"' | ';' | '|' | '&' | ' ' => {
                            let b = c as u8;
                            let _ =
                                write!(out, "%{:02x}%{:02x}", 0xc0 | (b >> 6), 0x80 | (b & 0x3f));
                        }
                        c => out.push(c),
                    }
                }
                out
            }
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(text),
            Encoding::Base64UrlNoPad => {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
            }
            Encoding::JsEscape => escape_each(&|c, out| {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }),
            Encoding::HtmlEntities => escape_each(&|c, out| {
                if (c as u32).is_multiple_of(2) {
                    let _ = write!(out, "&#{};", c as u32);
                } else {
                    let _ = write!(out, "&#x{:x};", c as u32);
                }
            }),
        }
    }
}

/// Where the request carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `GET /search?q=VALUE`
    Query,
    /// `GET /items/VALUE`
    Path,
    /// `User-Agent: VALUE` (a header applications log and parse)
    Header,
    /// `Cookie: pref=VALUE`
    Cookie,
    /// `q=VALUE` in an `application/x-www-form-urlencoded` body
    Form,
    /// a `multipart/form-data` field
    Multipart,
    /// a JSON string field, nested two levels deep
    Json,
    /// an element of an XML body
    Xml,
    /// an element inside a SOAP 1.1 envelope
    Soap,
}

impl Placement {
    pub const ALL: [Placement; 9] = [
        Placement::Query,
        Placement::Path,
        Placement::Header,
        Placement::Cookie,
        Placement::Form,
        Placement::Multipart,
        Placement::Json,
        Placement::Xml,
        Placement::Soap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placement::Query => "query",
            Placement::Path => "path",
            Placement::Header => "header",
            Placement::Cookie => "cookie",
            Placement::Form => "form",
            Placement::Multipart => "multipart",
            Placement::Json => "json",
            Placement::Xml => "xml",
            Placement::Soap => "soap",
        }
    }

    /// The raw request carrying `value` here, or None where it cannot be carried (a line break
    /// in a header).
    pub fn request(self, value: &str, class: &str) -> Option<String> {
        const HEAD: &str = "Host: shop.example\r\nAccept: */*\r\n";
        const UA: &str = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n";
        let post = |ctype: &str, body: &str| {
            format!(
                "POST /api/submit HTTP/1.1\r\n{HEAD}{UA}Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let in_header = !value.chars().any(|c| c.is_control());
        Some(match self {
            Placement::Query => {
                format!("GET /search?q={}&page=1 HTTP/1.1\r\n{HEAD}{UA}\r\n", percent_encode(value))
            }
            Placement::Path => {
                format!("GET /items/{} HTTP/1.1\r\n{HEAD}{UA}\r\n", percent_encode(value))
            }
            Placement::Header if in_header => {
                format!("GET /home HTTP/1.1\r\n{HEAD}User-Agent: {value}\r\n\r\n")
            }
            Placement::Cookie if in_header => format!(
                "GET /home HTTP/1.1\r\n{HEAD}{UA}Cookie: session=9f3a; pref={}\r\n\r\n",
                cookie_encode(value)
            ),
            Placement::Header | Placement::Cookie => return None,
            Placement::Form => post(
                "application/x-www-form-urlencoded",
                &format!("name=Ann&q={}", percent_encode(value)),
            ),
            Placement::Multipart => post(
                "multipart/form-data; boundary=X-EVASION",
                &format!(
                    "--X-EVASION\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAnn\r\n\
                     --X-EVASION\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n{value}\r\n--X-EVASION--\r\n"
                ),
            ),
            Placement::Json => {
                // A NoSQL operator document is sent as the object it is, not as a string.
                let inner = match serde_json::from_str::<serde_json::Value>(value) {
                    Ok(v @ serde_json::Value::Object(_)) if class == "nosql" => v,
                    _ => serde_json::Value::String(value.to_string()),
                };
                let doc = serde_json::json!({"user": {"name": "Ann", "query": inner}});
                post("application/json", &doc.to_string())
            }
            Placement::Xml if class == "xxe" && value.starts_with('<') => post("application/xml", value),
            Placement::Xml => post(
                "application/xml",
                &format!("<?xml version=\"1.0\"?><order><name>Ann</name><q>{}</q></order>", xml_escape(value)),
            ),
            Placement::Soap => post(
                "text/xml; charset=utf-8",
                &format!(
                    "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
                     <soap:Body><Search xmlns=\"urn:shop\"><q>{}</q></Search></soap:Body></soap:Envelope>",
                    xml_escape(value)
                ),
            ),
        })
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A cookie value as applications write one: percent-encoded where a cookie octet is not allowed.
fn cookie_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        let allowed = (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\' | b'%');
        if allowed {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Reads a payload list.
pub fn parse_payloads(text: &str) -> Result<Vec<Payload>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (Some(label), Some(class), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(anyhow!("line {}: want label<TAB>class<TAB>payload", n + 1));
        };
        let label = match label {
            "attack" => Label::Attack,
            "benign" => Label::Benign,
            other => return Err(anyhow!("line {}: unknown label {other:?}", n + 1)),
        };
        let text = payload
            .replace("\\r", "\r")
            .replace("\\n", "\n")
            .replace("\\t", "\t");
        out.push(Payload {
            label,
            class: class.to_string(),
            text,
        });
    }
    Ok(out)
}

/// Every payload through every encoding and placement, in list order.
pub fn generate(payloads: &[Payload]) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        for encoding in Encoding::ALL {
            let value = encoding.apply(&p.text);
            for placement in Placement::ALL {
                let Some(raw) = placement.request(&value, &p.class) else {
                    continue;
                };
                let Ok(request) = parse_raw_request(raw.as_bytes()) else {
                    continue;
                };
                cases.push(Case {
                    id: format!("{}-{}-{}-{}", p.class, i, encoding.name(), placement.name()),
                    label: p.label,
                    category: format!("{}/{}/{}", encoding.name(), placement.name(), p.class),
                    request,
                    rule_pl: None,
                });
            }
        }
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_write_what_their_decoders_read_back() {
        assert_eq!(Encoding::DoubleUrl.apply("' or"), "%27%20or");
        assert_eq!(Encoding::IisUnicode.apply("a/b"), "a%u002fb");
        assert_eq!(Encoding::OverlongUtf8.apply("../x"), "%c0%ae%c0%ae%c0%afx");
        assert_eq!(Encoding::Base64.apply("<a>"), "PGE+");
        assert_eq!(Encoding::Base64UrlNoPad.apply("<a>?"), "PGE-Pw");
        assert_eq!(Encoding::JsEscape.apply("'x"), "\\u0027x");
        assert_eq!(Encoding::HtmlEntities.apply("<'"), "&#60;&#x27;");
    }

    #[test]
    fn every_case_parses_and_names_its_encoding_placement_and_class() {
        let payloads =
            parse_payloads("attack\tsqli\t' OR 1=1--\nbenign\ttext\tTom\\r\\n& Jerry\n").unwrap();
        let cases = generate(&payloads);
        // Both in all 72 combinations, but for the line break of the benign text where it stays
        // raw (plain and overlong encoding) in a header or a cookie.
        assert_eq!(cases.len(), 72 + 72 - 2 * 2);
        assert!(cases.iter().any(|c| c.category == "base64/cookie/sqli"));
        assert!(!cases.iter().any(|c| c.category == "plain/header/text"));
        assert!(parse_payloads("attack\tonly-two-fields").is_err());
    }
}
