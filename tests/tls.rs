//! Real TLS handshakes against the edge: certificates by SNI, the default
//! certificate, TLS 1.2 and 1.3, and ALPN (h2 and http/1.1).

mod common;

use common::*;
use portcullis::upstream::probe::NoVerify;
use tokio_rustls::rustls;
use x509_parser::prelude::*;

struct Setup {
    pki: Pki,
    port: u16,
    _edge: EdgeProcess,
    _backends: Vec<portcullis::demo::backend::EchoBackend>,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (a_cert, a_key) = pki.issue("alpha", &["alpha.example.test"]);
    let (b_cert, b_key) = pki.issue("beta", &["beta.example.test", "*.beta.example.test"]);
    let (d_cert, d_key) = pki.issue("default", &["default.example.test"]);
    let port = free_port();
    let cfg = format!(
        r#"
[[listeners]]
name = "https"
bind = "127.0.0.1:{port}"
protocol = "https"
http2 = true
[[listeners.certificates]]
cert = "{}"
key = "{}"
server_names = ["alpha.example.test"]
[[listeners.certificates]]
cert = "{}"
key = "{}"
server_names = ["beta.example.test", "*.beta.example.test"]
[[listeners.certificates]]
cert = "{}"
key = "{}"
default = true

[[sites]]
name = "all"
hosts = ["*"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{}" }}]
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
        d_cert.display(),
        d_key.display(),
        b[0].addr
    );
    let edge = EdgeProcess::start(&cfg, &[port]);
    Setup {
        pki,
        port,
        _edge: edge,
        _backends: b,
    }
}

/// The common name of the certificate served for `sni`.
async fn served_cn(port: u16, sni: &str) -> String {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let tls = tls_connect(std::sync::Arc::new(cfg), port, sni)
        .await
        .expect("handshake");
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server cert")
        .to_vec();
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    cn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_chosen_by_sni_with_default_for_unknown_names() {
    let s = setup().await;
    assert_eq!(
        served_cn(s.port, "alpha.example.test").await,
        "alpha.example.test"
    );
    assert_eq!(
        served_cn(s.port, "beta.example.test").await,
        "beta.example.test"
    );
    assert_eq!(
        served_cn(s.port, "api.beta.example.test").await,
        "beta.example.test",
        "wildcard"
    );
    assert_eq!(
        served_cn(s.port, "nobody.example.test").await,
        "default.example.test"
    );

    // A verifying client accepts the SNI-chosen certificate for its name.
    assert_eq!(verified_get(&s, "alpha.example.test").await, 200);
}

/// The status of a GET over a TLS connection to `sni` that verifies the edge's certificate.
async fn verified_get(s: &Setup, sni: &str) -> u16 {
    let cfg = client_config(&s.pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    tls_get(cfg, s.port, sni).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_are_both_negotiated() {
    let s = setup().await;
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let cfg = client_config(&s.pki, &[version], &[b"http/1.1"]);
        let mut tls = tls_connect(cfg, s.port, "alpha.example.test")
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expect));
        let r = send_raw(
            &mut tls,
            get_request("alpha.example.test", "/", &[]).as_bytes(),
        )
        .await
        .expect("response");
        assert_eq!(r.status, 200);
    }
}

/// Everything the edge sends on a plain TCP connection after `bytes`, until it closes.
async fn plain_exchange(port: u16, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("the edge closes the connection")
    .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_https_port_gets_a_400_that_says_so() {
    let s = setup().await;
    let answer = plain_exchange(
        s.port,
        get_request("alpha.example.test", "/", &[]).as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(answer.contains("HTTPS"), "{answer:?}");
    assert!(answer.contains("Connection: close"), "{answer:?}");

    // Other bytes that are not TLS are closed without a word.
    assert_eq!(plain_exchange(s.port, b"SSH-2.0-probe\r\n").await, "");

    // The listener still serves TLS.
    assert_eq!(verified_get(&s, "alpha.example.test").await, 200);
}

/// The value of one Prometheus sample line (`name{labels} value`), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Connections the ClientHello gate refuses (TCP health checks that connect and close, plain
/// HTTP, other bytes) are counted by reason and leave no ERROR line; a handshake that fails
/// inside rustls still logs one, and shows as admitted but not completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_counted_not_logged_as_errors() {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (cert, key) = pki.issue("api", &["api.example.test"]);
    let (port, admin) = (free_port(), free_port());
    let cfg = format!("[admin]\nbind = \"127.0.0.1:{admin}\"\n")
        + &https_listener_toml("https", port, &cert, &key, "")
        + &catch_all_site_toml(b[0].addr);
    let dir = tempfile::tempdir().expect("dir");
    let stderr = dir.path().join("edge.log");
    let edge = EdgeProcess::start_with_stderr_file(&cfg, &[port, admin], &stderr);

    for _ in 0..3 {
        drop(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    plain_exchange(port, b"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n").await;
    plain_exchange(port, b"SSH-2.0-probe\r\n").await;
    // A client that does not trust the edge's certificate aborts the handshake inside rustls.
    let stranger = Pki::new();
    let untrusting = client_config(&stranger, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    assert!(tls_connect(untrusting, port, "api.example.test")
        .await
        .is_err());
    // And one that completes.
    let trusting = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    assert_eq!(
        tls_get(trusting, port, "api.example.test").await.status,
        200
    );

    let metrics = http_get(admin, "admin", "/metrics", &[])
        .await
        .expect("metrics")
        .text();
    let refused = |reason: &str| {
        sample(
            &metrics,
            &format!("portcullis_tls_handshake_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(refused("client_hello_incomplete") >= 3.0, "{metrics}");
    assert_eq!(refused("plain_http"), 1.0, "{metrics}");
    assert_eq!(refused("not_tls"), 1.0, "{metrics}");
    let stage = |stage: &str| {
        sample(
            &metrics,
            &format!("portcullis_tls_handshakes_total{{stage=\"{stage}\"}}"),
        )
    };
    assert_eq!(stage("admitted"), 2.0, "past the gate: {metrics}");
    assert_eq!(
        stage("completed"),
        1.0,
        "the untrusting client's failed in rustls: {metrics}"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&stderr).is_ok_and(|l| l.contains("handshake error"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(edge);
    let log = std::fs::read_to_string(&stderr).expect("edge log");
    assert!(
        !log.contains("TLS handshake refused"),
        "refusals leave no ERROR line: {log}"
    );
    assert!(
        log.contains("Downstream handshake error"),
        "the rustls failure is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_serves_http1_and_h2() {
    let s = setup().await;
    let cfg = client_config(&s.pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let tls = tls_connect(cfg, s.port, "alpha.example.test")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let cfg = client_config(&s.pki, rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"]);
    let tls = tls_connect(cfg, s.port, "alpha.example.test")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("https://alpha.example.test/over-h2")
        .body(())
        .expect("request");
    let (resp, _) = client.send_request(req, true).expect("send");
    let resp = resp.await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(json["path"], "/over-h2");
    assert_eq!(json["headers"]["x-forwarded-proto"], "https");
}
