//! HTTP/2 to HTTP/1.1 downgrade vectors with raw frames (the h2 client crate
//! refuses to send them): connection-specific headers, and a content-length
//! that disagrees with the DATA frames. Neither reaches the backend.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// An HPACK "literal header field without indexing, new name" (no Huffman).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one request as raw frames; returns the frame types the edge sent back
/// for stream 1 (or 0 for connection-level frames) until it closes or 3 s pass.
async fn exchange(
    pki: &Pki,
    port: u16,
    headers: &[(&str, &str)],
    data: Option<&[u8]>,
) -> Vec<(u8, u32, Vec<u8>)> {
    let cfg = client_config(pki, rustls::ALL_VERSIONS, &[b"h2"]);
    let mut tls = tls_connect(cfg, port, "api.example.test")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut block = Vec::new();
    for (n, v) in headers {
        literal(&mut block, n, v);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    let end_stream = if data.is_none() { 0x1 } else { 0 };
    out.extend(frame(1, 0x4 | end_stream, 1, &block));
    if let Some(d) = data {
        out.extend(frame(0, 0x1, 1, d));
    }
    tls.write_all(&out).await.expect("write frames");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let frames = parse_frames(&buf);
        // Stop at the stream's answer: a response HEADERS frame, a reset or a GOAWAY.
        if refused(&frames) || frames.iter().any(|(k, s, _)| *k == 1 && *s == 1) {
            return frames;
        }
    }
    parse_frames(&buf)
}

/// Splits a buffer into (type, stream, payload) frames.
fn parse_frames(buf: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = buf;
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5] & 0x7f, rest[6], rest[7], rest[8]]);
        frames.push((rest[3], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

/// True when stream 1 was refused: RST_STREAM, GOAWAY, or a 400 response (HPACK static index 12 = `:status 400`).
fn refused(frames: &[(u8, u32, Vec<u8>)]) -> bool {
    frames.iter().any(|(kind, stream, payload)| {
        (*kind == 3 && *stream == 1)
            || *kind == 7
            || (*kind == 1 && *stream == 1 && payload.first() == Some(&0x8c))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_vectors_never_reach_the_backend() {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    let port = free_port();
    let cfg = format!(
        "[[listeners]]\nname = \"h2\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"https\"\n[[listeners.certificates]]\ncert = \"{}\"\nkey = \"{}\"\ndefault = true\n[[sites]]\nname = \"s\"\nhosts = [\"*\"]\nroutes = [{{ pool = \"gw\" }}]\n[[pools]]\nname = \"gw\"\nbackends = [{{ address = \"{}\" }}]\n",
        cert.display(),
        key.display(),
        b[0].addr
    );
    let _edge = EdgeProcess::start(&cfg, &[port]);
    let base = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        (":authority", "api.example.test"),
    ];

    // A well-formed request goes through (the framing of this test is right).
    let frames = exchange(&pki, port, &base, None).await;
    assert!(
        frames.iter().any(|(k, s, _)| *k == 1 && *s == 1),
        "a response HEADERS frame: {frames:?}"
    );
    assert_eq!(b[0].requests.load(Ordering::Relaxed), 1);

    for (name, value) in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("te", "gzip"),
    ] {
        let mut headers = base.to_vec();
        headers.push((name, value));
        let frames = exchange(&pki, port, &headers, None).await;
        assert!(refused(&frames), "{name}: {value} refused: {frames:?}");
    }

    let post = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/upload"),
        (":authority", "api.example.test"),
        ("content-length", "10"),
    ];
    let frames = exchange(&pki, port, &post, Some(b"abc")).await;
    assert!(
        refused(&frames),
        "content-length 10 with 3 bytes of DATA refused: {frames:?}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        b[0].requests.load(Ordering::Relaxed),
        1,
        "none of the malformed requests reached the backend"
    );
}
