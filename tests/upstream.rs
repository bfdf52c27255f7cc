//! Upstream behaviour through a real edge process: failover and ejection under
//! load, probes re-admitting a backend, region failover, Host override for
//! internal gateways, self-chained calls and loop protection.

mod common;

use common::*;
use portcullis::demo::backend::{self, EchoOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn plain_config(port: u16, pool: &str) -> String {
    format!(
        r#"
[server]
node_id = "edge-test"
region = "west"
threads = 2

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "all"
hosts = ["*"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
{pool}
"#
    )
}

fn addr_list(addrs: &[(String, Option<&str>)]) -> String {
    let items: Vec<String> = addrs
        .iter()
        .map(|(a, r)| match r {
            Some(r) => format!("{{ address = \"{a}\", region = \"{r}\" }}"),
            None => format!("{{ address = \"{a}\" }}"),
        })
        .collect();
    format!("backends = [{}]", items.join(", "))
}

/// Sends GETs on `clients` parallel keep-alive connections until `stop`; returns (ok, failed).
async fn load(
    port: u16,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<tokio::net::TcpStream> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok();
                }
                let Some(c) = conn.as_mut() else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match send_raw(c, b"GET /load HTTP/1.1\r\nHost: gw.example.test\r\n\r\n").await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        eprintln!("status {} {}", r.status, r.text());
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    Err(e) => {
                        eprintln!("client error {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_backend_causes_no_client_errors_and_comes_back_after_probes() {
    let bs = backends("gw", 3).await;
    let victim_addr = bs[2].addr;
    let port = free_port();
    let pool = format!(
        "{}\nhealth_check = {{ path = \"/health\", interval_ms = 100, timeout_ms = 500, healthy_threshold = 2, unhealthy_threshold = 1 }}\npassive = {{ consecutive_failures = 1, ejection_seconds = 1 }}",
        addr_list(&bs.iter().map(|b| (b.addr.to_string(), None)).collect::<Vec<_>>())
    );
    let _edge = EdgeProcess::start(&plain_config(port, &pool), &[port]);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load_task = tokio::spawn(load(port, 4, stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    bs[2].stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Bring the instance back on the same address.
    let revived = backend::start("gw-2-revived", victim_addr)
        .await
        .expect("restart backend");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load_task.await.expect("load");
    assert!(ok > 200, "steady load ran ({ok} requests)");
    assert_eq!(
        failed, 0,
        "no client-visible errors while a backend died ({ok} ok)"
    );
    let revived_count = revived.requests.load(Ordering::Relaxed);
    assert!(
        revived_count > 10,
        "the revived backend gets traffic again after its probes pass ({revived_count})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_failover_and_return() {
    let west = backends("west", 2).await;
    let east = backends("east", 1).await;
    let port = free_port();
    let mut list: Vec<(String, Option<&str>)> = west
        .iter()
        .map(|b| (b.addr.to_string(), Some("west")))
        .collect();
    list.push((east[0].addr.to_string(), Some("east")));
    let pool = format!(
        "{}\nhealth_check = {{ kind = \"tcp\", interval_ms = 100, timeout_ms = 300, healthy_threshold = 1, unhealthy_threshold = 1 }}",
        addr_list(&list)
    );
    let _edge = EdgeProcess::start(&plain_config(port, &pool), &[port]);
    let instance = |r: Resp| {
        r.json()["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    for _ in 0..10 {
        let r = http_get(port, "gw.example.test", "/", &[])
            .await
            .expect("get");
        assert!(instance(r).starts_with("west"), "same region first");
    }
    let west_addrs: Vec<_> = west.iter().map(|b| b.addr).collect();
    for b in &west {
        b.stop();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..10 {
        let r = http_get(port, "gw.example.test", "/", &[])
            .await
            .expect("get");
        assert_eq!(r.status, 200);
        assert_eq!(instance(r), "east-0", "all of west is down: served by east");
    }
    let _back = backend::start("west-back", west_addrs[0])
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..10 {
        let r = http_get(port, "gw.example.test", "/", &[])
            .await
            .expect("get");
        assert_eq!(
            instance(r),
            "west-back",
            "traffic returns to the primary region"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_gateway_needs_host_override() {
    let gw = backend::start_with(
        "apim",
        ([127, 0, 0, 1], 0).into(),
        EchoOptions {
            require_host: Some("apim.internal.test".into()),
        },
    )
    .await
    .expect("backend");
    let (with, without) = (free_port(), free_port());
    let backends = addr_list(&[(gw.addr.to_string(), None)]);
    let _a = EdgeProcess::start(
        &plain_config(
            with,
            &format!("{backends}\nhost_header = \"override\"\nhost_name = \"apim.internal.test\""),
        ),
        &[with],
    );
    let _b = EdgeProcess::start(&plain_config(without, &backends), &[without]);

    let r = http_get(with, "api.example.test", "/echo", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 200, "host override reaches the gateway");
    assert_eq!(r.json()["headers"]["host"], "apim.internal.test");
    assert_eq!(
        r.json()["headers"]["x-forwarded-host"],
        "api.example.test",
        "the public host is still passed on"
    );

    let r = http_get(without, "api.example.test", "/echo", &[])
        .await
        .expect("get");
    assert_eq!(
        r.status, 404,
        "without the override the internal gateway refuses"
    );
}

/// A backend that, for `/chain`, calls back into the edge for `/leaf` and returns that answer.
async fn chaining_backend(edge_port: u16) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]).to_string();
                let body = if head.starts_with("GET /chain") {
                    let inner = http_get(edge_port, "gw.example.test", "/leaf", &[])
                        .await
                        .map(|r| r.text())
                        .unwrap_or_default();
                    format!("chained:{inner}")
                } else {
                    "leaf-answer".to_string()
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_chained_call_works_and_a_loop_is_cut_with_508() {
    let port = free_port();
    let backend = chaining_backend(port).await;
    let _edge = EdgeProcess::start(
        &plain_config(port, &addr_list(&[(backend.to_string(), None)])),
        &[port],
    );
    let r = http_get(port, "gw.example.test", "/chain", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "chained:leaf-answer");

    // An edge whose pool points at itself.
    let self_port = free_port();
    let pool = format!(
        "{}\nread_timeout_ms = 20000",
        addr_list(&[(format!("127.0.0.1:{self_port}"), None)])
    );
    let _looping = EdgeProcess::start(&plain_config(self_port, &pool), &[self_port]);
    let started = Instant::now();
    let r = http_get(self_port, "gw.example.test", "/", &[])
        .await
        .expect("get");
    let took = started.elapsed();
    assert_eq!(r.status, 508, "{}", r.text());
    eprintln!("loop cut after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "cut at once, not after the 20 s read timeout ({took:?})"
    );
}

/// A backend that reads each request, then writes `reply` (if any) and closes the connection;
/// `served` counts the requests it read.
async fn misbehaving_backend(
    reply: Option<&'static [u8]>,
    served: Arc<AtomicUsize>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                served.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = reply {
                    let _ = s.write_all(reply).await;
                }
            });
        }
    });
    addr
}

/// Sends six GETs, then six POSTs, each on a fresh connection, through an edge whose round-robin
/// pool holds `bad` and a working backend (no ejection, a full retry budget). Returns the statuses
/// of the GETs and of the POSTs.
async fn get_and_post_beside_a_working_backend(bad: std::net::SocketAddr) -> (Vec<u16>, Vec<u16>) {
    let good = backends("good", 1).await;
    let port = free_port();
    let pool = format!(
        "{}\nload_balancing = \"round_robin\"\npassive = {{ consecutive_failures = 0 }}\nretry = {{ budget_percent = 100 }}",
        addr_list(&[(bad.to_string(), None), (good[0].addr.to_string(), None)])
    );
    let _edge = EdgeProcess::start(&plain_config(port, &pool), &[port]);
    let mut gets = Vec::new();
    for _ in 0..6 {
        let r = http_get(port, "gw.example.test", "/", &[])
            .await
            .expect("get");
        gets.push(r.status);
    }
    let mut posts = Vec::new();
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let r = send_raw(&mut s, b"POST / HTTP/1.1\r\nHost: gw.example.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi").await.expect("post");
        posts.push(r.status);
    }
    (gets, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_status_is_retried_on_another_backend_for_get_only() {
    // One backend answers 503 to everything, the other works.
    let sick = misbehaving_backend(
        Some(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nsick"),
        Arc::default(),
    )
    .await;
    let (gets, posts) = get_and_post_beside_a_working_backend(sick).await;
    for status in gets {
        assert_eq!(
            status, 200,
            "GET answered 503 is retried on the other backend"
        );
    }
    assert!(
        posts.contains(&503),
        "a POST is never retried after reaching a backend: {posts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_broken_by_backend_is_retried_for_get_only() {
    // One backend reads each request and closes the connection without answering (a backend that
    // dies mid-request, on a fresh connection); the other works.
    let dropped = Arc::new(AtomicUsize::new(0));
    let dying = misbehaving_backend(None, dropped.clone()).await;
    let (gets, posts) = get_and_post_beside_a_working_backend(dying).await;
    for status in gets {
        assert_eq!(
            status, 200,
            "a GET whose backend closed without answering is retried on the other backend"
        );
    }
    assert!(
        dropped.load(Ordering::Relaxed) > 0,
        "the dying backend was tried"
    );
    assert!(
        posts.contains(&502),
        "a POST is never retried after reaching a backend: {posts:?}"
    );
}
