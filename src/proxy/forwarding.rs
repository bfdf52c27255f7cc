//! Headers the edge sets towards the backend. Values a client sent for the
//! same headers are replaced, never appended to: a client must not be able to
//! choose the address or scheme the backend believes in.

use pingora::http::RequestHeader;
use pingora::Result;

/// What the edge knows about the client connection.
pub struct ForwardedFacts<'a> {
    pub client_ip: Option<std::net::IpAddr>,
    pub proto: &'static str,
    pub host: &'a str,
    pub request_id: &'a str,
}

/// Sets X-Forwarded-For/-Proto/-Host and X-Request-Id, replacing client values.
pub fn apply(req: &mut RequestHeader, facts: &ForwardedFacts<'_>) -> Result<()> {
    match facts.client_ip {
        Some(ip) => req.insert_header("x-forwarded-for", ip.to_string())?,
        None => {
            req.remove_header("x-forwarded-for");
        }
    }
    req.remove_header("forwarded");
    req.remove_header("x-real-ip");
    req.insert_header("x-forwarded-proto", facts.proto)?;
    req.insert_header("x-forwarded-host", facts.host)?;
    req.insert_header("x-request-id", facts.request_id)?;
    Ok(())
}

/// Keeps a client's request id when it is short and plain, so a trace that
/// started upstream of the edge continues; otherwise makes a new one.
pub fn request_id(incoming: Option<&[u8]>) -> String {
    match incoming {
        Some(v) if is_plain_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
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
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_ne!(request_id(Some(b"a b")), "a b");
        assert_ne!(request_id(Some(b"x\r\ny")), "x\r\ny");
        assert_eq!(request_id(None).len(), 36);
    }
}
