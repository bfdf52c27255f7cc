//! Assembling checked rules into the immutable plan that `evaluate` walks.
//!
//! Rules are grouped by the collection they inspect (and, when they name their variables exactly,
//! by name), so a variable only meets the groups of its collection. Each group gets a prefilter
//! built from its rules' required literals: an Aho-Corasick automaton (with a vectorised quick
//! search in front of it for small groups), a byte-presence set for one-byte literals, and the
//! rules that have no literal and always run. Each group also records the transformation chains
//! (with their prefixes) its rules need. Identical named groups are merged so that each automaton
//! is built once.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::{packed, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::{ChainInfo, Group, MetaKind, Op, Rule, WafPlan};
use crate::prefilter::required_literals;
use crate::target::{Coll, NameMatch, Selector, N_FIXED_COLLS};
use crate::transform::byte_set;

/// Source of [`WafPlan`] ids: each compiled plan gets its own, so per-thread memories keyed by
/// plan (see [`clean_cache`](crate::clean_cache)) never mix a reloaded rule set with an
/// older one.
static NEXT_PLAN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl WafPlan {
    /// The plan of `rules` (sorted by id), whose conditions refer to `chains` and to the meta
    /// targets `metas` by index.
    pub(super) fn assemble(
        mut rules: Vec<Rule>,
        chains: Vec<ChainInfo>,
        metas: Vec<String>,
    ) -> WafPlan {
        let n_slots = N_FIXED_COLLS + metas.len();
        let mut group_idx: HashMap<(usize, String, bool), usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut by_slot: Vec<Vec<usize>> = vec![Vec::new(); n_slots];
        let mut lits_per_group: Vec<Vec<(String, u32)>> = Vec::new();
        let mut used = vec![false; n_slots];
        for (ri, rule) in rules.iter_mut().enumerate() {
            // Explicit prefilter from the rule file.
            let mut explicit: Option<Vec<String>> = None;
            if let Some(pos) = rule.tags.iter().position(|t| t.starts_with("__prefilter:")) {
                let t = rule.tags.remove(pos);
                let list: Vec<String> = t["__prefilter:".len()..]
                    .split('\u{1}')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string())
                    .collect();
                explicit = Some(list);
            }
            let lits = if rule.main.negate {
                None
            } else {
                match explicit {
                    Some(l) if l.is_empty() => None,
                    Some(l) => Some(l),
                    None => rule.main.op.literals(),
                }
            };
            let mut colls: Vec<Coll> = rule.main.include.iter().map(|s| s.coll).collect();
            colls.sort();
            colls.dedup();
            for c in rule
                .chain
                .iter()
                .flat_map(|c| c.include.iter().map(|s| s.coll))
            {
                used[c.slot(0)] = true;
            }
            for coll in colls {
                let slot = coll.slot(0);
                used[slot] = true;
                // Rules that only select variables by exact name go to per-name groups.
                let sels: Vec<&Selector> = rule
                    .main
                    .include
                    .iter()
                    .filter(|s| s.coll == coll)
                    .collect();
                let names: Vec<String> =
                    if sels.iter().all(|s| matches!(s.name, NameMatch::Exact(_))) {
                        sels.iter()
                            .filter_map(|s| match &s.name {
                                NameMatch::Exact(n) => Some(n.to_ascii_lowercase()),
                                _ => None,
                            })
                            .collect()
                    } else {
                        vec![String::new()]
                    };
                let skip_parsed_body =
                    coll == Coll::Body && rule.main.include.iter().any(|s| s.coll == Coll::Args);
                for name in names {
                    let key = (slot, name.clone(), skip_parsed_body);
                    let gi = *group_idx.entry(key).or_insert_with(|| {
                        groups.push(Group {
                            names: (!name.is_empty()).then(|| vec![name.clone()]),
                            slot,
                            skip_parsed_body,
                            chains: Vec::new(),
                            need_chains: Vec::new(),
                            need_set: 0,
                            byte_rules: Vec::new(),
                            byte_mask: [0; 4],
                            ac: None,
                            quick: None,
                            pat_rules: Vec::new(),
                            always: Vec::new(),
                            members: Vec::new(),
                        });
                        lits_per_group.push(Vec::new());
                        by_slot[slot].push(groups.len() - 1);
                        groups.len() - 1
                    });
                    if !groups[gi].chains.contains(&rule.main.chain) {
                        groups[gi].chains.push(rule.main.chain);
                    }
                    match &lits {
                        Some(l) => {
                            for s in l {
                                lits_per_group[gi].push((s.clone(), ri as u32));
                            }
                        }
                        None => groups[gi].always.push(ri as u32),
                    }
                }
            }
        }
        merge_identical_named_groups(&mut groups, &mut lits_per_group, &mut by_slot);
        for (gi, lits) in lits_per_group.into_iter().enumerate() {
            if lits.is_empty() {
                continue;
            }
            let mut pats: Vec<String> = Vec::new();
            let mut pat_rules: Vec<Vec<u32>> = Vec::new();
            let mut idx: HashMap<String, usize> = HashMap::new();
            let mut bytes: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            for (s, r) in lits {
                if s.len() == 1 {
                    let b = s.as_bytes()[0];
                    for bb in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        let e = bytes.entry(bb).or_default();
                        if !e.contains(&r) {
                            e.push(r);
                        }
                    }
                    continue;
                }
                let i = *idx.entry(s.clone()).or_insert_with(|| {
                    pats.push(s.clone());
                    pat_rules.push(Vec::new());
                    pats.len() - 1
                });
                if !pat_rules[i].contains(&r) {
                    pat_rules[i].push(r);
                }
            }
            groups[gi].byte_mask = byte_set(&bytes.keys().copied().collect::<Vec<u8>>());
            groups[gi].byte_rules = bytes.into_iter().collect();
            if pats.is_empty() {
                continue;
            }
            match AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(automaton_kind(pats.len(), groups[gi].slot)))
                .build(&pats)
            {
                Ok(ac) => {
                    groups[gi].ac = Some(ac);
                    groups[gi].quick = quick_search(&pats);
                    groups[gi].pat_rules = pat_rules;
                }
                Err(_) => {
                    let mut all: Vec<u32> = pat_rules.into_iter().flatten().collect();
                    all.sort();
                    all.dedup();
                    groups[gi].always.extend(all);
                }
            }
        }
        for g in groups.iter_mut() {
            let mut m: Vec<u32> = g.always.clone();
            m.extend(g.pat_rules.iter().flatten().copied());
            m.extend(g.byte_rules.iter().flat_map(|(_, rs)| rs.iter().copied()));
            m.sort_unstable();
            m.dedup();
            m.sort_by_key(|&r| rules.get(r as usize).map(|x| x.pl).unwrap_or(0));
            g.members = m;
        }
        // Chains each group needs (with prefixes), in creation order so parents come first.
        for g in groups.iter_mut() {
            let mut need: Vec<usize> = Vec::new();
            for &c0 in &g.chains {
                let mut c = c0;
                while c != 0 {
                    need.push(c);
                    c = chains[c].parent;
                }
            }
            need.sort();
            need.dedup();
            g.need_set = need.iter().fold(0, |set, &c| set | chains[c].set);
            g.need_chains = need;
        }
        let cookie_header_named = rules.iter().any(|r| {
            r.main
                .include
                .iter()
                .chain(r.chain.iter().flat_map(|c| c.include.iter()))
                .any(|s| {
                    s.coll == Coll::Headers
                        && !matches!(s.name, NameMatch::Any)
                        && s.name.matches("cookie")
                })
        });
        WafPlan {
            id: NEXT_PLAN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rules,
            chains,
            groups,
            by_slot,
            meta_kinds: metas.iter().map(|m| MetaKind::parse(m)).collect(),
            metas,
            used,
            cookie_header_named,
        }
    }
}

/// Folds named groups of one slot whose rules, chains and literals are identical into one group
/// with several names: rules that list several spellings of a header would otherwise build the
/// same automaton once per spelling.
fn merge_identical_named_groups(
    groups: &mut Vec<Group>,
    lits_per_group: &mut Vec<Vec<(String, u32)>>,
    by_slot: &mut [Vec<usize>],
) {
    /// What makes two groups the same: slot, body flag, chains, literals with their rules, and
    /// the rules that always run.
    type Signature = (usize, bool, Vec<usize>, Vec<(String, u32)>, Vec<u32>);
    let mut first_with: HashMap<Signature, usize> = HashMap::new();
    // Where each group ends up: itself, or the earlier identical group it merges into.
    let mut target: Vec<usize> = (0..groups.len()).collect();
    for (gi, group) in groups.iter().enumerate() {
        if group.names.is_none() {
            continue;
        }
        let (mut chains, mut lits, mut always) = (
            group.chains.clone(),
            lits_per_group[gi].clone(),
            group.always.clone(),
        );
        chains.sort_unstable();
        lits.sort_unstable();
        always.sort_unstable();
        let signature = (group.slot, group.skip_parsed_body, chains, lits, always);
        target[gi] = *first_with.entry(signature).or_insert(gi);
    }
    for gi in 0..groups.len() {
        if target[gi] != gi {
            let names = groups[gi].names.take().unwrap_or_default();
            if let Some(kept) = groups[target[gi]].names.as_mut() {
                kept.extend(names);
            }
        }
    }
    let kept_groups: Vec<bool> = (0..groups.len()).map(|gi| target[gi] == gi).collect();
    // Renumber the groups that remain, keeping their order.
    let mut new_index = vec![usize::MAX; groups.len()];
    let kept = kept_groups.iter().enumerate().filter(|(_, &k)| k);
    for (next, (gi, _)) in kept.enumerate() {
        new_index[gi] = next;
    }
    keep_marked(groups, &kept_groups);
    keep_marked(lits_per_group, &kept_groups);
    for members in by_slot.iter_mut() {
        members.retain(|&g| target[g] == g);
        members.iter_mut().for_each(|g| *g = new_index[*g]);
    }
}

/// Keeps the items of `v` whose flag in `keep` is set, in order.
fn keep_marked<T>(v: &mut Vec<T>, keep: &[bool]) {
    *v = std::mem::take(v)
        .into_iter()
        .zip(keep)
        .filter_map(|(item, &kept)| kept.then_some(item))
        .collect();
}

/// Groups with at most this many literals get a quick searcher (see [`Group::quick`]).
const SMALL_GROUP_LITERALS: usize = 64;

/// The prefilter automaton for a group of `literals` literals. A DFA executes far fewer
/// instructions per scanned byte than a contiguous NFA, and its table grows with the literals:
/// some 40 KB for twenty, 3 MB for a thousand (against 0.3 MB as an NFA). Groups of up to
/// [`DFA_MAX_LITERALS`] get one. With the headers' groups (140-480 literals) as DFAs, the
/// automata's share of an ordinary benign request (the middle tenth of the corpus) fell from
/// 15.3k to 7.4k instructions, and by the clock the corpus ran 1-6% faster at the median and 5%
/// at p99, for 8 MB more memory. The argument groups get a DFA whatever their size too: request
/// bodies arrive there as arguments, so theirs are the long values (up to the body limit), each
/// scanned once per distinct transformed value. That cost 2.5 MB and took the slowest benign
/// request of the corpus (a 160 KiB JSON body) from 54 to 41 ms and the benign p99 down 5%. The
/// cookie and file groups (900-1,100 literals, values bounded by the head size) stay NFAs
/// (BENCHMARKS.md, engine log).
fn automaton_kind(literals: usize, slot: usize) -> AhoCorasickKind {
    if literals <= DFA_MAX_LITERALS || slot == Coll::Args.slot(0) {
        AhoCorasickKind::DFA
    } else {
        AhoCorasickKind::ContiguousNFA
    }
}

/// The largest group that gets a DFA (see [`automaton_kind`]).
const DFA_MAX_LITERALS: usize = 480;

/// The quick searcher of a small group (see [`Group::quick`]), over the literals in ASCII
/// lowercase, or None when the group is large or the CPU has no vector search.
fn quick_search(literals: &[String]) -> Option<packed::Searcher> {
    if literals.len() > SMALL_GROUP_LITERALS {
        return None;
    }
    packed::Config::new()
        .builder()
        .extend(literals.iter().map(|l| l.to_ascii_lowercase()))
        .build()
}

impl Op {
    fn literals(&self) -> Option<Vec<String>> {
        match self {
            Op::Rx(r, _) => required_literals(r.as_str()),
            Op::Pm(_, p) => {
                if p.iter().all(|s| !s.is_empty()) {
                    Some(p.iter().map(|s| s.to_lowercase()).collect())
                } else {
                    None
                }
            }
            Op::Contains(s) | Op::BeginsWith(s) | Op::EndsWith(s) | Op::Eq(s) if !s.is_empty() => {
                Some(vec![s.to_lowercase()])
            }
            _ => None,
        }
    }
}

impl MetaKind {
    fn parse(m: &str) -> MetaKind {
        let parts: Vec<&str> = m.splitn(3, ':').collect();
        match (
            parts.first().copied().unwrap_or(""),
            parts.get(1).copied().unwrap_or(""),
            parts.get(2),
        ) {
            ("count", "args", None) => MetaKind::CountArgs,
            ("count", "headers", None) => MetaKind::CountHeaders,
            ("count", "cookies", None) => MetaKind::CountCookies,
            ("count", "files", None) => MetaKind::CountFiles,
            ("count", "headers", Some(n)) => MetaKind::CountHeader(n.to_string()),
            ("count", "args", Some(n)) => MetaKind::CountArg(n.to_string()),
            ("count", "cookies", Some(n)) => MetaKind::CountCookie(n.to_string()),
            ("length", "uri", _) => MetaKind::LengthUri,
            ("length", "path", _) => MetaKind::LengthPath,
            ("length", "query", _) => MetaKind::LengthQuery,
            ("length", "body", _) => MetaKind::LengthBody,
            ("length", "headers", _) => MetaKind::LengthHeaders,
            ("length", "args", _) => MetaKind::LengthArgs,
            _ => MetaKind::Unknown,
        }
    }
}
