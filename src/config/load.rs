//! Reading a configuration file: TOML syntax and typed deserialization.
//! Semantic checks happen when the config is compiled into a plan
//! ([`crate::plan::compile`]), which reports through the same [`Diagnostics`].
//!
//! A file with mistakes gets all of them, not the first: serde stops at the first error, so a
//! file that fails is read again with each offending line (syntax) or key (types, unknown keys)
//! taken out, until it reads or nothing more can be taken out. Errors that only follow from
//! something taken out (a required key whose wrong value was removed) are not reported twice.

use super::diagnostics::{KeyPath, PathSeg};
use super::{Config, Diagnostic, Diagnostics, Severity};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Most errors gathered from one file; past it the rest of the file is likely noise.
const MAX_ERRORS: usize = 50;

/// A configuration that parsed, with what is needed to report on it later.
pub struct Loaded {
    pub config: Config,
    /// Directory that relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub diagnostics: Diagnostics,
}

/// Reads and parses a file. Errors name the file, the key path and the line.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    read_file(path).and_then(Loaded::without_errors)
}

/// Parses configuration text; `name` is what errors call the file.
pub fn load_str(name: &str, src: &str, base_dir: PathBuf) -> Result<Loaded, Vec<Diagnostic>> {
    read_str(name, src, base_dir).and_then(Loaded::without_errors)
}

/// Like [`load_file`], but a file with type errors and unknown keys still gives what of it could
/// be read, with those errors already in its diagnostics, so that compiling it
/// ([`crate::plan::compile`], which refuses any error) reports the semantic mistakes of the same
/// file too. Err only when nothing could be read.
pub fn read_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            severity: Severity::Error,
            file: name.clone(),
            key_path: String::new(),
            line: None,
            message: format!("cannot read file: {e}"),
        }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    read_str(&name, &src, base)
}

/// [`read_file`] of text; `name` is what errors call the file.
pub fn read_str(name: &str, src: &str, base_dir: PathBuf) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Diagnostics::new(name, src);
    let config = match toml::from_str::<Config>(src) {
        Ok(config) => Some(config),
        Err(_) => {
            let (table, blanked) = syntax_errors(src, &mut diagnostics);
            let syntax_ok = !diagnostics.has_errors();
            let partial = table.and_then(|t| type_errors(t, &blanked, &mut diagnostics));
            // Semantic checks of a file whose lines were blanked would mostly repeat them.
            partial.filter(|_| syntax_ok)
        }
    };
    match config {
        Some(config) => Ok(Loaded {
            config,
            base_dir,
            diagnostics,
        }),
        None => Err(diagnostics.into_items()),
    }
}

impl Loaded {
    /// Err with every diagnostic when any of them is an error.
    fn without_errors(self) -> Result<Loaded, Vec<Diagnostic>> {
        if self.diagnostics.has_errors() {
            Err(self.diagnostics.into_items())
        } else {
            Ok(self)
        }
    }
}

/// Reports every syntax error, each found by parsing again with the previous one's line blanked.
/// Returns the table that finally parsed (None when the file never did) and the blanked lines.
fn syntax_errors(src: &str, diagnostics: &mut Diagnostics) -> (Option<toml::Table>, Vec<String>) {
    let mut lines: Vec<String> = src.split('\n').map(str::to_string).collect();
    let mut blanked = Vec::new();
    for _ in 0..MAX_ERRORS {
        let text = lines.join("\n");
        let err = match text.parse::<toml::Table>() {
            Ok(table) => return (Some(table), blanked),
            Err(e) => e,
        };
        let line = err
            .span()
            .map(|s| super::diagnostics::line_at(&text, s.start));
        diagnostics.push_at(
            Severity::Error,
            String::new(),
            line,
            err.message().to_string(),
        );
        let Some(at) = line.filter(|&l| l >= 1 && l <= lines.len() && !lines[l - 1].is_empty())
        else {
            break;
        };
        blanked.push(std::mem::take(&mut lines[at - 1]));
    }
    (None, blanked)
}

/// Reports every type error and unknown key of a file that is valid TOML: deserializes, mends or
/// takes the offending key out, and goes again. Returns what is left when it is the file's whole
/// structure (only keys were taken out), for the semantic checks; None when a table had to go,
/// since those checks would then report its absence.
fn type_errors(
    table: toml::Table,
    blanked: &[String],
    diagnostics: &mut Diagnostics,
) -> Option<Config> {
    let mut value = toml::Value::Table(table);
    let mut taken: Vec<KeyPath> = Vec::new();
    let mut shifts = IndexShifts::default();
    let mut whole = true;
    for _ in 0..MAX_ERRORS * 2 {
        let err = match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(config) => return whole.then_some(config),
            Err(e) => e,
        };
        let path = KeyPath::parse(&err.path().to_string());
        let message = err.into_inner().message().to_string();
        // The key at fault: an unknown key may be reported at its table, a bad value at its key.
        let culprit = match quoted_after(&message, "unknown field `") {
            Some(f) if !matches!(path.segments().last(), Some(PathSeg::Key(k)) if k == f) => {
                path.key(f)
            }
            _ => path.clone(),
        };
        if let Some(field) = quoted_after(&message, "missing field `") {
            // Missing because its bad value was taken out, or its line was a syntax error:
            // already reported. Take its table out instead, without a word.
            let consequence =
                taken.contains(&path.key(field)) || blanked.iter().any(|l| assigns(l, field));
            if consequence {
                if !take_out(&mut value, &path, &mut shifts) {
                    return None;
                }
                whole = false;
                taken.push(path);
                continue;
            }
        }
        diagnostics.error(&shifts.original(&culprit), message.as_str());
        if diagnostics.items().len() >= MAX_ERRORS {
            return None;
        }
        // A misspelt variant is mended with a valid one, so that its table (a listener, a site)
        // stays and the checks of the rest of it still run.
        let variant = quoted_after(&message, "unknown variant `")
            .and_then(|_| quoted_after(&message, "expected one of `"));
        let mended = variant.and_then(|variant| {
            let slot = node_at(&mut value, &culprit)?;
            *slot = toml::Value::String(variant.to_string());
            Some(())
        });
        if mended.is_none() {
            if !take_out(&mut value, &culprit, &mut shifts) {
                return None;
            }
            taken.push(culprit);
        }
    }
    None
}

/// The value at `path`, if it is there.
fn node_at<'v>(value: &'v mut toml::Value, path: &KeyPath) -> Option<&'v mut toml::Value> {
    let mut node = value;
    for seg in path.segments() {
        node = match (seg, node) {
            (PathSeg::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (PathSeg::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The text between `prefix` and the next backquote in `message`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

/// Whether a TOML line assigns `key` (`key = ...`, `key=...`).
fn assigns(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// Array elements taken out, so that later errors still name the element as the file numbers it.
#[derive(Default)]
struct IndexShifts(HashMap<String, Vec<usize>>);

impl IndexShifts {
    /// `path` (in the current, shortened arrays) as the file numbers its elements.
    fn original(&self, path: &KeyPath) -> KeyPath {
        let mut out = KeyPath::root();
        for seg in path.segments() {
            out = match seg {
                PathSeg::Key(k) => out.key(k),
                PathSeg::Index(i) => {
                    let mut original = *i;
                    for removed in self.0.get(&out.to_string()).into_iter().flatten() {
                        if *removed <= original {
                            original += 1;
                        }
                    }
                    out.index(original)
                }
            };
        }
        out
    }

    fn record(&mut self, array: &KeyPath, original_index: usize) {
        let removed = self.0.entry(array.to_string()).or_default();
        removed.push(original_index);
        removed.sort_unstable();
    }
}

/// Takes the key or element at `path` out of `value`; false when there is nothing to take (the
/// root, or a path that is not there).
fn take_out(value: &mut toml::Value, path: &KeyPath, shifts: &mut IndexShifts) -> bool {
    let Some((last, parents)) = path.segments().split_last() else {
        return false;
    };
    let parent_path = parents.iter().fold(KeyPath::root(), |p, seg| match seg {
        PathSeg::Key(k) => p.key(k),
        PathSeg::Index(i) => p.index(*i),
    });
    let Some(node) = node_at(value, &parent_path) else {
        return false;
    };
    match (last, node) {
        (PathSeg::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (PathSeg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            if let Some(PathSeg::Index(o)) = shifts.original(path).segments().last() {
                let o = *o;
                shifts.record(&shifts.original(&parent_path), o);
            }
            a.remove(*i);
            true
        }
        _ => false,
    }
}
