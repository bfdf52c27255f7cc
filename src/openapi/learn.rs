//! Drafting an OpenAPI document from observed traffic (`portcullis openapi learn`), for
//! operators whose gateway has no document to export yet.
//!
//! The input is the edge's own access log: method, URI and status of each request. Only
//! requests the backend answered with success (2xx or 3xx) are learned from: a 404 or a request
//! the edge refused says nothing about what the API accepts. Path segments that are numbers,
//! UUIDs or long hexadecimal identifiers become template parameters (`/orders/{id}`); each query
//! parameter gets the narrowest type every observed value fits (integer, number, boolean, uuid,
//! string) and is marked required when every request of the operation carried it.
//!
//! The draft is a starting point to review, not a contract to enforce blindly: it knows nothing
//! of bodies or headers, and a parameter seen once with a number may be free text.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One observed request.
pub struct Observed<'a> {
    pub method: &'a str,
    /// Path and query as the client sent them.
    pub uri: &'a str,
    pub status: u16,
}

/// The narrowest type that fits every value seen for a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Integer,
    Number,
    Boolean,
    Uuid,
    String,
}

impl Kind {
    fn of(text: &str) -> Kind {
        if !text.is_empty() && text.len() <= 19 && text.parse::<i64>().is_ok() {
            Kind::Integer
        } else if text.parse::<f64>().is_ok_and(f64::is_finite) && !text.contains(['e', 'E']) {
            Kind::Number
        } else if text == "true" || text == "false" {
            Kind::Boolean
        } else if is_uuid(text) {
            Kind::Uuid
        } else {
            Kind::String
        }
    }

    /// The type that fits values of both kinds (an integer seen beside a number is a number).
    fn join(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Integer, Kind::Number) | (Kind::Number, Kind::Integer) => Kind::Number,
            _ => Kind::String,
        }
    }

    fn schema(self) -> Value {
        match self {
            Kind::Integer => json!({ "type": "integer" }),
            Kind::Number => json!({ "type": "number" }),
            Kind::Boolean => json!({ "type": "boolean" }),
            Kind::Uuid => json!({ "type": "string", "format": "uuid" }),
            Kind::String => json!({ "type": "string" }),
        }
    }
}

/// What was seen of one operation.
#[derive(Default)]
struct Seen {
    requests: usize,
    /// Query parameter name -> (requests carrying it, joined kind).
    query: BTreeMap<String, (usize, Option<Kind>)>,
    /// Kind of each templated path segment, by its position among the parameters.
    path_kinds: Vec<Kind>,
}

/// Operations observed, keyed by (path template, lower-case method).
#[derive(Default)]
pub struct Learner {
    operations: BTreeMap<(String, String), Seen>,
    /// Requests read, and the ones learned from.
    pub read: usize,
    pub learned: usize,
}

impl Learner {
    /// Records one request (ignored unless the backend answered it with success).
    pub fn observe(&mut self, r: &Observed<'_>) {
        self.read += 1;
        if !(200..400).contains(&r.status) {
            return;
        }
        let method = r.method.to_ascii_lowercase();
        if !matches!(
            method.as_str(),
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch"
        ) {
            return;
        }
        let (path, query) = r.uri.split_once('?').unwrap_or((r.uri, ""));
        if !path.starts_with('/') {
            return;
        }
        self.learned += 1;
        let (template, kinds) = template_of(path);
        let seen = self.operations.entry((template, method)).or_default();
        seen.requests += 1;
        for (i, k) in kinds.into_iter().enumerate() {
            match seen.path_kinds.get_mut(i) {
                Some(old) => *old = old.join(k),
                None => seen.path_kinds.push(k),
            }
        }
        let mut names_here: Vec<String> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name);
            let value = decode(value);
            if name.is_empty() {
                continue;
            }
            let entry = seen.query.entry(name.clone()).or_insert((0, None));
            if !names_here.contains(&name) {
                entry.0 += 1;
                names_here.push(name);
            }
            let k = Kind::of(&value);
            entry.1 = Some(entry.1.map_or(k, |old| old.join(k)));
        }
    }

    /// The draft document (OpenAPI 3.1).
    pub fn document(&self, title: &str) -> Value {
        let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for ((template, method), seen) in &self.operations {
            let mut params: Vec<Value> = template_params(template)
                .into_iter()
                .zip(seen.path_kinds.iter())
                .map(|(name, kind)| {
                    json!({ "name": name, "in": "path", "required": true, "schema": kind.schema() })
                })
                .collect();
            for (name, (count, kind)) in &seen.query {
                params.push(json!({
                    "name": name,
                    "in": "query",
                    "required": *count == seen.requests,
                    "schema": kind.unwrap_or(Kind::String).schema(),
                }));
            }
            let mut op = Map::new();
            op.insert("operationId".into(), operation_id(method, template).into());
            op.insert(
                "x-portcullis-observed".into(),
                json!({ "requests": seen.requests }),
            );
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            if matches!(method.as_str(), "post" | "put" | "patch") {
                // Bodies are not in the access log: declared open, to be written by hand.
                op.insert(
                    "requestBody".into(),
                    json!({ "content": { "application/json": { "schema": {} } } }),
                );
            }
            op.insert(
                "responses".into(),
                json!({ "default": { "description": "as observed" } }),
            );
            paths
                .entry(template.clone())
                .or_default()
                .insert(method.clone(), Value::Object(op));
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": title,
                "version": "0.0.0",
                "description": format!(
                    "Drafted by `portcullis openapi learn` from {} requests; review before enforcing.",
                    self.learned
                ),
            },
            "paths": paths,
        })
    }
}

/// The path with identifier-like segments replaced by `{id}`, `{id2}`, ...; and their kinds.
fn template_of(path: &str) -> (String, Vec<Kind>) {
    let mut out = String::new();
    let mut kinds = Vec::new();
    for segment in path.split('/').skip(1) {
        out.push('/');
        let text = decode(segment);
        if let Some(kind) = identifier_kind(&text) {
            kinds.push(kind);
            let n = kinds.len();
            if n == 1 {
                out.push_str("{id}");
            } else {
                out.push_str(&format!("{{id{n}}}"));
            }
        } else {
            // Braces would read as a template parameter.
            out.push_str(&segment.replace(['{', '}'], "_"));
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, kinds)
}

/// The kind of a segment that names one resource among many: a number, a UUID, or a run of
/// hexadecimal of 16 or more digits (object ids, hashes).
fn identifier_kind(segment: &str) -> Option<Kind> {
    if !segment.is_empty() && segment.len() <= 19 && segment.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Kind::Integer);
    }
    if is_uuid(segment) {
        return Some(Kind::Uuid);
    }
    if segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Kind::String);
    }
    None
}

fn template_params(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// `get /orders/{id}` -> `getOrdersId`.
fn operation_id(method: &str, template: &str) -> String {
    let mut id = method.to_string();
    for word in template.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(lines: &[(&str, &str, u16)]) -> Value {
        let mut l = Learner::default();
        for (method, uri, status) in lines {
            l.observe(&Observed {
                method,
                uri,
                status: *status,
            });
        }
        l.document("t")
    }

    #[test]
    fn identifiers_become_templates_and_query_types_are_the_narrowest_that_fit() {
        let doc = learn(&[
            ("GET", "/orders/17?limit=10&open=true", 200),
            ("GET", "/orders/18?limit=2.5", 200),
            (
                "GET",
                "/orders/3f2c7e1a-1b2c-4d5e-8f90-123456789abc/items/2",
                200,
            ),
            ("DELETE", "/orders/9", 204),
            ("GET", "/orders/1?limit=x", 404),
            ("POST", "/admin", 403),
        ]);
        let get = &doc["paths"]["/orders/{id}"]["get"];
        assert_eq!(get["operationId"], "getOrdersId");
        let params = get["parameters"].as_array().unwrap();
        assert_eq!(params[0]["schema"]["type"], "integer");
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["type"], "number");
        assert_eq!(limit["required"], true);
        let open = params.iter().find(|p| p["name"] == "open").unwrap();
        assert_eq!(open["schema"]["type"], "boolean");
        assert_eq!(open["required"], false);
        let line = &doc["paths"]["/orders/{id}/items/{id2}"]["get"]["parameters"];
        assert_eq!(line[0]["schema"]["format"], "uuid");
        assert_eq!(line[1]["schema"]["type"], "integer");
        assert!(doc["paths"]["/orders/{id}"]["delete"].is_object());
        assert!(
            doc["paths"].get("/admin").is_none(),
            "refused requests are not learned"
        );
    }

    #[test]
    fn odd_input_is_skipped_or_kept_literal() {
        let doc = learn(&[
            ("BREW", "/pot", 200),
            ("GET", "*", 200),
            ("GET", "/a{b}/%zz", 200),
            ("GET", "/", 200),
        ]);
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/a_b_/%zz"), "{paths:?}");
        assert!(paths.contains_key("/"));
        assert_eq!(paths.len(), 2);
    }
}
