//! Protocol hardening with raw bytes against a running edge: request
//! smuggling vectors are refused with 400 and never reach the backend; limits
//! answer 413/414/431; what the backend receives has one plain framing.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that records every byte it receives and answers each request head with 200.
struct Recorder {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

async fn recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                loop {
                    let n = match tokio::time::timeout(
                        std::time::Duration::from_millis(300),
                        s.read(&mut buf),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        Ok(_) => return,
                        Err(_) => {
                            // Quiet: answer whatever arrived so far.
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                            continue;
                        }
                    };
                    sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    Recorder { addr, received }
}

fn config(port: u16, backend: std::net::SocketAddr) -> String {
    format!(
        r#"
# These tests are about framing and limits, not rules.
[waf.policy]
mode = "off"

[limits]
max_uri_bytes = 4096
max_header_count = 50
max_header_bytes = 8192
max_body_bytes = 1000

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "s"
hosts = ["*"]
routes = [{{ pool = "p" }}]

[[pools]]
name = "p"
backends = [{{ address = "{backend}" }}]
read_timeout_ms = 3000
"#
    )
}

async fn raw(port: u16, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    match send_raw(&mut s, bytes).await {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_vectors_are_refused_before_the_backend() {
    let backend = recorder().await;
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, backend.addr), &[port]);
    let cases: &[(&str, &[u8])] = &[
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("differing CLs", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd"),
        ("CL sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd"),
        ("xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("padded chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked\r\n\r\n0\r\n\r\n"),
        ("chunked, identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("tab chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n"),
        ("vtab chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
        ("duplicate TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("invalid chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("overflowing chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n"),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
        ("NUL in header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"),
        ("control char in header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n"),
        ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("absolute-form host mismatch", b"GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("HTTP/0.9", b"GET /\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let status = raw(port, bytes).await;
        assert_eq!(status, 400, "{name}: expected 400, got {status}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Chunked bodies stream, so a bad chunk can only be seen after the head of a
    // well-formed chunked request was sent on; the backend then gets no body
    // and a closed connection: never a complete request.
    let seen = String::from_utf8_lossy(&backend.received.lock().expect("lock")).to_string();
    for request in seen.split("POST / HTTP/1.1").filter(|r| !r.is_empty()) {
        assert!(
            request.contains("Transfer-Encoding: chunked\r\n\r\n"),
            "only chunked heads may get through: {request:?}"
        );
        assert!(
            request.ends_with("\r\n\r\n") && !request.contains("0\r\n\r\n"),
            "never a complete request: {request:?}"
        );
    }
    assert!(
        !seen.contains("GET "),
        "no refused GET reached the backend: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_their_status() {
    let backend = recorder().await;
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, backend.addr), &[port]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(5000));
    assert_eq!(raw(port, long_uri.as_bytes()).await, 414);
    let longer_than_the_head_limit =
        format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(
        raw(port, longer_than_the_head_limit.as_bytes()).await,
        414,
        "a target longer than the whole head may be is still a target too long"
    );
    let many: String = (0..60).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        raw(
            port,
            format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()
        )
        .await,
        431
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert_eq!(raw(port, big.as_bytes()).await, 431);
    assert_eq!(
        raw(
            port,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"
        )
        .await,
        413
    );
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
        "x".repeat(2000)
    );
    assert_eq!(
        raw(port, chunked.as_bytes()).await,
        413,
        "a chunked body over the limit"
    );
    let args = vec!["a=1"; 600].join("&");
    assert_eq!(
        raw(
            port,
            format!("GET /?{args} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()
        )
        .await,
        400,
        "too many arguments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_gets_one_plain_framing() {
    let backend = recorder().await;
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, backend.addr), &[port]);
    let status = raw(port, b"POST /same HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd").await;
    assert_eq!(status, 200);
    let status = raw(port, b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4;ext=1\r\nwxyz\r\n0\r\n\r\n").await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let seen =
        String::from_utf8_lossy(&backend.received.lock().expect("lock")).to_ascii_lowercase();
    let same = seen
        .split("post /same")
        .nth(1)
        .unwrap_or_default()
        .split("post /chunked")
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        same.matches("content-length: 4").count(),
        1,
        "identical Content-Lengths collapsed to one: {same}"
    );
    assert!(same.ends_with("abcd"), "{same}");
    let chunked = seen
        .split("post /chunked")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        chunked.matches("transfer-encoding: chunked").count(),
        1,
        "{chunked}"
    );
    assert!(!chunked.contains("content-length"), "{chunked}");
    assert!(chunked.contains("wxyz"), "{chunked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_whole() {
    let b = backends("gw", 1).await;
    let port = free_port();
    let cfg = config(port, b[0].addr).replace("max_body_bytes = 1000", "max_body_bytes = 1000000");
    let _edge = EdgeProcess::start(&cfg, &[port]);
    for size in [10usize, 70_000, 200_000, 600_000] {
        let body = "x".repeat(size);
        let req = format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n{body}");
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let r = send_raw(&mut s, req.as_bytes()).await.expect("response");
        assert_eq!(r.status, 200, "size {size}");
        assert_eq!(
            r.json()["body_bytes"],
            size,
            "the backend got the whole body of {size} bytes"
        );
        let chunked = format!("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size:x}\r\n{body}\r\n0\r\n\r\n");
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let r = send_raw(&mut s, chunked.as_bytes())
            .await
            .expect("response");
        assert_eq!(r.status, 200, "chunked size {size}");
        assert_eq!(
            r.json()["body_bytes"],
            size,
            "the backend got the whole chunked body of {size} bytes"
        );
    }
}
