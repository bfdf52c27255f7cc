//! Slow clients: a thousand slowloris connections (partial headers, or a TLS
//! handshake that never starts) do not stop normal clients from being served,
//! a slow POST is cut with 408, and one address cannot hold more connections
//! than `max_connections_per_client`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use portcullis::demo::backend::EchoBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// An edge with one plain-HTTP listener on `port` proxying everything to `backend`, with one
/// `[limits]` line.
fn plain_edge_config(port: u16, backend: &EchoBackend, limit: &str) -> String {
    format!(
        r#"
[limits]
{limit}

[logging]
access_log = "off"

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"
"#
    ) + &catch_all_site_toml(backend.addr)
}

/// A TCP connection to the edge on 127.0.0.1 from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind source address");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect")
}

/// True when the edge closes `s` without answering (within two seconds).
async fn closed_unanswered(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_does_not_starve_normal_clients() {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    let (plain, https) = (free_port(), free_port());
    let cfg = format!(
        r#"
[limits]
body_read_timeout_ms = 500

[logging]
access_log = "off"

[[listeners]]
name = "plain"
bind = "127.0.0.1:{plain}"
protocol = "http"
"#
    ) + &https_listener_toml("https", https, &cert, &key, "")
        + &catch_all_site_toml(b[0].addr);
    let _edge = EdgeProcess::start(&cfg, &[plain, https]);

    // 800 connections that send half a request head and stop, 200 that never start TLS, from
    // 50 addresses (20 each, under the per-client cap; one address alone is capped, see below).
    let mut slow = Vec::new();
    for i in 0..1000 {
        let port = if i < 800 { plain } else { https };
        let from = Ipv4Addr::new(127, 0, 0, 10 + (i % 50) as u8);
        let mut s = connect_from(from, port).await;
        if i < 800 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: api.example.test\r\nX-Slow: ")
                .await
                .expect("partial head");
        }
        slow.push(s);
    }

    for i in 0..40 {
        let r = http_get(plain, "api.example.test", "/", &[])
            .await
            .expect("normal client");
        assert_eq!(
            r.status, 200,
            "plain request {i} while 1,000 slow connections are open"
        );
    }
    let cfgc = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    for i in 0..20 {
        let r = tls_get(cfgc.clone(), https, "api.example.test").await;
        assert_eq!(
            r.status, 200,
            "TLS request {i} while 1,000 slow connections are open"
        );
    }

    // Slow POST: 10 of 100 announced bytes, then silence.
    let mut s = TcpStream::connect(("127.0.0.1", plain))
        .await
        .expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let r = read_response(&mut s).await.expect("answer");
    assert_eq!(r.status, 408, "a stalled body is cut");
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_connection_cap() {
    let b = backends("gw", 1).await;
    let plain = free_port();
    let cfg = plain_edge_config(plain, &b[0], "max_connections_per_client = 5");
    let _edge = EdgeProcess::start(&cfg, &[plain]);
    let greedy = Ipv4Addr::new(127, 0, 0, 7);

    // Five slow connections from one address fill its cap...
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from(greedy, plain).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("partial head");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a sixth from it is closed without an answer, even with a complete request.
    let mut sixth = connect_from(greedy, plain).await;
    let _ = sixth.write_all(get_request("x", "/", &[]).as_bytes()).await;
    assert!(
        closed_unanswered(&mut sixth).await,
        "sixth connection from a capped address"
    );

    // Another address is served meanwhile.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 8), plain).await;
    let r = send_raw(&mut other, get_request("x", "/", &[]).as_bytes())
        .await
        .expect("another address is served");
    assert_eq!(r.status, 200);

    // Once one of the five closes, the address gets a connection again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_from(greedy, plain).await;
        match send_raw(&mut s, get_request("x", "/", &[]).as_bytes()).await {
            Ok(r) => {
                assert_eq!(r.status, 200);
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no connection after a slot was freed: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_past_the_deadline_is_cut_while_a_prompt_one_is_served() {
    let b = backends("gw", 1).await;
    let plain = free_port();
    let cfg = plain_edge_config(plain, &b[0], "header_read_timeout_ms = 800");
    let _edge = EdgeProcess::start(&cfg, &[plain]);

    // One header line every 300 ms: each read is quick, the head as a whole is not.
    let mut slow = TcpStream::connect(("127.0.0.1", plain))
        .await
        .expect("connect");
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("request line");
    let mut cut = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow
            .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            // Closed (0 or reset) or answered with an error status: either way, cut.
            assert!(
                !matches!(r, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200")),
                "a trickled head must not be served"
            );
            cut = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut, "the connection was never cut");
    assert!(
        took < Duration::from_secs(4),
        "cut after {took:?}, the deadline is 0.8 s"
    );

    // A prompt request on another connection, and a keep-alive connection that waits longer than
    // the deadline between requests (the deadline covers the first head only), are served.
    let mut ka = TcpStream::connect(("127.0.0.1", plain))
        .await
        .expect("connect");
    let r = send_raw(&mut ka, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("first request");
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = send_raw(&mut ka, get_request("x", "/again", &[]).as_bytes())
        .await
        .expect("second request after a pause");
    assert_eq!(r.status, 200);
}
