//! Header and URL rewrites through a real edge: captures, variables,
//! negation, rule order, redirects, response-side rules, and CR/LF safety.

mod common;

use common::*;

fn config(port: u16, backend: std::net::SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "plain"
bind = "127.0.0.1:{port}"
protocol = "http"

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]

[[sites.rewrites]]
name = "tenant-from-path"
conditions = [{{ variable = "uri_path", pattern = '^/t/([a-z0-9-]+)/(.*)$' }}]
actions = [
  {{ set_request_header = "X-Tenant", value = "{{cond.1.1}}" }},
  {{ rewrite_path = "/{{cond.1.2}}", query = "{{var.query_string}}&tenant={{cond.1.1}}" }},
  {{ set_response_header = "X-Tenant-Seen", value = "{{cond.1.1}}" }},
]

[[sites.rewrites]]
name = "debug-unless-header"
conditions = [{{ header = "X-Debug", equals = "1", negate = true }}]
actions = [{{ delete_request_header = "X-Internal" }}, {{ append_request_header = "X-Trace", value = "edge={{var.client_ip}} m={{var.http_method}}" }}]

[[sites.rewrites]]
name = "order-later-wins"
conditions = [{{ variable = "uri_path", pattern = '^/t/' }}]
actions = [{{ set_request_header = "X-Tenant", value = "overridden" }}]

[[sites.rewrites]]
name = "old-to-new"
conditions = [{{ variable = "uri_path", pattern = '^/old/(.*)$', ignore_case = true }}]
actions = [{{ redirect = "https://{{var.host}}/new/{{cond.1.1}}", status = 308 }}, {{ set_request_header = "X-Never", value = "1" }}]

[[sites.rewrites]]
name = "echo-agent"
conditions = [{{ header = "X-Echo", pattern = '^(.*)$' }}]
actions = [{{ set_request_header = "X-Echoed", value = "{{cond.1.1}}" }}]

[[sites.rewrites]]
name = "tag-json"
phase = "response"
conditions = [{{ response_header = "Content-Type", pattern = 'json' }}, {{ variable = "status", pattern = '^2' }}]
actions = [{{ set_response_header = "X-Json", value = "yes" }}, {{ delete_response_header = "X-Backend" }}, {{ set_response_header = "Server", value = "edge" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_matrix() {
    let b = backends("gw", 1).await;
    let port = free_port();
    let _edge = EdgeProcess::start(&config(port, b[0].addr), &[port]);

    let r = http_get(
        port,
        "api.example.test",
        "/t/acme-1/orders/7?x=1",
        &[("X-Internal", "secret")],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        j["path"], "/orders/7?x=1&tenant=acme-1",
        "path and query rewritten with captures"
    );
    assert_eq!(
        j["headers"]["x-tenant"], "overridden",
        "rules apply in order; a later set wins"
    );
    assert!(
        j["headers"].get("x-internal").is_none(),
        "deleted when X-Debug is not 1 (negation)"
    );
    assert_eq!(j["headers"]["x-trace"], "edge=127.0.0.1 m=GET");
    assert_eq!(
        r.header("x-tenant-seen"),
        Some("acme-1"),
        "response header from a request rule"
    );
    assert_eq!(
        r.header("x-json"),
        Some("yes"),
        "response-phase rule on content type and status"
    );
    assert!(r.header("x-backend").is_none(), "response-phase delete");
    assert_eq!(
        r.header("server"),
        Some("edge"),
        "a rule's header outlives the hardening that removes backend banners"
    );

    let r = http_get(
        port,
        "api.example.test",
        "/plain",
        &[("X-Internal", "kept"), ("X-Debug", "1")],
    )
    .await
    .expect("get");
    let j = r.json();
    assert_eq!(j["path"], "/plain");
    assert_eq!(
        j["headers"]["x-internal"], "kept",
        "negated condition false: no delete"
    );
    assert!(j["headers"].get("x-tenant").is_none());

    let r = http_get(port, "api.example.test", "/OLD/a/b", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://api.example.test/new/a/b")
    );
    assert_eq!(
        b[0].requests.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "a redirect never reaches the backend"
    );

    // A captured value can never smuggle a header: %0d%0a stays encoded, and
    // raw CR/LF cannot even be sent in a header.
    let r = http_get(
        port,
        "api.example.test",
        "/x",
        &[("X-Echo", "a%0d%0aX-Injected: 1")],
    )
    .await
    .expect("get");
    let j = r.json();
    assert_eq!(j["headers"]["x-echoed"], "a%0d%0aX-Injected: 1");
    assert!(j["headers"].get("x-injected").is_none());
}

#[test]
fn rewrite_errors_name_key_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg =
        config(1, "127.0.0.1:2".parse().expect("addr")).replace("{var.client_ip}", "{var.nope}");
    let (ok, _, stderr) = check(&cfg, dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("sites[0].rewrites[1].actions[1]"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown variable"), "{stderr}");
}
