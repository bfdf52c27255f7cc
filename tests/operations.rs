//! Operations: hot reload under load (SIGHUP and `portcullis reload`), an
//! invalid reload that changes nothing, certificate reload, metrics after
//! scripted traffic, and JSON access logs with logrotate's SIGUSR1.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn config(port: u16, admin: u16, backend: &str, extra: &str) -> String {
    format!(
        r#"
[server]
threads = 2
{extra}

[admin]
bind = "127.0.0.1:{admin}"

[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#
    )
}

fn signal(edge: &EdgeProcess, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &edge.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn instance(port: u16) -> (u16, String) {
    match http_get(port, "api.example.test", "/", &[]).await {
        Ok(r) if r.status == 200 => (
            200,
            r.json()["instance"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_drops_nothing_and_bad_config_changes_nothing() {
    let a = backends("a", 1).await;
    let b = backends("b", 1).await;
    let (port, admin) = (free_port(), free_port());
    let edge = EdgeProcess::start_with_stdout(
        &config(port, admin, &a[0].addr.to_string(), ""),
        &[port, admin],
        false,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (stop, failures, total) = (stop.clone(), failures.clone(), total.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = instance(port).await;
                total.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    eprintln!("failed: {status} {body}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    // Switch the pool to backend b with SIGHUP.
    std::fs::write(
        &edge.config_path,
        config(port, admin, &b[0].addr.to_string(), ""),
    )
    .expect("write");
    signal(&edge, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(instance(port).await.1, "b-0", "SIGHUP applied the new pool");

    // Back to a with `portcullis reload`.
    std::fs::write(
        &edge.config_path,
        config(port, admin, &a[0].addr.to_string(), ""),
    )
    .expect("write");
    let out = std::process::Command::new(bin())
        .args(["reload", "-c"])
        .arg(&edge.config_path)
        .output()
        .expect("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(answer["ok"], true);
    let took = answer["took_ms"].as_f64().unwrap_or(f64::MAX);
    eprintln!("reload applied in {took} ms");
    assert!(took < 1000.0, "applied well under a second ({took} ms)");
    assert_eq!(instance(port).await.1, "a-0");

    // An invalid config is refused with precise errors and the old one keeps serving.
    let bad = config(port, admin, "not-an-address", "");
    std::fs::write(&edge.config_path, bad).expect("write");
    let out = std::process::Command::new(bin())
        .args(["reload", "--admin", &format!("127.0.0.1:{admin}")])
        .output()
        .expect("reload");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pools[0].backends[0].address") && text.contains("invalid address"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(instance(port).await.1, "a-0", "old config still serving");

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (total, failures) = (
        total.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(total > 50, "load ran: {total}");
    assert_eq!(
        failures, 0,
        "no failed request during reloads ({total} sent)"
    );

    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_scripted_traffic() {
    let a = backends("a", 1).await;
    let (port, admin) = (free_port(), free_port());
    let _edge = EdgeProcess::start(
        &config(port, admin, &a[0].addr.to_string(), ""),
        &[port, admin],
    );
    for _ in 0..7 {
        assert_eq!(
            http_get(port, "api.example.test", "/", &[])
                .await
                .expect("get")
                .status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            http_get(port, "nobody.example.test", "/", &[])
                .await
                .expect("get")
                .status,
            404
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = metrics_text(admin).await;
    assert!(
        m.contains(
            "portcullis_requests_total{site=\"api\",status_class=\"2xx\",waf_action=\"allowed\"} 7"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "portcullis_requests_total{site=\"\",status_class=\"4xx\",waf_action=\"off\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains("portcullis_request_duration_seconds_count{site=\"api\"} 7"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_upstream_duration_seconds_count{pool=\"gw\"} 7"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "portcullis_backend_up{{pool=\"gw\",backend=\"{}\"}} 1",
            a[0].addr
        )),
        "{m}"
    );

    let status: serde_json::Value = serde_json::from_slice(
        &http_get(admin, "admin", "/status", &[])
            .await
            .expect("status")
            .body,
    )
    .expect("json");
    assert_eq!(status["pools"][0]["backends"][0]["available"], true);
    assert_eq!(
        http_get(admin, "admin", "/healthz", &[])
            .await
            .expect("healthz")
            .status,
        200
    );
    assert_eq!(
        http_get(admin, "admin", "/readyz", &[])
            .await
            .expect("readyz")
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_json_and_reopens_on_sigusr1() {
    let a = backends("a", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let (port, admin) = (free_port(), free_port());
    let extra = format!(
        "\n[logging]\naccess_log = \"{}\"\nwaf_log = \"off\"\n",
        log.display()
    );
    let cfg = config(port, admin, &a[0].addr.to_string(), "")
        .replace("[admin]", &format!("{extra}\n[admin]"));
    let edge = EdgeProcess::start(&cfg, &[port, admin]);
    let r = http_get(
        port,
        "api.example.test",
        "/items?id=7",
        &[("X-Request-Id", "req-log-1")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = std::fs::read_to_string(&log).expect("log written");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).expect("JSON line");
    for field in [
        "timestamp",
        "request_id",
        "client_ip",
        "client_port",
        "country",
        "listener",
        "site",
        "method",
        "host",
        "uri",
        "status",
        "bytes_in",
        "bytes_out",
        "upstream_addr",
        "upstream_status",
        "tries",
        "latency_ms",
        "upstream_latency_ms",
        "tls_version",
        "tls_cipher",
        "waf_action",
        "waf_score",
        "rule_ids",
    ] {
        assert!(line.get(field).is_some(), "field {field} missing in {line}");
    }
    assert_eq!(line["request_id"], "req-log-1");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["upstream_status"], 200);
    assert_eq!(line["site"], "api");
    assert_eq!(line["uri"], "/items?id=7");
    assert_eq!(line["upstream_addr"], a[0].addr.to_string());

    std::fs::rename(&log, dir.path().join("access.log.1")).expect("rotate");
    signal(&edge, "-USR1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    http_get(port, "api.example.test", "/after-rotate", &[])
        .await
        .expect("get");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = std::fs::read_to_string(&log).expect("reopened log");
    assert!(
        fresh.contains("/after-rotate"),
        "new file gets new lines: {fresh}"
    );
    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains("portcullis_log_lines_dropped_total{log=\"access\"} 0"),
        "{metrics}"
    );
}

/// A client that leaves before its answer or in the middle of its request head, or a request
/// the WAF blocks, is not an error of the edge: no ERROR line in the edge's own log (the access
/// and WAF logs record requests). A backend that does not answer in time still gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_aborts_and_blocks_are_not_logged_as_errors_but_backend_timeouts_are() {
    let silent_addr = silent_server().await.to_string();
    let (port, admin) = (free_port(), free_port());
    let cfg = config(port, admin, &silent_addr, "")
        + &format!(
            r#"
[[sites]]
name = "slow"
hosts = ["slow.example.test"]
routes = [{{ pool = "short" }}]

[[pools]]
name = "short"
read_timeout_ms = 300
backends = [{{ address = "{silent_addr}" }}]
"#
        );
    let dir = tempfile::tempdir().expect("dir");
    let stderr = dir.path().join("edge.log");
    let edge = EdgeProcess::start_with_stderr_file(&cfg, &[port, admin], &stderr);

    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    client
        .write_all(get_request("api.example.test", "/wait", &[]).as_bytes())
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A client that leaves in the middle of its request head.
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    client
        .write_all(b"GET /half HTTP/1.1\r\nHost: api.exa")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(client);

    // A chunked body streams, so the WAF blocks it through pingora's error path.
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let blocked = send_raw(
        &mut client,
        b"POST /submit HTTP/1.1\r\nHost: api.example.test\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n1b\r\nq=<script>alert(1)</script>\r\n0\r\n\r\n",
    )
    .await
    .expect("blocked POST");
    assert_eq!(blocked.status, 403);

    let r = http_get(port, "slow.example.test", "/", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 504);
    // The backend timeout's line comes last; wait for it (bounded) rather than guess a delay.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stderr).is_ok_and(|l| l.contains("slow.example.test"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(edge);
    let log = std::fs::read_to_string(&stderr).expect("edge log");
    assert!(
        log.contains("Fail to proxy") && log.contains("slow.example.test"),
        "the backend timeout is logged: {log}"
    );
    assert!(
        !log.contains("api.example.test"),
        "the client abort and the block are not: {log}"
    );
    assert!(
        !log.contains("Fail to proxy: Downstream"),
        "nor the head cut short: {log}"
    );
}

/// The admin listener's Prometheus text.
async fn metrics_text(admin: u16) -> String {
    http_get(admin, "admin", "/metrics", &[])
        .await
        .expect("metrics")
        .text()
}
