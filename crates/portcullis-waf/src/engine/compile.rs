//! Compiling rule files into rules: [`WafPlan::load_dir`] and [`WafPlan::from_sources`] read the
//! rule files and the phrase data files they refer to, check every rule (unique id, category,
//! paranoia level, severity, targets, transformations, exactly one operator, chained conditions),
//! report each problem with its file, rule, key and line, and hand the valid rules to `assemble`,
//! which builds the plan. Nothing here runs while a request is evaluated.

use std::collections::HashMap;
use std::path::Path;

use aho_corasick::{AhoCorasickBuilder, MatchKind};

use super::{ChainInfo, Condition, NumCmp, Op, Rule, WafPlan};
use crate::prefilter::first_bytes;
use crate::rules::{
    line_of, parse_phrase_file, parse_rule_file, resolve_data, OperatorDef, RuleLoadError,
};
use crate::target::{is_meta, parse_selector, validate_meta, Coll, NameMatch, Selector};
use crate::transform::{chain_set, Transform};

impl WafPlan {
    /// Load every `*.toml` under `dir` (recursively) plus data files (`*.txt`, `*.data`).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<WafPlan, Vec<RuleLoadError>> {
        let dir = dir.as_ref();
        let mut files = Vec::new();
        let mut errs = Vec::new();
        collect_files(dir, dir, &mut files, &mut errs, 0);
        if !errs.is_empty() {
            return Err(errs);
        }
        files.sort();
        WafPlan::from_sources(&files)
    }

    /// Build from (name, text) pairs: names ending in `.toml` are rule files; others are phrase
    /// data files referenced by `pm_file` (by relative path or base name).
    pub fn from_sources(files: &[(String, String)]) -> Result<WafPlan, Vec<RuleLoadError>> {
        let mut errs: Vec<RuleLoadError> = Vec::new();
        let mut data: HashMap<String, Vec<String>> = HashMap::new();
        for (name, text) in files {
            if !name.ends_with(".toml") {
                let list = parse_phrase_file(text);
                let base = name.rsplit('/').next().unwrap_or(name).to_string();
                data.insert(name.clone(), list.clone());
                data.insert(base, list);
            }
        }
        let mut b = Builder {
            chains: Vec::new(),
            chain_ids: HashMap::new(),
            metas: Vec::new(),
        };
        b.chain_id(&[]);
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<u32, (String, usize)> = HashMap::new();
        for (name, text) in files.iter().filter(|(n, _)| n.ends_with(".toml")) {
            let rf = match parse_rule_file(name, text) {
                Ok(r) => r,
                Err(mut e) => {
                    errs.append(&mut e);
                    continue;
                }
            };
            let d = &rf.defaults;
            for r in &rf.rule {
                let id = *r.id.get_ref();
                let line_no = line_of(text, r.id.span().start);
                let line = Some(line_no);
                if let Some((f, l)) = seen.get(&id) {
                    errs.push(err(
                        name,
                        Some(id),
                        "id",
                        line,
                        format!("duplicate rule id (first defined at {}:{})", f, l),
                    ));
                    continue;
                }
                seen.insert(id, (name.clone(), line_no));
                let category = match r.category.clone().or_else(|| d.category.clone()) {
                    Some(c) if !c.is_empty() => c,
                    _ => {
                        errs.push(err(name, Some(id), "category", line, "missing category"));
                        continue;
                    }
                };
                let pl = r.paranoia.or(d.paranoia).unwrap_or(1);
                if !(1..=4).contains(&pl) {
                    errs.push(err(
                        name,
                        Some(id),
                        "paranoia",
                        line,
                        "paranoia must be 1..=4",
                    ));
                    continue;
                }
                let severity = match r.severity.as_ref().or(d.severity.as_ref()) {
                    Some(s) => match s.points() {
                        Ok(p) => p,
                        Err(e) => {
                            errs.push(err(name, Some(id), "severity", line, e));
                            continue;
                        }
                    },
                    None => 5,
                };
                let targets = r
                    .targets
                    .clone()
                    .or_else(|| d.targets.clone())
                    .unwrap_or_default();
                let transforms = r
                    .transforms
                    .clone()
                    .or_else(|| d.transforms.clone())
                    .unwrap_or_default();
                let main = match b.condition(
                    name,
                    id,
                    line,
                    "",
                    &targets,
                    &transforms,
                    &r.op(),
                    &data,
                    text,
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        errs.push(e);
                        continue;
                    }
                };
                let mut chain = Vec::new();
                let mut bad = false;
                for (i, c) in r.chain.iter().enumerate() {
                    let tr = c.transforms.clone().unwrap_or_else(|| transforms.clone());
                    match b.condition(
                        name,
                        id,
                        line,
                        &format!("chain[{}].", i),
                        &c.targets,
                        &tr,
                        &c.op(),
                        &data,
                        text,
                    ) {
                        Ok(c) => chain.push(c),
                        Err(e) => {
                            errs.push(e);
                            bad = true;
                        }
                    }
                }
                if bad {
                    continue;
                }
                let mut tags = d.tags.clone().unwrap_or_default();
                tags.extend(r.tags.clone().unwrap_or_default());
                let mut rule = Rule {
                    id,
                    message: r.message.clone(),
                    category,
                    pl,
                    severity,
                    tags,
                    main,
                    chain,
                    require_change: r.require_change,
                };
                if let Some(pf) = &r.prefilter {
                    // Author-provided literals replace extraction; stash them as a Pm-like marker.
                    rule.tags.push(format!(
                        "__prefilter:{}",
                        pf.iter()
                            .map(|s| s.to_lowercase())
                            .collect::<Vec<_>>()
                            .join("\u{1}")
                    ));
                }
                rules.push(rule);
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        rules.sort_by_key(|r| r.id);
        Ok(WafPlan::assemble(rules, b.chains, b.metas))
    }
}

fn err(
    file: &str,
    id: Option<u32>,
    key: &str,
    line: Option<usize>,
    msg: impl Into<String>,
) -> RuleLoadError {
    RuleLoadError {
        file: file.to_string(),
        rule_id: id,
        key: Some(key.to_string()),
        line,
        message: msg.into(),
    }
}

struct Builder {
    chains: Vec<ChainInfo>,
    chain_ids: HashMap<Vec<Transform>, usize>,
    metas: Vec<String>,
}

impl Builder {
    fn chain_id(&mut self, full: &[Transform]) -> usize {
        if let Some(&id) = self.chain_ids.get(full) {
            return id;
        }
        let parent = if full.is_empty() {
            0
        } else {
            self.chain_id(&full[..full.len() - 1])
        };
        let id = self.chains.len();
        self.chains.push(ChainInfo {
            parent,
            last: full.last().copied(),
            full: full.to_vec(),
            set: chain_set(full),
        });
        self.chain_ids.insert(full.to_vec(), id);
        id
    }

    fn meta_id(&mut self, m: String) -> u16 {
        if let Some(p) = self.metas.iter().position(|x| *x == m) {
            return p as u16;
        }
        self.metas.push(m);
        (self.metas.len() - 1) as u16
    }

    #[allow(clippy::too_many_arguments)]
    fn condition(
        &mut self,
        file: &str,
        id: u32,
        line: Option<usize>,
        key: &str,
        targets: &[String],
        transforms: &[String],
        op_def: &OperatorDef,
        data: &HashMap<String, Vec<String>>,
        text: &str,
    ) -> Result<Condition, RuleLoadError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        if targets.is_empty() {
            return Err(err(
                file,
                Some(id),
                &format!("{}targets", key),
                line,
                "no targets",
            ));
        }
        for t in targets {
            if is_meta(t) {
                let m = validate_meta(t)
                    .map_err(|e| err(file, Some(id), &format!("{}targets", key), line, e))?;
                let mi = self.meta_id(m);
                include.push(Selector {
                    coll: Coll::Meta(mi),
                    name: NameMatch::Any,
                    exclude: false,
                });
                continue;
            }
            let s = parse_selector(t)
                .map_err(|e| err(file, Some(id), &format!("{}targets", key), line, e))?;
            if s.exclude {
                exclude.push(s);
            } else {
                include.push(s);
            }
        }
        if include.is_empty() {
            return Err(err(
                file,
                Some(id),
                &format!("{}targets", key),
                line,
                "only exclusions in targets",
            ));
        }
        let mut chain = Vec::new();
        for t in transforms {
            if t == "none" {
                continue;
            }
            let tr = Transform::parse(t).ok_or_else(|| {
                err(
                    file,
                    Some(id),
                    &format!("{}transforms", key),
                    line,
                    format!("unknown transformation `{}`", t),
                )
            })?;
            chain.push(tr);
        }
        let chain = self.chain_id(&chain);
        let op = op_def;
        let mut ops: Vec<Op> = Vec::new();
        let okey = |k: &str| format!("{}{}", key, k);
        if let Some(rx) = &op.rx {
            let rx_line = find_line_after(text, line, "rx").or(line);
            let r = compile_rule_regex(rx).map_err(|e| {
                err(
                    file,
                    Some(id),
                    &okey("rx"),
                    rx_line,
                    format!("bad regex: {}", e),
                )
            })?;
            let fb = first_bytes(r.as_str());
            ops.push(Op::Rx(r, fb));
        }
        let mut pm_list: Option<Vec<String>> = None;
        if let Some(p) = &op.pm {
            pm_list = Some(p.clone());
        }
        if let Some(f) = &op.pm_file {
            if pm_list.is_some() {
                return Err(err(
                    file,
                    Some(id),
                    &okey("pm_file"),
                    line,
                    "both pm and pm_file",
                ));
            }
            let list = resolve_data(data, f).ok_or_else(|| {
                err(
                    file,
                    Some(id),
                    &okey("pm_file"),
                    line,
                    format!("data file `{}` not found", f),
                )
            })?;
            pm_list = Some(list.clone());
        }
        if let Some(list) = pm_list {
            if list.is_empty() || list.iter().any(|s| s.is_empty()) {
                return Err(err(
                    file,
                    Some(id),
                    &okey("pm"),
                    line,
                    "empty phrase list or empty phrase",
                ));
            }
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(&list)
                .map_err(|e| err(file, Some(id), &okey("pm"), line, e.to_string()))?;
            ops.push(Op::Pm(ac, list));
        }
        if let Some(s) = &op.contains {
            ops.push(Op::Contains(s.clone()));
        }
        if let Some(s) = &op.begins_with {
            ops.push(Op::BeginsWith(s.clone()));
        }
        if let Some(s) = &op.ends_with {
            ops.push(Op::EndsWith(s.clone()));
        }
        if let Some(s) = &op.eq {
            ops.push(Op::Eq(s.clone()));
        }
        for (v, c) in [
            (op.gt, NumCmp::Gt),
            (op.ge, NumCmp::Ge),
            (op.lt, NumCmp::Lt),
            (op.le, NumCmp::Le),
            (op.num_eq, NumCmp::Eq),
        ] {
            if let Some(n) = v {
                ops.push(Op::Num(c, n));
            }
        }
        if op.detect_sqli == Some(true) {
            ops.push(Op::DetectSqli);
        }
        if op.detect_xss == Some(true) {
            ops.push(Op::DetectXss);
        }
        if op.present == Some(true) {
            ops.push(Op::Present);
        }
        if ops.len() != 1 {
            return Err(err(
                file,
                Some(id),
                &okey("operator"),
                line,
                if ops.is_empty() {
                    "no operator (rx, pm, pm_file, contains, ...)".to_string()
                } else {
                    "more than one operator".to_string()
                },
            ));
        }
        let op = ops
            .pop()
            .ok_or_else(|| err(file, Some(id), key, line, "no operator"))?;
        Ok(Condition {
            include,
            exclude,
            chain,
            op,
            negate: op_def.negate,
        })
    }
}

/// Rule regexes run over bytes with Unicode off: `\w`, `\s`, `\d`, `\b` and
/// `(?i)` are ASCII, `.` and negated classes match single bytes. Attack syntax
/// is ASCII, and Unicode classes inside counted repetitions (`[^}]{0,200}`)
/// compile into automata many times larger: the default rule sets took 22 MB
/// of regex memory with Unicode and take 8 MB without, and the lazy DFAs
/// stay small and warm. Non-ASCII literals still match their UTF-8 bytes; a
/// pattern that needs Unicode (a `\p{..}` class) keeps it.
fn compile_rule_regex(rx: &str) -> Result<regex::bytes::Regex, regex::Error> {
    let pattern = ascii_word_boundaries(rx);
    let build = |unicode: bool| {
        regex::bytes::RegexBuilder::new(&pattern)
            .unicode(unicode)
            .size_limit(8 << 20)
            .build()
    };
    build(false).or_else(|_| build(true))
}

/// Rewrite `\b` / `\B` into their ASCII forms so the lazy DFA never has to fall back to the
/// slower engines on non-ASCII input (Unicode word boundaries are not supported by the DFA).
fn ascii_word_boundaries(rx: &str) -> String {
    let mut out = String::with_capacity(rx.len() + 16);
    let mut chars = rx.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('b') => out.push_str("(?-u:\\b)"),
                Some('B') => out.push_str("(?-u:\\B)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn find_line_after(text: &str, from: Option<usize>, key: &str) -> Option<usize> {
    let start = from.unwrap_or(1).saturating_sub(1);
    for (n, l) in text.lines().enumerate().skip(start) {
        let t = l.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(n + 1);
        }
        if n > start && t.starts_with("[[rule]]") {
            break;
        }
    }
    None
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
    errs: &mut Vec<RuleLoadError>,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            errs.push(RuleLoadError {
                file: dir.display().to_string(),
                rule_id: None,
                key: None,
                line: None,
                message: e.to_string(),
            });
            return;
        }
    };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(root, &p, out, errs, depth + 1);
            continue;
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "toml" | "txt" | "data") {
            continue;
        }
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        match std::fs::read_to_string(&p) {
            Ok(t) => out.push((rel, t)),
            Err(e) => errs.push(RuleLoadError {
                file: rel,
                rule_id: None,
                key: None,
                line: None,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compile_rule_regex;

    #[test]
    fn rule_regexes_are_ascii_unless_they_need_unicode() {
        let word = compile_rule_regex(r"^\w+$").expect("compiles");
        assert!(word.is_match(b"select_1"));
        assert!(!word.is_match("sélect".as_bytes()), "\\w is ASCII");
        let ci = compile_rule_regex(r"(?i)union\s+select").expect("compiles");
        assert!(ci.is_match(b"UNION\tSELECT"));
        // Negated classes count bytes, and match inside non-UTF-8 text.
        let near = compile_rule_regex(r"\{\{[^}]{0,4}x").expect("compiles");
        assert!(near.is_match(b"{{ab x"));
        assert!(near.is_match(b"{{\xff\xfex"));
        // A non-ASCII literal still matches its UTF-8 bytes.
        assert!(compile_rule_regex("é")
            .expect("compiles")
            .is_match("café".as_bytes()));
        // A Unicode class keeps Unicode mode instead of failing.
        let greek = compile_rule_regex(r"\p{Greek}{2}").expect("falls back to Unicode");
        assert!(greek.is_match("αβ".as_bytes()));
        assert!(compile_rule_regex(r"(unclosed").is_err());
    }
}
