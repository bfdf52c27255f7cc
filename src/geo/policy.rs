//! A site's country policy: an allow-list or a deny-list.

use super::CountryCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoPolicy {
    /// Only these countries get through.
    Allow(Vec<CountryCode>),
    /// These countries are refused.
    Deny(Vec<CountryCode>),
}

impl GeoPolicy {
    pub fn permits(&self, country: CountryCode) -> bool {
        match self {
            GeoPolicy::Allow(list) => list.contains(&country),
            GeoPolicy::Deny(list) => !list.contains(&country),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).expect("code")
    }

    #[test]
    fn allow_and_deny_lists() {
        assert!(GeoPolicy::Allow(vec![cc("NL")]).permits(cc("NL")));
        assert!(!GeoPolicy::Allow(vec![cc("NL")]).permits(cc("ZZ")));
        assert!(!GeoPolicy::Deny(vec![cc("KP")]).permits(cc("KP")));
        assert!(GeoPolicy::Deny(vec![cc("KP")]).permits(cc("DE")));
    }
}
