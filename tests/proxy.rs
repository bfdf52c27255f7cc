//! End-to-end proxying through a real edge process: redirects, routing,
//! weighted round robin, forwarding headers, and failing backends.

mod common;

use common::*;
use std::collections::HashMap;

fn config_two_pools(
    https_port: u16,
    redirect_port: u16,
    pki: &Pki,
    api: &[(String, u32)],
    web: &[String],
) -> String {
    let (cert, key) = pki.issue(
        "edge",
        &["api.example.test", "www.example.test", "localhost"],
    );
    let api_backends: Vec<String> = api
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    let web_backends: Vec<String> = web
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!(
        r#"
[server]
threads = 2

[[listeners]]
name = "https"
bind = "127.0.0.1:{https_port}"
protocol = "https"
[[listeners.certificates]]
cert = "{cert}"
key = "{key}"
server_names = ["api.example.test", "www.example.test", "localhost"]
default = true

[[listeners]]
name = "plain"
bind = "127.0.0.1:{redirect_port}"
protocol = "redirect"
redirect_port = {https_port}

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ path_prefix = "/", pool = "api" }}, {{ path_prefix = "/static/", pool = "web" }}]

[[sites]]
name = "web"
hosts = ["www.example.test"]
routes = [{{ path_prefix = "/", pool = "web" }}]

[[pools]]
name = "api"
backends = [{api}]

[[pools]]
name = "web"
backends = [{web}]
"#,
        cert = cert.display(),
        key = key.display(),
        api = api_backends.join(", "),
        web = web_backends.join(", "),
    )
}

/// One plain listener on `port` with `listener_extra` keys, after the `server` section, and one
/// site "web" (host www.example.test) proxying to `backend`.
fn web_site_config(
    port: u16,
    backend: &portcullis::demo::backend::EchoBackend,
    server: &str,
    listener_extra: &str,
) -> String {
    format!(
        r#"{server}

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"
{listener_extra}

[[sites]]
name = "web"
hosts = ["www.example.test"]
routes = [{{ pool = "web" }}]

[[pools]]
name = "web"
backends = [{{ address = "{}" }}]
"#,
        backend.addr
    )
}

async fn https_get(pki: &Pki, port: u16, host: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    https_get_sni(pki, port, host, host, path, extra).await
}

async fn https_get_sni(
    pki: &Pki,
    port: u16,
    sni: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let cfg = client_config(pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let mut tls = tls_connect(cfg, port, sni).await.expect("tls connect");
    send_raw(&mut tls, get_request(host, path, extra).as_bytes())
        .await
        .expect("response")
}

use tokio_rustls::rustls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_and_balances_by_weight() {
    let pki = Pki::new();
    let api = backends("api", 2).await;
    let web = backends("web", 1).await;
    let (https, plain) = (free_port(), free_port());
    let cfg = config_two_pools(
        https,
        plain,
        &pki,
        &[(api[0].addr.to_string(), 3), (api[1].addr.to_string(), 1)],
        &[web[0].addr.to_string()],
    );
    let _edge = EdgeProcess::start(&cfg, &[https, plain]);

    let r = https_get(&pki, https, "www.example.test", "/index.html", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["instance"], "web-0");

    let r = https_get(&pki, https, "api.example.test", "/static/logo.png", &[]).await;
    assert_eq!(
        r.json()["instance"],
        "web-0",
        "longest prefix /static/ goes to the web pool"
    );

    let r = https_get_sni(&pki, https, "localhost", "unknown.example.test", "/", &[]).await;
    assert_eq!(r.status, 404, "no site for an unknown host");

    // Weighted round robin over one keep-alive connection: 3:1 within 10%.
    let cfgc = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let mut tls = tls_connect(cfgc, https, "api.example.test")
        .await
        .expect("connect");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        let req = "GET /v1/items HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
        let r = send_raw(&mut tls, req.as_bytes()).await.expect("response");
        assert_eq!(r.status, 200);
        *counts
            .entry(
                r.json()["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default() += 1;
    }
    let a0 = counts.get("api-0").copied().unwrap_or(0) as f64;
    let a1 = counts.get("api-1").copied().unwrap_or(0) as f64;
    assert!(
        (a0 - 750.0).abs() <= 75.0,
        "api-0 got {a0} of 1000, expected 750 +-10%"
    );
    assert!(
        (a1 - 250.0).abs() <= 25.0,
        "api-1 got {a1} of 1000, expected 250 +-10%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_keeps_path_and_query() {
    let pki = Pki::new();
    let web = backends("web", 1).await;
    let (https, plain) = (free_port(), free_port());
    let cfg = config_two_pools(
        https,
        plain,
        &pki,
        &[(web[0].addr.to_string(), 1)],
        &[web[0].addr.to_string()],
    );
    let _edge = EdgeProcess::start(&cfg, &[https, plain]);

    let r = http_get(plain, "www.example.test", "/a/b?c=d&e=f", &[])
        .await
        .expect("response");
    assert!(r.status == 308 || r.status == 301, "status {}", r.status);
    assert_eq!(
        r.header("location"),
        Some(format!("https://www.example.test:{https}/a/b?c=d&e=f").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sees_forwarding_headers_and_spoofed_xff_is_replaced() {
    let pki = Pki::new();
    let web = backends("web", 1).await;
    let (https, plain) = (free_port(), free_port());
    let cfg = config_two_pools(
        https,
        plain,
        &pki,
        &[(web[0].addr.to_string(), 1)],
        &[web[0].addr.to_string()],
    );
    let _edge = EdgeProcess::start(&cfg, &[https, plain]);

    let r = https_get(
        &pki,
        https,
        "www.example.test",
        "/whoami",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "gopher"),
            ("X-Forwarded-Host", "evil.test"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "client-sent XFF must be replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "www.example.test");
    let id = h["x-request-id"]
        .as_str()
        .expect("request id sent to backend");
    assert_eq!(id.len(), 36, "generated UUID: {id}");
    assert_eq!(
        r.header("x-request-id"),
        Some(id),
        "the client sees the same id"
    );

    let r = https_get(
        &pki,
        https,
        "www.example.test",
        "/",
        &[("X-Request-Id", "trace-abc-123")],
    )
    .await;
    assert_eq!(
        r.json()["headers"]["x-request-id"],
        "trace-abc-123",
        "a plain incoming id is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_gives_502_quickly() {
    let pki = Pki::new();
    let dead = format!("127.0.0.1:{}", free_port());
    let (https, plain) = (free_port(), free_port());
    let cfg = config_two_pools(https, plain, &pki, &[(dead.clone(), 1)], &[dead]);
    let _edge = EdgeProcess::start(&cfg, &[https, plain]);

    let started = std::time::Instant::now();
    let r = https_get(&pki, https, "www.example.test", "/", &[]).await;
    assert_eq!(r.status, 502);
    assert!(
        r.body.len() < 200 && r.text().contains("bad gateway"),
        "short body: {:?}",
        r.text()
    );
    assert!(r.header("x-request-id").is_some());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no hang"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_backend() {
    let pki = Pki::new();
    let live = backends("api", 1).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let (https, plain) = (free_port(), free_port());
    let cfg = config_two_pools(
        https,
        plain,
        &pki,
        &[(dead, 1), (live[0].addr.to_string(), 1)],
        &[live[0].addr.to_string()],
    );
    let _edge = EdgeProcess::start(&cfg, &[https, plain]);
    for _ in 0..20 {
        let r = https_get(&pki, https, "api.example.test", "/", &[]).await;
        assert_eq!(
            r.status, 200,
            "a refused backend is retried on the live one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_read_buffer_still_carries_large_heads_and_bodies() {
    // `read_buffer_bytes` trades memory per idle connection for more reads: a head and a body
    // several times the buffer must still arrive whole.
    let web = backends("web", 1).await;
    let port = free_port();
    let cfg = web_site_config(port, &web[0], "", "read_buffer_bytes = 1024");
    let _edge = EdgeProcess::start(&cfg, &[port]);
    let pad = "p".repeat(6000);
    let body = "lorem ipsum ".repeat(4000);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: www.example.test\r\nX-Pad: {pad}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let r = send_raw(&mut s, raw.as_bytes()).await.expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body_bytes"], body.len());
    assert_eq!(echo["headers"]["x-pad"], pad.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_runtime_modes_serve_concurrent_keepalive_connections() {
    // With `work_stealing = false` each worker thread runs its own runtime, while the
    // upstream connection pool is shared: a pooled backend connection opened on one runtime is
    // reused from another. Both modes must carry concurrent keep-alive traffic to the end.
    let web = backends("web", 1).await;
    for work_stealing in [false, true] {
        let port = free_port();
        let server = format!("[server]\nthreads = 2\nwork_stealing = {work_stealing}");
        let cfg = web_site_config(port, &web[0], &server, "");
        let _edge = EdgeProcess::start(&cfg, &[port]);
        let clients = (0..8).map(|c| {
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                for i in 0..10 {
                    let raw = format!("GET /c{c}/r{i} HTTP/1.1\r\nHost: www.example.test\r\n\r\n");
                    let r = send_raw(&mut s, raw.as_bytes()).await.expect("response");
                    assert_eq!(r.status, 200, "work_stealing={work_stealing}: {}", r.text());
                    assert_eq!(r.json()["path"], format!("/c{c}/r{i}"));
                }
            })
        });
        for client in clients.collect::<Vec<_>>() {
            client.await.expect("client task");
        }
    }
}
