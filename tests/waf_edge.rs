//! The WAF in the request path: blocked requests get a 403 page with the
//! request id and never reach a backend; detection mode only reports; bodies
//! are inspected whether read ahead or streamed; the WAF log and the trace
//! header carry what matched.

mod common;

use common::*;
use std::sync::atomic::Ordering;

fn config(port: u16, backend: std::net::SocketAddr, waf_log: &std::path::Path) -> String {
    format!(
        r#"
[server]
trace_secret = "let-me-see"

[logging]
access_log = "off"
waf_log = "{log}"

[waf.policy]
body_limit = 65536

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "guarded"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]

[[sites]]
name = "watching"
hosts = ["detect.example.test"]
waf = {{ mode = "detection" }}
routes = [{{ pool = "gw" }}]

[[sites]]
name = "prefix"
hosts = ["prefix.example.test"]
waf_oversized_body = "inspect_prefix"
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#,
        log = waf_log.display()
    )
}

/// Sends one request on an HTTP/2 connection, its body (if any) in DATA frames of `chunk`
/// bytes, and returns the status.
async fn h2_status(
    client: &h2::client::SendRequest<bytes::Bytes>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> u16 {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://api.example.test{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(()).expect("request");
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut stream) = client.send_request(req, body.is_empty()).expect("send");
    let pieces: Vec<&[u8]> = body.chunks(chunk.max(1)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        // A stream the edge already answered may refuse more data: the status still tells.
        if stream
            .send_data(bytes::Bytes::copy_from_slice(piece), i + 1 == pieces.len())
            .is_err()
        {
            break;
        }
    }
    response.await.expect("response").status().as_u16()
}

async fn post(port: u16, host: &str, ctype: &str, body: &str, chunked: bool) -> Resp {
    post_bytes(
        port,
        host,
        &format!("Content-Type: {ctype}\r\n"),
        body.as_bytes(),
        chunked,
    )
    .await
}

/// POSTs `body` with the header lines in `headers` (each ending in CRLF).
async fn post_bytes(port: u16, host: &str, headers: &str, body: &[u8], chunked: bool) -> Resp {
    let mut req =
        format!("POST /submit HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n")
            .into_bytes();
    if chunked {
        req.extend_from_slice(
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", body.len()).as_bytes(),
        );
        req.extend_from_slice(body);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
    } else {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
    }
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    send_raw(&mut s, &req).await.expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_reports_and_logs() {
    let b = backends("gw", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("waf.log");
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, b[0].addr, &log), &[port]);
    let seen = || b[0].requests.load(Ordering::Relaxed);

    // Benign traffic passes.
    let r = http_get(
        port,
        "api.example.test",
        "/products?id=42&sort=price",
        &[("User-Agent", "Mozilla/5.0")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(seen(), 1);

    // An attack in the query: 403 page with the request id, backend untouched.
    let r = http_get(
        port,
        "api.example.test",
        "/products?id=1%27%20OR%20%271%27%3D%271",
        &[("X-Request-Id", "attack-1")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("attack-1"), "{}", r.text());
    assert!(
        r.header("x-portcullis-trace").is_none(),
        "no trace without the secret"
    );
    let r = http_get(
        port,
        "api.example.test",
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        &[
            ("Accept", "application/json"),
            ("X-Portcullis-Trace", "let-me-see"),
        ],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["request_id"].as_str().map(str::len), Some(36));
    let trace = r
        .header("x-portcullis-trace")
        .expect("trace with the secret");
    assert!(
        trace.contains("\"stage\":\"waf\"") && trace.contains("\"action\":\"blocked\""),
        "{trace}"
    );
    let r = http_get(
        port,
        "api.example.test",
        "/?q=ok",
        &[("X-Portcullis-Trace", "wrong")],
    )
    .await
    .expect("get");
    assert!(
        r.header("x-portcullis-trace").is_none(),
        "a wrong secret reveals nothing"
    );
    assert_eq!(seen(), 2);

    // Bodies: read ahead (Content-Length) and streamed (chunked) are both inspected.
    let attack = "user=admin&pass=x%27%20UNION%20SELECT%20password%20FROM%20users--";
    assert_eq!(
        post(
            port,
            "api.example.test",
            "application/x-www-form-urlencoded",
            attack,
            false
        )
        .await
        .status,
        403
    );
    assert_eq!(
        post(
            port,
            "api.example.test",
            "application/x-www-form-urlencoded",
            attack,
            true
        )
        .await
        .status,
        403
    );
    let json = r#"{"user":{"name":"x","bio":"<img src=x onerror=alert(document.cookie)>"}}"#;
    assert_eq!(
        post(port, "api.example.test", "application/json", json, true)
            .await
            .status,
        403
    );
    assert_eq!(
        post(
            port,
            "api.example.test",
            "application/json",
            r#"{"user":{"name":"O'Reilly","note":"select a plan"}}"#,
            true
        )
        .await
        .status,
        200
    );
    assert_eq!(seen(), 3, "blocked bodies never reach the backend");

    // Over the inspection limit: the prefix is judged first, so an attack at its start is a 403
    // (declared length or chunked); a clean one gets 413 in prevention, and passes where the site
    // inspects prefixes.
    let big_attack = format!(
        "q=1%27%20UNION%20SELECT%20password%20FROM%20users--&data={}",
        "a".repeat(70_000)
    );
    for chunked in [false, true] {
        let r = post(
            port,
            "api.example.test",
            "application/x-www-form-urlencoded",
            &big_attack,
            chunked,
        )
        .await;
        assert_eq!(
            r.status, 403,
            "attack at the start of an oversized body (chunked: {chunked})"
        );
    }
    let big = format!("data={}", "a".repeat(70_000));
    assert_eq!(
        post(
            port,
            "api.example.test",
            "application/x-www-form-urlencoded",
            &big,
            false
        )
        .await
        .status,
        413
    );
    assert_eq!(
        post(
            port,
            "prefix.example.test",
            "application/x-www-form-urlencoded",
            &big,
            true
        )
        .await
        .status,
        200
    );

    // Detection mode reports but lets through.
    let r = http_get(
        port,
        "detect.example.test",
        "/?file=../../../../etc/passwd",
        &[],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200);

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).expect("waf log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let blocked = lines
        .iter()
        .find(|l| l["transactionId"] == "attack-1" && l["action"] == "Blocked")
        .expect("a Blocked line");
    assert_eq!(blocked["site"], "guarded");
    let matched = lines
        .iter()
        .find(|l| l["transactionId"] == "attack-1" && l["action"] == "Matched")
        .expect("a Matched line");
    for field in [
        "instanceId",
        "clientIp",
        "clientPort",
        "requestUri",
        "ruleSetType",
        "ruleSetVersion",
        "ruleId",
        "ruleGroup",
        "message",
        "hostname",
        "policyScope",
    ] {
        assert!(matched.get(field).is_some(), "{field} missing: {matched}");
    }
    assert!(
        !matched["details"]["data"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{matched}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "Detected" && l["site"] == "watching"),
        "detection mode logs Detected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_inspected_like_http1_stream_by_stream() {
    let b = backends("gw", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let (cert, key) = pki.issue("api", &["api.example.test"]);
    let (port, h2_port) = (free_port(), free_port());
    let cfg = config(port, b[0].addr, &dir.path().join("waf.log"))
        + &https_listener_toml("h2", h2_port, &cert, &key, "http2 = true");
    let _edge = EdgeProcess::start(&cfg, &[port, h2_port]);

    let tls = tls_connect(
        client_config(&pki, tokio_rustls::rustls::ALL_VERSIONS, &[b"h2"]),
        h2_port,
        "api.example.test",
    )
    .await
    .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [("content-type", "application/json")];
    let attack_form = b"user=admin&pass=x%27%20UNION%20SELECT%20password%20FROM%20users--";
    let attack_json = br#"{"user":{"bio":"<img src=x onerror=alert(document.cookie)>"}}"#;
    let benign_json = br#"{"user":{"name":"O'Reilly","note":"select a plan"}}"#;
    // All at once on one connection: each stream gets its own verdict.
    let (query_attack, form_attack, json_attack, header_attack, benign_get, benign_post) = tokio::join!(
        h2_status(
            &client,
            "GET",
            "/products?id=1%27%20OR%20%271%27%3D%271",
            &[],
            b"",
            1
        ),
        h2_status(&client, "POST", "/submit", &form, attack_form, 7),
        h2_status(&client, "POST", "/submit", &json, attack_json, 5),
        h2_status(
            &client,
            "GET",
            "/",
            &[("user-agent", "() { :; }; /bin/bash -c 'id'")],
            b"",
            1
        ),
        h2_status(&client, "GET", "/products?id=42&sort=price", &[], b"", 1),
        h2_status(&client, "POST", "/submit", &json, benign_json, 9),
    );
    assert_eq!(query_attack, 403, "attack in the query");
    assert_eq!(
        form_attack, 403,
        "attack in a form body sent in DATA frames"
    );
    assert_eq!(
        json_attack, 403,
        "attack in a JSON body sent in DATA frames"
    );
    assert_eq!(header_attack, 403, "attack in a header");
    assert_eq!(benign_get, 200);
    assert_eq!(benign_post, 200);
    assert_eq!(
        b[0].requests.load(Ordering::Relaxed),
        2,
        "only the two benign streams reach the backend"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

/// Compressed bodies are inspected decoded and forwarded as sent; a coding the WAF cannot decode
/// is refused, and so is a body that decodes past the inspection limit, unless the site inspects
/// prefixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_inspected_decoded() {
    let b = backends("gw", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let _edge = EdgeProcess::start(
        &config(port, b[0].addr, &dir.path().join("waf.log")),
        &[port],
    );
    let seen = || b[0].requests.load(Ordering::Relaxed);
    let json_gzip = "Content-Type: application/json\r\nContent-Encoding: gzip\r\n";

    let benign = gzip(br#"{"user":{"name":"O'Reilly","note":"select a plan"}}"#);
    for chunked in [false, true] {
        let r = post_bytes(port, "api.example.test", json_gzip, &benign, chunked).await;
        assert_eq!(r.status, 200, "a compressed JSON body parses and passes");
        assert_eq!(
            r.json()["body_bytes"].as_u64(),
            Some(benign.len() as u64),
            "the backend gets the body as sent"
        );
    }
    assert_eq!(seen(), 2);

    let form = gzip(b"user=admin&pass=x%27%20UNION%20SELECT%20password%20FROM%20users--");
    let json = gzip(br#"{"user":{"bio":"<img src=x onerror=alert(document.cookie)>"}}"#);
    let form_gzip = "Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\n";
    let json_layers = "Content-Type: application/json\r\nContent-Encoding: identity, x-gzip\r\n";
    for (headers, body, chunked) in [
        (form_gzip, &form, false),
        (json_gzip, &json, true),
        (json_layers, &json, false),
    ] {
        let r = post_bytes(port, "api.example.test", headers, body, chunked).await;
        assert_eq!(r.status, 403, "an attack in a compressed body: {headers:?}");
    }
    let r = post_bytes(
        port,
        "api.example.test",
        "Content-Type: text/plain\r\nContent-Encoding: zstd\r\n",
        b"whatever",
        false,
    )
    .await;
    assert_eq!(r.status, 403, "a coding the WAF cannot decode");
    assert_eq!(seen(), 2, "none of them reached the backend");

    // 40 KB that decode to 10 MB, past the 64 KiB inspection limit.
    let bomb = gzip(&vec![b'a'; 10 << 20]);
    let r = post_bytes(port, "api.example.test", json_gzip, &bomb, false).await;
    assert_eq!(r.status, 413, "refused where oversized bodies are");
    let r = post_bytes(
        port,
        "prefix.example.test",
        "Content-Type: text/plain\r\nContent-Encoding: gzip\r\n",
        &bomb,
        true,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "inspected as a prefix where the site asks for it"
    );
    assert_eq!(seen(), 3);
}
