//! A small HTTP/1.1 echo server that stands in for an internal API-gateway
//! instance in the demo and in the tests. It answers JSON naming the instance
//! and echoing the method, path, headers and body size it received, and keeps
//! connections alive so the edge's connection reuse is exercised.

use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How an echo backend behaves.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// Answer 404 unless the Host header is this name, as an internal-mode API
    /// gateway does when it is addressed by IP.
    pub require_host: Option<String>,
}

/// A running echo backend; stopped (listener and connections closed) by
/// [`EchoBackend::stop`] or when dropped.
pub struct EchoBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl EchoBackend {
    /// Closes the listener and every open connection, like a crashed instance.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `addr` (use port 0 for an ephemeral port) and serves on the current runtime.
pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<EchoBackend> {
    start_with(name, addr, EchoOptions::default()).await
}

/// Like [`start`], with options.
pub async fn start_with(
    name: &str,
    addr: SocketAddr,
    options: EchoOptions,
) -> std::io::Result<EchoBackend> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        name: name.to_string(),
        options,
        requests: requests.clone(),
    });
    tokio::spawn(accept_loop(listener, shared, stopped));
    Ok(EchoBackend {
        name: name.to_string(),
        addr,
        requests,
        stop,
    })
}

/// What every connection of one backend shares.
struct Shared {
    name: String,
    options: EchoOptions,
    requests: Arc<AtomicU64>,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                let shared = shared.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve_connection(stream, shared) => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
            _ = stopped.changed() => return,
        }
    }
}

/// One parsed request.
struct Parsed {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body_len: usize,
    close: bool,
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let resp = echo_response(&shared, &req);
        if stream.write_all(resp.as_bytes()).await.is_err() || req.close {
            return;
        }
    }
}

/// The JSON echo of a request (or 404 for a wrong Host when `require_host` is set).
fn echo_response(shared: &Shared, req: &Parsed) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let host = req
        .headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.as_str());
    let status = match &shared.options.require_host {
        Some(required) if host != Some(required.as_str()) => "404 Not Found",
        _ => "200 OK",
    };
    let body = json!({
        "instance": shared.name,
        "method": req.method,
        "path": req.path,
        "headers": headers,
        "body_bytes": req.body_len,
    })
    .to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-backend: {}\r\nserver: demo-gateway/1.0\r\nx-powered-by: portcullis-demo\r\n{}\r\n{}",
        body.len(),
        shared.name,
        if req.close { "connection: close\r\n" } else { "" },
        body
    )
}

/// Reads one request (head and body) from the connection; `None` on EOF or bad input.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Parsed> {
    let head_len = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf).await {
            return None;
        }
    };
    let mut header_buf = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut header_buf);
    req.parse(&buf[..head_len]).ok()?;
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let method = req.method?.to_string();
    let path = req.path?.to_string();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let close = get("connection").is_some_and(|v| v.contains("close")) || req.version == Some(0);
    buf.drain(..head_len);
    let body_len = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf).await?
    } else {
        let len: usize = get("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if len > MAX_BODY {
            return None;
        }
        while buf.len() < len {
            if !fill(stream, buf).await {
                return None;
            }
        }
        buf.drain(..len);
        len
    };
    Some(Parsed {
        method,
        path,
        headers,
        body_len,
        close,
    })
}

/// Consumes a chunked body from `buf`/`stream`; returns its decoded length.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            if buf.len() > MAX_HEAD || !fill(stream, buf).await {
                return None;
            }
        };
        let size_str = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        total = total.checked_add(size).filter(|&t| t <= MAX_BODY)?;
        // chunk data + CRLF; the last chunk (size 0) is followed by an empty trailer line.
        while buf.len() < size + 2 {
            if !fill(stream, buf).await {
                return None;
            }
        }
        buf.drain(..size + 2);
        if size == 0 {
            return Some(total);
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
