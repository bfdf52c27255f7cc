//! Routing: which site answers a request (by listener and Host) and which pool
//! serves its path (longest matching prefix).

// Routing compares normalized hosts; the function lives below the plan, where upstream can use it.
pub use crate::host::normalize_host;

/// How a site's host pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: one or more labels in front of `.example.com`.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> HostPattern {
        let s = s.to_ascii_lowercase();
        if s == "*" {
            HostPattern::Any
        } else if let Some(rest) = s.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{rest}"))
        } else {
            HostPattern::Exact(s)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Exact names beat wildcards, and wildcards beat `*`.
    fn specificity(&self) -> u8 {
        match self {
            HostPattern::Exact(_) => 2,
            HostPattern::Suffix(_) => 1,
            HostPattern::Any => 0,
        }
    }
}

/// A path prefix mapped to a pool (an index into the plan's pools).
#[derive(Debug, Clone)]
pub struct Route {
    pub path_prefix: String,
    pub pool: usize,
}

/// A compiled site.
pub struct Site {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// Listener indices; `None` means every proxying listener.
    pub listeners: Option<Vec<usize>>,
    /// Sorted longest prefix first.
    pub routes: Vec<Route>,
    /// Countries allowed or denied.
    pub geo: Option<crate::geo::GeoPolicy>,
    /// Header carrying the client's country to the backend.
    pub country_header: Option<http::HeaderName>,
    /// Custom rules, evaluated before the WAF.
    pub custom_rules: crate::customrules::CustomRules,
    /// Rate limits; `None` when the site has none.
    pub rate_limiter: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
    /// The WAF policy of this site.
    pub waf_policy: std::sync::Arc<crate::waf::Policy>,
    pub waf_oversized_body: crate::config::OversizedBody,
    /// Header and URL rewrites.
    pub rewrites: crate::rewrite::RewritePlan,
    /// 403 unless a verified client certificate was presented.
    pub require_client_cert: bool,
    /// Drop Server/X-Powered-By/X-AspNet-Version(s); add `hsts` on TLS listeners.
    pub harden_responses: bool,
    pub hsts: Option<http::HeaderValue>,
    /// The site's API contracts (OpenAPI documents), each covering its base path.
    pub contracts: Vec<std::sync::Arc<crate::openapi::Contract>>,
}

impl Site {
    /// The pool for a path: the longest prefix that matches.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| path.starts_with(r.path_prefix.as_str()))
    }

    fn serves_listener(&self, listener: usize) -> bool {
        self.listeners
            .as_ref()
            .is_none_or(|l| l.contains(&listener))
    }

    fn host_score(&self, host: &str) -> Option<u8> {
        self.hosts
            .iter()
            .filter(|p| p.matches(host))
            .map(HostPattern::specificity)
            .max()
    }
}

/// Finds the most specific site for a listener and host (already normalized).
pub fn find_site<'a>(sites: &'a [Site], listener: usize, host: &str) -> Option<(usize, &'a Site)> {
    sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.serves_listener(listener))
        .filter_map(|(i, s)| s.host_score(host).map(|score| (score, i, s)))
        .max_by_key(|&(score, i, _)| (score, std::cmp::Reverse(i)))
        .map(|(_, i, s)| (i, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, hosts: &[&str], routes: &[(&str, usize)]) -> Site {
        let mut routes: Vec<Route> = routes
            .iter()
            .map(|(p, pool)| Route {
                path_prefix: p.to_string(),
                pool: *pool,
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Site {
            geo: None,
            country_header: None,
            require_client_cert: false,
            waf_policy: std::sync::Arc::default(),
            custom_rules: crate::customrules::CustomRules::default(),
            rate_limiter: None,
            waf_oversized_body: crate::config::OversizedBody::Reject,
            rewrites: crate::rewrite::RewritePlan::default(),
            harden_responses: true,
            hsts: None,
            contracts: Vec::new(),
            name: name.into(),
            hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            listeners: None,
            routes,
        }
    }

    #[test]
    fn exact_beats_wildcard_beats_any() {
        let sites = vec![
            site("any", &["*"], &[]),
            site("wild", &["*.example.com"], &[]),
            site("exact", &["api.example.com"], &[]),
        ];
        assert_eq!(
            find_site(&sites, 0, "api.example.com").map(|s| s.0),
            Some(2)
        );
        assert_eq!(
            find_site(&sites, 0, "www.example.com").map(|s| s.0),
            Some(1)
        );
        assert_eq!(find_site(&sites, 0, "example.com").map(|s| s.0), Some(0));
    }

    #[test]
    fn longest_prefix_wins() {
        let s = site("s", &["*"], &[("/", 0), ("/api/", 1), ("/api/v2/", 2)]);
        assert_eq!(s.route("/api/v2/x").map(|r| r.pool), Some(2));
        assert_eq!(s.route("/api/x").map(|r| r.pool), Some(1));
        assert_eq!(s.route("/other").map(|r| r.pool), Some(0));
    }
}
