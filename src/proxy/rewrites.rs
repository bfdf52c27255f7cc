//! Connects the rewrite engine ([`crate::rewrite`]) to the request path: the
//! server variables it reads, and applying its header and URL edits.

use super::identity::ClientIdentity;
use crate::rewrite::{HeaderEdit, RequestView, ResponseView, Variable};
use crate::tls::mtls::ClientCertFacts;
use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::tls::SslDigest;
use std::borrow::Cow;

/// The request as rewrite conditions see it.
pub struct RequestVars<'a> {
    pub req: &'a RequestHeader,
    pub host: &'a str,
    pub client: &'a ClientIdentity,
    pub client_port: Option<u16>,
    pub server_port: Option<u16>,
    pub tls: Option<&'a SslDigest>,
    pub cert: Option<&'a ClientCertFacts>,
}

impl RequestView for RequestVars<'_> {
    fn var(&self, v: Variable) -> Option<Cow<'_, str>> {
        match v {
            Variable::ClientIp => self.client.ip.map(|ip| Cow::Owned(ip.to_string())),
            Variable::ClientPort => self.client_port.map(|p| Cow::Owned(p.to_string())),
            Variable::ClientCountry => self
                .client
                .country
                .map(|c| Cow::Owned(c.as_str().to_string())),
            Variable::Host => Some(Cow::Borrowed(self.host)),
            Variable::HttpMethod => Some(Cow::Borrowed(self.req.method.as_str())),
            Variable::UriPath => Some(Cow::Borrowed(self.req.uri.path())),
            Variable::QueryString => Some(Cow::Borrowed(self.req.uri.query().unwrap_or(""))),
            Variable::RequestUri => self
                .req
                .uri
                .path_and_query()
                .map(|p| Cow::Borrowed(p.as_str())),
            Variable::ServerPort => self.server_port.map(|p| Cow::Owned(p.to_string())),
            Variable::TlsVersion => self.tls.map(|t| Cow::Borrowed(t.version.as_ref())),
            Variable::TlsCipher => self.tls.map(|t| Cow::Borrowed(t.cipher.as_ref())),
            Variable::ClientCertSubject => self.cert.map(|c| Cow::Borrowed(c.subject.as_str())),
            Variable::ClientCertFingerprint => self
                .cert
                .map(|c| Cow::Borrowed(c.fingerprint_sha256.as_str())),
            Variable::Scheme => Some(Cow::Borrowed(if self.tls.is_some() {
                "https"
            } else {
                "http"
            })),
            Variable::Status => None,
        }
    }

    fn request_header(&self, name: &HeaderName) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The backend's response, with the request it answers.
pub struct ResponseVars<'a> {
    pub request: RequestVars<'a>,
    pub resp: &'a ResponseHeader,
}

impl RequestView for ResponseVars<'_> {
    fn var(&self, v: Variable) -> Option<Cow<'_, str>> {
        self.request.var(v)
    }
    fn request_header(&self, name: &HeaderName) -> Option<&str> {
        self.request.request_header(name)
    }
}

impl ResponseView for ResponseVars<'_> {
    fn response_header(&self, name: &HeaderName) -> Option<&str> {
        self.resp.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn status(&self) -> u16 {
        self.resp.status.as_u16()
    }
}

/// Applies header edits, in order, to a request.
pub fn edit_request(req: &mut RequestHeader, edits: &[HeaderEdit]) -> pingora::Result<()> {
    for e in edits {
        match e {
            HeaderEdit::Set(n, v) => req.insert_header(n.clone(), v.clone())?,
            HeaderEdit::Append(n, v) => {
                req.append_header(n.clone(), v.clone())?;
            }
            HeaderEdit::Delete(n) => {
                req.remove_header(n);
            }
        }
    }
    Ok(())
}

/// Applies header edits, in order, to a response.
pub fn edit_response(resp: &mut ResponseHeader, edits: &[HeaderEdit]) -> pingora::Result<()> {
    for e in edits {
        match e {
            HeaderEdit::Set(n, v) => resp.insert_header(n.clone(), v.clone())?,
            HeaderEdit::Append(n, v) => {
                resp.append_header(n.clone(), v.clone())?;
            }
            HeaderEdit::Delete(n) => {
                resp.remove_header(n);
            }
        }
    }
    Ok(())
}
