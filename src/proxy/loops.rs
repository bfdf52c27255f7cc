//! Loop protection for self-chained calls. The edge adds `Via: 1.1 <node-id>`
//! to every request it forwards; a request that already passed through this
//! node `max_hops` times is cut with 508 at once instead of circling until a
//! timeout. Calls that chain back through the edge fewer times work normally.

use pingora::http::RequestHeader;

/// How many `Via` entries name this node (`1.1 node-id`, `HTTP/1.1 node-id (comment)`).
pub fn hops_through(req: &RequestHeader, node_id: &str) -> usize {
    req.headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.split_whitespace().nth(1) == Some(node_id))
        .count()
}

/// Appends this node's entry (`1.1 <node-id>`, built with the plan) to the request's `Via`.
pub fn append_via(req: &mut RequestHeader, entry: &http::HeaderValue) -> pingora::Result<()> {
    // A static name: pingora keeps it as the case to send, without copying it.
    req.append_header("Via", entry.clone())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_this_node() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        req.append_header("via", "1.1 edge-a, 1.1 other")
            .expect("via");
        req.append_header("via", "HTTP/1.1 edge-a (portcullis)")
            .expect("via");
        assert_eq!(hops_through(&req, "edge-a"), 2);
        assert_eq!(hops_through(&req, "edge-b"), 0);
        append_via(&mut req, &http::HeaderValue::from_static("1.1 edge-b")).expect("append");
        assert_eq!(hops_through(&req, "edge-b"), 1);
    }
}
