//! Per-thread memory of variable values that matched no rule.
//!
//! Real traffic repeats itself: the same `User-Agent`, `Accept-Language`, cookie names, argument
//! names and small argument values arrive on request after request. Running every transformation,
//! prefilter and operator again on a value that was found clean a moment ago is the engine's
//! largest avoidable cost, so [`WafPlan::evaluate`](super::WafPlan::evaluate) remembers values
//! that came through *every* rule of their collection without a match, and skips them next time.
//!
//! Soundness: an entry is only written when the outcome depended on nothing but the key:
//!
//! * the key is the collection slot, the variable name and the value, compared byte for byte
//!   (the hash only picks a slot);
//! * the tag binds the compiled rule plan (a process-unique id) and the policy's rule selection
//!   ([`Policy::selection_key`](super::Policy::selection_key)): a reload or another site's policy
//!   never reads an entry written under different rules;
//! * the engine does not write an entry when a rule matched, when a rule was skipped because it
//!   already matched earlier in the request, when a chained condition (which looks at other
//!   variables) decided, or when an exclusion applied to the request.
//!
//! Each worker thread has its own table, kept in the engine's per-thread memo and borrowed for a
//! whole request, so a lookup is a plain method call on it. The table is two-way set-associative and bounded (`SETS` x 2 entries of at most `MAX_VALUE`
//! bytes), so it costs a few MiB per worker thread at most. A hit moves its entry to the front of
//! its set and a new entry evicts the one used least recently: a form of some hundred fields keeps
//! all of them (a direct-mapped table of the same size lost a third of them to collisions on every
//! request). The hash is seeded per process, so a client cannot aim values at one set to keep it
//! cold on purpose beyond what any miss costs.

use std::hash::{BuildHasher, Hasher};

/// Sets per thread (a power of two), of two entries each.
const SETS: usize = 4096;
/// Longer values are not remembered: they rarely repeat and would make the table large.
pub const MAX_VALUE: usize = 512;

struct Entry {
    hash: u64,
    tag: u64,
    slot: u16,
    name_len: u32,
    /// Name followed by value.
    text: Box<str>,
}

impl Entry {
    fn is(&self, hash: u64, tag: u64, slot: u16, name: &str, value: &str) -> bool {
        self.hash == hash
            && self.tag == tag
            && self.slot == slot
            && self.name_len as usize == name.len()
            && self.text.len() == name.len() + value.len()
            && self.text.as_bytes()[..name.len()] == *name.as_bytes()
            && self.text.as_bytes()[name.len()..] == *value.as_bytes()
    }
}

/// One thread's remembered values (empty until the first one is remembered).
#[derive(Default)]
pub struct Table {
    entries: Vec<Option<Entry>>,
}

/// The hash seed, random per process (so a client cannot aim collisions at
/// a known seed) and shared by all threads, so hashing a key needs no
/// thread-local access.
static SEED: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(foldhash::fast::RandomState::default);

/// Hash of one variable, computed once and used for both the lookup and the insert.
#[derive(Clone, Copy)]
pub struct Key {
    hash: u64,
}

/// The key of a variable, or None when the value is too long to be remembered.
pub fn key(slot: u16, name: &str, value: &str) -> Option<Key> {
    if value.len() > MAX_VALUE || name.len() > MAX_VALUE {
        return None;
    }
    let mut h = SEED.build_hasher();
    h.write_u16(slot);
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.write(value.as_bytes());
    Some(Key { hash: h.finish() })
}

impl Table {
    /// True when this exact variable was found clean under the same rules (`tag`).
    pub fn is_clean(&mut self, k: Key, tag: u64, slot: u16, name: &str, value: &str) -> bool {
        let set = set_of(k);
        let Some(ways) = self.entries.get_mut(set..set + 2) else {
            return false;
        };
        let hit = |w: &Option<Entry>| {
            w.as_ref()
                .is_some_and(|e| e.is(k.hash, tag, slot, name, value))
        };
        if hit(&ways[0]) {
            return true;
        }
        if hit(&ways[1]) {
            ways.swap(0, 1);
            return true;
        }
        false
    }

    /// Remembers a clean value in front of its set, evicting the entry used least recently.
    pub fn remember_clean(&mut self, k: Key, tag: u64, slot: u16, name: &str, value: &str) {
        if self.entries.is_empty() {
            self.entries.resize_with(SETS * 2, || None);
        }
        let mut text = String::with_capacity(name.len() + value.len());
        text.push_str(name);
        text.push_str(value);
        let set = set_of(k);
        self.entries.swap(set, set + 1);
        self.entries[set] = Some(Entry {
            hash: k.hash,
            tag,
            slot,
            name_len: name.len() as u32,
            text: text.into_boxed_str(),
        });
    }

    /// Forgets everything (benchmarks of the uncached path).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Index of the first entry of a key's set.
fn set_of(k: Key) -> usize {
    (k.hash as usize & (SETS - 1)) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exact_variable_under_its_tag_only() {
        let mut t = Table::default();
        let k = key(3, "user-agent", "curl/8").unwrap();
        assert!(!t.is_clean(k, 7, 3, "user-agent", "curl/8"));
        t.remember_clean(k, 7, 3, "user-agent", "curl/8");
        assert!(t.is_clean(k, 7, 3, "user-agent", "curl/8"));
        // Another tag (plan or policy), slot, name or value never reads the entry.
        assert!(!t.is_clean(k, 8, 3, "user-agent", "curl/8"));
        assert!(!t.is_clean(k, 7, 4, "user-agent", "curl/8"));
        assert!(!t.is_clean(k, 7, 3, "user-agen", "tcurl/8"));
        assert!(!t.is_clean(k, 7, 3, "user-agent", "curl/9"));
        t.clear();
        assert!(!t.is_clean(k, 7, 3, "user-agent", "curl/8"));
    }

    #[test]
    fn a_set_keeps_two_values_and_evicts_the_least_recently_used() {
        let mut t = Table::default();
        let (a, b, c) = (
            Key { hash: 5 },
            Key {
                hash: 5 + SETS as u64,
            },
            Key {
                hash: 5 + 2 * SETS as u64,
            },
        );
        t.remember_clean(a, 1, 1, "n", "a");
        t.remember_clean(b, 1, 1, "n", "b");
        assert!(t.is_clean(a, 1, 1, "n", "a"), "a survives b in its set");
        assert!(t.is_clean(b, 1, 1, "n", "b"));
        assert!(t.is_clean(a, 1, 1, "n", "a"), "a is now the most recent");
        t.remember_clean(c, 1, 1, "n", "c");
        assert!(t.is_clean(c, 1, 1, "n", "c"));
        assert!(t.is_clean(a, 1, 1, "n", "a"));
        assert!(!t.is_clean(b, 1, 1, "n", "b"), "b was used least recently");
    }

    #[test]
    fn long_values_are_not_remembered() {
        assert!(key(1, "a", &"x".repeat(MAX_VALUE + 1)).is_none());
        assert!(key(1, "a", &"x".repeat(MAX_VALUE)).is_some());
    }
}
