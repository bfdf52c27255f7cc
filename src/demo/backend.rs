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

/// A running echo backend.
pub struct EchoBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
}

/// Binds `addr` (use port 0 for an ephemeral port) and serves on the current runtime.
pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<EchoBackend> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let backend = EchoBackend { name: name.to_string(), addr, requests: requests.clone() };
    let name = Arc::new(name.to_string());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, name.clone(), requests.clone()));
        }
    });
    Ok(backend)
}

/// One parsed request.
struct Parsed {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body_len: usize,
    close: bool,
}

async fn serve_connection(mut stream: TcpStream, name: Arc<String>, requests: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else { return };
        requests.fetch_add(1, Ordering::Relaxed);
        let headers: serde_json::Map<String, serde_json::Value> =
            req.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let body = json!({
            "instance": name.as_str(),
            "method": req.method,
            "path": req.path,
            "headers": headers,
            "body_bytes": req.body_len,
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-backend: {}\r\n{}\r\n{}",
            body.len(),
            name,
            if req.close { "connection: close\r\n" } else { "" },
            body
        );
        if stream.write_all(resp.as_bytes()).await.is_err() || req.close {
            return;
        }
    }
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
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let method = req.method?.to_string();
    let path = req.path?.to_string();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_lowercase());
    let close = get("connection").is_some_and(|v| v.contains("close")) || req.version == Some(0);
    buf.drain(..head_len);
    let body_len = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf).await?
    } else {
        let len: usize = get("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
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
    Some(Parsed { method, path, headers, body_len, close })
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
