//! Response hardening: backend software banners are removed and, on TLS
//! listeners, Strict-Transport-Security is added when the backend set none.
//! Header values with CR or LF can never be written: the `http` crate refuses
//! them, and pingora refuses such responses from a backend.

use http::HeaderName;
use pingora::http::ResponseHeader;

/// Headers that tell an attacker which software and version runs behind the
/// edge (parsed once: this runs on every response).
static BANNERS: [HeaderName; 4] = [
    http::header::SERVER,
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("x-aspnet-version"),
    HeaderName::from_static("x-aspnetmvc-version"),
];

pub fn harden(resp: &mut ResponseHeader, hsts: Option<&http::HeaderValue>) -> pingora::Result<()> {
    for name in &BANNERS {
        resp.remove_header(name);
    }
    if let Some(value) = hsts {
        if !resp
            .headers
            .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
        {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, value.clone())?;
        }
    }
    Ok(())
}
