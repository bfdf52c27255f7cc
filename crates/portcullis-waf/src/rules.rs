//! Rule file format (TOML) and the loader that turns files into compiled rules.
//! See `rulesets/README.md` for the format.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::policy::SeveritySpec;

/// Error found while loading rule files. Displays as `file:line: rule ID (key): message`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleLoadError {
    /// The rule file (its name as given to the loader).
    pub file: String,
    /// The rule, when the error belongs to one.
    pub rule_id: Option<u32>,
    /// The key within the rule (`rx`, `targets`, ...), when known.
    pub key: Option<String>,
    /// The line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{}", l)?;
        }
        write!(f, ":")?;
        if let Some(id) = self.rule_id {
            write!(f, " rule {}", id)?;
        }
        if let Some(k) = &self.key {
            write!(f, " ({})", k)?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for RuleLoadError {}

/// File-wide defaults for the rules below.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub category: Option<String>,
    pub paranoia: Option<u8>,
    pub severity: Option<SeveritySpec>,
    pub targets: Option<Vec<String>>,
    pub transforms: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// An operator spec: exactly one of the operator keys must be set.
#[derive(Debug, Clone, Default)]
pub struct OperatorDef {
    pub rx: Option<String>,
    pub pm: Option<Vec<String>>,
    pub pm_file: Option<String>,
    pub contains: Option<String>,
    pub begins_with: Option<String>,
    pub ends_with: Option<String>,
    pub eq: Option<String>,
    pub gt: Option<i64>,
    pub ge: Option<i64>,
    pub lt: Option<i64>,
    pub le: Option<i64>,
    pub num_eq: Option<i64>,
    pub detect_sqli: Option<bool>,
    pub detect_xss: Option<bool>,
    /// Matches whenever the target exists (any value).
    pub present: Option<bool>,
    pub negate: bool,
}

macro_rules! op_of {
    ($d:expr) => {
        OperatorDef {
            rx: $d.rx.clone(),
            pm: $d.pm.clone(),
            pm_file: $d.pm_file.clone(),
            contains: $d.contains.clone(),
            begins_with: $d.begins_with.clone(),
            ends_with: $d.ends_with.clone(),
            eq: $d.eq.clone(),
            gt: $d.gt,
            ge: $d.ge,
            lt: $d.lt,
            le: $d.le,
            num_eq: $d.num_eq,
            detect_sqli: $d.detect_sqli,
            detect_xss: $d.detect_xss,
            present: $d.present,
            negate: $d.negate,
        }
    };
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainDef {
    pub targets: Vec<String>,
    #[serde(default)]
    pub transforms: Option<Vec<String>>,
    pub rx: Option<String>,
    pub pm: Option<Vec<String>>,
    pub pm_file: Option<String>,
    pub contains: Option<String>,
    pub begins_with: Option<String>,
    pub ends_with: Option<String>,
    pub eq: Option<String>,
    pub gt: Option<i64>,
    pub ge: Option<i64>,
    pub lt: Option<i64>,
    pub le: Option<i64>,
    pub num_eq: Option<i64>,
    pub detect_sqli: Option<bool>,
    pub detect_xss: Option<bool>,
    /// Matches whenever the target exists (any value).
    pub present: Option<bool>,
    #[serde(default)]
    pub negate: bool,
}

impl ChainDef {
    pub fn op(&self) -> OperatorDef {
        op_of!(self)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: Spanned<u32>,
    pub message: String,
    pub category: Option<String>,
    pub paranoia: Option<u8>,
    pub severity: Option<SeveritySpec>,
    pub targets: Option<Vec<String>>,
    pub transforms: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Literals of which at least one must occur (in the lowercased transformed value) for the rule
    /// to run; overrides automatic literal extraction. An empty list disables prefiltering.
    pub prefilter: Option<Vec<String>>,
    /// Run the rule only when its last transformation changed the value (for decoders such as
    /// `base64_decode_embedded`, so plain values are not inspected twice).
    #[serde(default)]
    pub require_change: bool,
    #[serde(default)]
    pub chain: Vec<ChainDef>,
    pub rx: Option<String>,
    pub pm: Option<Vec<String>>,
    pub pm_file: Option<String>,
    pub contains: Option<String>,
    pub begins_with: Option<String>,
    pub ends_with: Option<String>,
    pub eq: Option<String>,
    pub gt: Option<i64>,
    pub ge: Option<i64>,
    pub lt: Option<i64>,
    pub le: Option<i64>,
    pub num_eq: Option<i64>,
    pub detect_sqli: Option<bool>,
    pub detect_xss: Option<bool>,
    /// Matches whenever the target exists (any value).
    pub present: Option<bool>,
    #[serde(default)]
    pub negate: bool,
}

impl RuleDef {
    pub fn op(&self) -> OperatorDef {
        op_of!(self)
    }
}

// Unknown keys are also checked by hand first, to report them with a rule id and line.
const RULE_KEYS: &[&str] = &[
    "id",
    "message",
    "category",
    "paranoia",
    "severity",
    "targets",
    "transforms",
    "tags",
    "prefilter",
    "chain",
    "require_change",
];
const OP_KEYS: &[&str] = &[
    "rx",
    "pm",
    "pm_file",
    "contains",
    "begins_with",
    "ends_with",
    "eq",
    "gt",
    "ge",
    "lt",
    "le",
    "num_eq",
    "detect_sqli",
    "detect_xss",
    "present",
    "negate",
];
const CHAIN_KEYS: &[&str] = &["targets", "transforms"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub rule: Vec<RuleDef>,
}

pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse one rule file; errors carry file name and line.
pub fn parse_rule_file(name: &str, text: &str) -> Result<RuleFile, Vec<RuleLoadError>> {
    // First a generic parse to report unknown keys with their line.
    let doc: toml::Table = match text.parse::<toml::Table>() {
        Ok(d) => d,
        Err(e) => {
            return Err(vec![RuleLoadError {
                file: name.to_string(),
                rule_id: None,
                key: None,
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().to_string(),
            }])
        }
    };
    let mut errs = Vec::new();
    if let Some(toml::Value::Array(rules)) = doc.get("rule") {
        for (i, r) in rules.iter().enumerate() {
            let Some(t) = r.as_table() else { continue };
            let id = t.get("id").and_then(|v| v.as_integer()).map(|v| v as u32);
            for k in t.keys() {
                if !RULE_KEYS.contains(&k.as_str()) && !OP_KEYS.contains(&k.as_str()) {
                    errs.push(RuleLoadError {
                        file: name.to_string(),
                        rule_id: id,
                        key: Some(format!("rule[{}].{}", i, k)),
                        line: find_key_line(text, id, k),
                        message: format!("unknown key `{}`", k),
                    });
                }
            }
            if let Some(toml::Value::Array(chain)) = t.get("chain") {
                for (j, c) in chain.iter().enumerate() {
                    let Some(ct) = c.as_table() else { continue };
                    for k in ct.keys() {
                        if !CHAIN_KEYS.contains(&k.as_str()) && !OP_KEYS.contains(&k.as_str()) {
                            errs.push(RuleLoadError {
                                file: name.to_string(),
                                rule_id: id,
                                key: Some(format!("rule[{}].chain[{}].{}", i, j, k)),
                                line: find_key_line(text, id, k),
                                message: format!("unknown key `{}`", k),
                            });
                        }
                    }
                }
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    toml::from_str::<RuleFile>(text).map_err(|e| {
        vec![RuleLoadError {
            file: name.to_string(),
            rule_id: None,
            key: None,
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_string(),
        }]
    })
}

/// Best-effort line of `key =` after the line declaring `id = N`.
fn find_key_line(text: &str, id: Option<u32>, key: &str) -> Option<usize> {
    let mut start_line = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    if let Some(id) = id {
        let pat = format!("{}", id);
        for (n, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            if t.starts_with("id") && t.contains(&pat) {
                start_line = n;
                break;
            }
        }
    }
    for (n, l) in lines.iter().enumerate().skip(start_line) {
        let t = l.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(n + 1);
        }
    }
    None
}

/// Data files (phrase lists): one phrase per line, `#` comments and blank lines ignored.
pub fn parse_phrase_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.to_string())
        .collect()
}

/// Resolve a `pm_file` reference against the loaded data files.
pub fn resolve_data<'a>(
    data: &'a HashMap<String, Vec<String>>,
    name: &str,
) -> Option<&'a Vec<String>> {
    let base = name.rsplit('/').next().unwrap_or(name);
    data.get(name)
        .or_else(|| data.get(base))
        .or_else(|| data.get(&format!("data/{}", base)))
}
