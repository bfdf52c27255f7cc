//! Longest-prefix-match table for IPv4 and IPv6 networks.
//!
//! The prefixes are flattened at build time into sorted, non-overlapping
//! address intervals, each owned by the longest prefix that covers it. A
//! lookup is then one binary search over a plain integer array: O(log n),
//! no allocation, cache-friendly, and it scales to millions of prefixes.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4, so a
//! dual-stack listener sees the same answers as an IPv4-only one.

use ipnet::IpNet;
use std::net::IpAddr;

/// One address family's flattened intervals. `T` is `u32` (IPv4) or `u128` (IPv6).
#[derive(Debug, Clone)]
struct Intervals<T> {
    /// Interval start addresses, strictly increasing.
    starts: Vec<T>,
    /// Inclusive interval ends, parallel to `starts`.
    ends: Vec<T>,
    /// Index into `PrefixSet::entries`, parallel to `starts`.
    owner: Vec<u32>,
}

impl<T> Default for Intervals<T> {
    fn default() -> Self {
        Intervals {
            starts: Vec::new(),
            ends: Vec::new(),
            owner: Vec::new(),
        }
    }
}

trait Addr: Copy + Ord {
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Addr for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Addr for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl<T: Addr> Intervals<T> {
    fn push(&mut self, start: T, end: T, owner: u32) {
        // Merge with the previous interval when it is adjacent and has the same owner
        // (happens when a nested prefix was shadowed by a duplicate).
        if let (Some(&last_end), Some(&last_owner)) = (self.ends.last(), self.owner.last()) {
            if last_owner == owner && last_end.succ() == Some(start) {
                *self.ends.last_mut().expect("non-empty") = end;
                return;
            }
        }
        self.starts.push(start);
        self.ends.push(end);
        self.owner.push(owner);
    }

    /// Builds the intervals from `(first, last, prefix_len, owner)` tuples.
    /// CIDR blocks are either nested or disjoint, which makes a single sweep with
    /// a stack of enclosing blocks sufficient.
    fn build(mut blocks: Vec<(T, T, u8, u32)>) -> Self {
        // Broader blocks first at the same start; for identical blocks the later
        // entry (higher owner index) comes last and wins below.
        blocks.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
        // Drop all but the last of identical blocks.
        let mut dedup: Vec<(T, T, u8, u32)> = Vec::with_capacity(blocks.len());
        for b in blocks {
            match dedup.last_mut() {
                Some(last) if last.0 == b.0 && last.2 == b.2 => *last = b,
                _ => dedup.push(b),
            }
        }

        let mut out = Intervals::default();
        // Enclosing blocks: (last address, owner).
        let mut stack: Vec<(T, u32)> = Vec::new();
        // Next address not yet emitted; None once the whole space is emitted.
        let mut cursor: Option<T> = None;
        let mut started = false;

        fn close<T: Addr>(
            out: &mut Intervals<T>,
            cursor: &mut Option<T>,
            started: bool,
            end: T,
            owner: u32,
        ) {
            if !started {
                return;
            }
            if let Some(c) = *cursor {
                if c <= end {
                    out.push(c, end, owner);
                    *cursor = end.succ();
                }
            }
        }

        for (first, last, _len, owner) in dedup {
            while let Some(&(top_end, top_owner)) = stack.last() {
                if top_end < first {
                    close(&mut out, &mut cursor, started, top_end, top_owner);
                    stack.pop();
                } else {
                    break;
                }
            }
            if let Some(&(_, top_owner)) = stack.last() {
                // `first` lies inside the enclosing block: emit the gap before it.
                if let (Some(c), Some(before)) = (cursor, first.pred()) {
                    if c <= before {
                        out.push(c, before, top_owner);
                    }
                }
            }
            cursor = Some(first);
            started = true;
            stack.push((last, owner));
        }
        while let Some((top_end, top_owner)) = stack.pop() {
            close(&mut out, &mut cursor, started, top_end, top_owner);
        }
        out
    }

    #[inline]
    fn find(&self, addr: T) -> Option<u32> {
        let idx = self.starts.partition_point(|&s| s <= addr);
        if idx == 0 {
            return None;
        }
        let i = idx - 1;
        if self.ends[i] >= addr {
            Some(self.owner[i])
        } else {
            None
        }
    }
}

/// A longest-prefix-match table from IPv4/IPv6 networks to values.
///
/// Built once from a list of `(network, value)` pairs. When the same network
/// appears twice, the later entry wins. Host bits in a network are ignored
/// (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone)]
pub struct PrefixSet<V> {
    entries: Vec<(IpNet, V)>,
    v4: Intervals<u32>,
    v6: Intervals<u128>,
}

impl<V> Default for PrefixSet<V> {
    fn default() -> Self {
        PrefixSet {
            entries: Vec::new(),
            v4: Intervals::default(),
            v6: Intervals::default(),
        }
    }
}

impl<V> PrefixSet<V> {
    /// Builds the table. Cost: O(n log n); memory: a few words per prefix.
    pub fn new<I: IntoIterator<Item = (IpNet, V)>>(items: I) -> Self {
        let entries: Vec<(IpNet, V)> = items
            .into_iter()
            .map(|(net, v)| (normalize_net(net.trunc()), v))
            .collect();
        assert!(
            entries.len() < u32::MAX as usize,
            "PrefixSet: too many prefixes"
        );
        let mut b4 = Vec::new();
        let mut b6 = Vec::new();
        for (i, (net, _)) in entries.iter().enumerate() {
            match net {
                IpNet::V4(n) => b4.push((
                    u32::from(n.network()),
                    u32::from(n.broadcast()),
                    n.prefix_len(),
                    i as u32,
                )),
                IpNet::V6(n) => b6.push((
                    u128::from(n.network()),
                    u128::from(n.broadcast()),
                    n.prefix_len(),
                    i as u32,
                )),
            }
        }
        PrefixSet {
            v4: Intervals::build(b4),
            v6: Intervals::build(b6),
            entries,
        }
    }

    /// The value of the longest prefix containing `ip`, if any.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        self.find(ip).map(|i| &self.entries[i as usize].1)
    }

    /// The longest prefix containing `ip` and its value.
    pub fn lookup_prefix(&self, ip: IpAddr) -> Option<(IpNet, &V)> {
        self.find(ip).map(|i| {
            let (net, v) = &self.entries[i as usize];
            (*net, v)
        })
    }

    /// Whether any prefix contains `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.find(ip).is_some()
    }

    /// Number of prefixes the table was built from (duplicates included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of flattened intervals (a measure of lookup work: log2 of this).
    pub fn interval_count(&self) -> usize {
        self.v4.starts.len() + self.v6.starts.len()
    }

    /// The networks and values, in insertion order.
    pub fn entries(&self) -> &[(IpNet, V)] {
        &self.entries
    }

    #[inline]
    fn find(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.find(u32::from(a)),
            IpAddr::V6(a) => self.v6.find(u128::from(a)),
        }
    }
}

impl<V> FromIterator<(IpNet, V)> for PrefixSet<V> {
    fn from_iter<I: IntoIterator<Item = (IpNet, V)>>(iter: I) -> Self {
        PrefixSet::new(iter)
    }
}

/// `::ffff:a.b.c.d/(96+n)` becomes `a.b.c.d/n`, so lookups (which canonicalise
/// mapped addresses to IPv4) find it.
fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if n.prefix_len() >= 96 {
            if let Some(v4) = n.network().to_ipv4_mapped() {
                if let Ok(v4net) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96) {
                    return IpNet::V4(v4net);
                }
            }
        }
    }
    net
}

/// Parses `a.b.c.d/n`, `x::/n` or a bare address (a host route).
/// Host bits are cleared. Errors are a short human-readable reason.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if t.contains('/') {
        t.parse::<IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| format!("invalid CIDR {t:?}"))
    } else {
        t.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("invalid CIDR {t:?}"))
    }
}

/// Parses a list of CIDRs, one per line; `#` starts a comment; blank lines are skipped.
/// Errors name the 1-based line.
pub fn parse_cidr_lines(text: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(parse_cidr(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, u32)]) -> PrefixSet<u32> {
        items
            .iter()
            .map(|(n, v)| (n.parse::<IpNet>().unwrap(), *v))
            .collect()
    }

    fn get(s: &PrefixSet<u32>, ip: &str) -> Option<u32> {
        s.lookup(ip.parse().unwrap()).copied()
    }

    #[test]
    fn longest_prefix_wins() {
        let s = set(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("10.1.2.128/25", 4),
            ("10.2.0.0/16", 5),
        ]);
        assert_eq!(get(&s, "10.0.0.1"), Some(1));
        assert_eq!(get(&s, "10.1.0.0"), Some(2));
        assert_eq!(get(&s, "10.1.2.5"), Some(3));
        assert_eq!(get(&s, "10.1.2.200"), Some(4));
        assert_eq!(get(&s, "10.1.3.0"), Some(2));
        assert_eq!(get(&s, "10.2.255.255"), Some(5));
        assert_eq!(get(&s, "10.3.0.0"), Some(1));
        assert_eq!(get(&s, "10.255.255.255"), Some(1));
        assert_eq!(get(&s, "11.0.0.0"), None);
        assert_eq!(get(&s, "9.255.255.255"), None);
    }

    #[test]
    fn insertion_order_does_not_matter_and_duplicates_last_wins() {
        let s = set(&[("10.1.2.0/24", 3), ("10.0.0.0/8", 1), ("10.0.0.0/8", 7)]);
        assert_eq!(get(&s, "10.1.2.3"), Some(3));
        assert_eq!(get(&s, "10.9.9.9"), Some(7));
    }

    #[test]
    fn full_space_and_edges() {
        let s = set(&[
            ("0.0.0.0/0", 1),
            ("255.255.255.255/32", 2),
            ("0.0.0.0/32", 3),
        ]);
        assert_eq!(get(&s, "0.0.0.0"), Some(3));
        assert_eq!(get(&s, "0.0.0.1"), Some(1));
        assert_eq!(get(&s, "255.255.255.254"), Some(1));
        assert_eq!(get(&s, "255.255.255.255"), Some(2));
        assert_eq!(get(&s, "::1"), None);
        let s6 = set(&[
            ("::/0", 1),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 2),
        ]);
        assert_eq!(get(&s6, "::2"), Some(1));
        assert_eq!(get(&s6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(2));
        assert_eq!(get(&s6, "1.2.3.4"), None);
    }

    #[test]
    fn ipv6_and_mapped() {
        let s = set(&[
            ("2001:db8::/32", 1),
            ("2001:db8:1::/48", 2),
            ("192.0.2.0/24", 3),
        ]);
        assert_eq!(get(&s, "2001:db8::1"), Some(1));
        assert_eq!(get(&s, "2001:db8:1::1"), Some(2));
        assert_eq!(get(&s, "2001:db9::1"), None);
        assert_eq!(get(&s, "::ffff:192.0.2.9"), Some(3));
        let m = set(&[("::ffff:198.51.100.0/120", 4)]);
        assert_eq!(get(&m, "198.51.100.7"), Some(4));
        assert_eq!(
            m.lookup_prefix("198.51.100.7".parse().unwrap())
                .unwrap()
                .0
                .to_string(),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn matches_brute_force() {
        // Deterministic pseudo-random prefixes, checked against a linear scan.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut nets = Vec::new();
        for i in 0..400u32 {
            let r = next();
            let len = 8 + (r % 25) as u8;
            let addr = std::net::Ipv4Addr::from(((r >> 32) as u32) & 0x0f0f_ffff);
            nets.push((
                IpNet::V4(ipnet::Ipv4Net::new(addr, len).unwrap().trunc()),
                i,
            ));
        }
        let s: PrefixSet<u32> = nets.clone().into_iter().collect();
        for _ in 0..20000 {
            let r = next();
            let ip = IpAddr::V4(std::net::Ipv4Addr::from((r as u32) & 0x0f0f_ffff));
            let expect = nets
                .iter()
                .filter(|(n, _)| n.contains(&ip))
                .max_by_key(|(n, i)| (n.prefix_len(), *i))
                .map(|(_, i)| *i);
            assert_eq!(s.lookup(ip).copied(), expect, "ip {ip}");
        }
    }

    #[test]
    fn parse_helpers() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr(" 10.1.2.3 ").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_cidr("10.0.0.0/33").unwrap_err(),
            "invalid CIDR \"10.0.0.0/33\""
        );
        let v = parse_cidr_lines("# c\n10.0.0.0/8 # x\n\n::/0\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            parse_cidr_lines("1.2.3.4\nbad\n").unwrap_err(),
            "line 2: invalid CIDR \"bad\""
        );
    }
}
