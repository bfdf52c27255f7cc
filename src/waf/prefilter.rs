//! Required-literal extraction from regexes, used to build one Aho-Corasick prefilter per
//! (collection, transform chain) so that most regexes never run.
//!
//! `required_literals(pattern)` returns a set of lowercase strings such that any text the regex
//! matches contains at least one of them (as a lowercase substring), or `None` when no useful set
//! (every string at least 2 chars, at most 64 strings) can be proven.

use regex_syntax::hir::{Class, Hir, HirKind};

const MAX_SET: usize = 64;
const MAX_CLASS: usize = 6;

#[derive(Debug, Clone, Default)]
struct Info {
    /// The node matches exactly one of these strings (lowercased).
    exact: Option<Vec<String>>,
    /// Any match of the node contains one of these strings.
    required: Option<Vec<String>>,
}

fn score(set: &Option<Vec<String>>) -> usize {
    match set {
        Some(v) if !v.is_empty() => v.iter().map(|s| s.chars().count()).min().unwrap_or(0),
        _ => 0,
    }
}

fn better(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    let (sa, sb) = (score(&a), score(&b));
    if sa > sb || (sa == sb && sa > 0 && a.as_ref().map(|v| v.len()) <= b.as_ref().map(|v| v.len()))
    {
        a
    } else if sb > 0 {
        b
    } else {
        None
    }
}

fn best_of(i: &Info) -> Option<Vec<String>> {
    better(i.exact.clone(), i.required.clone())
}

fn fold_char(c: char) -> char {
    match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        '\u{212B}' => '\u{e5}',
        _ => c.to_lowercase().next().unwrap_or(c),
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn analyze(h: &Hir, depth: usize) -> Info {
    if depth > 200 {
        return Info::default();
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info {
            exact: Some(vec![String::new()]),
            required: None,
        },
        HirKind::Literal(l) => {
            let s: String = String::from_utf8_lossy(&l.0)
                .chars()
                .map(fold_char)
                .collect();
            Info {
                exact: Some(vec![s]),
                required: None,
            }
        }
        HirKind::Class(c) => {
            let mut chars: Vec<char> = Vec::new();
            let mut too_many = false;
            match c {
                Class::Unicode(u) => {
                    for r in u.ranges() {
                        let (a, b) = (r.start() as u32, r.end() as u32);
                        if b - a > MAX_CLASS as u32 * 3 {
                            too_many = true;
                            break;
                        }
                        for cp in a..=b {
                            if let Some(ch) = char::from_u32(cp) {
                                chars.push(fold_char(ch));
                            }
                        }
                    }
                }
                Class::Bytes(bc) => {
                    for r in bc.ranges() {
                        if r.end() - r.start() > MAX_CLASS as u8 * 3 {
                            too_many = true;
                            break;
                        }
                        for b in r.start()..=r.end() {
                            chars.push(fold_char(b as char));
                        }
                    }
                }
            }
            chars.sort();
            chars.dedup();
            if too_many || chars.len() > MAX_CLASS || chars.is_empty() {
                Info::default()
            } else {
                Info {
                    exact: Some(chars.into_iter().map(|c| c.to_string()).collect()),
                    required: None,
                }
            }
        }
        HirKind::Capture(c) => analyze(&c.sub, depth + 1),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                if r.max == Some(0) {
                    return Info {
                        exact: Some(vec![String::new()]),
                        required: None,
                    };
                }
                return Info::default();
            }
            let i = analyze(&r.sub, depth + 1);
            if r.min == 1 && r.max == Some(1) {
                return i;
            }
            Info {
                exact: None,
                required: best_of(&i),
            }
        }
        HirKind::Concat(children) => {
            let mut candidates: Vec<Option<Vec<String>>> = Vec::new();
            let mut cur: Vec<String> = vec![String::new()];
            let mut all_exact = true;
            for ch in children {
                let ci = analyze(ch, depth + 1);
                if ci.required.is_some() {
                    candidates.push(ci.required.clone());
                }
                match ci.exact {
                    Some(e) => {
                        if cur.len() * e.len() > MAX_SET {
                            candidates.push(Some(cur.clone()));
                            cur = e;
                            all_exact = false;
                        } else {
                            let mut next = Vec::with_capacity(cur.len() * e.len());
                            for a in &cur {
                                for b in &e {
                                    next.push(format!("{}{}", a, b));
                                }
                            }
                            cur = dedup(next);
                        }
                    }
                    None => {
                        candidates.push(Some(cur.clone()));
                        cur = vec![String::new()];
                        all_exact = false;
                    }
                }
            }
            candidates.push(Some(cur.clone()));
            let mut best: Option<Vec<String>> = None;
            for c in candidates {
                best = better(best, c);
            }
            Info {
                exact: if all_exact { Some(cur) } else { None },
                required: best,
            }
        }
        HirKind::Alternation(alts) => {
            let infos: Vec<Info> = alts.iter().map(|a| analyze(a, depth + 1)).collect();
            let exact = if infos.iter().all(|i| i.exact.is_some()) {
                let mut all: Vec<String> = infos
                    .iter()
                    .flat_map(|i| i.exact.clone().unwrap_or_default())
                    .collect();
                all = dedup(all);
                if all.len() <= MAX_SET {
                    Some(all)
                } else {
                    None
                }
            } else {
                None
            };
            let mut req: Vec<String> = Vec::new();
            let mut ok = true;
            for i in &infos {
                match best_of(i) {
                    Some(v) => req.extend(v),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            let required = if ok {
                let r = dedup(req);
                if r.len() <= MAX_SET {
                    Some(r)
                } else {
                    None
                }
            } else {
                None
            };
            Info { exact, required }
        }
    }
}

/// Required literal set of a regex, or None when it must always run.
pub fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let info = analyze(&hir, 0);
    let set = best_of(&info)?;
    if set.is_empty() || set.iter().any(|s| s.chars().count() < 2) || set.len() > MAX_SET {
        return None;
    }
    // Drop strings that contain another member (the shorter one suffices).
    let mut out: Vec<String> = Vec::new();
    let mut sorted = set;
    sorted.sort_by_key(|s| s.len());
    for s in sorted {
        if !out.iter().any(|o| s.contains(o.as_str())) {
            out.push(s);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts() {
        assert_eq!(
            required_literals(r"(?i)union\s+select"),
            Some(vec!["select".to_string()])
        );
        let mut v = required_literals(r"(?i)\b(?:passwd|shadow)\b").unwrap();
        v.sort();
        assert_eq!(v, vec!["passwd", "shadow"]);
        assert_eq!(required_literals(r"\d+"), None);
        assert_eq!(required_literals(r"a.b"), None);
        assert_eq!(
            required_literals(r"(?i)<script"),
            Some(vec!["<script".to_string()])
        );
        assert_eq!(required_literals(r"foo|\w+"), None);
        assert_eq!(
            required_literals(r"(?i)on[a-z]+\s*="),
            Some(vec!["on".to_string()])
        );
    }
}
