//! PROXY protocol on listeners behind an L4 load balancer (HTTPS, plain HTTP and redirect): the
//! header's source becomes the client address (forwarded, logged, rate-limited, checked by
//! network rules); a connection without the header is dropped.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A plain-HTTP listener that requires the PROXY header, an admin listener and an access log file.
/// Site "limited" allows one request per client address a minute.
fn plain_config(port: u16, admin: u16, access_log: &std::path::Path, backend: &str) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:{admin}"

[logging]
access_log = "{}"
waf_log = "off"

[network_rules]
rules = [{{ priority = 10, name = "deny-doc-net", action = "deny", sources = ["198.51.100.0/24"] }}]

[[listeners]]
name = "plain-l4"
bind = "127.0.0.1:{port}"
protocol = "http"
proxy_protocol = true

[[sites]]
name = "limited"
hosts = ["limited.example.test"]
routes = [{{ pool = "gw" }}]
[[sites.rate_limits]]
name = "one-per-client"
key = ["client_ip"]
limit = 1
window_seconds = 60

[[sites]]
name = "s"
hosts = ["*"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#,
        access_log.display()
    )
}

/// Opens a connection to `port` and sends `bytes` (a PROXY header, maybe a request after it).
async fn connect_with(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    s
}

/// A GET of `/` for `host` behind a PROXY `header`, on a new connection.
async fn proxied_get(port: u16, header: &[u8], host: &str) -> std::io::Result<Resp> {
    let mut s = connect_with(port, header).await;
    send_raw(&mut s, get_request(host, "/", &[]).as_bytes()).await
}

/// True when the edge closes the connection without answering a byte.
async fn closed_unanswered(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => panic!("the connection stayed open"),
    }
}

/// The value of one Prometheus sample (0 when absent).
async fn sample(admin: u16, name_and_labels: &str) -> u64 {
    let text = http_get(admin, "admin", "/metrics", &[])
        .await
        .expect("metrics")
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_takes_the_proxy_header() {
    let b = backends("gw", 1).await;
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    let cfg = plain_config(port, admin, &access_log, &b[0].addr.to_string());
    let _edge = EdgeProcess::start(&cfg, &[admin, port]);

    // v1, the header written before the request: the backend sees the header's source.
    let r = proxied_get(
        port,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n",
        "api.example.test",
    )
    .await
    .expect("v1 response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");

    // v2 (IPv6 source), header and request in one write: what follows the header is HTTP.
    let mut bytes = portcullis::netrules::encode_v2(
        "[2001:db8::9]:4000".parse().expect("addr"),
        "[::1]:80".parse().expect("addr"),
    );
    bytes.extend_from_slice(get_request("api.example.test", "/", &[]).as_bytes());
    let mut s = connect_with(port, &bytes).await;
    let r = read_response(&mut s).await.expect("v2 response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "2001:db8::9");

    // One header per connection: the second request of a keep-alive connection is HTTP, from
    // the same client.
    let mut s = connect_with(
        port,
        b"PROXY TCP4 203.0.113.8 127.0.0.1 51001 80\r\nGET /one HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
    )
    .await;
    let first = read_response(&mut s).await.expect("first response");
    let second = send_raw(
        &mut s,
        get_request("api.example.test", "/two", &[]).as_bytes(),
    )
    .await
    .expect("second response on the same connection");
    for (r, path) in [(first, "/one"), (second, "/two")] {
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["path"], path);
        assert_eq!(r.json()["headers"]["x-forwarded-for"], "203.0.113.8");
    }

    // Rate limits count the header's source: a second request from 203.0.113.20 is over the
    // limit, the first from 203.0.113.21 is not.
    let limited = |src: &'static str| async move {
        let header = format!("PROXY TCP4 {src} 127.0.0.1 51002 80\r\n");
        proxied_get(port, header.as_bytes(), "limited.example.test")
            .await
            .expect("response")
            .status
    };
    assert_eq!(limited("203.0.113.20").await, 200);
    assert_eq!(limited("203.0.113.20").await, 429);
    assert_eq!(limited("203.0.113.21").await, 200);

    // The access log names the client, not the load balancer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&access_log).unwrap_or_default();
        if log.contains("\"client_ip\":\"203.0.113.7\"")
            && log.contains("\"client_ip\":\"2001:db8::9\"")
        {
            assert!(
                !log.contains("\"client_ip\":\"127.0.0.1\""),
                "no request is logged under the load balancer's address: {log}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "access log without the PROXY sources: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refused before HTTP: a source the network rules deny, a connection without the header (a
    // client that bypassed the load balancer) and a malformed header. None gets an answer.
    let network_before = sample(admin, "portcullis_blocks_total{reason=\"network\"}").await;
    let header_before = sample(admin, "portcullis_blocks_total{reason=\"proxy_protocol\"}").await;
    let mut denied = b"PROXY TCP4 198.51.100.20 127.0.0.1 51000 80\r\n".to_vec();
    denied.extend_from_slice(get_request("api.example.test", "/", &[]).as_bytes());
    assert!(
        closed_unanswered(connect_with(port, &denied).await).await,
        "denied source"
    );
    let bare = get_request("api.example.test", "/", &[]);
    assert!(
        closed_unanswered(connect_with(port, bare.as_bytes()).await).await,
        "a PROXY listener needs the header"
    );
    let mut bad = b"PROXY TCP4 203.0.113.7 nonsense\r\n".to_vec();
    bad.extend_from_slice(bare.as_bytes());
    assert!(
        closed_unanswered(connect_with(port, &bad).await).await,
        "malformed header"
    );
    assert_eq!(
        sample(admin, "portcullis_blocks_total{reason=\"network\"}").await - network_before,
        1
    );
    assert_eq!(
        sample(admin, "portcullis_blocks_total{reason=\"proxy_protocol\"}").await - header_before,
        2
    );

    // The listener still serves after the refusals.
    let r = proxied_get(
        port,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n",
        "api.example.test",
    )
    .await
    .expect("response after the refusals");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_takes_the_proxy_header() {
    let port = free_port();
    let cfg = format!(
        r#"
[network_rules]
rules = [{{ priority = 10, name = "deny-doc-net", action = "deny", sources = ["198.51.100.0/24"] }}]

[[listeners]]
name = "to-https"
bind = "127.0.0.1:{port}"
protocol = "redirect"
redirect_port = 8443
proxy_protocol = true
"#
    );
    let _edge = EdgeProcess::start(&cfg, &[port]);

    let mut s = connect_with(port, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n").await;
    let r = send_raw(
        &mut s,
        get_request("www.example.test", "/a/b?c=d", &[]).as_bytes(),
    )
    .await
    .expect("redirect");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://www.example.test:8443/a/b?c=d")
    );

    let bare = get_request("www.example.test", "/", &[]);
    assert!(
        closed_unanswered(connect_with(port, bare.as_bytes()).await).await,
        "a PROXY listener needs the header"
    );
    let mut denied = b"PROXY TCP4 198.51.100.20 127.0.0.1 51000 80\r\n".to_vec();
    denied.extend_from_slice(bare.as_bytes());
    assert!(
        closed_unanswered(connect_with(port, &denied).await).await,
        "denied source"
    );
}
