//! The contract compiler and validator on the documents in tests/openapi: one written the way
//! API Management exports (3.0: servers with the API suffix, x- extensions, $refs into
//! components and into a second file) and one 3.1 document ($defs, `null` in type arrays, allOf).

use super::compile::{compile, Contract};
use super::validate::{Head, Outcome};
use super::{ContractMode, OpenApiConfig, UndeclaredConfig};
use std::path::Path;

fn contract(file: &str) -> Contract {
    let cfg = OpenApiConfig {
        document: file.into(),
        base_path: None,
        mode: ContractMode::Prevention,
        undeclared: UndeclaredConfig::default(),
        not_found_status: 404,
        expose_violations: true,
        waf_skips_typed_values: None,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    compile(&cfg, &dir).unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

fn head<'a>(method: &'a str, target: &'a str, headers: Vec<(&'a str, &'a str)>) -> Head<'a> {
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    Head {
        method,
        path,
        query,
        headers,
    }
}

fn kinds(o: &Outcome) -> Vec<(&'static str, String)> {
    o.violations
        .iter()
        .filter(|v| v.blocks)
        .map(|v| (v.kind, v.pointer.clone()))
        .collect()
}

#[test]
fn apim_export_routes_under_its_server_base_path() {
    let c = contract("orders-apim.yaml");
    assert_eq!(c.base_path, "/orders-api");
    assert_eq!(c.operations.len(), 5);
    let o = c.check_head(&head(
        "GET",
        "/orders-api/orders?limit=10&status=open&tags=a,b",
        vec![],
    ));
    assert_eq!(c.operations[o.operation.unwrap()].id, "listOrders");
    assert!(kinds(&o).is_empty(), "{:?}", o.violations);
    // Not under the base path, unknown path, wrong method (with Allow).
    assert_eq!(
        c.check_head(&head("GET", "/orders", vec![])).status(&c),
        Some(404)
    );
    assert_eq!(
        c.check_head(&head("GET", "/orders-api/nope", vec![]))
            .status(&c),
        Some(404)
    );
    let o = c.check_head(&head("PUT", "/orders-api/orders", vec![]));
    assert_eq!(o.status(&c), Some(405));
    assert_eq!(o.allow, vec!["GET", "POST"]);
}

#[test]
fn parameters_are_read_by_their_schema() {
    let c = contract("orders-apim.yaml");
    let bad = |target: &str| kinds(&c.check_head(&head("GET", target, vec![])));
    assert_eq!(
        bad("/orders-api/orders?limit=500"),
        vec![("parameter", "/query/limit".into())]
    );
    assert_eq!(
        bad("/orders-api/orders?limit=ten"),
        vec![("parameter", "/query/limit".into())]
    );
    assert_eq!(
        bad("/orders-api/orders?status=lost"),
        vec![("parameter", "/query/status".into())]
    );
    assert_eq!(
        bad("/orders-api/orders?tags=ok,NOT-OK"),
        vec![("parameter", "/query/tags/1".into())]
    );
    assert_eq!(
        bad("/orders-api/orders?debug=1"),
        vec![("undeclared_query", "/query/debug".into())]
    );
    assert_eq!(
        bad("/orders-api/orders/not-a-uuid"),
        vec![("parameter", "/path/orderId".into())]
    );
    assert!(bad("/orders-api/orders/3f2c7e1a-1b2c-4d5e-8f90-123456789abc").is_empty());
    assert_eq!(
        bad("/orders-api/orders/3f2c7e1a-1b2c-4d5e-8f90-123456789abc/items/0"),
        vec![("parameter", "/path/line".into())]
    );
    // A value's text never appears in the reason.
    let o = c.check_head(&head(
        "GET",
        "/orders-api/orders?limit=%3Cscript%3E",
        vec![],
    ));
    assert!(o.violations.iter().all(|v| !v.reason.contains("script")));
}

#[test]
fn credentials_are_required_where_the_document_says() {
    let c = contract("orders-apim.yaml");
    let target = "/orders-api/orders/3f2c7e1a-1b2c-4d5e-8f90-123456789abc";
    assert_eq!(
        kinds(&c.check_head(&head("DELETE", target, vec![]))),
        vec![("security", "/header/ocp-apim-subscription-key".into())]
    );
    let refused = c.check_head(&head("DELETE", target, vec![]));
    assert_eq!(refused.status(&c), Some(401));
    let with_key = vec![("Ocp-Apim-Subscription-Key", "k-123")];
    assert!(kinds(&c.check_head(&head("DELETE", target, with_key))).is_empty());
}

#[test]
fn bodies_are_checked_against_their_schema_and_media_type() {
    let c = contract("orders-apim.yaml");
    let op = c
        .operations
        .iter()
        .position(|o| o.id == "createOrder")
        .unwrap();
    let json = Some("application/json; charset=utf-8");
    let check = |ct: Option<&str>, body: &str| -> Vec<(&'static str, String)> {
        c.check_body(op, ct, body.as_bytes())
            .into_iter()
            .filter(|v| v.blocks)
            .map(|v| (v.kind, v.pointer))
            .collect()
    };
    let good =
        r#"{"customer":{"email":"a@example.com"},"items":[{"sku":"AB-12","qty":2}],"note":null}"#;
    assert!(check(json, good).is_empty(), "{:?}", check(json, good));
    assert_eq!(
        check(
            json,
            r#"{"customer":{"email":"a@example.com"},"items":[{"sku":"AB-12","qty":0}]}"#
        ),
        vec![("body", "/body/items/0/qty".into())]
    );
    assert_eq!(
        check(
            json,
            r#"{"customer":{"email":"not-an-email"},"items":[{"sku":"AB-12","qty":1}]}"#
        ),
        vec![("body", "/body/customer/email".into())]
    );
    assert_eq!(
        check(json, r#"{"items":[{"sku":"AB-12","qty":1}]}"#),
        vec![("body", "/body".into())]
    );
    assert_eq!(
        check(
            json,
            r#"{"customer":{"email":"a@example.com"},"items":[{"sku":"AB-12","qty":1}],"admin":true}"#
        ),
        vec![("undeclared_body_field", "/body".into())]
    );
    assert_eq!(
        check(json, "{not json"),
        vec![("malformed_body", "/body".into())]
    );
    assert_eq!(
        check(Some("text/xml"), "<a/>"),
        vec![("media_type", "/header/content-type".into())]
    );
    assert_eq!(check(json, ""), vec![("body_required", "/body".into())]);
    // A form body is read by the schema's property shapes.
    assert_eq!(
        check(
            Some("application/x-www-form-urlencoded"),
            "customer=x&items=y"
        ),
        vec![
            ("body", "/body/customer".into()),
            ("body", "/body/items/0".into())
        ]
    );
}

#[test]
fn openapi_31_documents_with_defs_nulls_and_composition() {
    let c = contract("pets-31.yaml");
    assert_eq!(c.base_path, "");
    let op = c.operations.iter().position(|o| o.id == "addPet").unwrap();
    let json = Some("application/json");
    let blocking = |body: &str| {
        c.check_body(op, json, body.as_bytes())
            .into_iter()
            .filter(|v| v.blocks)
            .map(|v| v.pointer)
            .collect::<Vec<_>>()
    };
    assert!(blocking(r#"{"species":"cat","nickname":null,"birth":"2020-02-29"}"#).is_empty());
    assert_eq!(
        blocking(r#"{"species":"cat","birth":"2020-02-30x"}"#),
        vec!["/body/birth"]
    );
    assert_eq!(blocking(r#"{"species":"fish"}"#), vec!["/body/species"]);
    // allOf members stay open to each other; the composed schema is closed.
    assert_eq!(blocking(r#"{"species":"dog","owner":"x"}"#), vec!["/body"]);
    let bearer = vec![("Authorization", "Bearer abc.def")];
    assert!(kinds(&c.check_head(&head("POST", "/pets", bearer))).is_empty());
    let basic = vec![("Authorization", "Basic dXNlcjpw")];
    assert_eq!(
        c.check_head(&head("POST", "/pets", basic)).status(&c),
        Some(401)
    );
    assert_eq!(
        kinds(&c.check_head(&head("GET", "/pets/0", vec![]))),
        vec![("parameter", "/path/id".into())]
    );
}

#[test]
fn broken_documents_name_file_line_and_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      parameters:\n        - $ref: '#/components/parameters/Missing'\n      responses: {}\n",
    )
    .unwrap();
    let cfg = OpenApiConfig {
        document: bad.clone(),
        base_path: None,
        mode: ContractMode::Prevention,
        undeclared: UndeclaredConfig::default(),
        not_found_status: 404,
        expose_violations: false,
        waf_skips_typed_values: None,
    };
    let errs = compile(&cfg, dir.path()).unwrap_err();
    let text = errs[0].to_string();
    assert!(
        text.contains("bad.yaml:")
            && text.contains("/paths/~1a/get/parameters/0")
            && text.contains("points at nothing"),
        "{text}"
    );
    std::fs::write(&bad, "openapi: 2.0\n").unwrap();
    assert!(compile(&cfg, dir.path()).unwrap_err()[0]
        .to_string()
        .contains("not supported"));
    std::fs::write(&bad, "openapi: 3.0.0\npaths:\n  /a:\n    get:\n      parameters:\n        - $ref: '../../etc/passwd#/x'\n").unwrap();
    assert!(compile(&cfg, dir.path()).unwrap_err()[0]
        .to_string()
        .contains("leaves the document's directory"));
}

#[test]
fn closed_parameters_are_known_and_a_repeated_single_value_is_refused() {
    let c = contract("orders-apim.yaml");
    let o = c.check_head(&head("GET", "/orders-api/orders?limit=5", vec![]));
    let op = o.operation.expect("listOrders");
    let mut closed: Vec<&str> = c.closed_query_params(op).collect();
    closed.sort_unstable();
    // `limit` is an integer, `status` an enum; `tags` has a pattern and stays scanned.
    assert_eq!(closed, vec!["limit", "status"]);
    assert_eq!(
        kinds(&c.check_head(&head(
            "GET",
            "/orders-api/orders?limit=5&limit=%3Cscript%3E",
            vec![]
        ))),
        vec![("parameter", "/query/limit".into())]
    );
    // A comma-separated array given twice: every copy is read.
    assert_eq!(
        kinds(&c.check_head(&head(
            "GET",
            "/orders-api/orders?tags=a,b&tags=c,NOT-OK",
            vec![]
        ))),
        vec![("parameter", "/query/tags/3".into())]
    );
}

#[test]
fn pointers_naming_request_parts_are_bounded() {
    let c = contract("orders-apim.yaml");
    let name = "n".repeat(400);
    let o = c.check_head(&head(
        "GET",
        &format!("/orders-api/orders?{name}=1&{}=2", "é".repeat(150)),
        vec![],
    ));
    assert_eq!(o.violations.len(), 2, "{:?}", o.violations);
    assert!(o.violations.iter().all(|v| v.pointer.len() <= 200));
}
