//! The OpenAPI tools and the contract's life in a running edge: `portcullis openapi check` on
//! real documents and on a broken one, `portcullis check` naming the document's line, `openapi
//! learn` drafting a document that `openapi check` accepts, and a reload that keeps the old
//! contract when the new document is broken and applies the new one when it is whole.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn portcullis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run portcullis");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn doc(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openapi")
        .join(name)
        .display()
        .to_string()
}

/// A 3.0 document whose one parameter is in Swagger 2.0's `body` and whose body schema names a
/// component that does not exist.
const BROKEN: &str = "openapi: 3.0.1
info: {title: broken, version: '1'}
paths:
  /a:
    get:
      parameters:
        - name: q
          in: body
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Nope'}
";

#[test]
fn openapi_check_lists_operations_and_names_broken_lines() {
    let (ok, out, err) = portcullis(&["openapi", "check", &doc("orders-apim.yaml")]);
    assert!(ok, "{err}");
    assert!(
        out.contains("OK, 5 operation(s) under /orders-api"),
        "{out}"
    );
    assert!(
        out.contains("DELETE  /orders-api/orders/{orderId}  cancelOrder"),
        "{out}"
    );
    let (ok, out, err) = portcullis(&[
        "openapi",
        "check",
        &doc("pets-31.yaml"),
        "--base-path",
        "/pets-api",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("POST    /pets-api/pets  addPet"), "{out}");

    let dir = tempfile::tempdir().expect("dir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, BROKEN).expect("write");
    let (ok, _, err) = portcullis(&["openapi", "check", broken.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("broken.yaml:6: /paths/~1a/get/parameters/0: parameter `in` is \"body\""),
        "{err}"
    );
    assert!(
        err.contains(
            "broken.yaml:12: /paths/~1a/get/requestBody/content/application~1json/schema/$ref: \
             $ref \"#/components/schemas/Nope\" points at nothing"
        ),
        "{err}"
    );

    // Named from a configuration: the error carries the configuration key and the document's.
    let cfg = format!(
        "[[sites]]\nname = \"s\"\nhosts = [\"*\"]\nroutes = [{{ pool = \"p\" }}]\n\
         [[sites.openapi]]\ndocument = \"{}\"\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:9\" }}]\n",
        broken.display()
    );
    let (ok, out, err) = check(&cfg, dir.path());
    let all = out + &err;
    assert!(!ok);
    assert!(all.contains("sites[0].openapi[0].document"), "{all}");
    assert!(all.contains("broken.yaml:12:"), "{all}");
}

#[test]
fn learn_drafts_a_document_that_check_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let line = |method: &str, uri: &str, status: u16| {
        serde_json::json!({
            "timestamp": "2026-12-02T10:00:00Z", "request_id": "r", "client_ip": "10.0.0.1",
            "host": "api.example.test", "method": method, "uri": uri, "status": status,
        })
        .to_string()
    };
    let lines = [
        line("GET", "/orders?limit=10", 200),
        line("GET", "/orders?limit=20&status=open", 200),
        line("GET", "/orders/3f2c7e1a-1b2c-4d5e-8f90-123456789abc", 200),
        line("POST", "/orders", 201),
        line("GET", "/wp-login.php", 404),
        "{\"truncated\": ".to_string(),
    ];
    std::fs::write(&log, lines.join("\n")).expect("write");
    let out_doc = dir.path().join("learned.yaml");
    let (ok, out, err) = portcullis(&[
        "openapi",
        "learn",
        "--from",
        log.to_str().unwrap(),
        "-o",
        out_doc.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("5 request(s) read, 4 learned from, 1 line(s) skipped; 2 path(s)"),
        "{out}"
    );
    let (ok, out, err) = portcullis(&["openapi", "check", out_doc.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("GET     /orders  getOrders: 2 parameter(s)"),
        "{out}"
    );
    assert!(out.contains("GET     /orders/{id}  getOrdersId"), "{out}");
    assert!(out.contains("POST    /orders  postOrders"), "{out}");
    assert!(!out.contains("wp-login"), "{out}");
}

fn reload_config(port: u16, document: &Path) -> String {
    format!(
        "[[listeners]]\nname = \"h\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n\
         [[sites]]\nname = \"s\"\nhosts = [\"*\"]\nroutes = [{{ pool = \"p\" }}]\n\
         [[sites.openapi]]\ndocument = \"{}\"\nbase_path = \"/api\"\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"BACKEND\" }}]\n",
        document.display()
    )
}

const V1: &str = "openapi: 3.1.0
info: {title: v, version: '1'}
paths:
  /items/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses: {'200': {description: OK}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_document_on_reload_keeps_the_running_contract() {
    let b = backends("p", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let document = dir.path().join("api.yaml");
    std::fs::write(&document, V1).expect("write");
    let port = free_port();
    let cfg = reload_config(port, &document).replace("BACKEND", &b[0].addr.to_string());
    let edge = EdgeProcess::start(&cfg, &[port]);
    let status = |path: &'static str| async move {
        http_get(port, "x", path, &[]).await.expect("answer").status
    };
    assert_eq!(status("/api/items/7").await, 200);
    assert_eq!(status("/api/items/x").await, 400);
    assert_eq!(status("/api/users/7").await, 404);

    // A broken document: the reload is refused, the old contract goes on.
    std::fs::write(&document, BROKEN).expect("write");
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success());
    };
    hup(edge.pid());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status("/api/items/7").await, 200);
    assert_eq!(status("/api/items/x").await, 400);

    // A whole new document: applied, with its new path.
    let v2 =
        V1.to_string() + "  /users/{id}:\n    get:\n      responses: {'200': {description: OK}}\n";
    std::fs::write(&document, v2).expect("write");
    hup(edge.pid());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status("/api/users/7").await, 200);
    assert_eq!(status("/api/items/x").await, 400);
}

/// A document whose enum admits a value the signature rules would block: the enum is the API's
/// own literal, so once the contract validated it the WAF does not scan it; a free-text
/// parameter beside it is scanned still, and `waf_skips_typed_values = false` scans both.
const TYPED: &str = "openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /report:
    get:
      parameters:
        - {name: view, in: query, schema: {enum: ['summary', '<script>alert(1)</script>']}}
        - {name: q, in: query, schema: {type: string, maxLength: 100}}
      responses: {'200': {description: OK}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_contract_proved_inert_are_not_scanned_by_the_waf() {
    let b = backends("p", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let document = dir.path().join("api.yaml");
    std::fs::write(&document, TYPED).expect("write");
    let port = free_port();
    let cfg = reload_config(port, &document).replace("BACKEND", &b[0].addr.to_string());
    let edge = EdgeProcess::start(&cfg, &[port]);
    let status = |path: &'static str| async move {
        http_get(port, "x", path, &[]).await.expect("answer").status
    };
    let listed = "/api/report?view=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let free_text = "/api/report?view=summary&q=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    assert_eq!(status(listed).await, 200, "an enum literal is not scanned");
    assert_eq!(status(free_text).await, 403, "free text is scanned");
    assert_eq!(
        status("/api/report?view=%3Cscript%3Ealert(2)%3C%2Fscript%3E").await,
        400,
        "a value outside the enum never reaches the WAF's judgement"
    );

    // Turned off: both are scanned.
    let off = cfg.replace(
        "base_path = \"/api\"",
        "base_path = \"/api\"\nwaf_skips_typed_values = false",
    );
    std::fs::write(&edge.config_path, off).expect("write");
    assert!(Command::new("kill")
        .args(["-HUP", &edge.pid().to_string()])
        .status()
        .expect("kill")
        .success());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(listed).await, 403);
}

/// `portcullis replay -c` puts the sites' contracts in front of the WAF: a request the contract
/// refuses counts as blocked even where no signature matches it, one it proved inert is not
/// scanned, and a path no contract covers goes to the WAF alone.
#[test]
fn replay_honours_the_sites_contracts() {
    let dir = tempfile::tempdir().expect("dir");
    let document = dir.path().join("api.yaml");
    std::fs::write(&document, TYPED).expect("write");
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(
        &cfg,
        reload_config(1, &document).replace("BACKEND", "127.0.0.1:9"),
    )
    .expect("write");
    let raw = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let cases = [
        // No signature matches `?view=full`; the contract refuses it (not in the enum).
        ("attack", "not-in-enum", raw("/api/report?view=full")),
        // The enum's own literal: passed by the contract, not scanned.
        (
            "benign",
            "enum-literal",
            raw("/api/report?view=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ),
        // Free text: the WAF.
        (
            "attack",
            "free-text",
            raw("/api/report?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ),
        // Outside the API's base path: the WAF alone.
        (
            "attack",
            "elsewhere",
            raw("/other?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ),
        ("benign", "elsewhere-benign", raw("/other?q=hello")),
    ];
    let corpus = dir.path().join("cases.jsonl");
    let lines: Vec<String> = cases
        .iter()
        .map(|(label, id, raw)| {
            serde_json::json!({ "id": id, "label": label, "category": id, "raw_text": raw })
                .to_string()
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).expect("write");
    let (ok, out, err) = portcullis(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        "--json",
        "--misses",
        corpus.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(report["misses"].as_array().map(Vec::len), Some(0), "{out}");
    let (ok, out, _) = portcullis(&["replay", "--json", "--misses", corpus.to_str().unwrap()]);
    assert!(ok);
    let without: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let missed: Vec<&str> = without["misses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(missed, vec!["not-in-enum", "enum-literal"], "{out}");
}
