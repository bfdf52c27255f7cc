//! Required-literal extraction from regexes, used to build one Aho-Corasick prefilter per
//! (collection, transform chain) so that most regexes never run.
//!
//! `required_literals(pattern)` returns a set of lowercase strings such that any text the regex
//! matches contains at least one of them (as a lowercase substring), or `None` when no useful set
//! (every string at least 2 chars, at most 64 strings) can be proven.

use regex_syntax::hir::{Class, Hir, HirKind};

const MAX_SET: usize = 64;
const MAX_CLASS: usize = 6;
/// A larger class still gives a useful filter when every member is a rare byte (punctuation or
/// a control character), such as `[\x00-\x08\x0b\x0c]`.
const MAX_RARE_BYTE_CLASS: usize = 16;

#[derive(Debug, Clone, Default)]
struct Info {
    /// The node matches exactly one of these strings (lowercased).
    exact: Option<Vec<String>>,
    /// Any match of the node contains one of these strings.
    required: Option<Vec<String>>,
    /// Like `required`, but the set with the fewest strings found (used when the best sets of
    /// several alternatives together are too many).
    small: Option<Vec<String>>,
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

/// The set of `i` with the fewest strings (each still a useful filter).
fn smallest_of(i: &Info) -> Option<Vec<String>> {
    fewest([i.exact.clone(), i.required.clone(), i.small.clone()])
}

/// Of several candidate sets, the one with the fewest strings that still filters something.
fn fewest(sets: impl IntoIterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    sets.into_iter()
        .flatten()
        .filter(|v| !v.is_empty() && v.iter().all(|s| useful_literal(s)))
        .min_by_key(|v| v.len())
}

/// Union of one set per branch, or None when a branch has none or the union is too large.
fn union_of(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for set in sets {
        all.extend(set?);
    }
    let all = dedup(all);
    (all.len() <= MAX_SET).then_some(all)
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
            small: None,
        },
        HirKind::Literal(l) => {
            let s: String = String::from_utf8_lossy(&l.0)
                .chars()
                .map(fold_char)
                .collect();
            Info {
                exact: Some(vec![s]),
                ..Info::default()
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
            let rare_bytes = chars.len() <= MAX_RARE_BYTE_CLASS
                && chars
                    .iter()
                    .all(|c| c.is_ascii_punctuation() || (c.is_ascii_control() && *c != '\t'));
            if too_many || (chars.len() > MAX_CLASS && !rare_bytes) || chars.is_empty() {
                Info::default()
            } else {
                Info {
                    exact: Some(chars.into_iter().map(|c| c.to_string()).collect()),
                    ..Info::default()
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
                        small: None,
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
                small: smallest_of(&i),
            }
        }
        HirKind::Concat(children) => {
            let mut candidates: Vec<Option<Vec<String>>> = Vec::new();
            let mut smalls: Vec<Option<Vec<String>>> = Vec::new();
            let mut cur: Vec<String> = vec![String::new()];
            let mut all_exact = true;
            for ch in children {
                let ci = analyze(ch, depth + 1);
                // Every child of a concatenation is part of every match: any of its sets will do.
                smalls.push(smallest_of(&ci));
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
            smalls.extend(candidates.iter().cloned());
            let mut best: Option<Vec<String>> = None;
            for c in candidates {
                best = better(best, c);
            }
            Info {
                exact: if all_exact { Some(cur) } else { None },
                required: best,
                small: fewest(smalls),
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
            // Each branch contributes its best set; when the union grows too large, branches fall
            // back to their smallest set (say the function names rather than every quoted form).
            let small = union_of(infos.iter().map(smallest_of));
            let required = union_of(infos.iter().map(best_of)).or_else(|| small.clone());
            Info {
                exact,
                required,
                small,
            }
        }
    }
}

/// A literal worth prefiltering on: two characters or more, or a single ASCII punctuation or
/// control byte (the engine checks those against a byte-presence set, so a rule that needs `;`,
/// `$` or a newline never runs on the many values without one). Single letters, digits and spaces
/// are in nearly every value and would only cost a lookup.
fn useful_literal(s: &str) -> bool {
    match s.as_bytes() {
        [] => false,
        [b] => b.is_ascii_punctuation() || (b.is_ascii_control() && *b != b'\t'),
        _ => true,
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
    if set.is_empty() || !set.iter().all(|s| useful_literal(s)) || set.len() > MAX_SET {
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

/// First-byte set of a regex: a 256-entry table of the bytes a (non-empty) match can start with,
/// or `None` when the regex can match the empty string (or the pattern does not parse, or every
/// byte is possible). A text containing none of these bytes cannot match, so the regex need not run.
pub fn first_bytes(pattern: &str) -> Option<Box<[bool; 256]>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let mut set = Box::new([false; 256]);
    let nullable = first_into(&hir, &mut set, 0)?;
    if nullable || set.iter().all(|&b| b) {
        return None;
    }
    Some(set)
}

fn lead_byte(c: char) -> u8 {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).as_bytes()[0]
}

/// Adds the possible first bytes of `h` to `set`; returns whether `h` can match the empty string
/// (None when the analysis gives up: too deep).
fn first_into(h: &Hir, set: &mut [bool; 256], depth: usize) -> Option<bool> {
    if depth > 200 {
        return None;
    }
    Some(match h.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => match l.0.first() {
            Some(&b) => {
                set[b as usize] = true;
                false
            }
            None => true,
        },
        HirKind::Class(Class::Unicode(u)) => {
            for r in u.ranges() {
                // UTF-8 lead bytes grow with the code point, so the range of lead bytes is a superset.
                let (a, b) = (lead_byte(r.start()), lead_byte(r.end()));
                for x in a..=b {
                    set[x as usize] = true;
                }
            }
            false
        }
        HirKind::Class(Class::Bytes(bc)) => {
            for r in bc.ranges() {
                for x in r.start()..=r.end() {
                    set[x as usize] = true;
                }
            }
            false
        }
        HirKind::Capture(c) => first_into(&c.sub, set, depth + 1)?,
        HirKind::Repetition(r) => {
            let n = first_into(&r.sub, set, depth + 1)?;
            n || r.min == 0
        }
        HirKind::Concat(children) => {
            let mut nullable = true;
            for ch in children {
                if !first_into(ch, set, depth + 1)? {
                    nullable = false;
                    break;
                }
            }
            nullable
        }
        HirKind::Alternation(alts) => {
            let mut nullable = false;
            for a in alts {
                if first_into(a, set, depth + 1)? {
                    nullable = true;
                }
            }
            nullable
        }
    })
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

    #[test]
    fn single_punctuation_and_control_bytes_count_as_literals() {
        let mut v = required_literals(r"^\s*(?:;|\|\|?|&&?|\n)\s*[a-z]{2,}").unwrap();
        v.sort();
        assert_eq!(v, vec!["\n", "&", ";", "|"]);
        assert_eq!(
            required_literals(r"(?:^|\s)\$\{?[a-z_]+"),
            Some(vec!["$".to_string()])
        );
        let v = required_literals(r"transfer-encoding\s+$|[\x00-\x08\x0b\x0c]").unwrap();
        assert_eq!(v.len(), 12, "{v:?}");
        // Too many quoted forms in one branch: the union falls back to each branch's smallest set.
        let fns = (0..40)
            .map(|i| format!("fn{i}x"))
            .collect::<Vec<_>>()
            .join("|");
        let keys = (0..40)
            .map(|i| format!("key{i}y"))
            .collect::<Vec<_>>()
            .join("|");
        let v = required_literals(&format!(r#"["'](?:{fns})["']\(|\[(?:{keys})\]"#)).unwrap();
        assert_eq!(v, vec!["(", "["]);
        // A set with a letter, digit or space in it is no filter at all.
        assert_eq!(required_literals(r"(?:;|a)b?"), None);
        assert_eq!(required_literals(r"\s\d"), None);
    }

    #[test]
    fn first_byte_sets() {
        let f = first_bytes(r"[\r\n]").unwrap();
        assert!(f[b'\r' as usize] && f[b'\n' as usize] && !f[b'a' as usize]);
        let f = first_bytes(r"(?i)\bab|^\s*x").unwrap();
        assert!(f[b'a' as usize] && f[b'A' as usize] && f[b'x' as usize] && f[b' ' as usize]);
        assert!(!f[b'b' as usize]);
        assert!(first_bytes(r"^\s*$").is_none());
        assert!(first_bytes(r"a*").is_none());
        let f = first_bytes(r"[^a-z]").unwrap();
        assert!(f[0xC3] && f[b'A' as usize] && !f[b'q' as usize]);
    }
}
