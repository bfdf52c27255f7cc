//! A panic in the request path is contained: the request is answered 500 with a request id (on
//! HTTP/1.1 and on an HTTP/2 stream), counted in `portcullis_panics_total`, logged once with the
//! request id, and the edge goes on serving: other connections, other streams of the same HTTP/2
//! connection, and later requests. The panics are deliberate: debug builds (the binary the tests
//! run) panic in the hook named by the `x-portcullis-debug-panic` header.

mod common;

use common::*;
use std::time::Duration;
use tokio::net::TcpStream;

const TRIGGER: &str = "x-portcullis-debug-panic";

fn config(port: u16, admin: u16, backend: std::net::SocketAddr) -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:{admin}"

[logging]
access_log = "off"
waf_log = "off"

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"
"#
    ) + &catch_all_site_toml(backend)
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

/// The lines of the edge's log (stderr) that mention `needle`.
fn log_lines(path: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A keep-alive GET of `path` (no `Connection: close`), with extra headers.
fn keepalive_get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api.example.test\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_answered_500_counted_logged_once_and_contained() {
    let b = backends("gw", 1).await;
    let pki = Pki::new();
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = dir.path().join("edge.log");
    let cfg = config(port, admin, b[0].addr)
        + &https_listener_toml("tls", tls_port, &cert, &key, "http2 = true");
    let _edge = EdgeProcess::start_with_stderr_file(&cfg, &[port, tls_port, admin], &stderr);

    // A keep-alive connection opened before the panic, to be used again after it.
    let mut held = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let r = send_raw(&mut held, keepalive_get("/before", "").as_bytes())
        .await
        .expect("response before the panic");
    assert_eq!(r.status, 200);

    // The panicking request: a 500 that carries its request id.
    let r = http_get(
        port,
        "api.example.test",
        "/",
        &[(TRIGGER, "request_filter")],
    )
    .await
    .expect("an answer, not a dropped connection");
    assert_eq!(r.status, 500, "{}", r.text());
    let id = r.header("x-request-id").expect("x-request-id").to_string();
    assert!(!id.is_empty());
    assert!(
        r.text().contains(&id),
        "the body quotes the id: {}",
        r.text()
    );
    assert_eq!(
        sample(admin, "portcullis_panics_total{hook=\"request_filter\"}").await,
        1
    );

    // Logged once, at ERROR, with the request id and where it happened; the standard library's
    // own "panicked at" line is not printed besides.
    let lines = log_lines(&stderr, &id);
    assert_eq!(lines.len(), 1, "one line for the request: {lines:#?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON log line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["request_id"], id.as_str());
    assert_eq!(line["hook"], "request_filter");
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("panic") && m.contains("deliberate")),
        "{line}"
    );
    assert!(
        line["location"]
            .as_str()
            .is_some_and(|l| l.contains("panics.rs")),
        "{line}"
    );
    let all = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!all.contains("panicked at"), "no second report: {all}");

    // The edge goes on: the connection held across the panic, a new connection, and another.
    let r = send_raw(
        &mut held,
        get_request("api.example.test", "/after", &[]).as_bytes(),
    )
    .await
    .expect("the held connection still answers");
    assert_eq!((r.status, r.json()["path"].as_str()), (200, Some("/after")));
    for _ in 0..2 {
        let r = http_get(port, "api.example.test", "/", &[])
            .await
            .expect("response after the panic");
        assert_eq!(r.status, 200);
    }

    // HTTP/2: the panicking stream gets a 500 with its request id; the connection and its other
    // streams are untouched.
    let tls = tls_connect(
        client_config(&pki, tokio_rustls::rustls::ALL_VERSIONS, &[b"h2"]),
        tls_port,
        "api.example.test",
    )
    .await
    .expect("handshake");
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let (status, id) = h2_get(&client, Some("request_filter")).await;
    assert_eq!(status, 500);
    assert!(!id.is_empty());
    assert_eq!(log_lines(&stderr, &id).len(), 1, "logged once");
    for _ in 0..2 {
        assert_eq!(h2_get(&client, None).await.0, 200, "same h2 connection");
    }
    assert_eq!(
        sample(admin, "portcullis_panics_total{hook=\"request_filter\"}").await,
        2
    );

    // Later hooks: in response_filter (the backend has answered; the client gets the 500
    // instead), and in logging (the answer is out already; the keep-alive connection goes on).
    let r = http_get(
        port,
        "api.example.test",
        "/",
        &[(TRIGGER, "response_filter")],
    )
    .await
    .expect("response");
    assert_eq!(r.status, 500);
    let id = r.header("x-request-id").expect("x-request-id").to_string();
    assert_eq!(log_lines(&stderr, &id).len(), 1, "logged once");
    assert_eq!(
        sample(admin, "portcullis_panics_total{hook=\"response_filter\"}").await,
        1
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let r = send_raw(
        &mut conn,
        keepalive_get("/logged", &format!("{TRIGGER}: logging\r\n")).as_bytes(),
    )
    .await
    .expect("response");
    assert_eq!(r.status, 200);
    let r = send_raw(
        &mut conn,
        get_request("api.example.test", "/next", &[]).as_bytes(),
    )
    .await
    .expect("the next request on the connection");
    assert_eq!((r.status, r.json()["path"].as_str()), (200, Some("/next")));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sample(admin, "portcullis_panics_total{hook=\"logging\"}").await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "logging panic counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("panicked at"));
}

/// A GET on the HTTP/2 connection, with the trigger header naming `panic_in` when given: the
/// status and the response's request id.
async fn h2_get(
    client: &h2::client::SendRequest<bytes::Bytes>,
    panic_in: Option<&str>,
) -> (u16, String) {
    let mut req = http::Request::builder()
        .method("GET")
        .uri("https://api.example.test/");
    if let Some(hook) = panic_in {
        req = req.header(TRIGGER, hook);
    }
    let mut client = client.clone().ready().await.expect("ready");
    let (response, _) = client
        .send_request(req.body(()).expect("request"), true)
        .expect("send");
    let response = response.await.expect("a response, not a reset stream");
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, id)
}
