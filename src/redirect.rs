//! The HTTP-to-HTTPS redirect listener: every request gets a redirect to the
//! same host, path and query on HTTPS.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// Answers every request with a redirect to `https://host[:port]/path?query`.
pub struct RedirectApp {
    pub https_port: u16,
    pub status: u16,
    /// Counts the pipelined requests of this listener (`portcullis_pipelined_requests_total`).
    pub pipelined: Option<prometheus::IntCounter>,
}

impl RedirectApp {
    /// The Location for a request, or `None` when it has no usable Host.
    pub fn location(&self, host: Option<&str>, path_and_query: &str) -> Option<String> {
        let host = crate::host::normalize_host(host?);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return None;
        }
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        Some(format!("https://{host}{port}{path_and_query}"))
    }
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        crate::pipelining::enable(session);
        if let Some(counter) = &self.pipelined {
            if crate::pipelining::arrived_pipelined(session) {
                counter.inc();
            }
        }
        // A redirected POST carries no use for its body, but the requests behind it must not be
        // read from the middle of it.
        crate::pipelining::drain_small_body(session).await;
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let built = match self.location(host, pq) {
            Some(loc) => Response::builder()
                .status(self.status)
                .header("location", loc.as_str())
                .header("content-length", "0")
                .body(Vec::new()),
            None => Response::builder()
                .status(400)
                .header("content-type", "text/plain")
                .body(b"bad request: missing or invalid Host\n".to_vec()),
        };
        crate::pipelining::request_ended(session);
        built.unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_host_path_and_query_and_drops_port() {
        let app = RedirectApp {
            https_port: 443,
            status: 308,
            pipelined: None,
        };
        assert_eq!(
            app.location(Some("Example.com:80"), "/a?b=c").as_deref(),
            Some("https://example.com/a?b=c")
        );
        let app = RedirectApp {
            https_port: 8443,
            status: 308,
            pipelined: None,
        };
        assert_eq!(
            app.location(Some("example.com"), "/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(app.location(Some("evil.com/x"), "/").as_deref(), None);
        assert_eq!(app.location(None, "/"), None);
    }
}
