//! API contracts through the running edge, over TLS with HTTP/1.1 and HTTP/2: every violation
//! class is answered with its status and an RFC 9457 problem document carrying the request id,
//! never reaches the backend, and is logged with the operation; valid requests of every operation
//! reach the backend unchanged. Detection mode lets violations through and logs them.

mod common;

use common::*;
use std::sync::atomic::Ordering;

const UUID: &str = "3f2c7e1a-1b2c-4d5e-8f90-123456789abc";

fn config(port: u16, backend: std::net::SocketAddr, log: &std::path::Path) -> String {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    format!(
        r#"
[logging]
access_log = "{log}"

[[sites]]
name = "orders"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]
[[sites.openapi]]
document = "{orders}"
expose_violations = true
[[sites.openapi]]
document = "{pets}"
base_path = "/pets-api"
mode = "detection"

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#,
        log = log.display(),
        orders = docs.join("orders-apim.yaml").display(),
        pets = docs.join("pets-31.yaml").display(),
    ) + &format!("\n# listener on {port}\n")
}

/// (method, path, extra headers, body content type, body, status, problem pointer)
type Case = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Option<&'static str>,
    &'static str,
    u16,
    Option<&'static str>,
);

fn cases() -> Vec<Case> {
    let order = r#"{"customer":{"email":"a@example.com"},"items":[{"sku":"AB-12","qty":2}]}"#;
    let key = vec![("ocp-apim-subscription-key", "k-1")];
    vec![
        // Valid requests of every operation.
        (
            "GET",
            "/orders-api/orders?limit=10&status=open".into(),
            vec![],
            None,
            "",
            200,
            None,
        ),
        (
            "POST",
            "/orders-api/orders".into(),
            vec![],
            Some("application/json"),
            order,
            200,
            None,
        ),
        (
            "GET",
            format!("/orders-api/orders/{UUID}"),
            vec![],
            None,
            "",
            200,
            None,
        ),
        (
            "DELETE",
            format!("/orders-api/orders/{UUID}"),
            key,
            None,
            "",
            200,
            None,
        ),
        (
            "GET",
            format!("/orders-api/orders/{UUID}/items/3"),
            vec![],
            None,
            "",
            200,
            None,
        ),
        // One per violation class.
        (
            "GET",
            "/orders-api/invoices".into(),
            vec![],
            None,
            "",
            404,
            Some("/path"),
        ),
        (
            "PATCH",
            "/orders-api/orders".into(),
            vec![],
            None,
            "",
            405,
            Some("/method"),
        ),
        (
            "GET",
            "/orders-api/orders?limit=1000".into(),
            vec![],
            None,
            "",
            400,
            Some("/query/limit"),
        ),
        (
            "GET",
            "/orders-api/orders?debug=1".into(),
            vec![],
            None,
            "",
            400,
            Some("/query/debug"),
        ),
        (
            "GET",
            "/orders-api/orders/42".into(),
            vec![],
            None,
            "",
            400,
            Some("/path/orderId"),
        ),
        (
            "DELETE",
            format!("/orders-api/orders/{UUID}"),
            vec![],
            None,
            "",
            401,
            Some("/header/ocp-apim-subscription-key"),
        ),
        (
            "POST",
            "/orders-api/orders".into(),
            vec![],
            Some("application/json"),
            r#"{"customer":{"email":"a@example.com"},"items":[]}"#,
            400,
            Some("/body/items"),
        ),
        (
            "POST",
            "/orders-api/orders".into(),
            vec![],
            Some("application/json"),
            r#"{"customer":{"email":"a@example.com"},"items":[{"sku":"AB-12","qty":1}],"role":"admin"}"#,
            400,
            Some("/body"),
        ),
        (
            "POST",
            "/orders-api/orders".into(),
            vec![],
            Some("text/xml"),
            "<order/>",
            415,
            Some("/header/content-type"),
        ),
        (
            "POST",
            "/orders-api/orders".into(),
            vec![],
            Some("application/json"),
            "",
            400,
            Some("/body"),
        ),
        // Detection: logged, passed on.
        (
            "GET",
            "/pets-api/pets/0".into(),
            vec![],
            None,
            "",
            200,
            None,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_violations_are_refused_over_h1_and_h2() {
    let b = backends("gw", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let pki = Pki::new();
    let (cert, key) = pki.issue("api", &["api.example.test"]);
    let port = free_port();
    let cfg = config(port, b[0].addr, &log)
        + &https_listener_toml("tls", port, &cert, &key, "http2 = true");
    let _edge = EdgeProcess::start(&cfg, &[port]);

    // HTTP/1.1 over TLS, one connection per request.
    let mut forwarded = 0;
    for (method, path, headers, ctype, body, want, pointer) in cases() {
        let mut tls = tls_connect(
            client_config(&pki, tokio_rustls::rustls::ALL_VERSIONS, &[b"http/1.1"]),
            port,
            "api.example.test",
        )
        .await
        .expect("handshake");
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n");
        for (n, v) in &headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(ct) = ctype {
            raw.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let resp = send_raw(&mut tls, raw.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(
            resp.status,
            want,
            "{method} {path} over h1: {}",
            String::from_utf8_lossy(&resp.body)
        );
        match pointer {
            None => {
                // The backend got the request as sent: method, path and query, body length.
                forwarded += 1;
                let echo: serde_json::Value = serde_json::from_slice(&resp.body).expect("echo");
                assert_eq!(echo["method"], method, "{path}");
                assert_eq!(echo["path"], path.as_str());
                assert_eq!(echo["body_bytes"], body.len());
            }
            Some(ptr) => {
                assert_eq!(
                    resp.header("content-type"),
                    Some("application/problem+json"),
                    "{method} {path}"
                );
                let doc: serde_json::Value =
                    serde_json::from_slice(&resp.body).expect("problem json");
                assert_eq!(doc["status"], want);
                assert_eq!(doc["request_id"].as_str(), resp.header("x-request-id"));
                let pointers: Vec<&str> = doc["violations"]
                    .as_array()
                    .expect("violations")
                    .iter()
                    .filter_map(|v| v["pointer"].as_str())
                    .collect();
                assert!(pointers.contains(&ptr), "{method} {path}: {doc}");
                if want == 405 {
                    assert_eq!(resp.header("allow"), Some("GET, POST"));
                }
            }
        }
    }
    assert_eq!(
        b[0].requests.load(Ordering::Relaxed),
        forwarded,
        "only valid (and detection-mode) requests reach the backend"
    );

    // HTTP/2: the same answers, stream by stream on one connection.
    let tls = tls_connect(
        client_config(&pki, tokio_rustls::rustls::ALL_VERSIONS, &[b"h2"]),
        port,
        "api.example.test",
    )
    .await
    .expect("handshake");
    let (client, connection) = h2::client::handshake(tls).await.expect("h2");
    tokio::spawn(connection);
    for (method, path, headers, ctype, body, want, _) in cases() {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://api.example.test{path}"));
        for (n, v) in &headers {
            req = req.header(*n, *v);
        }
        if let Some(ct) = ctype {
            req = req.header("content-type", ct);
        }
        let mut c = client.clone().ready().await.expect("ready");
        let (response, mut stream) = c
            .send_request(req.body(()).expect("req"), body.is_empty())
            .expect("send");
        if !body.is_empty() {
            stream
                .send_data(bytes::Bytes::from_static(body.as_bytes()), true)
                .expect("data");
        }
        let response = response.await.expect("response");
        assert_eq!(response.status().as_u16(), want, "{method} {path} over h2");
    }

    // The access log names the operation and each violation.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let refused = lines
        .iter()
        .find(|l| l["uri"] == "/orders-api/orders?limit=1000")
        .expect("logged");
    assert_eq!(refused["contract_operation"], "listOrders");
    assert_eq!(refused["block_reason"], "contract");
    assert!(refused["contract_violations"][0]
        .as_str()
        .unwrap()
        .starts_with("parameter /query/limit maximum"));
    let detected = lines
        .iter()
        .find(|l| l["uri"] == "/pets-api/pets/0")
        .expect("logged");
    assert_eq!(detected["contract_operation"], "getPet");
    assert_eq!(detected["status"], 200);
    assert!(!detected["contract_violations"]
        .as_array()
        .unwrap()
        .is_empty());
}
