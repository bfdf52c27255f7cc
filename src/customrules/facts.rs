//! What the rule engines need to know about a request.

use std::net::IpAddr;

/// Read-only view of a request used by custom rules and rate limits.
///
/// Implementations should be cheap: every method may be called several times
/// per request. Parsed forms (query arguments, cookies, form bodies) are
/// computed lazily, at most once per evaluation, by the engines themselves.
pub trait RequestFacts {
    /// Client address as seen by the edge (after any trusted-proxy logic).
    fn client_ip(&self) -> Option<IpAddr>;
    /// ISO 3166-1 alpha-2 country code of the client, if known.
    fn country(&self) -> Option<&str>;
    /// Request method, e.g. `GET`.
    fn method(&self) -> &str;
    /// The request target exactly as received (path and query, not decoded).
    fn raw_uri(&self) -> &str;
    /// Path part of the request target (not decoded).
    fn path(&self) -> &str;
    /// Query string without the leading `?` (not decoded).
    fn query(&self) -> Option<&str>;
    /// First value of the named header (case-insensitive name); values that
    /// are not valid visible ASCII/UTF-8 may be reported as absent.
    fn header(&self, name: &str) -> Option<&str>;
    /// Request body bytes buffered so far (may be empty or truncated).
    fn body(&self) -> &[u8];
    /// Content-Type header value.
    fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// Adapter over `http::request::Parts` (pingora's `RequestHeader` derefs to
/// it), plus the values the proxy knows from elsewhere.
pub struct HttpRequestFacts<'a> {
    pub parts: &'a http::request::Parts,
    pub client_ip: Option<IpAddr>,
    pub country: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> HttpRequestFacts<'a> {
    pub fn new(parts: &'a http::request::Parts) -> Self {
        HttpRequestFacts {
            parts,
            client_ip: None,
            country: None,
            body: &[],
        }
    }
}

impl RequestFacts for HttpRequestFacts<'_> {
    fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
    fn country(&self) -> Option<&str> {
        self.country
    }
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }
    fn raw_uri(&self) -> &str {
        match self.parts.uri.path_and_query() {
            Some(pq) => pq.as_str(),
            None => "/",
        }
    }
    fn path(&self) -> &str {
        self.parts.uri.path()
    }
    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn body(&self) -> &[u8] {
        self.body
    }
}

/// Self-contained request description, handy for tests, replay and tools.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequestFacts {
    pub client_ip: Option<IpAddr>,
    pub country: Option<String>,
    pub method: String,
    /// Raw request target, e.g. `/a/b?x=1`.
    pub uri: String,
    /// Header names are matched case-insensitively; the first match wins.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OwnedRequestFacts {
    /// A `GET` for `uri` with no headers.
    pub fn get(uri: &str) -> Self {
        OwnedRequestFacts {
            method: "GET".into(),
            uri: uri.into(),
            ..Default::default()
        }
    }
    pub fn with_method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn with_ip(mut self, ip: &str) -> Self {
        self.client_ip = Some(ip.parse().expect("valid IP"));
        self
    }
    pub fn with_country(mut self, c: &str) -> Self {
        self.country = Some(c.into());
        self
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}

impl RequestFacts for OwnedRequestFacts {
    fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
    fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }
    fn method(&self) -> &str {
        &self.method
    }
    fn raw_uri(&self) -> &str {
        &self.uri
    }
    fn path(&self) -> &str {
        match self.uri.find('?') {
            Some(i) => &self.uri[..i],
            None => &self.uri,
        }
    }
    fn query(&self) -> Option<&str> {
        self.uri.find('?').map(|i| &self.uri[i + 1..])
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}
