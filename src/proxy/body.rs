//! Request bodies are read before a backend is chosen, up to the inspection
//! limit, so that the WAF sees them and a malformed body (a bad chunk size,
//! a body over the limit) is refused before anything reaches a backend.
//!
//! Pingora forwards a body it has already read from its retry buffer, which
//! holds at most 64 KiB, so only bodies declared (Content-Length) within that
//! size are read ahead; the body filter replays them once per try. Larger and
//! chunked bodies stream, and are held back in the body filter while they are
//! inspected.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::Result;

/// What was read of a request body before proxying.
#[derive(Debug, Default)]
pub struct BufferedBody {
    pub data: Bytes,
    /// The whole body was read (not only a prefix up to the limit).
    pub complete: bool,
}

/// The largest body read ahead of proxying: pingora's retry buffer.
pub const READ_AHEAD_MAX: u64 = 64 * 1024;

/// The body length a request declares with Content-Length.
pub fn declared_length(req: &pingora::http::RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether this request's body can be read ahead: a Content-Length within
/// [`READ_AHEAD_MAX`] (a body without one is chunked or absent).
pub fn can_read_ahead(req: &pingora::http::RequestHeader) -> bool {
    declared_length(req).is_some_and(|n| n > 0 && n <= READ_AHEAD_MAX)
}

/// Reads the body until its end or until more than `limit` bytes arrived.
pub async fn read_up_to(session: &mut Session, limit: usize) -> Result<BufferedBody> {
    session.as_mut().enable_retry_buffering();
    let mut data = BytesMut::new();
    loop {
        if data.len() > limit {
            return Ok(BufferedBody {
                data: data.freeze(),
                complete: false,
            });
        }
        match session.read_request_body().await? {
            Some(chunk) => data.extend_from_slice(&chunk),
            None => {
                return Ok(BufferedBody {
                    data: data.freeze(),
                    complete: true,
                })
            }
        }
    }
}
