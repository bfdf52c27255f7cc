//! Trusted reverse proxies and X-Forwarded-For client address resolution.

use super::prefix::{parse_cidr, PrefixSet};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

/// The set of peers (load balancers, CDNs) whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    set: PrefixSet<()>,
}

impl TrustedProxies {
    /// Compiles a CIDR list (bare addresses are host routes). Errors name
    /// `key_path[i]`, e.g. `trusted_proxies[1]: invalid CIDR "10.0.0.0/33"`.
    pub fn new<S: AsRef<str>>(cidrs: &[S], key_path: &str) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut nets = Vec::new();
        for (i, c) in cidrs.iter().enumerate() {
            match parse_cidr(c.as_ref()) {
                Ok(n) => nets.push((n, ())),
                Err(e) => errors.push(format!("{key_path}[{i}]: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(TrustedProxies {
                set: PrefixSet::new(nets),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether nothing is trusted (then [`client_ip`](Self::client_ip) is always the peer).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    #[inline]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.set.contains(ip)
    }

    /// The client address for a connection from `peer` carrying the (comma-joined)
    /// `X-Forwarded-For` value `xff`.
    ///
    /// Only a trusted peer's header is read. It is walked from the right: trusted
    /// hops are skipped and the first untrusted address is the client. An entry
    /// that does not parse stops the walk, and the last good address (the nearest
    /// trusted hop) is used, so a client cannot smuggle an address past garbage.
    /// If every entry is trusted, the left-most one is returned. The result is
    /// canonical (`::ffff:a.b.c.d` becomes `a.b.c.d`).
    pub fn client_ip(&self, peer: IpAddr, xff: Option<&str>) -> IpAddr {
        self.client_ip_from(peer, || xff.map(Cow::Borrowed))
    }

    /// [`client_ip`](Self::client_ip) with the header fetched only for a
    /// trusted peer: the request path joins repeated headers, which allocates.
    pub fn client_ip_from<'a>(
        &self,
        peer: IpAddr,
        xff: impl FnOnce() -> Option<Cow<'a, str>>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let Some(xff) = xff() else { return peer };
        let mut last_good = peer;
        for entry in xff.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                // Tolerate "a, , b" and a trailing comma.
                continue;
            }
            let Some(ip) = parse_xff_entry(entry) else {
                break;
            };
            let ip = ip.to_canonical();
            if !self.is_trusted(ip) {
                return ip;
            }
            last_good = ip;
        }
        last_good
    }
}

/// An X-Forwarded-For element: an address, optionally with a port
/// (`192.0.2.1:8080`, `[2001:db8::1]:8080`) or in brackets (`[2001:db8::1]`).
fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn walk_from_the_right() {
        let t = TrustedProxies::new(&["10.0.0.0/8", "2001:db8:ffff::/48"], "tp").unwrap();
        let lb = ip("10.0.0.5");
        assert_eq!(
            t.client_ip(lb, Some("198.51.100.7, 10.1.1.1")),
            ip("198.51.100.7")
        );
        assert_eq!(
            t.client_ip(lb, Some("6.6.6.6, 198.51.100.7, 10.1.1.1")),
            ip("198.51.100.7")
        );
        assert_eq!(
            t.client_ip(lb, Some("198.51.100.7:4711")),
            ip("198.51.100.7")
        );
        assert_eq!(
            t.client_ip(lb, Some("[2001:db8::9]:4711")),
            ip("2001:db8::9")
        );
        assert_eq!(t.client_ip(lb, Some("10.1.1.1, 10.2.2.2")), ip("10.1.1.1"));
        assert_eq!(
            t.client_ip(lb, Some("6.6.6.6, garbage, 10.2.2.2")),
            ip("10.2.2.2")
        );
        assert_eq!(t.client_ip(lb, Some("garbage")), lb);
        assert_eq!(t.client_ip(lb, None), lb);
        assert_eq!(
            t.client_ip(ip("::ffff:10.0.0.5"), Some("192.0.2.1")),
            ip("192.0.2.1")
        );
        assert_eq!(
            t.client_ip(ip("192.0.2.99"), Some("192.0.2.1")),
            ip("192.0.2.99")
        );
        let e = TrustedProxies::new(&["10.0.0.0/8", "nope"], "server.trusted_proxies").unwrap_err();
        assert_eq!(
            e,
            vec!["server.trusted_proxies[1]: invalid CIDR \"nope\"".to_string()]
        );
    }
}
