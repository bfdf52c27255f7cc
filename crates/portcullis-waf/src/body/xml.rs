//! A tolerant XML tokenizer: text and attribute values become arguments.

use super::{MAX_BODY_ARGS, MAX_JSON_DEPTH};
use crate::transform::html_entity_decode;

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
                args.push((xml_name(&stack), xml_text(text)));
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

/// Text and attribute values as an XML parser hands them to the application: entity and
/// character references decoded (`&lt;` is `<`, `&#39;` is `'`). CDATA is taken as it is.
fn xml_text(raw: &str) -> String {
    html_entity_decode(raw).unwrap_or_else(|| raw.to_string())
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
        args.push((format!("xml:{}@{}", elem, name), xml_text(val)));
        rest = remaining;
    }
}
