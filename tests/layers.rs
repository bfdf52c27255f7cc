//! The layers of docs/architecture.md, kept by a test: a module may refer to modules of its own
//! layer and of the layers below it, never to one above, and the top-level modules never refer
//! to one another in a circle.
//!
//! Every `.rs` file under `src/` is read (std only, no parser crate) and every path that names a
//! top-level module of the crate is taken from it: `crate::x::..`, `use crate::{x, y::..}` (use
//! groups over several lines included), and `super::` chains that climb out of their top-level
//! module (`super::super::x` in `src/a/b.rs`). Comments and string and character literals are
//! blanked first, so prose and messages that mention a path are not imports. `src/main.rs` is the
//! binary and names the library as `portcullis::x`. `src/lib.rs` only declares the modules.
//!
//! [`LAYERS`] mirrors the table in docs/architecture.md (the test checks that the two agree), and
//! every top-level module of `src/` must be in it, so a new module has to be placed in a layer.
//! The WAF engine, crates/portcullis-waf, is the bottom layer by construction (a crate of its
//! own); the test also checks that its sources never name pingora, tokio or rustls.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first, and the top-level modules of `src/` in each (`waf` is the
/// `portcullis-waf` crate, re-exported as `crate::waf`; `main` is `src/main.rs`). Mirrors the
/// table in docs/architecture.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("waf engine", &["waf"]),
    (
        "mechanisms",
        &[
            "customrules",
            "evasion",
            "geo",
            "head_deadline",
            "host",
            "logging",
            "metrics",
            "netrules",
            "openapi",
            "pipelining",
            "ratelimit",
            "replay",
            "rewrite",
            "tls",
            "upstream",
        ],
    ),
    ("configuration", &["config"]),
    ("plan", &["plan", "routing"]),
    ("live edge", &["reload", "state"]),
    (
        "request path",
        &[
            "conncap",
            "netfilter",
            "proxy",
            "proxy_header",
            "redirect",
            "tls_gate",
        ],
    ),
    (
        "process",
        &["admin", "cli", "demo", "main", "server", "signals"],
    ),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One reference from a file to a top-level module of the crate.
#[derive(Debug, Clone)]
struct Reference {
    /// The file, relative to the repository (`src/config/mod.rs`).
    file: String,
    line: usize,
    /// The top-level module the file belongs to.
    from: String,
    /// The top-level module it refers to.
    to: String,
    /// The source line, trimmed, for the report.
    text: String,
}

/// What [`check`] found.
#[derive(Debug, Default)]
struct Findings {
    /// A module that refers to a module of a layer above its own, one line per reference.
    upward: Vec<String>,
    /// Circles between top-level modules, each as `a -> b -> a` with a reference per arrow.
    cycles: Vec<String>,
    /// Modules that are in no layer (either the file's or the one it names).
    unplaced: Vec<String>,
}

impl Findings {
    fn is_empty(&self) -> bool {
        self.upward.is_empty() && self.cycles.is_empty() && self.unplaced.is_empty()
    }
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (title, lines) in [
            (
                "upward references (a lower layer naming a higher one)",
                &self.upward,
            ),
            ("import circles between top-level modules", &self.cycles),
            (
                "modules in no layer of the table (tests/layers.rs, docs/architecture.md)",
                &self.unplaced,
            ),
        ] {
            if !lines.is_empty() {
                writeln!(f, "{title}:")?;
                for l in lines {
                    writeln!(f, "  {l}")?;
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Reading the sources
// ------------------------------------------------------------------------------------------------

/// The source with comments, string literals and character literals replaced by spaces (line
/// breaks kept, so line numbers stay right). Lifetimes (`'a`) are left alone.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (ch == 'r' || (ch == 'b' && next == Some('r')))
            && (i == 0 || !is_ident(c[i - 1]))
            && {
                // A raw string: r"..", r#".."#, br"..".
                let mut j = i + if ch == 'b' { 2 } else { 1 };
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                c.get(j) == Some(&'"')
            }
        {
            let mut j = i + if ch == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &x in &c[i..j.min(c.len())] {
                blank(&mut out, x);
            }
            i = j;
        } else if ch == '"' {
            blank(&mut out, ch);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{7f}', '{') or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &x in &c[i..=end] {
                        blank(&mut out, x);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(ch);
                    i += 1;
                }
            }
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Identifiers, `::` and single punctuation characters, each with its line (1-based).
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The module path of a file under `src/`: `src/config/load.rs` -> `[config, load]`,
/// `src/config/mod.rs` -> `[config]`, `src/lib.rs` -> `[]`; `src/main.rs` -> `[main]` (the binary,
/// a crate of its own: its paths into the library start with `portcullis::`).
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_prefix("src/").unwrap_or(rel);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// Every reference of one file (`rel`, relative to the repository, under `src/`) to a top-level
/// module of the crate other than its own.
fn references(rel: &str, src: &str) -> Vec<Reference> {
    let file_path = module_path(rel);
    let Some(own) = file_path.first().cloned() else {
        return Vec::new(); // src/lib.rs
    };
    let is_binary = file_path == ["main"];
    let lines: Vec<&str> = src.lines().collect();
    let toks = tokens(&blank_comments_and_literals(src));
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).is_some_and(|(x, _)| *x == t);

    let mut found: Vec<(String, usize)> = Vec::new();
    // Names the crate root's child that starts at token `j`: `x` or each first name of a group
    // `{x, y::z, ..}`.
    let at_root = |j: usize, found: &mut Vec<(String, usize)>| {
        if is(j, Tok::Punct('{')) {
            let mut depth = 0;
            let mut item_start = true;
            for (t, line) in &toks[j..] {
                match t {
                    Tok::Punct('{') => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    Tok::Ident(name) if item_start && depth == 1 && name != "self" => {
                        found.push((name.clone(), *line));
                    }
                    _ => {}
                }
                item_start = false;
            }
        } else if let Some(name) = ident(j) {
            if !matches!(name, "self" | "super" | "crate") {
                found.push((name.to_string(), toks[j].1));
            }
        }
    };

    // Inline modules (`mod tests { .. }`) deepen the path that `super::` climbs from.
    let mut inline: Vec<usize> = Vec::new(); // brace depth at which each inline module opened
    let mut depth = 0usize;
    for (i, (tok, _)) in toks.iter().enumerate() {
        match tok {
            Tok::Punct('{') => {
                depth += 1;
                continue;
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                continue;
            }
            Tok::Ident(kw)
                if kw == "mod" && ident(i + 1).is_some() && is(i + 2, Tok::Punct('{')) =>
            {
                inline.push(depth + 1);
                continue;
            }
            _ => {}
        }
        // Only the first segment of a path: not the `crate` of `$crate`'s expansion target, nor
        // the second `super` of a chain.
        if i > 0 && is(i - 1, Tok::Path) {
            continue;
        }
        match ident(i) {
            Some("crate") if is(i + 1, Tok::Path) && !is_binary => at_root(i + 2, &mut found),
            Some("portcullis") if is(i + 1, Tok::Path) && is_binary => at_root(i + 2, &mut found),
            Some("super") if is(i + 1, Tok::Path) && !is_binary => {
                let mut climbs = 0;
                let mut j = i;
                while ident(j) == Some("super") && is(j + 1, Tok::Path) {
                    climbs += 1;
                    j += 2;
                }
                let here = file_path.len() + inline.len();
                if climbs == here {
                    at_root(j, &mut found); // climbed to the crate root
                }
            }
            _ => {}
        }
    }
    found
        .into_iter()
        .filter(|(to, _)| *to != own)
        .map(|(to, line)| Reference {
            file: rel.to_string(),
            line,
            from: own.clone(),
            to,
            text: lines.get(line - 1).map_or("", |l| l.trim()).to_string(),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Checking them
// ------------------------------------------------------------------------------------------------

fn layer_of(layers: &[(&str, &[&str])], module: &str) -> Option<usize> {
    layers.iter().position(|(_, mods)| mods.contains(&module))
}

/// Checks the references of `files` (path relative to the repository, source) against `layers`.
fn check(layers: &[(&str, &[&str])], files: &[(String, String)]) -> Findings {
    let mut findings = Findings::default();
    let mut unplaced = BTreeSet::new();
    // from -> to -> the first reference seen (for the cycle report)
    let mut graph: BTreeMap<String, BTreeMap<String, Reference>> = BTreeMap::new();
    for (rel, src) in files {
        if let Some(own) = module_path(rel).first() {
            if layer_of(layers, own).is_none() {
                unplaced.insert(format!("`{own}` ({rel})"));
            }
        }
        for r in references(rel, src) {
            let (Some(lf), Some(lt)) = (layer_of(layers, &r.from), layer_of(layers, &r.to)) else {
                if layer_of(layers, &r.to).is_none() {
                    unplaced.insert(format!("`{}` (named at {}:{})", r.to, r.file, r.line));
                }
                continue;
            };
            if lt > lf {
                findings.upward.push(format!(
                    "{}:{}: `{}` -- `{}` ({}) refers to `{}` ({}, a layer above)",
                    r.file, r.line, r.text, r.from, layers[lf].0, r.to, layers[lt].0
                ));
            }
            graph
                .entry(r.from.clone())
                .or_default()
                .entry(r.to.clone())
                .or_insert(r);
        }
    }
    findings.unplaced = unplaced.into_iter().collect();
    findings.cycles = cycles(&graph);
    findings
}

/// One circle per back edge of a depth-first walk (so at least one for every group of modules
/// that reach one another), each with the reference behind every arrow.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, Reference>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn walk(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, Reference>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut BTreeSet<Vec<String>>,
    ) {
        marks.insert(node.to_string(), Mark::OnStack);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::New => walk(next, graph, marks, stack, out),
                Mark::OnStack => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut circle = stack[from..].to_vec();
                    // The same circle found from another start is reported once.
                    let least = (0..circle.len()).min_by_key(|&k| &circle[k]).unwrap();
                    circle.rotate_left(least);
                    out.insert(circle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = BTreeSet::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            walk(node, graph, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
        .into_iter()
        .map(|circle| {
            let mut text = circle.join(" -> ") + " -> " + &circle[0];
            for (k, from) in circle.iter().enumerate() {
                let to = &circle[(k + 1) % circle.len()];
                let r = &graph[from][to];
                text += &format!(
                    "\n      {from} -> {to}: {}:{}: `{}`",
                    r.file, r.line, r.text
                );
            }
            text
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources_under(dir: &str) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    rust_files(&repo().join(dir), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let src = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, src)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------------

#[test]
fn no_module_refers_to_a_layer_above_it_and_no_circles() {
    let files = sources_under("src");
    assert!(files.len() > 50, "src/ should hold the edge's sources");
    let findings = check(LAYERS, &files);
    assert!(
        findings.is_empty(),
        "the layers of docs/architecture.md are broken:\n{findings}"
    );
    // The table names no module that is gone.
    let present: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| module_path(rel).first().cloned())
        .chain(["waf".to_string()])
        .collect();
    for (layer, modules) in LAYERS {
        for m in *modules {
            assert!(
                present.contains(*m),
                "`{m}` (layer {layer}) is not a module of src/"
            );
        }
    }
}

#[test]
fn the_table_mirrors_docs_architecture() {
    // docs/architecture.md's table: `| n | layer | `module`, `module` ... |`, bottom first.
    let doc = fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1].parse::<usize>().is_err() {
            continue;
        }
        let mut modules: Vec<String> = cells[3]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|m| m.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_string)
            .collect();
        modules.sort();
        rows.push((cells[2].to_string(), modules));
    }
    let table: Vec<(String, Vec<String>)> = LAYERS
        .iter()
        .map(|(layer, modules)| {
            let mut m: Vec<String> = modules.iter().map(|m| m.to_string()).collect();
            m.sort();
            (layer.to_string(), m)
        })
        .collect();
    assert_eq!(
        rows, table,
        "docs/architecture.md's layer table and tests/layers.rs's LAYERS differ"
    );
}

#[test]
fn the_waf_crate_names_no_proxy_runtime_or_tls_crate() {
    let mut hits = Vec::new();
    for (rel, src) in sources_under("crates/portcullis-waf/src") {
        for (n, line) in src.lines().enumerate() {
            for name in ["pingora", "tokio", "rustls"] {
                if line.contains(name) {
                    hits.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    let manifest = fs::read_to_string(repo().join("crates/portcullis-waf/Cargo.toml")).unwrap();
    for (n, line) in manifest.lines().enumerate() {
        let line = line.trim_start();
        if !line.starts_with('#')
            && ["pingora", "tokio", "rustls"]
                .iter()
                .any(|name| line.starts_with(name))
        {
            hits.push(format!(
                "crates/portcullis-waf/Cargo.toml:{}: {line}",
                n + 1
            ));
        }
    }
    assert!(
        hits.is_empty(),
        "crates/portcullis-waf must stay free of pingora, tokio and rustls:\n{}",
        hits.join("\n")
    );
}

// The checker itself: each kind of reference is found, and each kind of breach is reported.

fn synthetic(files: &[(&str, &str)]) -> Findings {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    check(LAYERS, &files)
}

#[test]
fn checker_reports_an_upward_import_with_file_and_line() {
    let f = synthetic(&[(
        "src/metrics.rs",
        "//! Metrics.\nuse crate::{\n    logging::LogSink,\n    plan::RuntimePlan,\n};\n",
    )]);
    assert_eq!(f.upward.len(), 1, "{f}");
    let line = &f.upward[0];
    assert!(
        line.starts_with("src/metrics.rs:4: `plan::RuntimePlan,`"),
        "{line}"
    );
    assert!(
        line.contains("`metrics` (mechanisms) refers to `plan` (plan"),
        "{line}"
    );
    assert!(f.cycles.is_empty() && f.unplaced.is_empty(), "{f}");
}

#[test]
fn checker_finds_every_form_of_path() {
    let src = r#"
use crate::config::Limits;
use crate::{ self, geo::{GeoField, GeoPolicy}, plan };
fn f() -> crate :: state::EdgeState { todo!() }
mod inner {
    use super::super::proxy::Proxy;
    fn g() { let _ = super::helper(); }
}
"#;
    let refs = references("src/upstream/probe.rs", src);
    let named: Vec<(&str, usize)> = refs.iter().map(|r| (r.to.as_str(), r.line)).collect();
    assert_eq!(
        named,
        [("config", 2), ("geo", 3), ("plan", 3), ("state", 4)],
        "`super::super` from src/upstream/probe.rs's inline module stays in upstream"
    );
    let refs = references("src/upstream/probe.rs", "use super::super::proxy::Proxy;\n");
    assert_eq!(refs.len(), 1);
    assert_eq!((refs[0].to.as_str(), refs[0].line), ("proxy", 1));
    let refs = references("src/main.rs", "fn main() { portcullis::cli::main(x) }\n");
    assert_eq!(refs[0].to, "cli");
    // A module's paths into itself are not references.
    assert!(references("src/plan/waf.rs", "use crate::plan::RuntimePlan;\n").is_empty());
}

#[test]
fn checker_ignores_comments_strings_and_char_literals() {
    let src = r###"
//! Compiled into [`crate::plan::RuntimePlan`].
/* use crate::proxy; /* nested */ use crate::server; */
const A: &str = "crate::proxy::Proxy";
const B: &str = r#"use crate::{proxy, "server"};"#;
const C: char = '{';
fn f<'a>(x: &'a str) -> &'a str { let _ = '"'; x }
use crate::geo::GeoField;
"###;
    let refs = references("src/config/mod.rs", src);
    let named: Vec<(&str, usize)> = refs.iter().map(|r| (r.to.as_str(), r.line)).collect();
    assert_eq!(named, [("geo", 8)]);
}

#[test]
fn checker_reports_an_import_circle() {
    let f = synthetic(&[
        ("src/geo/mod.rs", "use crate::netrules::Cidr;\n"),
        (
            "src/netrules/mod.rs",
            "\n\npub fn f() -> crate::geo::GeoField { todo!() }\n",
        ),
    ]);
    assert!(f.upward.is_empty(), "{f}");
    assert_eq!(f.cycles.len(), 1, "{f}");
    let c = &f.cycles[0];
    assert!(c.starts_with("geo -> netrules -> geo"), "{c}");
    assert!(
        c.contains("src/geo/mod.rs:1: `use crate::netrules::Cidr;`"),
        "{c}"
    );
    assert!(c.contains("src/netrules/mod.rs:3:"), "{c}");
}

#[test]
fn checker_reports_a_module_in_no_layer() {
    let f = synthetic(&[("src/newthing.rs", "use crate::config::Config;\n")]);
    assert!(f.unplaced.iter().any(|u| u.contains("`newthing`")), "{f}");
}
