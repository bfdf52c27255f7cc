//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): a client may send its next requests before the answer
//! to the first. Pingora leaves requests it has already read past the end of the current one in
//! the session and, unless pipelining is enabled, drops them with the connection (after an answer
//! that still says `Connection: keep-alive`), or answers the current request 400 when they arrive
//! while it is being proxied. Every listener enables it, so pipelined requests are answered in
//! order, one after the other; a refusal of a malformed request closes the connection instead
//! (`proxy::respond`), so bytes behind a request whose framing is in doubt are never read as a
//! request.
//!
//! [`arrived_pipelined`] / [`request_ended`] count the requests whose head had already arrived
//! when the request before them ended, from the bytes the connection wrapper
//! ([`HeadDeadline`]) has read.

use crate::head_deadline::HeadDeadline;
use pingora::protocols::http::ServerSession;
use pingora::protocols::IO;
use std::time::Duration;

/// The largest request body the redirect and admin listeners read and discard so that requests
/// pipelined behind it can be answered too. A larger or chunked body closes the connection after
/// the answer (pingora's rule for an answer sent before the end of the request body).
pub const DRAIN_MAX: u64 = 64 * 1024;

/// Serve requests pipelined behind this one (in order) instead of dropping them. Pingora carries
/// the setting to the next requests of the connection; setting it on each is harmless.
pub fn enable(session: &mut ServerSession) {
    session.set_pipelining_enabled(true);
}

/// The wrapper that counts the bytes read from this HTTP/1 connection, if it has one.
fn meter(session: &ServerSession) -> Option<&HeadDeadline> {
    let stream = session.stream()?;
    // Through the box: `Box<dyn IO>` may itself implement `IO`.
    let io: &dyn IO = &**stream;
    io.as_any().downcast_ref::<HeadDeadline>()
}

/// Whether this request's head (read already) was at least in part read together with the
/// request before it on the connection: a pipelined request.
pub fn arrived_pipelined(session: &ServerSession) -> bool {
    match (session, meter(session)) {
        (ServerSession::H1(h1), Some(m)) => m.head_was_buffered(h1.get_headers_raw_bytes().len()),
        _ => false,
    }
}

/// Notes the end of the current request: what is read from now on belongs to the next one.
pub fn request_ended(session: &ServerSession) {
    if let Some(m) = meter(session) {
        m.mark_request_end();
    }
}

/// How long [`drain_small_body`] waits for the whole body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// For an application that answers without the request body: reads and discards a body of at
/// most [`DRAIN_MAX`] bytes (declared with Content-Length) so that the connection can go on with
/// the requests pipelined behind it. Not when the client waits for `100 Continue` before sending
/// the body: that answer closes the connection.
pub async fn drain_small_body(session: &mut ServerSession) {
    let headers = &session.req_header().headers;
    let small = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= DRAIN_MAX);
    let expects_continue = headers.contains_key(http::header::EXPECT);
    if small && !expects_continue && !session.is_body_done() {
        session.set_total_drain_timeout(Some(DRAIN_TIMEOUT));
        if let Err(e) = session.drain_request_body().await {
            tracing::debug!("request body not drained: {e}");
            session.set_keepalive(None);
        }
    }
}
