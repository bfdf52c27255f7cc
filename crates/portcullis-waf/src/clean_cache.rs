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
//! whole request, so a lookup is a plain method call on it. The table is eight-way
//! set-associative and bounded (`SETS` x `WAYS` entries of at most `MAX_VALUE` bytes), so it
//! costs a few MiB per worker thread at most. A new entry evicts the one of its set used least
//! recently, told by a use counter, so a hit moves nothing. Sets of two ways lost values on every
//! request of a large form: with a thousand fields some sets receive three, and three values
//! taking turns in two ways of least-recent eviction miss every time. Eight ways make that
//! practically never happen at this table size. The hashes of a set sit together in one cache
//! line, so a lookup touches one line plus the entry it verifies. The hash is seeded per process,
//! so a client cannot aim values at one set to keep it cold on purpose beyond what any miss costs.

use std::hash::{BuildHasher, Hasher};

/// Sets per thread (a power of two).
const SETS: usize = 1024;
/// Entries per set.
const WAYS: usize = 8;
/// Longer values are not remembered: they rarely repeat and would make the table large.
pub const MAX_VALUE: usize = 512;

struct Entry {
    tag: u64,
    slot: u16,
    name_len: u32,
    /// Name followed by value.
    text: Box<str>,
}

impl Entry {
    fn is(&self, tag: u64, slot: u16, name: &str, value: &str) -> bool {
        self.tag == tag
            && self.slot == slot
            && self.name_len as usize == name.len()
            && self.text.len() == name.len() + value.len()
            && self.text.as_bytes()[..name.len()] == *name.as_bytes()
            && self.text.as_bytes()[name.len()..] == *value.as_bytes()
    }
}

/// One thread's remembered values (empty until the first one is remembered). `hashes[i]` is the
/// hash of `entries[i]`; an empty way has no entry, whatever its hash reads. (The clock wraps
/// after four billion uses; an old entry may then look recent once, which costs at most a miss.)
#[derive(Default)]
pub struct Table {
    hashes: Vec<u64>,
    /// When each entry was last used, by `clock`: a hit writes one number instead of moving
    /// entries, and an insert evicts the way with the oldest.
    used: Vec<u32>,
    clock: u32,
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
    // No separator between name and value: foldhash mixes each piece's length in, and two keys
    // that still hash alike only share a set (entries are compared byte for byte).
    let mut h = SEED.build_hasher();
    h.write_u16(slot);
    h.write(name.as_bytes());
    h.write(value.as_bytes());
    Some(Key { hash: h.finish() })
}

impl Table {
    /// True when this exact variable was found clean under the same rules (`tag`).
    pub fn is_clean(&mut self, k: Key, tag: u64, slot: u16, name: &str, value: &str) -> bool {
        let set = set_of(k);
        let Some(hashes) = self.hashes.get(set..set + WAYS) else {
            return false;
        };
        for (way, &h) in hashes.iter().enumerate() {
            if h != k.hash {
                continue;
            }
            let i = set + way;
            if self.entries[i]
                .as_ref()
                .is_some_and(|e| e.is(tag, slot, name, value))
            {
                self.clock = self.clock.wrapping_add(1);
                self.used[i] = self.clock;
                return true;
            }
        }
        false
    }

    /// Remembers a clean value in its set, in place of the entry used least recently.
    pub fn remember_clean(&mut self, k: Key, tag: u64, slot: u16, name: &str, value: &str) {
        if self.entries.is_empty() {
            self.hashes = vec![0; SETS * WAYS];
            self.used = vec![0; SETS * WAYS];
            self.entries.resize_with(SETS * WAYS, || None);
        }
        let mut text = String::with_capacity(name.len() + value.len());
        text.push_str(name);
        text.push_str(value);
        let set = set_of(k);
        let oldest = (set..set + WAYS)
            .min_by_key(|&i| (self.entries[i].is_some(), self.used[i]))
            .unwrap_or(set);
        self.clock = self.clock.wrapping_add(1);
        self.used[oldest] = self.clock;
        self.hashes[oldest] = k.hash;
        self.entries[oldest] = Some(Entry {
            tag,
            slot,
            name_len: name.len() as u32,
            text: text.into_boxed_str(),
        });
    }

    /// Forgets everything (benchmarks of the uncached path).
    pub fn clear(&mut self) {
        self.hashes.clear();
        self.used.clear();
        self.entries.clear();
    }
}

/// Index of the first entry of a key's set.
fn set_of(k: Key) -> usize {
    (k.hash as usize & (SETS - 1)) * WAYS
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
    fn a_set_keeps_its_ways_and_evicts_the_least_recently_used() {
        let mut t = Table::default();
        // Keys of one set, told apart by their values.
        let k = |n: u64| Key {
            hash: 5 + n * SETS as u64,
        };
        let value = |n: u64| format!("v{n}");
        for n in 0..WAYS as u64 {
            t.remember_clean(k(n), 1, 1, "n", &value(n));
        }
        for n in 0..WAYS as u64 {
            assert!(t.is_clean(k(n), 1, 1, "n", &value(n)), "way {n} kept");
        }
        // Value 0 was used least recently; touching it makes value 1 the oldest.
        assert!(t.is_clean(k(0), 1, 1, "n", &value(0)));
        let newcomer = WAYS as u64;
        t.remember_clean(k(newcomer), 1, 1, "n", &value(newcomer));
        assert!(t.is_clean(k(newcomer), 1, 1, "n", &value(newcomer)));
        assert!(t.is_clean(k(0), 1, 1, "n", &value(0)));
        assert!(
            !t.is_clean(k(1), 1, 1, "n", &value(1)),
            "value 1 was evicted"
        );
        for n in 2..WAYS as u64 {
            assert!(t.is_clean(k(n), 1, 1, "n", &value(n)), "way {n} kept");
        }
    }

    #[test]
    fn equal_hashes_with_different_values_are_told_apart() {
        let mut t = Table::default();
        let k = Key { hash: 9 };
        t.remember_clean(k, 1, 1, "n", "a");
        t.remember_clean(k, 1, 1, "n", "b");
        assert!(t.is_clean(k, 1, 1, "n", "a"));
        assert!(t.is_clean(k, 1, 1, "n", "b"));
        assert!(!t.is_clean(k, 1, 1, "n", "c"));
    }

    #[test]
    fn long_values_are_not_remembered() {
        assert!(key(1, "a", &"x".repeat(MAX_VALUE + 1)).is_none());
        assert!(key(1, "a", &"x".repeat(MAX_VALUE)).is_some());
    }
}
