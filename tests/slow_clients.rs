//! Slow clients: a thousand slowloris connections (partial headers, or a TLS
//! handshake that never starts) do not stop normal clients from being served,
//! and a slow POST is cut with 408.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

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

[[listeners]]
name = "https"
bind = "127.0.0.1:{https}"
protocol = "https"
[[listeners.certificates]]
cert = "{}"
key = "{}"
default = true

[[sites]]
name = "s"
hosts = ["*"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{}" }}]
"#,
        cert.display(),
        key.display(),
        b[0].addr
    );
    let _edge = EdgeProcess::start(&cfg, &[plain, https]);

    // 800 connections that send half a request head and stop, 200 that never start TLS.
    let mut slow = Vec::new();
    for i in 0..1000 {
        let port = if i < 800 { plain } else { https };
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("slow connect");
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
        let mut tls = tls_connect(cfgc.clone(), https, "api.example.test")
            .await
            .expect("handshake");
        let r = send_raw(
            &mut tls,
            get_request("api.example.test", "/", &[]).as_bytes(),
        )
        .await
        .expect("response");
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
