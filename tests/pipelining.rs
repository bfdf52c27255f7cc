//! HTTP/1.1 pipelining (RFC 9112 section 9.3.2) with raw bytes: requests written in one segment
//! are all answered, in order, on plain and TLS connections, on the proxy, redirect and admin
//! listeners; a refused malformed request closes the connection before what follows it is read.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Answer {
    status: u16,
    connection: String,
    body: String,
}

/// Reads up to `n` Content-Length framed responses from one connection, keeping the bytes
/// between them; fewer when the connection closes. Panics when the edge goes quiet (a lost
/// request).
async fn read_answers<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<Answer> {
    let (mut buf, mut out, mut chunk) = (Vec::new(), Vec::new(), [0u8; 16384]);
    while out.len() < n {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = resp.parse(&buf) else {
                break;
            };
            let get = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    .unwrap_or_default()
            };
            let len: usize = get("content-length").parse().expect("content-length");
            if buf.len() < head + len {
                break;
            }
            let answer = Answer {
                status: resp.code.unwrap_or(0),
                connection: get("connection"),
                body: String::from_utf8_lossy(&buf[head..head + len]).into_owned(),
            };
            out.push(answer);
            buf.drain(..head + len);
        }
        if out.len() >= n {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => panic!(
                "no answer within 5 s after {} of {n}: a request was lost",
                out.len()
            ),
        }
    }
    out
}

/// `n` requests of one kind, in one buffer. POST bodies are 600 bytes, so 10 of them (6 KiB)
/// overflow pingora's first 4 KiB read and reach it while the first is being proxied.
fn batch(kind: &str, n: usize) -> Vec<u8> {
    let body = "x".repeat(600);
    (0..n)
        .flat_map(|i| match kind {
            "get" => format!("GET /r{i} HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            "post" => format!("POST /r{i} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 600\r\n\r\n{body}"),
            "chunked" => format!(
                "POST /r{i} HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
            _ => unreachable!(),
        }.into_bytes())
        .collect()
}

/// Every request answered 200, in order (the echo backend names the path it got).
fn assert_in_order(answers: &[Answer], n: usize, what: &str) {
    assert_eq!(
        answers.len(),
        n,
        "{what}: {} of {n} answered",
        answers.len()
    );
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "{what} #{i}: {}", a.body);
        assert!(
            a.body.contains(&format!("\"path\":\"/r{i}\"")),
            "{what} #{i} out of order: {}",
            a.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let b = backends("pipe", 1).await;
    let pki = Pki::new();
    let (cert, key) = pki.issue("a", &["a.test"]);
    let (http, https, redirect, admin) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        "[waf.policy]\nmode = \"off\"\n\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\n\
         [[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:{http}\"\nprotocol = \"http\"\n\n\
         [[listeners]]\nname = \"redir\"\nbind = \"127.0.0.1:{redirect}\"\nprotocol = \"redirect\"\n{}{}",
        https_listener_toml("tls", https, &cert, &key, ""),
        catch_all_site_toml(b[0].addr)
    );
    let _edge = EdgeProcess::start(&cfg, &[http, https, redirect, admin]);
    let tls = client_config(&pki, tokio_rustls::rustls::ALL_VERSIONS, &[b"http/1.1"]);
    for kind in ["get", "post", "chunked"] {
        for n in [2, 3, 10] {
            let bytes = batch(kind, n);
            let mut s = TcpStream::connect(("127.0.0.1", http))
                .await
                .expect("connect");
            s.write_all(&bytes).await.expect("write");
            assert_in_order(
                &read_answers(&mut s, n).await,
                n,
                &format!("plain {kind} x{n}"),
            );
            let mut s = tls_connect(tls.clone(), https, "a.test")
                .await
                .expect("handshake");
            s.write_all(&bytes).await.expect("write");
            assert_in_order(
                &read_answers(&mut s, n).await,
                n,
                &format!("tls {kind} x{n}"),
            );
        }
    }
    // The redirect and admin listeners answer every pipelined request too.
    for (port, path) in [(redirect, "/r"), (admin, "/healthz")] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n").repeat(3);
        let post = format!("POST {path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc");
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(format!("{req}{post}{req}").as_bytes())
            .await
            .expect("write");
        let answers = read_answers(&mut s, 7).await;
        assert_eq!(
            answers.len(),
            7,
            "port {port}: {} of 7 answered",
            answers.len()
        );
    }
    let metrics = http_get(admin, "admin", "/metrics", &[])
        .await
        .expect("metrics")
        .text();
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_pipelined_requests_total{listener=\"plain\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("pipelined counter");
    // At least the 2- and 3-request batches (all heads in the first read): 3 kinds x (1 + 2).
    assert!(counted >= 9.0, "pipelined requests counted: {counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_closes_before_what_follows_it_is_read() {
    let b = backends("smuggle", 1).await;
    let port = free_port();
    let cfg = format!(
        "[[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n{}",
        catch_all_site_toml(b[0].addr)
    );
    let _edge = EdgeProcess::start(&cfg, &[port]);
    for head in [
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\nHost: a.test\n\n",
        "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:  chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
        s.write_all(format!("{head}{smuggled}").as_bytes())
            .await
            .expect("write");
        let answers = read_answers(&mut s, 2).await;
        assert_eq!(
            answers.len(),
            1,
            "{head:?}: only the refusal, then the connection closes"
        );
        assert_eq!(
            (answers[0].status, answers[0].connection.as_str()),
            (400, "close"),
            "{head:?}"
        );
    }
    assert_eq!(
        b[0].requests.load(Ordering::Relaxed),
        0,
        "nothing reached the backend"
    );
}
