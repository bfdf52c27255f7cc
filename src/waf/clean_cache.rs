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
//! The table is direct-mapped and bounded (`SLOTS` entries of at most `MAX_VALUE` bytes), so it
//! costs a few MiB per worker thread at most; a colliding value simply evicts the older one. The
//! hash is seeded per process, so a client cannot aim values at one slot to keep it cold on purpose
//! beyond what any miss costs.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};

/// Entries per thread (a power of two).
const SLOTS: usize = 4096;
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

struct Table {
    entries: Vec<Option<Entry>>,
}

thread_local! {
    static TABLE: RefCell<Table> = const { RefCell::new(Table { entries: Vec::new() }) };
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

/// True when this exact variable was found clean under the same rules (`tag`).
pub fn is_clean(k: Key, tag: u64, slot: u16, name: &str, value: &str) -> bool {
    TABLE.with(|t| {
        let t = t.borrow();
        match t.entries.get(k.hash as usize & (SLOTS - 1)) {
            Some(Some(e)) => e.is(k.hash, tag, slot, name, value),
            _ => false,
        }
    })
}

/// Remember that this variable matched no rule under `tag`.
pub fn remember_clean(k: Key, tag: u64, slot: u16, name: &str, value: &str) {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if t.entries.is_empty() {
            t.entries.resize_with(SLOTS, || None);
        }
        let mut text = String::with_capacity(name.len() + value.len());
        text.push_str(name);
        text.push_str(value);
        t.entries[k.hash as usize & (SLOTS - 1)] = Some(Entry {
            hash: k.hash,
            tag,
            slot,
            name_len: name.len() as u32,
            text: text.into_boxed_str(),
        });
    })
}

/// Forget everything this thread remembered (tests and benchmarks of the uncached path).
pub fn clear() {
    TABLE.with(|t| t.borrow_mut().entries.clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exact_variable_under_its_tag_only() {
        clear();
        let k = key(3, "user-agent", "curl/8").unwrap();
        assert!(!is_clean(k, 7, 3, "user-agent", "curl/8"));
        remember_clean(k, 7, 3, "user-agent", "curl/8");
        assert!(is_clean(k, 7, 3, "user-agent", "curl/8"));
        // Another tag (plan or policy), slot, name or value never reads the entry.
        assert!(!is_clean(k, 8, 3, "user-agent", "curl/8"));
        assert!(!is_clean(k, 7, 4, "user-agent", "curl/8"));
        assert!(!is_clean(k, 7, 3, "user-agen", "tcurl/8"));
        assert!(!is_clean(k, 7, 3, "user-agent", "curl/9"));
        clear();
        assert!(!is_clean(k, 7, 3, "user-agent", "curl/8"));
    }

    #[test]
    fn long_values_are_not_remembered() {
        assert!(key(1, "a", &"x".repeat(MAX_VALUE + 1)).is_none());
        assert!(key(1, "a", &"x".repeat(MAX_VALUE)).is_some());
    }
}
