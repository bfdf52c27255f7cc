//! Throwaway certificates for the demo and the tests: one CA that signs
//! server (and client) certificates. Never use these in production.

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A certificate and its key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A throwaway certificate authority.
pub struct DemoCa {
    cert: Certificate,
    key: KeyPair,
}

impl DemoCa {
    pub fn new(common_name: &str) -> Result<DemoCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(DemoCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a leaf for DNS names and IP addresses (given as strings).
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if name.contains("://") => SanType::URI((*name).try_into()?),
                Err(_) => SanType::DnsName((*name).try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
