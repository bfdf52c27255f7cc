//! PROXY protocol on an HTTPS listener behind an L4 load balancer: the
//! header's source becomes the client address (forwarded, geo-looked-up,
//! checked by network rules); a connection without the header is dropped.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_source_is_the_client() {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    let port = free_port();
    let cfg = r#"
[network_rules]
rules = [{ priority = 10, name = "deny-doc-net", action = "deny", sources = ["198.51.100.0/24"] }]
"#
    .to_string()
        + &https_listener_toml("l4", port, &cert, &key, "proxy_protocol = true")
        + &catch_all_site_toml(b[0].addr);
    let _edge = EdgeProcess::start(&cfg, &[port]);
    let cfgc = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("api.example.test").expect("name");

    async fn with_header(port: u16, header: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(header).await.expect("proxy header");
        s
    }

    // v1 header: the backend sees 203.0.113.7.
    let s = with_header(port, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n").await;
    let mut tls = tokio_rustls::TlsConnector::from(cfgc.clone())
        .connect(name.clone(), s)
        .await
        .expect("handshake");
    let r = send_raw(
        &mut tls,
        get_request("api.example.test", "/", &[]).as_bytes(),
    )
    .await
    .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "203.0.113.7");

    // v2 header (IPv6 source).
    let v2 = portcullis::netrules::encode_v2(
        "[2001:db8::9]:4000".parse().expect("addr"),
        "[::1]:443".parse().expect("addr"),
    );
    let s = with_header(port, &v2).await;
    let mut tls = tokio_rustls::TlsConnector::from(cfgc.clone())
        .connect(name.clone(), s)
        .await
        .expect("handshake");
    let r = send_raw(
        &mut tls,
        get_request("api.example.test", "/", &[]).as_bytes(),
    )
    .await
    .expect("response");
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "2001:db8::9");

    // Network rules apply to the header's source, before TLS.
    let s = with_header(port, b"PROXY TCP4 198.51.100.20 127.0.0.1 51000 443\r\n").await;
    assert!(
        tokio_rustls::TlsConnector::from(cfgc.clone())
            .connect(name.clone(), s)
            .await
            .is_err(),
        "denied source"
    );

    // No header at all: dropped.
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    assert!(
        tokio_rustls::TlsConnector::from(cfgc)
            .connect(name, s)
            .await
            .is_err(),
        "a PROXY listener needs the header"
    );
}
