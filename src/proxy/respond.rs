//! Responses the edge generates itself (errors, blocks, redirects): short,
//! typed bodies that always carry the request id so a user can quote it.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes a complete plain-text response.
pub async fn text(session: &mut Session, status: u16, request_id: &str, body: &str) -> Result<()> {
    let body = Bytes::from(format!("{body}\nrequest id: {request_id}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", request_id)?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The reason phrase a user sees for the statuses the edge generates.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        403 => "forbidden",
        408 => "request timeout",
        413 => "payload too large",
        414 => "URI too long",
        431 => "request header fields too large",
        404 => "no site or route for this request",
        421 => "misdirected request",
        502 => "bad gateway: no backend answered",
        503 => "service unavailable: no backend available",
        504 => "gateway timeout: the backend did not answer in time",
        508 => "loop detected: this request already passed through this edge too often",
        _ => "error",
    }
}
