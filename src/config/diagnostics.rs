//! Errors and warnings about a configuration file, each naming the file, the
//! key path (`listeners[0].bind`) and, where the TOML source shows it, the line.

use std::fmt;

/// How bad a finding is: errors stop the edge from starting or reloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// Dotted key path with indices, e.g. `pools[1].backends[0].address`.
    pub key_path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Builds a key path fluently: `KeyPath::root().key("listeners").index(0).key("bind")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<PathSeg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }
    pub fn segments(&self) -> &[PathSeg] {
        &self.0
    }

    /// Parses the display form back (`a.b[2].c`), for errors from modules that report paths as text.
    pub fn parse(s: &str) -> KeyPath {
        let mut p = KeyPath::root();
        for part in s.split('.').filter(|x| !x.is_empty()) {
            let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
            if !key.is_empty() {
                p = p.key(key);
            }
            for idx in rest.split('[') {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    p = p.index(i);
                }
            }
        }
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Collects findings for one file; finds the line of each key path in the source.
pub struct Diagnostics {
    file: String,
    doc: Option<toml_edit::ImDocument<String>>,
    src: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &str, src: &str) -> Self {
        Diagnostics {
            file: file.to_string(),
            doc: toml_edit::ImDocument::parse(src.to_string()).ok(),
            src: src.to_string(),
            items: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    /// An error reported as `key.path: message` text by a module that does its own checks.
    pub fn error_text(&mut self, text: &str) {
        match text.split_once(": ") {
            Some((path, message)) if !path.contains(' ') => {
                self.error(&KeyPath::parse(path), message)
            }
            _ => self.error(&KeyPath::root(), text),
        }
    }

    pub fn warning(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    /// Adds a finding whose line is already known (e.g. from a TOML parse error).
    pub fn push_at(
        &mut self,
        severity: Severity,
        key_path: String,
        line: Option<usize>,
        message: String,
    ) {
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            key_path,
            line,
            message,
        });
    }

    fn push(&mut self, severity: Severity, path: &KeyPath, message: String) {
        let line = self.line_of(path);
        self.push_at(severity, path.to_string(), line, message);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn into_items(self) -> Vec<Diagnostic> {
        self.items
    }

    /// 1-based line of a byte offset in the source.
    pub fn line_at(&self, offset: usize) -> usize {
        line_at(&self.src, offset)
    }

    /// The line where `path` is written, or of the deepest enclosing key that is.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Table(doc.as_table());
        let mut best = None;
        for seg in path.segments() {
            let Some((span, child)) = node.child(seg) else {
                break;
            };
            if let Some(span) = span {
                best = Some(self.line_at(span.start));
            }
            node = child;
        }
        best
    }
}

/// A position in the parsed TOML tree, whatever its syntax (table, inline, array).
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
}

type Span = Option<std::ops::Range<usize>>;

impl<'a> Node<'a> {
    fn child(self, seg: &PathSeg) -> Option<(Span, Node<'a>)> {
        use toml_edit::{Item, Value};
        match (self, seg) {
            (Node::Table(t), PathSeg::Key(k)) => t
                .get_key_value(k)
                .map(|(key, it)| (key.span(), Node::Item(it))),
            (Node::Item(Item::Table(t)), PathSeg::Key(_)) => Node::Table(t).child(seg),
            (Node::Item(Item::Value(v)), _) => Node::Value(v).child(seg),
            (Node::Item(Item::ArrayOfTables(a)), PathSeg::Index(i)) => {
                a.get(*i).map(|t| (t.span(), Node::Table(t)))
            }
            (Node::Value(Value::InlineTable(t)), PathSeg::Key(k)) => t
                .get_key_value(k)
                .map(|(key, v)| (key.span(), Node::Item(v))),
            (Node::Value(Value::Array(a)), PathSeg::Index(i)) => {
                a.get(*i).map(|v| (v.span(), Node::Value(v)))
            }
            _ => None,
        }
    }
}

/// 1-based line of a byte offset.
pub fn line_at(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
