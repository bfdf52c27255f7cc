//! Custom rules and rate limits through real edge processes: priority order,
//! allow skipping the WAF, 429 with Retry-After, and one global limit enforced
//! by two edges sharing a real redis-server (fail-open when it dies).

mod common;

use common::*;

fn config(port: u16, backend: std::net::SocketAddr, store: &str, limit: u64) -> String {
    format!(
        r#"
{store}

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]

[[sites.custom_rules]]
name = "trusted-scanner"
priority = 5
action = "allow"
conditions = [{{ match = "request_header:X-Scanner-Token", operator = "equals", values = ["ok-123"] }}]

[[sites.custom_rules]]
name = "no-bad-bots"
priority = 10
action = "block"
conditions = [{{ match = "request_header:User-Agent", operator = "contains", values = ["evilbot"], transforms = ["lowercase"] }}]

[[sites.rate_limits]]
name = "per-ip-api"
key = ["client_ip"]
limit = {limit}
window_seconds = 60
when = [{{ match = "uri_path", operator = "begins_with", values = ["/api/"] }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_rules_and_local_rate_limit() {
    let b = backends("gw", 1).await;
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, b[0].addr, "", 5), &[port]);

    let r = http_get(
        port,
        "api.example.test",
        "/",
        &[("User-Agent", "Mozilla/5.0 EvilBot/2")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 403, "custom block rule");
    // An allow rule (lower priority number) wins over the block rule and skips the WAF.
    let r = http_get(
        port,
        "api.example.test",
        "/?q=1%27%20OR%20%271%27%3D%271",
        &[("User-Agent", "EvilBot"), ("X-Scanner-Token", "ok-123")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200, "allow rule skips the block rule and the WAF");
    let r = http_get(
        port,
        "api.example.test",
        "/?q=1%27%20OR%20%271%27%3D%271",
        &[],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 403, "without it the WAF blocks");

    for i in 0..5 {
        assert_eq!(
            http_get(port, "api.example.test", "/api/items", &[])
                .await
                .expect("get")
                .status,
            200,
            "request {i}"
        );
    }
    let r = http_get(port, "api.example.test", "/api/items", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 429, "the 6th request in the window");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    // Sliding window: the refused count decays through the next window, so
    // the wait is at most the rest of this window plus the next one.
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(
        http_get(port, "api.example.test", "/other", &[])
            .await
            .expect("get")
            .status,
        200,
        "the limit only counts /api/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_edges_share_one_limit_through_redis() {
    let Some(mut redis) = RedisServer::start(None) else {
        return;
    };
    let b = backends("gw", 1).await;
    let store = format!("[rate_limit_store]\nkind = \"redis\"\nurl = \"{}\"\non_error = \"open\"\ntimeout_ms = 200\nkey_prefix = \"e2e-{}:\"", redis.url(), std::process::id());
    let (p1, p2) = (free_port(), free_port());
    let _e1 = EdgeProcess::start(&config(p1, b[0].addr, &store, 40), &[p1]);
    let _e2 = EdgeProcess::start(&config(p2, b[0].addr, &store, 40), &[p2]);

    let mut allowed = 0;
    for i in 0..100 {
        let port = if i % 2 == 0 { p1 } else { p2 };
        let r = http_get(port, "api.example.test", "/api/items", &[])
            .await
            .expect("get");
        assert!(r.status == 200 || r.status == 429, "{}", r.status);
        allowed += usize::from(r.status == 200);
    }
    assert!(
        (36..=44).contains(&allowed),
        "one global limit of 40 within 10% across two edges: {allowed}"
    );

    // Redis dies: fail-open lets requests through (and never stalls them).
    redis.kill();
    for port in [p1, p2] {
        let started = std::time::Instant::now();
        let r = http_get(port, "api.example.test", "/api/items", &[])
            .await
            .expect("get");
        assert_eq!(r.status, 200, "fail-open while Redis is down");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "bounded stall: {:?}",
            started.elapsed()
        );
    }
}
