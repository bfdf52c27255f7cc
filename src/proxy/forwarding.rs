//! Headers the edge sets towards the backend. Values a client sent for the
//! same headers are replaced, never appended to: a client must not be able to
//! choose the address or scheme the backend believes in.

use http::header::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;

// Names for lookups and removals, parsed at compile time: these run on every
// request, and a `&str` name is parsed (and hashed) again on each call.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the edge knows about the client connection.
pub struct ForwardedFacts<'a> {
    pub client_ip: Option<std::net::IpAddr>,
    pub proto: &'static str,
    pub host: &'a str,
    pub request_id: &'a HeaderValue,
}

/// Sets X-Forwarded-For/-Proto/-Host and X-Request-Id, replacing client values.
pub fn apply(req: &mut RequestHeader, facts: &ForwardedFacts<'_>) -> Result<()> {
    match facts.client_ip {
        Some(ip) => req.insert_header("x-forwarded-for", super::addr_text::ip_text(ip))?,
        None => {
            req.remove_header(&X_FORWARDED_FOR);
        }
    }
    req.remove_header(&http::header::FORWARDED);
    req.remove_header(&X_REAL_IP);
    req.insert_header("x-forwarded-proto", HeaderValue::from_static(facts.proto))?;
    req.insert_header("x-forwarded-host", facts.host)?;
    req.insert_header("x-request-id", facts.request_id.clone())?;
    Ok(())
}

/// A request's id, as text for logs and as the header value sent to the
/// backend and back to the client (built once, cloned without copying).
pub struct RequestId {
    pub text: String,
    pub header: HeaderValue,
}

/// Keeps a client's request id when it is short and plain, so a trace that
/// started upstream of the edge continues; otherwise makes a new one.
pub fn request_id(incoming: Option<&HeaderValue>) -> RequestId {
    if let Some(v) = incoming.filter(|v| is_plain_id(v.as_bytes())) {
        return RequestId {
            text: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            header: v.clone(),
        };
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let text: &str = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    RequestId {
        text: text.to_owned(),
        // A hyphenated uuid is always a valid value; the fallback never runs.
        header: HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid")),
    }
}

fn is_plain_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_ids_and_replaces_odd_ones() {
        let id = |v: &'static str| request_id(Some(&HeaderValue::from_static(v)));
        assert_eq!(id("abc-123").text, "abc-123");
        assert_eq!(id("abc-123").header, "abc-123");
        assert_ne!(id("a b").text, "a b");
        let fresh = request_id(None);
        assert_eq!(fresh.text.len(), 36);
        assert_eq!(fresh.header, fresh.text.as_str());
    }
}
