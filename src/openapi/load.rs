//! Reading an OpenAPI document and every document its `$ref`s name, at load time.
//!
//! Documents are YAML or JSON (YAML is read as JSON's superset). A `$ref` to another file is
//! resolved relative to the document that holds it and must stay inside the root document's
//! directory; nothing is ever fetched over the network. Every document loaded is kept under its
//! `file://` URI, and the validators resolve their `$ref`s from that set only
//! ([`DocumentSet::retriever`]).
//!
//! OpenAPI 3.0 schemas are a dialect of JSON Schema draft 4 (`nullable`, boolean
//! `exclusiveMinimum`); they are rewritten here into draft 2020-12, the dialect of OpenAPI 3.1,
//! so one validator serves both.

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Most documents one contract may pull in through `$ref`s.
const MAX_DOCUMENTS: usize = 64;
/// Largest document read.
const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// An error reading or compiling a document: the file, the line where the source shows it, the
/// JSON pointer inside the document, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.pointer.is_empty() {
            write!(f, ": {}", self.pointer)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The OpenAPI version a document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V30,
    V31,
}

/// The root document and every document it references, by `file://` URI.
#[derive(Debug, Clone)]
pub struct DocumentSet {
    pub root_uri: String,
    pub root_path: PathBuf,
    pub version: Version,
    docs: Arc<HashMap<String, Value>>,
    sources: HashMap<String, String>,
}

impl DocumentSet {
    /// Reads `path` and everything it references.
    pub fn load(path: &Path) -> Result<DocumentSet, DocError> {
        let root_path = std::fs::canonicalize(path).map_err(|e| DocError {
            file: path.to_path_buf(),
            line: None,
            pointer: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let root_dir = root_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut docs = HashMap::new();
        let mut sources = HashMap::new();
        let mut queue = vec![root_path.clone()];
        while let Some(file) = queue.pop() {
            let uri = file_uri(&file);
            if docs.contains_key(&uri) {
                continue;
            }
            if docs.len() >= MAX_DOCUMENTS {
                return Err(error(
                    &file,
                    "",
                    format!("more than {MAX_DOCUMENTS} documents referenced"),
                ));
            }
            let (value, text) = read_document(&file)?;
            for target in external_refs(&value) {
                let next = resolve_relative(&file, &target)
                    .filter(|p| p.starts_with(&root_dir))
                    .ok_or_else(|| {
                        error(&file, "", format!("$ref {target:?} leaves the document's directory or is not a relative file"))
                    })?;
                queue.push(next);
            }
            sources.insert(uri.clone(), text);
            docs.insert(uri, value);
        }
        let root_uri = file_uri(&root_path);
        let declared = match docs[&root_uri].get("openapi") {
            Some(Value::String(v)) => Some(v.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let version = match declared.as_deref() {
            Some(v) if v.starts_with("3.0") => Version::V30,
            Some(v) if v.starts_with("3.1") => Version::V31,
            Some(v) => {
                return Err(error(
                    &root_path,
                    "/openapi",
                    format!("OpenAPI {v} is not supported (3.0 and 3.1 are)"),
                ))
            }
            None => {
                return Err(error(
                    &root_path,
                    "/openapi",
                    "not an OpenAPI document: no `openapi` version".into(),
                ))
            }
        };
        if version == Version::V30 {
            for doc in docs.values_mut() {
                rewrite_30_schemas(doc);
            }
        }
        for doc in docs.values_mut() {
            rewrite_integer_formats(doc);
        }
        close_objects(&mut docs);
        Ok(DocumentSet {
            root_uri,
            root_path,
            version,
            docs: Arc::new(docs),
            sources,
        })
    }

    /// The root document.
    pub fn root(&self) -> &Value {
        &self.docs[&self.root_uri]
    }

    /// Resolves a `$ref` (relative to `base_uri`) to the value it points at, and the URI of the
    /// document that holds it.
    pub fn resolve<'a>(&'a self, base_uri: &str, reference: &str) -> Option<(&'a Value, String)> {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let doc_uri = if file.is_empty() {
            base_uri.to_string()
        } else {
            let base = base_uri.strip_prefix("file://")?;
            file_uri(&resolve_relative(Path::new(base), file)?)
        };
        let doc = self.docs.get(&doc_uri)?;
        doc.pointer(pointer).map(|v| (v, doc_uri))
    }

    /// The line of the root document where `pointer` is written, found the simple way: the line
    /// of the last key of the pointer after the lines of the keys before it.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let text = self.sources.get(&self.root_uri)?;
        let mut from = 0;
        let mut line = None;
        for key in pointer.split('/').skip(1) {
            let key = key.replace("~1", "/").replace("~0", "~");
            if key.parse::<usize>().is_ok() {
                continue;
            }
            let needle_yaml = format!("{key}:");
            let needle_json = format!("\"{key}\"");
            let found = [needle_yaml, needle_json]
                .iter()
                .filter_map(|n| text[from..].find(n.as_str()))
                .min()?;
            from += found;
            line = Some(text[..from].matches('\n').count() + 1);
        }
        line
    }

    /// Every loaded document, by `file://` URI.
    pub fn documents(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.docs.iter().map(|(uri, doc)| (uri.as_str(), doc))
    }

    /// A retriever that serves the loaded documents to the JSON Schema compiler and nothing
    /// else: no file outside the set, no network.
    pub fn retriever(&self) -> SetRetriever {
        SetRetriever(self.docs.clone())
    }
}

/// Serves the documents of a [`DocumentSet`] to `jsonschema`.
pub struct SetRetriever(Arc<HashMap<String, Value>>);

impl jsonschema::Retrieve for SetRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().split('#').next().unwrap_or_default();
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| format!("{key} is not one of the contract's documents").into())
    }
}

fn error(file: &Path, pointer: &str, message: String) -> DocError {
    DocError {
        file: file.to_path_buf(),
        line: None,
        pointer: pointer.to_string(),
        message,
    }
}

/// `file://` URI of an absolute path.
pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn read_document(file: &Path) -> Result<(Value, String), DocError> {
    let meta = std::fs::metadata(file).map_err(|e| error(file, "", format!("cannot read: {e}")))?;
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(error(
            file,
            "",
            format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| error(file, "", format!("cannot read: {e}")))?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| DocError {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        pointer: String::new(),
        message: format!("not YAML or JSON: {e}"),
    })?;
    Ok((value, text))
}

/// The file parts of every `$ref` in a document that points at another file.
fn external_refs(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let file = r.split('#').next().unwrap_or_default();
                    if !file.is_empty() && !out.iter().any(|f| f == file) {
                        out.push(file.to_string());
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// `reference` (a relative file path, no scheme) resolved against the file that holds it.
fn resolve_relative(holder: &Path, reference: &str) -> Option<PathBuf> {
    if reference.contains("://") || Path::new(reference).is_absolute() {
        return None;
    }
    let mut out = holder.parent()?.to_path_buf();
    for c in Path::new(reference).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// OpenAPI 3.0's schema dialect into draft 2020-12: `nullable: true` adds `null` to the type,
/// and a boolean `exclusiveMinimum`/`exclusiveMaximum` moves the bound into it.
fn rewrite_30_schemas(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = std::mem::take(t);
                        map.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    Some(Value::Array(types)) => types.push("null".into()),
                    _ => {
                        // `nullable` on a `$ref` or a composition: allow null beside it.
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), serde_json::json!([inner, {"type": "null"}]));
                    }
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(b)) = map.get(flag) {
                    let b = *b;
                    map.remove(flag);
                    if b {
                        if let Some(limit) = map.remove(bound) {
                            map.insert(flag.into(), limit);
                        }
                    }
                }
            }
            for child in map.values_mut() {
                rewrite_30_schemas(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_30_schemas),
        _ => {}
    }
}

/// `format: int32` / `int64` are OpenAPI's, not JSON Schema's: they become the bounds they mean.
fn rewrite_integer_formats(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let bounds = match map.get("format").and_then(Value::as_str) {
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                Some("int64") => Some((i64::MIN, i64::MAX)),
                _ => None,
            };
            if let Some((lo, hi)) = bounds {
                map.entry("minimum").or_insert(lo.into());
                map.entry("maximum").or_insert(hi.into());
            }
            for child in map.values_mut() {
                rewrite_integer_formats(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_integer_formats),
        _ => {}
    }
}

/// Object schemas that list their `properties` and say nothing about others get
/// `unevaluatedProperties: false`, so a field the document never declares shows up as a
/// violation of that keyword (the contract's `undeclared.body_fields` then blocks or logs it).
/// Not the members of an `allOf` (nor the schemas an `allOf` member `$ref`s): each member sees
/// only its own properties, so closing one would refuse the others'; the schema holding the
/// `allOf` is closed instead, and it sees them all.
fn close_objects(docs: &mut HashMap<String, Value>) {
    let mut composed: Vec<(String, String)> = Vec::new();
    for (uri, doc) in docs.iter() {
        collect_allof_refs(doc, uri, &mut composed);
    }
    for (uri, doc) in docs.iter_mut() {
        close_walk(doc, uri, "", false, &composed);
    }
}

/// `(document URI, pointer)` of every schema an `allOf` member `$ref`s.
fn collect_allof_refs(v: &Value, uri: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(members)) = map.get("allOf") {
                for m in members {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        let (file, pointer) = r.split_once('#').unwrap_or((r, ""));
                        let target = if file.is_empty() {
                            uri.to_string()
                        } else {
                            let holder = Path::new(uri.trim_start_matches("file://"));
                            resolve_relative(holder, file)
                                .map_or_else(String::new, |p| file_uri(&p))
                        };
                        out.push((target, pointer.to_string()));
                    }
                }
            }
            map.values().for_each(|c| collect_allof_refs(c, uri, out));
        }
        Value::Array(items) => items.iter().for_each(|c| collect_allof_refs(c, uri, out)),
        _ => {}
    }
}

fn close_walk(
    v: &mut Value,
    uri: &str,
    pointer: &str,
    in_all_of: bool,
    composed: &[(String, String)],
) {
    match v {
        Value::Object(map) => {
            let is_object_schema = map.get("properties").is_some_and(Value::is_object)
                || map.get("allOf").is_some_and(Value::is_array);
            let open = map.contains_key("additionalProperties")
                || map.contains_key("unevaluatedProperties");
            let referenced_by_all_of = composed.iter().any(|(u, p)| u == uri && p == pointer);
            if is_object_schema && !open && !in_all_of && !referenced_by_all_of {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            for (key, child) in map.iter_mut() {
                let child_ptr = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (key.as_str(), child) {
                    ("allOf", Value::Array(members)) => {
                        for (i, m) in members.iter_mut().enumerate() {
                            close_walk(m, uri, &format!("{child_ptr}/{i}"), true, composed);
                        }
                    }
                    (_, child) => close_walk(child, uri, &child_ptr, false, composed),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                close_walk(item, uri, &format!("{pointer}/{i}"), false, composed);
            }
        }
        _ => {}
    }
}
