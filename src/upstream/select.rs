//! Backend selection within one priority tier (a region group).
//! Every algorithm takes the same two filters: backends already tried for this
//! request are skipped, and so are those `usable` rejects (unhealthy, ejected).

use super::schedule::smooth_weighted;
use super::LoadBalancing;
use pingora_ketama::{Bucket, Continuum};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A group of backends that are tried together (same priority).
pub struct Tier {
    /// Indices into the pool's backends.
    members: Vec<usize>,
    /// Round robin: positions into `members`, smooth-weighted.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    ring: Option<Continuum>,
    /// Points on the ring (160 per unit of weight): bounds a walk around it.
    ring_points: usize,
    ring_index: HashMap<SocketAddr, usize>,
}

/// What a selection may look at.
pub struct Candidate<'a> {
    pub weights: &'a [u32],
    pub addrs: &'a [SocketAddr],
}

impl Tier {
    pub fn new(members: Vec<usize>, c: &Candidate<'_>, algorithm: LoadBalancing) -> Tier {
        let weights: Vec<u32> = members.iter().map(|&i| c.weights[i]).collect();
        let (ring, ring_index) = if algorithm == LoadBalancing::ConsistentHash {
            let buckets: Vec<Bucket> = members
                .iter()
                .map(|&i| Bucket::new(c.addrs[i], c.weights[i]))
                .collect();
            let index = members.iter().map(|&i| (c.addrs[i], i)).collect();
            (Some(Continuum::new(&buckets)), index)
        } else {
            (None, HashMap::new())
        };
        let ring_points = weights.iter().map(|&w| w as usize * 160).sum::<usize>() + 1;
        Tier {
            schedule: smooth_weighted(&weights),
            members,
            cursor: AtomicUsize::new(0),
            ring,
            ring_points,
            ring_index,
        }
    }

    /// Picks a backend of this tier, or `None` when no member qualifies.
    pub fn pick(
        &self,
        algorithm: LoadBalancing,
        key: &[u8],
        weights: &[u32],
        outstanding: &dyn Fn(usize) -> usize,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match algorithm {
            LoadBalancing::RoundRobin => self.round_robin(usable),
            LoadBalancing::ConsistentHash => self.hashed(key, usable),
            LoadBalancing::Random => self.weighted_random(weights, usable),
            LoadBalancing::LeastOutstanding => self.two_choices(outstanding, usable),
        }
    }

    fn round_robin(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.schedule.len();
        for _ in 0..n {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let idx = self.members[self.schedule[slot]];
            if usable(idx) {
                return Some(idx);
            }
        }
        None
    }

    fn hashed(&self, key: &[u8], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let ring = self.ring.as_ref()?;
        // Walk the ring from the key's point; bounded by the ring's size.
        ring.node_iter(key)
            .take(self.ring_points)
            .filter_map(|addr| self.ring_index.get(addr).copied())
            .find(|&i| usable(i))
    }

    fn weighted_random(&self, weights: &[u32], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let pool: Vec<usize> = self
            .members
            .iter()
            .copied()
            .filter(|&i| usable(i))
            .collect();
        let total: u64 = pool.iter().map(|&i| u64::from(weights[i])).sum();
        if total == 0 {
            return None;
        }
        let mut point = fastrand::u64(0..total);
        for &i in &pool {
            let w = u64::from(weights[i]);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        pool.last().copied()
    }

    fn two_choices(
        &self,
        outstanding: &dyn Fn(usize) -> usize,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let pool: Vec<usize> = self
            .members
            .iter()
            .copied()
            .filter(|&i| usable(i))
            .collect();
        match pool.len() {
            0 => None,
            1 => Some(pool[0]),
            n => {
                let a = fastrand::usize(0..n);
                let b = (a + 1 + fastrand::usize(0..n - 1)) % n;
                let (a, b) = (pool[a], pool[b]);
                Some(if outstanding(b) < outstanding(a) {
                    b
                } else {
                    a
                })
            }
        }
    }
}
