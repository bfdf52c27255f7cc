//! SSL policies, mTLS with facts forwarded to the backend, response
//! hardening, and certificate reload under traffic — with real rustls clients.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_rustls::rustls;

struct Setup {
    pki: Pki,
    modern: u16,
    custom: u16,
    mtls: u16,
    optional: u16,
    _edge: EdgeProcess,
    _b: Vec<portcullis::demo::backend::EchoBackend>,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (cert, key) = pki.issue("edge", &["api.example.test", "mtls.example.test"]);
    let ca = pki.path("ca.pem");
    std::fs::write(&ca, pki.ca.cert_pem()).expect("ca");
    let (modern, custom, mtls, optional) = (free_port(), free_port(), free_port(), free_port());
    let listener = |name: &str, port: u16, extra: &str| {
        format!(
            "[[listeners]]\nname = \"{name}\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"https\"\n{extra}\n[[listeners.certificates]]\ncert = \"{}\"\nkey = \"{}\"\ndefault = true\n",
            cert.display(),
            key.display()
        )
    };
    let cfg = format!(
        "{}{}{}{}
[[sites]]
name = \"open\"
hosts = [\"api.example.test\"]
listeners = [\"modern\", \"custom\", \"mtls\", \"optional\"]
routes = [{{ pool = \"gw\" }}]

[[sites]]
name = \"certs-only\"
hosts = [\"mtls.example.test\"]
listeners = [\"optional\"]
require_client_cert = true
routes = [{{ pool = \"gw\" }}]

[[pools]]
name = \"gw\"
backends = [{{ address = \"{}\" }}]
",
        listener("modern", modern, "ssl_policy = \"modern\""),
        listener("custom", custom, "ssl_policy = \"custom\"\nmin_version = \"1.2\"\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]"),
        listener("mtls", mtls, &format!("client_auth = {{ mode = \"require\", ca = \"{}\", forward_pem = true }}", ca.display())),
        listener("optional", optional, &format!("client_auth = {{ mode = \"request\", ca = \"{}\" }}", ca.display())),
        b[0].addr
    );
    let edge = EdgeProcess::start(&cfg, &[modern, custom, mtls, optional]);
    Setup {
        pki,
        modern,
        custom,
        mtls,
        optional,
        _edge: edge,
        _b: b,
    }
}

fn provider_with(suites: &[rustls::SupportedCipherSuite]) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = suites.to_vec();
    Arc::new(p)
}

/// A client with chosen versions and suites, optionally presenting a certificate.
fn client(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<&[rustls::SupportedCipherSuite]>,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Arc<rustls::ClientConfig> {
    let provider = match suites {
        Some(s) => provider_with(s),
        None => Arc::new(rustls::crypto::ring::default_provider()),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(pki.root_store());
    let mut cfg = match cert {
        Some((c, k)) => {
            let chain = rustls_pemfile::certs(&mut std::fs::read(c).expect("cert").as_slice())
                .map(|c| c.expect("pem"))
                .collect();
            let key = rustls_pemfile::private_key(&mut std::fs::read(k).expect("key").as_slice())
                .expect("pem")
                .expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A GET over a fresh TLS connection; `Err` when the handshake or the exchange fails.
async fn get(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
    host: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut tls = tls_connect(cfg, port, host).await?;
    send_raw(&mut tls, get_request(host, "/", extra).as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_policies_admit_and_refuse() {
    let s = setup().await;
    let tls12 = client(&s.pki, &[&rustls::version::TLS12], None, None);
    let tls13 = client(&s.pki, &[&rustls::version::TLS13], None, None);
    assert!(
        get(tls12.clone(), s.modern, "api.example.test", &[])
            .await
            .is_err(),
        "TLS 1.2-only client refused by modern"
    );
    assert_eq!(
        get(tls13.clone(), s.modern, "api.example.test", &[])
            .await
            .expect("1.3")
            .status,
        200
    );
    assert_eq!(
        get(tls12, s.optional, "api.example.test", &[])
            .await
            .map(|r| r.status)
            .unwrap_or(0),
        200,
        "recommended admits TLS 1.2"
    );

    let aes256 = client(
        &s.pki,
        &[&rustls::version::TLS12],
        Some(&[rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]),
        None,
    );
    let aes128 = client(
        &s.pki,
        &[&rustls::version::TLS12],
        Some(&[rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
        None,
    );
    assert_eq!(
        get(aes256, s.custom, "api.example.test", &[])
            .await
            .expect("listed suite")
            .status,
        200
    );
    assert!(
        get(aes128, s.custom, "api.example.test", &[])
            .await
            .is_err(),
        "a suite outside the custom list is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_verifies_and_forwards_certificate_facts() {
    let s = setup().await;
    let (good_cert, good_key) = s.pki.issue(
        "client",
        &["client-1.example.test", "spiffe://example.test/workload/a"],
    );
    let rogue = Pki::new();
    let (bad_cert, bad_key) = rogue.issue("rogue", &["rogue.example.test"]);
    let versions = rustls::ALL_VERSIONS;

    let none = client(&s.pki, versions, None, None);
    assert!(
        get(none.clone(), s.mtls, "api.example.test", &[])
            .await
            .is_err(),
        "no certificate: refused"
    );
    let untrusted = client(&s.pki, versions, None, Some((&bad_cert, &bad_key)));
    assert!(
        get(untrusted, s.mtls, "api.example.test", &[])
            .await
            .is_err(),
        "untrusted certificate: refused"
    );

    let good = client(&s.pki, versions, None, Some((&good_cert, &good_key)));
    let r = get(
        good.clone(),
        s.mtls,
        "api.example.test",
        &[("X-Forwarded-Client-Cert", "Hash=forged")],
    )
    .await
    .expect("trusted");
    assert_eq!(r.status, 200);
    let xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .expect("xfcc")
        .to_string();
    assert!(
        !xfcc.contains("forged"),
        "client-sent XFCC replaced: {xfcc}"
    );
    assert!(
        xfcc.starts_with("Hash=") && xfcc.contains("Subject=\"CN=client-1.example.test\""),
        "{xfcc}"
    );
    assert!(
        xfcc.contains("URI=spiffe://example.test/workload/a"),
        "{xfcc}"
    );
    assert!(
        xfcc.contains("Cert=\"-----BEGIN%20CERTIFICATE-----"),
        "forward_pem: {xfcc}"
    );

    // Request mode: a client without a certificate is served, but its forged XFCC never arrives.
    let r = get(
        none.clone(),
        s.optional,
        "api.example.test",
        &[("X-Forwarded-Client-Cert", "Hash=forged")],
    )
    .await
    .expect("served");
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("x-forwarded-client-cert").is_none(),
        "spoofed XFCC removed"
    );
    // ...and a site that requires a certificate answers 403 without one, 200 with one.
    assert_eq!(
        get(none, s.optional, "mtls.example.test", &[])
            .await
            .expect("answer")
            .status,
        403
    );
    assert_eq!(
        get(good, s.optional, "mtls.example.test", &[])
            .await
            .expect("answer")
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_hardened() {
    let s = setup().await;
    let r = get(
        client(&s.pki, rustls::ALL_VERSIONS, None, None),
        s.modern,
        "api.example.test",
        &[],
    )
    .await
    .expect("get");
    assert_eq!(r.status, 200);
    assert!(
        r.header("server").is_none() && r.header("x-powered-by").is_none(),
        "banners removed: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_reload_under_traffic_fails_no_handshake() {
    let pki = Pki::new();
    let b = backends("gw", 1).await;
    let (port, admin) = (free_port(), free_port());
    let (cert, key) = pki.issue("first", &["api.example.test"]);
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:{admin}\"\n[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"https\"\n[[listeners.certificates]]\ncert = \"{}\"\nkey = \"{}\"\ndefault = true\n[[sites]]\nname = \"s\"\nhosts = [\"*\"]\nroutes = [{{ pool = \"gw\" }}]\n[[pools]]\nname = \"gw\"\nbackends = [{{ address = \"{}\" }}]\n",
        cert.display(),
        key.display(),
        b[0].addr
    );
    let _edge = EdgeProcess::start(&cfg, &[port, admin]);
    let cfgc = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (cfgc, stop, ok, failed) = (cfgc.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(cfgc.clone(), port, "api.example.test", &[]).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let issued = pki
            .ca
            .issue(
                &format!("round-{round}.example.test"),
                &["api.example.test"],
            )
            .expect("issue");
        // Write the new pair next to the old files and move them in place (what cert tooling does).
        std::fs::write(pki.path("next.pem"), issued.cert_pem).expect("write");
        std::fs::write(pki.path("next.key"), issued.key_pem).expect("write");
        std::fs::rename(pki.path("next.key"), &key).expect("rename");
        std::fs::rename(pki.path("next.pem"), &cert).expect("rename");
        let r = http_get(admin, "admin", "/reload", &[])
            .await
            .expect("reload");
        assert_eq!(r.status, 405, "GET is not a reload");
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .expect("admin");
        let r = send_raw(&mut s, b"POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.expect("reload");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 30, "{ok} handshakes");
    assert_eq!(
        failed, 0,
        "no failed handshake during certificate reloads ({ok} ok)"
    );
    // The last certificate is the one served now (a fresh client: no resumed session).
    let fresh = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let tls = tls_connect(fresh, port, "api.example.test")
        .await
        .expect("handshake");
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("cert")
        .to_vec();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
    assert!(
        parsed
            .subject()
            .to_string()
            .contains("round-2.example.test"),
        "{}",
        parsed.subject()
    );
}
