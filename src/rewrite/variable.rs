//! The server variables a rewrite rule can test or interpolate.

use std::fmt;

/// A server variable, named in config by its snake_case name
/// (`variable = "uri_path"` in a condition, `{var.uri_path}` in a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// Client address (the TCP peer, or the address taken from a trusted proxy header).
    ClientIp,
    ClientPort,
    /// ISO 3166 alpha-2 country of the client, when GeoIP knows it.
    ClientCountry,
    /// Host the client asked for, without port.
    Host,
    HttpMethod,
    /// Path as sent by the client, without the query.
    UriPath,
    /// Query without the leading `?`; empty when there is none.
    QueryString,
    /// `path?query` as sent by the client (`path` alone when there is no query).
    RequestUri,
    ServerPort,
    TlsVersion,
    TlsCipher,
    ClientCertSubject,
    ClientCertFingerprint,
    /// `http` or `https`.
    Scheme,
    /// Response status code (response phase only).
    Status,
}

impl Variable {
    /// Every variable, in documentation order.
    pub const ALL: [Variable; 15] = [
        Variable::ClientIp,
        Variable::ClientPort,
        Variable::ClientCountry,
        Variable::Host,
        Variable::HttpMethod,
        Variable::UriPath,
        Variable::QueryString,
        Variable::RequestUri,
        Variable::ServerPort,
        Variable::TlsVersion,
        Variable::TlsCipher,
        Variable::ClientCertSubject,
        Variable::ClientCertFingerprint,
        Variable::Scheme,
        Variable::Status,
    ];

    /// The config name of the variable.
    pub fn name(self) -> &'static str {
        match self {
            Variable::ClientIp => "client_ip",
            Variable::ClientPort => "client_port",
            Variable::ClientCountry => "client_country",
            Variable::Host => "host",
            Variable::HttpMethod => "http_method",
            Variable::UriPath => "uri_path",
            Variable::QueryString => "query_string",
            Variable::RequestUri => "request_uri",
            Variable::ServerPort => "server_port",
            Variable::TlsVersion => "tls_version",
            Variable::TlsCipher => "tls_cipher",
            Variable::ClientCertSubject => "client_cert_subject",
            Variable::ClientCertFingerprint => "client_cert_fingerprint",
            Variable::Scheme => "scheme",
            Variable::Status => "status",
        }
    }

    /// Looks a variable up by its config name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Variable> {
        Variable::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// Whether the variable only exists once there is a response.
    pub fn response_only(self) -> bool {
        matches!(self, Variable::Status)
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes `n` in decimal into `buf` and returns the digits, without allocating.
pub(crate) fn u16_str(buf: &mut [u8; 5], n: u16) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("")
}
