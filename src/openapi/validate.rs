//! Checking a request against a [`Contract`]: the head first (path and method, parameters,
//! credentials), then the body (presence, media type, schema). Each finding is a [`Violation`]
//! naming where it is (a JSON pointer into the request: `/query/limit`, `/body/items/0/qty`), the
//! schema keyword, and a short reason written here, never the offending value: the answer goes
//! back to whoever sent it.

use super::compile::{Contract, Credential, In, Media, Operation, Shape};
use super::router::{route, split_path};
use super::Undeclared;
use serde_json::{Map, Value};

/// Most violations collected for one request.
const MAX_VIOLATIONS: usize = 20;
/// Longest JSON pointer kept in a violation.
const MAX_POINTER: usize = 200;

/// One way a request breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `unknown_path`, `method`, `parameter`, `undeclared_query`, `undeclared_header`,
    /// `undeclared_cookie`, `security`, `body_required`, `media_type`, `malformed_body`, `body`,
    /// `undeclared_body_field`.
    pub kind: &'static str,
    /// Where in the request (JSON pointer): `/path`, `/query/limit`, `/body/items/0/qty`.
    pub pointer: String,
    /// The schema keyword or contract rule (`type`, `required`, `minimum`, `method` ...).
    pub keyword: String,
    pub reason: String,
    /// False for what the contract says to log only (`undeclared.* = "log"`).
    pub blocks: bool,
}

/// The result of checking a request's head.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The operation the request is for, when its path and method are in the contract.
    pub operation: Option<usize>,
    pub violations: Vec<Violation>,
    /// For a known path with another method: the methods it has (the `Allow` header).
    pub allow: Vec<String>,
}

impl Outcome {
    /// The status a blocking outcome answers with: the contract's not-found status for an
    /// unknown path, 405 for a method, 415 for a media type, else 400. None when nothing blocks.
    pub fn status(&self, contract: &Contract) -> Option<u16> {
        let blocking: Vec<&Violation> = self.violations.iter().filter(|v| v.blocks).collect();
        let first = blocking.first()?;
        Some(match first.kind {
            "unknown_path" => contract.not_found_status,
            "method" => 405,
            "media_type" => 415,
            "security" => 401,
            _ => 400,
        })
    }
}

/// What a request's head holds, as the validator reads it.
pub struct Head<'a> {
    pub method: &'a str,
    /// The request path as sent (percent-encoded), without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Contract {
    /// Whether `path` is under this contract's base path (a site may hold several APIs).
    pub fn covers(&self, path: &str) -> bool {
        below_base(&self.base_path, path).is_some()
    }

    /// Checks path, method, parameters and credentials.
    pub fn check_head(&self, head: &Head<'_>) -> Outcome {
        let mut out = Outcome::default();
        let Some(rest) = below_base(&self.base_path, head.path) else {
            out.push(self.undeclared(
                self.undeclared.paths,
                "unknown_path",
                "/path",
                "path",
                "no such path in the API",
            ));
            return out;
        };
        let segments = split_path(rest);
        let Some((template_idx, bound)) = route(
            self.operations.iter().map(|o| &o.template).enumerate(),
            &segments,
        ) else {
            out.push(self.undeclared(
                self.undeclared.paths,
                "unknown_path",
                "/path",
                "path",
                "no such path in the API",
            ));
            return out;
        };
        let template = &self.operations[template_idx].template.text;
        let method = head.method.to_ascii_uppercase();
        let on_path: Vec<usize> = (0..self.operations.len())
            .filter(|&i| self.operations[i].template.text == *template)
            .collect();
        let Some(&op_idx) = on_path
            .iter()
            .find(|&&i| self.operations[i].method == method)
        else {
            out.allow = on_path
                .iter()
                .map(|&i| self.operations[i].method.clone())
                .collect();
            out.push(self.undeclared(
                self.undeclared.methods,
                "method",
                "/method",
                "method",
                "the path does not take this method",
            ));
            return out;
        };
        out.operation = Some(op_idx);
        let op = &self.operations[op_idx];
        let query = query_pairs(head.query.unwrap_or(""));
        let cookies = cookie_pairs(&head.headers);
        self.check_params(op, &bound, &query, &head.headers, &cookies, &mut out);
        self.check_undeclared(op, &query, &head.headers, &cookies, &mut out);
        check_security(op, &query, &head.headers, &cookies, &mut out);
        out.violations.truncate(MAX_VIOLATIONS);
        out
    }

    fn undeclared(
        &self,
        policy: Undeclared,
        kind: &'static str,
        pointer: &str,
        keyword: &str,
        reason: &str,
    ) -> Violation {
        Violation {
            kind,
            pointer: pointer.to_string(),
            keyword: keyword.to_string(),
            reason: reason.to_string(),
            blocks: policy == Undeclared::Block,
        }
    }

    fn check_params(
        &self,
        op: &Operation,
        bound: &[(String, String)],
        query: &[(String, String)],
        headers: &[(&str, &str)],
        cookies: &[(String, String)],
        out: &mut Outcome,
    ) {
        for p in &op.params {
            let values: Vec<String> = match p.location {
                In::Path => bound
                    .iter()
                    .filter(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
                In::Query => query
                    .iter()
                    .filter(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
                In::Header => headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&p.name))
                    .map(|(_, v)| v.to_string())
                    .collect(),
                In::Cookie => cookies
                    .iter()
                    .filter(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
            };
            let pointer = format!("/{}/{}", p.location.name(), escape(&p.name));
            if values.is_empty() {
                if p.required {
                    out.push(Violation {
                        kind: "parameter",
                        pointer,
                        keyword: "required".into(),
                        reason: "a required parameter is missing".into(),
                        blocks: true,
                    });
                }
                continue;
            }
            let Some(validator) = &p.validator else {
                continue;
            };
            let value = match &p.shape {
                Shape::Array(items) => {
                    let parts: Vec<String> = if p.explode {
                        values
                    } else {
                        values
                            .iter()
                            .flat_map(|v| v.split(','))
                            .map(str::to_string)
                            .collect()
                    };
                    Value::Array(parts.iter().map(|v| coerce(v, items)).collect())
                }
                // One value where the schema takes one: a second copy is what a backend that
                // reads the last one would see unvalidated (parameter pollution).
                _ if values.len() > 1 => {
                    out.push(Violation {
                        kind: "parameter",
                        pointer,
                        keyword: "type".into(),
                        reason: "given more than once where the schema takes one value".into(),
                        blocks: true,
                    });
                    continue;
                }
                shape => coerce(&values[0], shape),
            };
            push_schema_errors(validator, &value, &pointer, "parameter", out);
        }
    }

    fn check_undeclared(
        &self,
        op: &Operation,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        cookies: &[(String, String)],
        out: &mut Outcome,
    ) {
        let declared = |loc: In, name: &str| {
            op.params
                .iter()
                .any(|p| p.location == loc && p.name.eq_ignore_ascii_case(name))
                || op.security.iter().flatten().any(|c| match (c, loc) {
                    (Credential::Query(n), In::Query) | (Credential::Cookie(n), In::Cookie) => {
                        n == name
                    }
                    (Credential::Header(n), In::Header) => n.eq_ignore_ascii_case(name),
                    _ => false,
                })
        };
        for (name, _) in query {
            if !declared(In::Query, name) {
                let policy = self.undeclared.query;
                out.push(self.undeclared(
                    policy,
                    "undeclared_query",
                    &format!("/query/{}", escape(name)),
                    "parameters",
                    "the operation declares no such query parameter",
                ));
            }
        }
        // Only custom (`X-`) headers: every client sends standard ones no document lists.
        if self.undeclared.headers == Undeclared::Block {
            for (name, _) in headers {
                if name.len() > 2
                    && name[..2].eq_ignore_ascii_case("x-")
                    && !declared(In::Header, name)
                {
                    out.push(self.undeclared(
                        Undeclared::Block,
                        "undeclared_header",
                        &format!("/header/{}", escape(&name.to_ascii_lowercase())),
                        "parameters",
                        "the operation declares no such header",
                    ));
                }
            }
        }
        if self.undeclared.cookies == Undeclared::Block {
            for (name, _) in cookies {
                if !declared(In::Cookie, name) {
                    out.push(self.undeclared(
                        Undeclared::Block,
                        "undeclared_cookie",
                        &format!("/cookie/{}", escape(name)),
                        "parameters",
                        "the operation declares no such cookie",
                    ));
                }
            }
        }
    }

    /// The query parameters of an operation whose schemas are closed (`Param::closed`): once a
    /// request passed the contract without a violation, their values need no signature scan.
    pub fn closed_query_params(&self, op_idx: usize) -> impl Iterator<Item = &str> {
        self.operations
            .get(op_idx)
            .into_iter()
            .flat_map(|op| op.params.iter())
            .filter(|p| p.location == In::Query && p.closed)
            .map(|p| p.name.as_str())
    }

    /// Checks a body against the operation's request body: presence, media type, schema.
    pub fn check_body(
        &self,
        op_idx: usize,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<Violation> {
        let mut out = Outcome::default();
        let Some(op) = self.operations.get(op_idx) else {
            return Vec::new();
        };
        let Some(spec) = &op.body else {
            return Vec::new();
        };
        if body.is_empty() {
            if spec.required {
                out.push(Violation {
                    kind: "body_required",
                    pointer: "/body".into(),
                    keyword: "required".into(),
                    reason: "the operation requires a request body".into(),
                    blocks: true,
                });
            }
            return out.violations;
        }
        let mime = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some(media) = spec.media.iter().find(|m| media_matches(&m.range, &mime)) else {
            out.push(Violation {
                kind: "media_type",
                pointer: "/header/content-type".into(),
                keyword: "content".into(),
                reason: "the operation does not take this media type".into(),
                blocks: true,
            });
            return out.violations;
        };
        match read_body(media, &mime, content_type.unwrap_or(""), body) {
            Ok(Some(instance)) => {
                if let Some(v) = &media.validator {
                    push_schema_errors(v, &instance, "/body", "body", &mut out);
                }
            }
            Ok(None) => {}
            Err(reason) => out.push(Violation {
                kind: "malformed_body",
                pointer: "/body".into(),
                keyword: "content".into(),
                reason,
                blocks: true,
            }),
        }
        // A field the schema never declared: blocked or logged as the contract says. Where the
        // body breaks the schema otherwise too, `unevaluatedProperties` also names the fields
        // whose own subschema failed (JSON Schema drops a failed branch's annotations): the
        // other findings are reported alone then.
        let undeclared = |v: &Violation| {
            v.keyword == "unevaluatedProperties" || v.keyword == "additionalProperties"
        };
        if out.violations.iter().any(|v| !undeclared(v)) {
            out.violations.retain(|v| !undeclared(v));
        }
        for v in &mut out.violations {
            if v.keyword == "unevaluatedProperties" || v.keyword == "additionalProperties" {
                v.kind = "undeclared_body_field";
                v.blocks = self.undeclared.body_fields == Undeclared::Block;
            }
        }
        out.violations.truncate(MAX_VIOLATIONS);
        out.violations
    }
}

impl Outcome {
    /// Adds a violation (up to `MAX_VIOLATIONS`), its pointer cut to `MAX_POINTER` bytes: a
    /// pointer names request parts (an undeclared parameter, a body field), so its length is
    /// the client's to choose.
    fn push(&mut self, mut v: Violation) {
        if self.violations.len() >= MAX_VIOLATIONS {
            return;
        }
        if v.pointer.len() > MAX_POINTER {
            let mut cut = MAX_POINTER;
            while !v.pointer.is_char_boundary(cut) {
                cut -= 1;
            }
            v.pointer.truncate(cut);
        }
        self.violations.push(v);
    }
}

/// The part of `path` below `base` (`/orders-api/orders/7` -> `/orders/7`), or None when the path
/// is not under it.
fn below_base<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    let path = path.split('?').next().unwrap_or(path);
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

fn media_matches(range: &str, mime: &str) -> bool {
    if range == mime || range == "*/*" {
        return true;
    }
    match range.strip_suffix("/*") {
        Some(top) => mime.split('/').next() == Some(top),
        None => false,
    }
}

/// The body as the JSON instance its schema validates: JSON parsed, a form read into an object
/// by the schema's property shapes. None for media types the edge does not read (binary).
fn read_body(
    media: &Media,
    mime: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Option<Value>, String> {
    if mime == "application/json" || mime.ends_with("+json") {
        return serde_json::from_slice(body)
            .map(Some)
            .map_err(|_| "the body is not valid JSON".to_string());
    }
    if mime == "application/x-www-form-urlencoded" || mime == "multipart/form-data" {
        let parsed = crate::waf::body::parse_body(Some(content_type), body, false);
        if parsed.error.is_some() {
            return Err("the form body cannot be read".into());
        }
        let mut object = Map::new();
        for (name, value) in parsed.arg_pairs() {
            let shape = media
                .fields
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&Shape::String, |(_, s)| s);
            match shape {
                Shape::Array(items) => {
                    let entry = object
                        .entry(name.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = entry {
                        a.push(coerce(value, items));
                    }
                }
                shape => {
                    object.insert(name.to_string(), coerce(value, shape));
                }
            }
        }
        return Ok(Some(Value::Object(object)));
    }
    Ok(None)
}

/// A parameter's text as the JSON value its schema expects; text that does not read as that type
/// stays a string, and the schema's `type` reports it.
fn coerce(text: &str, shape: &Shape) -> Value {
    match shape {
        Shape::Integer => text
            .parse::<i64>()
            .map_or_else(|_| text.into(), Value::from),
        Shape::Number => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| text.into(), Value::Number),
        Shape::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => text.into(),
        },
        _ => text.into(),
    }
}

fn push_schema_errors(
    validator: &jsonschema::Validator,
    instance: &Value,
    base: &str,
    kind: &'static str,
    out: &mut Outcome,
) {
    // The common case, a valid instance, takes the validator's fast path (no error objects,
    // no annotations collected); only an invalid one is walked again for its errors.
    if validator.is_valid(instance) {
        return;
    }
    for e in validator.iter_errors(instance).take(MAX_VIOLATIONS) {
        let keyword = e.kind().keyword().to_string();
        let pointer = format!("{base}{}", e.instance_path().as_str());
        out.push(Violation {
            kind,
            reason: reason(e.kind()),
            pointer,
            keyword,
            blocks: true,
        });
    }
}

/// A short reason for a schema violation, from the schema's side only (its limits and names,
/// never the value that was sent).
fn reason(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::Type { .. } => "has the wrong type".into(),
        K::Required { property } => format!("lacks the required property {property}"),
        K::Minimum { limit } => format!("is below the minimum of {limit}"),
        K::Maximum { limit } => format!("is above the maximum of {limit}"),
        K::ExclusiveMinimum { limit } => format!("is not above {limit}"),
        K::ExclusiveMaximum { limit } => format!("is not below {limit}"),
        K::MinLength { limit } => format!("is shorter than {limit} characters"),
        K::MaxLength { limit } => format!("is longer than {limit} characters"),
        K::MinItems { limit } => format!("has fewer than {limit} items"),
        K::MaxItems { limit } => format!("has more than {limit} items"),
        K::Pattern { .. } => "does not match the required pattern".into(),
        K::Enum { .. } | K::Constant { .. } => "is not one of the allowed values".into(),
        K::Format { format } => format!("is not a valid {format}"),
        K::UnevaluatedProperties { .. } | K::AdditionalProperties { .. } => {
            "holds a property the schema does not declare".into()
        }
        other => format!("does not match the schema ({})", other.keyword()),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Query pairs, percent-decoded (`+` as space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let mut args = Vec::new();
    crate::waf::body::parse_urlencoded_into(query, &mut args);
    args.into_iter()
        .filter(|(n, _)| !n.is_empty())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

fn cookie_pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The operation's credentials are present (one alternative entirely): presence only, the
/// gateway validates them.
fn check_security(
    op: &Operation,
    query: &[(String, String)],
    headers: &[(&str, &str)],
    cookies: &[(String, String)],
    out: &mut Outcome,
) {
    if op.security.is_empty() {
        return;
    }
    let present = |c: &Credential| match c {
        Credential::Header(n) => headers
            .iter()
            .any(|(h, v)| h.eq_ignore_ascii_case(n) && !v.trim().is_empty()),
        Credential::Query(n) => query.iter().any(|(q, v)| q == n && !v.is_empty()),
        Credential::Cookie(n) => cookies.iter().any(|(k, v)| k == n && !v.is_empty()),
        Credential::Authorization(scheme) => headers.iter().any(|(h, v)| {
            h.eq_ignore_ascii_case("authorization")
                && v.split_whitespace()
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                && v.split_whitespace().nth(1).is_some()
        }),
    };
    if !op.security.iter().any(|alt| alt.iter().all(present)) {
        // Named after the first credential missing from the first alternative.
        let missing = op.security[0].iter().find(|c| !present(c));
        let pointer = match missing {
            Some(Credential::Header(n)) => format!("/header/{}", n.to_ascii_lowercase()),
            Some(Credential::Query(n)) => format!("/query/{n}"),
            Some(Credential::Cookie(n)) => format!("/cookie/{n}"),
            Some(Credential::Authorization(_)) | None => "/header/authorization".into(),
        };
        out.push(Violation {
            kind: "security",
            pointer,
            keyword: "security".into(),
            reason: "the credentials the operation requires are missing".into(),
            blocks: true,
        });
    }
}
