//! An OpenAPI document compiled into a [`Contract`]: each operation with its path template, its
//! parameters and request body and their JSON Schema validators, and its credential
//! requirements. Compiled once, at load; a reload compiles the new document beside the running
//! one and swaps them with the rest of the plan.

use super::load::{DocError, DocumentSet};
use super::router::PathTemplate;
use super::{ContractMode, OpenApiConfig, UndeclaredConfig};
use serde_json::{Map, Value};
use std::path::Path;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A compiled API contract.
pub struct Contract {
    /// The document's file name, for logs.
    pub name: String,
    pub base_path: String,
    pub mode: ContractMode,
    pub undeclared: UndeclaredConfig,
    pub not_found_status: u16,
    pub expose_violations: bool,
    /// The WAF skips query values this contract proved inert (`waf_skips_typed_values`).
    pub waf_skips_typed_values: bool,
    pub operations: Vec<Operation>,
    /// What the document says that the edge reads but does not enforce (a parameter described
    /// by `content`, a `deepObject` style, a schema for an XML body): `portcullis check` and
    /// `portcullis openapi check` print them, so an operator knows where the contract is looser
    /// than the document.
    pub notes: Vec<DocError>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("name", &self.name)
            .field("base_path", &self.base_path)
            .field("operations", &self.operations.len())
            .finish()
    }
}

/// One operation (a method on a path).
pub struct Operation {
    /// `operationId`, or `METHOD /template` when the document gives none.
    pub id: String,
    /// Upper case (`GET`).
    pub method: String,
    pub template: PathTemplate,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    /// Alternatives: the request must meet every check of one of them. Empty: no credentials.
    pub security: Vec<Vec<Credential>>,
}

/// Where a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    pub fn name(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
        }
    }
}

/// A declared parameter.
pub struct Param {
    pub name: String,
    pub location: In,
    pub required: bool,
    /// The JSON type its text is read as before validation (`integer`, `array` ...).
    pub shape: Shape,
    /// `form` arrays: `explode` (repeated `?a=1&a=2`) or comma separated (`?a=1,2`).
    pub explode: bool,
    pub validator: Option<jsonschema::Validator>,
    /// Every value the schema admits is inert text: a number, a boolean, a UUID, a date, one of
    /// an enum's literals (or an array of those). A value that validated needs no signature
    /// scan (`closed_schema`).
    pub closed: bool,
}

/// How a parameter's text becomes the JSON value its schema validates.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    String,
    Integer,
    Number,
    Boolean,
    Array(Box<Shape>),
    Object,
}

/// A declared request body.
pub struct RequestBody {
    pub required: bool,
    /// Media ranges the operation takes (`application/json`, `application/*`), each with the
    /// schema validator of its content, and the property shapes of form bodies.
    pub media: Vec<Media>,
}

/// One media type of a request body.
pub struct Media {
    pub range: String,
    pub validator: Option<jsonschema::Validator>,
    /// For form bodies: the shape of each property (read from text like a query parameter).
    pub fields: Vec<(String, Shape)>,
}

/// One credential check of a security requirement. Presence only: the gateway validates tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Header(String),
    Query(String),
    Cookie(String),
    /// `Authorization: <scheme> ...` (`Bearer`, `Basic`; OAuth 2 and OpenID Connect: `Bearer`).
    Authorization(String),
}

/// Reads, checks and compiles one `[[sites.openapi]]` document. `base_dir` is the configuration
/// file's directory.
pub fn compile(cfg: &OpenApiConfig, base_dir: &Path) -> Result<Contract, Vec<DocError>> {
    let path = if cfg.document.is_absolute() {
        cfg.document.clone()
    } else {
        base_dir.join(&cfg.document)
    };
    let docs = DocumentSet::load(&path).map_err(|e| vec![e])?;
    Compiler::new(&docs).contract(cfg)
}

/// Compiles the operations of a loaded document set.
pub struct Compiler<'d> {
    docs: &'d DocumentSet,
    /// The documents indexed once for the JSON Schema compiler: every validator is built against
    /// it, so a document with hundreds of schemas is not re-read for each (`validator`).
    registry: Option<jsonschema::Registry<'d>>,
    errors: Vec<DocError>,
    notes: Vec<DocError>,
}

impl<'d> Compiler<'d> {
    pub fn new(docs: &'d DocumentSet) -> Self {
        let mut errors = Vec::new();
        let registry = jsonschema::Registry::new()
            .draft(jsonschema::Draft::Draft202012)
            .retriever(docs.retriever())
            .extend(docs.documents())
            .and_then(|builder| builder.prepare());
        let registry = match registry {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(DocError {
                    file: docs.root_path.clone(),
                    line: None,
                    pointer: String::new(),
                    message: format!("the schemas cannot be indexed: {e}"),
                });
                None
            }
        };
        Compiler {
            docs,
            registry,
            errors,
            notes: Vec::new(),
        }
    }

    fn at(&self, pointer: &str, message: impl Into<String>) -> DocError {
        DocError {
            file: self.docs.root_path.clone(),
            line: self.docs.line_of(pointer),
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }

    fn error(&mut self, pointer: &str, message: impl Into<String>) {
        let e = self.at(pointer, message);
        self.errors.push(e);
    }

    /// Something the edge will not enforce; reported once per place.
    fn note(&mut self, pointer: &str, message: impl Into<String>) {
        let n = self.at(pointer, message);
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    fn contract(mut self, cfg: &OpenApiConfig) -> Result<Contract, Vec<DocError>> {
        let root = self.docs.root().clone();
        let base_path = cfg
            .base_path
            .clone()
            .or_else(|| server_base_path(&root))
            .unwrap_or_else(|| "/".to_string());
        let base_path = normalise_base(&base_path);
        let global_security = root.get("security").cloned();
        let schemes = root
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut operations = Vec::new();
        let Some(paths) = root.get("paths").and_then(Value::as_object) else {
            self.error("/paths", "the document has no paths");
            return Err(self.errors);
        };
        for (template_text, item) in paths {
            let item_ptr = format!("/paths/{}", escape(template_text));
            let template = match PathTemplate::parse(template_text) {
                Ok(t) => t,
                Err(e) => {
                    self.error(&item_ptr, e);
                    continue;
                }
            };
            let root_uri = self.docs.root_uri.clone();
            let (item, item_uri, item_ptr) = self.deref(item, &root_uri, &item_ptr);
            let shared = item.get("parameters").cloned().unwrap_or(Value::Null);
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let ptr = format!("{item_ptr}/{method}");
                let id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{} {}", method.to_uppercase(), template_text));
                let params = self.params(&shared, &item_ptr, op.get("parameters"), &item_uri, &ptr);
                let body = op
                    .get("requestBody")
                    .map(|b| self.request_body(b, &item_uri, &format!("{ptr}/requestBody")));
                let security = op.get("security").or(global_security.as_ref());
                let security = self.security(security, &schemes, &ptr);
                operations.push(Operation {
                    id,
                    method: method.to_uppercase(),
                    template: template.clone(),
                    params,
                    body,
                    security,
                });
            }
        }
        if !self.errors.is_empty() {
            // Path-level parameters are compiled for each method: report each finding once.
            let mut seen = Vec::new();
            self.errors.retain(|e| {
                let key = e.to_string();
                let new = !seen.contains(&key);
                seen.push(key);
                new
            });
            return Err(self.errors);
        }
        Ok(Contract {
            name: self
                .docs
                .root_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            base_path,
            mode: cfg.mode,
            undeclared: cfg.undeclared,
            not_found_status: cfg.not_found_status,
            expose_violations: cfg.expose_violations,
            waf_skips_typed_values: cfg.skips_typed_values(),
            operations,
            notes: self.notes,
        })
    }

    /// Follows `$ref`s (bounded) to the object they name; returns it with the URI of the
    /// document that holds it and its JSON pointer there (`ptr` itself when no `$ref` was
    /// followed).
    fn deref(&mut self, v: &Value, uri: &str, ptr: &str) -> (Value, String, String) {
        let mut current = v.clone();
        let mut current_uri = uri.to_string();
        let mut current_ptr = ptr.to_string();
        for _ in 0..16 {
            let Some(r) = current
                .get("$ref")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return (current, current_uri, current_ptr);
            };
            match self.docs.resolve(&current_uri, &r) {
                Some((target, target_uri)) => {
                    current = target.clone();
                    current_uri = target_uri;
                    current_ptr = r.split_once('#').map_or("", |(_, p)| p).to_string();
                }
                None => {
                    self.error(ptr, format!("$ref {r:?} points at nothing"));
                    return (Value::Null, current_uri, current_ptr);
                }
            }
        }
        self.error(ptr, "$ref chain too long or circular");
        (Value::Null, current_uri, current_ptr)
    }

    fn params(
        &mut self,
        shared: &Value,
        item_ptr: &str,
        own: Option<&Value>,
        uri: &str,
        ptr: &str,
    ) -> Vec<Param> {
        let mut out: Vec<Param> = Vec::new();
        let lists = [
            (shared, format!("{item_ptr}/parameters")),
            (own.unwrap_or(&Value::Null), format!("{ptr}/parameters")),
        ];
        for (list, list_ptr) in lists {
            let Some(items) = list.as_array() else {
                continue;
            };
            for (i, p) in items.iter().enumerate() {
                let p_ptr = format!("{list_ptr}/{i}");
                let (p, p_uri, p_ptr) = self.deref(p, uri, &p_ptr);
                let Some(param) = self.param(&p, &p_uri, &p_ptr) else {
                    continue;
                };
                // An operation's parameter replaces a path-level one of the same name and place.
                out.retain(|q| {
                    !(q.name.eq_ignore_ascii_case(&param.name) && q.location == param.location)
                });
                out.push(param);
            }
        }
        out
    }

    fn param(&mut self, p: &Value, uri: &str, ptr: &str) -> Option<Param> {
        let name = p.get("name").and_then(Value::as_str);
        let location = match p.get("in").and_then(Value::as_str) {
            Some("path") => In::Path,
            Some("query") => In::Query,
            Some("header") => In::Header,
            Some("cookie") => In::Cookie,
            other => {
                let found = other.map_or("nothing".to_string(), |o| format!("{o:?}"));
                self.error(
                    ptr,
                    format!("parameter `in` is {found}, not path, query, header or cookie"),
                );
                return None;
            }
        };
        let Some(name) = name else {
            self.error(ptr, "parameter without a name");
            return None;
        };
        let mut closed = false;
        let (shape, validator) = match p.get("schema") {
            Some(schema) => match self.schema_uri(p, uri, ptr) {
                Some(schema_uri) => {
                    closed = self.closed_schema(schema, uri, 0);
                    (self.shape(schema, uri, 0), self.validator(&schema_uri))
                }
                None => (Shape::String, None),
            },
            None => {
                if p.get("content").is_some() {
                    self.note(
                        ptr,
                        "a parameter described by `content` is checked for presence only",
                    );
                }
                (Shape::String, None)
            }
        };
        let style = p.get("style").and_then(Value::as_str);
        if let Some(other) = style.filter(|s| !matches!(*s, "form" | "simple")) {
            self.note(
                &format!("{ptr}/style"),
                format!("style {other:?} is not read: the value is validated as one string"),
            );
        }
        let style_form = style.is_none_or(|s| s == "form");
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style_form);
        Some(Param {
            name: name.to_string(),
            location,
            required: location == In::Path
                || p.get("required").and_then(Value::as_bool) == Some(true),
            shape,
            explode,
            closed: closed && validator.is_some(),
            validator,
        })
    }

    fn request_body(&mut self, b: &Value, uri: &str, ptr: &str) -> RequestBody {
        let (b, b_uri, ptr) = self.deref(b, uri, ptr);
        let ptr = ptr.as_str();
        let mut media = Vec::new();
        if let Some(content) = b.get("content").and_then(Value::as_object) {
            for (range, m) in content {
                let m_ptr = format!("{ptr}/content/{}", escape(range));
                let schema_uri = m
                    .get("schema")
                    .and_then(|_| self.schema_uri(m, &b_uri, &m_ptr));
                let validator = schema_uri.and_then(|u| self.validator(&u));
                if validator.is_some() && !body_is_read(range) {
                    self.note(
                        &m_ptr,
                        "bodies of this media type are checked for presence and media type; \
                         the edge does not read them against the schema",
                    );
                }
                let fields = match (&validator, m.get("schema")) {
                    (Some(_), Some(schema)) => self.fields(schema, &b_uri),
                    _ => Vec::new(),
                };
                media.push(Media {
                    range: range.to_ascii_lowercase(),
                    validator,
                    fields,
                });
            }
        }
        RequestBody {
            required: b.get("required").and_then(Value::as_bool).unwrap_or(false),
            media,
        }
    }

    /// The shapes of an object schema's properties (for form bodies).
    fn fields(&mut self, schema: &Value, uri: &str) -> Vec<(String, Shape)> {
        let (schema, s_uri, _) = self.deref(schema, uri, "");
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        props
            .iter()
            .map(|(k, v)| (k.clone(), self.shape(v, &s_uri, 0)))
            .collect()
    }

    /// Whether every value `schema` admits is inert: its type is integer, number or boolean; or
    /// it is a string whose format the validator checks and whose syntax has no room for
    /// markup or code (uuid, date, date-time, time, ipv4, ipv6); or it lists its values (`enum`,
    /// `const`: the document's own literals); or an array of such. Compositions (`allOf`, ...)
    /// and patterns are not judged: they stay open, and scanned.
    fn closed_schema(&mut self, schema: &Value, uri: &str, depth: u8) -> bool {
        let (schema, s_uri, _) = self.deref(schema, uri, "");
        let Some(map) = schema.as_object() else {
            return false;
        };
        if ["allOf", "anyOf", "oneOf", "not", "if"]
            .iter()
            .any(|k| map.contains_key(*k))
        {
            return false;
        }
        let scalars = |v: &Value| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|x| !x.is_object() && !x.is_array()))
        };
        if map.get("enum").is_some_and(scalars) {
            return true;
        }
        if map
            .get("const")
            .is_some_and(|c| !c.is_object() && !c.is_array())
        {
            return true;
        }
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return false,
        };
        types.iter().all(|t| match *t {
            "integer" | "number" | "boolean" | "null" => true,
            "string" => map.get("format").and_then(Value::as_str).is_some_and(|f| {
                matches!(f, "uuid" | "date" | "date-time" | "time" | "ipv4" | "ipv6")
            }),
            "array" if depth < 2 => {
                let items = map.get("items").cloned().unwrap_or(Value::Null);
                self.closed_schema(&items, &s_uri, depth + 1)
            }
            _ => false,
        })
    }

    /// The JSON type a parameter's text is read as.
    fn shape(&mut self, schema: &Value, uri: &str, depth: u8) -> Shape {
        let (schema, s_uri, _) = self.deref(schema, uri, "");
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string")
                .to_string(),
            _ => "string".to_string(),
        };
        match ty.as_str() {
            "integer" => Shape::Integer,
            "number" => Shape::Number,
            "boolean" => Shape::Boolean,
            "object" => Shape::Object,
            "array" if depth < 2 => {
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                Shape::Array(Box::new(self.shape(&items, &s_uri, depth + 1)))
            }
            _ => Shape::String,
        }
    }

    /// The absolute `uri#pointer` of the `schema` member of `holder` (at `ptr` in `uri`), or of
    /// the `$ref` target it holds; None (and an error at the `$ref`, with its line) when that
    /// target does not exist.
    fn schema_uri(&mut self, holder: &Value, uri: &str, ptr: &str) -> Option<String> {
        let reference = holder
            .get("schema")
            .and_then(|s| s.get("$ref"))
            .and_then(Value::as_str);
        if let Some(r) = reference {
            if self.docs.resolve(uri, r).is_none() {
                self.error(
                    &format!("{ptr}/schema/$ref"),
                    format!("$ref {r:?} points at nothing"),
                );
                return None;
            }
        }
        Some(pointer_of(uri, ptr, holder, "schema"))
    }

    /// A validator for the schema at an absolute `uri#pointer`; its `$ref`s resolve in the
    /// contract's documents only.
    fn validator(&mut self, schema_uri: &str) -> Option<jsonschema::Validator> {
        let formats_checked = ["int32", "int64"];
        let registry = self.registry.as_ref()?;
        let mut opts = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .with_registry(registry)
            .offline();
        for f in formats_checked {
            // Turned into bounds at load (`load::rewrite_integer_formats`): nothing left to check.
            opts = opts.with_format(f, |_: &str| true);
        }
        opts = opts.with_format("byte", |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        });
        match opts.build(&serde_json::json!({ "$ref": schema_uri })) {
            Ok(v) => Some(v),
            Err(e) => {
                let ptr = schema_uri.split_once('#').map_or("", |(_, p)| p);
                let ptr = percent_encoding::percent_decode_str(ptr)
                    .decode_utf8_lossy()
                    .into_owned();
                self.error(&ptr, format!("schema does not compile: {e}"));
                None
            }
        }
    }

    fn security(
        &mut self,
        requirements: Option<&Value>,
        schemes: &Map<String, Value>,
        ptr: &str,
    ) -> Vec<Vec<Credential>> {
        let Some(list) = requirements.and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for req in list {
            let Some(req) = req.as_object() else { continue };
            if req.is_empty() {
                // `{}` among the alternatives: anonymous access is allowed.
                return Vec::new();
            }
            let mut checks = Vec::new();
            for name in req.keys() {
                let Some(scheme) = schemes.get(name) else {
                    self.error(
                        ptr,
                        format!("security scheme {name:?} is not in components.securitySchemes"),
                    );
                    continue;
                };
                let field = |k: &str| {
                    scheme
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                checks.push(match field("type").as_str() {
                    "apiKey" => match field("in").as_str() {
                        "header" => Credential::Header(field("name")),
                        "query" => Credential::Query(field("name")),
                        _ => Credential::Cookie(field("name")),
                    },
                    "http" => Credential::Authorization(capitalise(&field("scheme"))),
                    _ => Credential::Authorization("Bearer".into()),
                });
            }
            out.push(checks);
        }
        out
    }
}

/// `uri#pointer` of the `key` member of the object at `ptr` (itself read from `uri`), or of the
/// `$ref` target it holds.
fn pointer_of(uri: &str, ptr: &str, holder: &Value, key: &str) -> String {
    match holder
        .get(key)
        .and_then(|s| s.get("$ref"))
        .and_then(Value::as_str)
    {
        Some(r) if r.starts_with('#') => format!("{uri}{r}"),
        Some(r) => {
            let base = uri.trim_start_matches("file://");
            let (file, frag) = r.split_once('#').unwrap_or((r, ""));
            let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
            format!("file://{}#{frag}", dir.join(file).display())
        }
        None => format!("{uri}#{}", uri_fragment(&format!("{ptr}/{key}"))),
    }
}

/// A JSON pointer written as a URI fragment: the characters a URI may not hold (the braces of
/// path templates, spaces) percent-encoded, as RFC 6901 section 6 says.
fn uri_fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || "/~-._!$&'()*+,;=:@".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Whether the validator reads bodies of this media range (JSON and forms; `validate::read_body`).
fn body_is_read(range: &str) -> bool {
    let range = range.to_ascii_lowercase();
    range == "application/json"
        || range.ends_with("+json")
        || range == "application/x-www-form-urlencoded"
        || range == "multipart/form-data"
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn capitalise(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The path of the first `servers` URL (`https://gw.example/orders-api` -> `/orders-api`).
fn server_base_path(root: &Value) -> Option<String> {
    let url = root.pointer("/servers/0/url")?.as_str()?;
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
    } else {
        after_scheme
    };
    Some(path.to_string())
}

fn normalise_base(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}
