//! SSL policies: which TLS versions and cipher suites a listener accepts.
//!
//! rustls offers TLS 1.2 and 1.3 with AEAD suites only (no CBC, no RSA key
//! exchange, no TLS 1.0/1.1), so every policy is a subset of that. A policy is
//! enforced on the ClientHello before the handshake ([`super::gate`]): a
//! client that offers no version at or above the minimum, or no suite of the
//! policy, is dropped and never sees a certificate. Among the suites a client
//! offers, rustls then picks by the client's preference, so a custom list
//! guarantees "the client can use one of these"; the named policies are exact
//! because they contain every suite rustls offers for their versions.

use rustls::CipherSuite;

/// Minimum protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslPolicy {
    pub name: String,
    pub min_version: MinVersion,
    pub suites: Vec<CipherSuite>,
}

const TLS13: [(&str, CipherSuite); 3] = [
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

const TLS12_GCM: [(&str, CipherSuite); 4] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
];

const TLS12_CHACHA: [(&str, CipherSuite); 2] = [
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

fn suites(groups: &[&[(&str, CipherSuite)]]) -> Vec<CipherSuite> {
    groups
        .iter()
        .flat_map(|g| g.iter().map(|(_, s)| *s))
        .collect()
}

/// The named policies. Application Gateway's predefined names map onto what
/// rustls offers: their CBC suites do not exist here, so they are left out.
pub fn named(name: &str) -> Result<SslPolicy, String> {
    let (min_version, list) = match name {
        "modern" => (MinVersion::Tls13, suites(&[&TLS13])),
        "recommended" => (MinVersion::Tls12, suites(&[&TLS13, &TLS12_GCM, &TLS12_CHACHA])),
        "AppGwSslPolicy20220101" | "AppGwSslPolicy20220101S" | "AppGwSslPolicy20170401S" => {
            (MinVersion::Tls12, suites(&[&TLS13, &TLS12_GCM]))
        }
        "AppGwSslPolicy20150501" | "AppGwSslPolicy20170401" => {
            return Err(format!("{name} allows TLS 1.0/1.1, which this edge does not offer; use AppGwSslPolicy20220101 or recommended"));
        }
        other => return Err(format!("unknown SSL policy {other:?}: expected modern, recommended, AppGwSslPolicy20220101, AppGwSslPolicy20220101S, AppGwSslPolicy20170401S or custom")),
    };
    Ok(SslPolicy {
        name: name.to_string(),
        min_version,
        suites: list,
    })
}

/// A custom policy: minimum version ("1.2" or "1.3") and IANA suite names.
/// Every unsupported name is reported.
pub fn custom(min_version: &str, names: &[String]) -> Result<SslPolicy, Vec<String>> {
    let mut errors = Vec::new();
    let min = match min_version {
        "1.2" | "TLSv1.2" => MinVersion::Tls12,
        "1.3" | "TLSv1.3" => MinVersion::Tls13,
        other => {
            errors.push(format!(
                "min_version {other:?}: expected \"1.2\" or \"1.3\""
            ));
            MinVersion::Tls12
        }
    };
    let known: Vec<(&str, CipherSuite)> = TLS13
        .iter()
        .chain(&TLS12_GCM)
        .chain(&TLS12_CHACHA)
        .copied()
        .collect();
    let mut list = Vec::new();
    for name in names {
        match known.iter().find(|(n, _)| n == name) {
            Some((_, s)) => list.push(*s),
            None => errors.push(format!("cipher suite {name:?} is not supported (rustls offers only ECDHE AEAD suites and the TLS 1.3 suites)")),
        }
    }
    if names.is_empty() {
        errors.push("cipher_suites must list at least one suite".to_string());
    }
    if min == MinVersion::Tls13 && !list.iter().any(|s| is_tls13(*s)) {
        errors.push("min_version 1.3 needs at least one TLS 1.3 suite".to_string());
    }
    if errors.is_empty() {
        Ok(SslPolicy {
            name: "custom".into(),
            min_version: min,
            suites: list,
        })
    } else {
        Err(errors)
    }
}

fn is_tls13(s: CipherSuite) -> bool {
    TLS13.iter().any(|(_, t)| *t == s)
}

impl SslPolicy {
    /// Whether a ClientHello offering these versions and suites may go on.
    pub fn admits(&self, versions: &[u16], suites: &[u16]) -> bool {
        let min = match self.min_version {
            MinVersion::Tls12 => super::hello::TLS12,
            MinVersion::Tls13 => super::hello::TLS13,
        };
        let version_ok = versions
            .iter()
            .any(|&v| (min..=super::hello::TLS13).contains(&v));
        version_ok
            && suites
                .iter()
                .any(|&s| self.suites.iter().any(|p| u16::from(*p) == s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_refuses_tls12_only_clients() {
        let p = named("modern").expect("policy");
        let (aes128_13, rsa128_12) = (0x1301, 0xc02f);
        assert!(
            !p.admits(&[0x0303], &[aes128_13, rsa128_12]),
            "TLS 1.2 only, even when 1.3 suites are listed"
        );
        assert!(p.admits(&[0x0304, 0x0303], &[aes128_13, rsa128_12]));
    }

    #[test]
    fn custom_names_every_unsupported_suite() {
        let err = custom(
            "1.2",
            &[
                "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
                "TLS_AES_128_GCM_SHA256".into(),
                "BOGUS".into(),
            ],
        )
        .expect_err("unsupported");
        assert_eq!(err.len(), 2);
        assert!(err[0].contains("TLS_RSA_WITH_AES_128_CBC_SHA") && err[1].contains("BOGUS"));
        let p = custom("1.2", &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()]).expect("ok");
        assert!(!p.admits(&[0x0303], &[0xc02b]));
        assert!(p.admits(&[0x0303], &[0xc02c]));
    }

    #[test]
    fn tls10_policies_are_refused_with_a_reason() {
        assert!(named("AppGwSslPolicy20150501")
            .expect_err("old")
            .contains("TLS 1.0"));
    }
}
