//! In-process counters: a sharded map of (rule, key) -> two window counts.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
/// Sweep a shard for stale entries every this many operations on it.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    index: u64,
    cur: u64,
    prev: u64,
    /// Wall-clock ms after which both counts are irrelevant.
    stale_at_ms: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    ops: u64,
}

/// Sharded in-memory counter store (one process only).
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    ejections: Mutex<HashMap<(String, String), Instant>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            ejections: Mutex::new(HashMap::new()),
        }
    }

    /// Count one request for `key` in window `index` (of `window_ms`) and
    /// return `(current, previous)` window counts, the current one included.
    pub fn hit(&self, key: &str, index: u64, window_ms: u64, now_ms: u64) -> (u64, u64) {
        let shard_idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards[shard_idx]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        shard.ops += 1;
        if shard.ops >= SWEEP_EVERY {
            shard.ops = 0;
            shard.map.retain(|_, e| e.stale_at_ms > now_ms);
        }
        let stale_at_ms = (index + 2).saturating_mul(window_ms);
        let entry = match shard.map.get_mut(key) {
            Some(e) => e,
            None => shard.map.entry(key.to_string()).or_insert(Entry {
                index,
                cur: 0,
                prev: 0,
                stale_at_ms,
            }),
        };
        if entry.index != index {
            if index == entry.index + 1 {
                entry.prev = entry.cur;
                entry.cur = 0;
            } else if index > entry.index {
                entry.prev = 0;
                entry.cur = 0;
            } else {
                // Clock went backwards (or a stale caller): count in the
                // newer window we already have.
                entry.cur += 1;
                return (entry.cur, entry.prev);
            }
            entry.index = index;
            entry.stale_at_ms = stale_at_ms;
        }
        entry.cur += 1;
        (entry.cur, entry.prev)
    }

    /// Number of tracked (rule, key) pairs, stale ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every entry that is stale at `now_ms`.
    pub fn sweep(&self, now_ms: u64) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .map
                .retain(|_, e| e.stale_at_ms > now_ms);
        }
    }

    pub fn publish_ejection(&self, pool: &str, backend: &str, ttl: Duration) {
        let mut m = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        m.retain(|_, until| *until > now);
        m.insert((pool.to_string(), backend.to_string()), now + ttl);
    }

    pub fn is_ejected(&self, pool: &str, backend: &str) -> bool {
        let m = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(pool.to_string(), backend.to_string()))
            .is_some_and(|until| *until > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_and_sweeps() {
        let s = MemoryStore::new();
        let w = 1000;
        assert_eq!(s.hit("k", 5, w, 5_000), (1, 0));
        assert_eq!(s.hit("k", 5, w, 5_500), (2, 0));
        assert_eq!(s.hit("k", 6, w, 6_000), (1, 2));
        assert_eq!(s.hit("k", 8, w, 8_000), (1, 0));
        // backwards clock counts in the newest window
        assert_eq!(s.hit("k", 7, w, 7_999), (2, 0));
        assert_eq!(s.hit("other", 8, w, 8_000), (1, 0));
        assert_eq!(s.len(), 2);
        s.sweep(9_999);
        assert_eq!(s.len(), 2);
        s.sweep(10_000);
        assert!(s.is_empty());
    }

    #[test]
    fn ejections_expire() {
        let s = MemoryStore::new();
        s.publish_ejection("pool", "10.0.0.1:80", Duration::from_millis(50));
        assert!(s.is_ejected("pool", "10.0.0.1:80"));
        assert!(!s.is_ejected("pool", "10.0.0.2:80"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!s.is_ejected("pool", "10.0.0.1:80"));
    }
}
