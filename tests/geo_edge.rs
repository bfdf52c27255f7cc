//! Geo blocking, trusted proxies and network rules through a real edge, with
//! a country database built by `portcullis geoip build` and clients bound to
//! different loopback addresses.

mod common;

use common::*;
use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// Connects to 127.0.0.1:port from a chosen loopback source address.
async fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(
        format!("{source}:0")
            .parse::<SocketAddr>()
            .map_err(std::io::Error::other)?,
    )?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

async fn get_from(source: &str, port: u16, extra: &[(&str, &str)]) -> Resp {
    let mut s = connect_from(source, port).await.expect("connect");
    send_raw(
        &mut s,
        get_request("api.example.test", "/", extra).as_bytes(),
    )
    .await
    .expect("response")
}

fn build_db(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("countries.mmdb");
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/test-countries.csv");
    let status = std::process::Command::new(bin())
        .args(["geoip", "build", csv, "-o"])
        .arg(&out)
        .status()
        .expect("build");
    assert!(status.success());
    out
}

fn config(https: u16, plain: u16, pki: &Pki, db: &std::path::Path, backend: SocketAddr) -> String {
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    format!(
        r#"
[geoip]
database = "{db}"

[client_ip]
trusted_proxies = ["127.0.0.1/32"]

[network_rules]
default_action = "allow"
address_sets = {{ blocked = ["127.0.0.5/32", "127.0.0.6"] }}
rules = [
  {{ priority = 100, name = "deny-bad", action = "deny", sources = ["$blocked"] }},
  {{ priority = 200, name = "allow-loopback", action = "allow", sources = ["127.0.0.0/8"] }},
]

[[listeners]]
name = "https"
bind = "127.0.0.1:{https}"
protocol = "https"
[[listeners.certificates]]
cert = "{cert}"
key = "{key}"
default = true

[[listeners]]
name = "plain"
bind = "127.0.0.1:{plain}"
protocol = "http"

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ pool = "gw" }}]
geo = {{ deny = ["KP"] }}
country_header = "X-Client-Country"

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#,
        db = db.display(),
        cert = cert.display(),
        key = key.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_blocking_trusted_xff_and_network_rules() {
    let pki = Pki::new();
    let db = build_db(pki.dir.path());
    let b = backends("gw", 1).await;
    let (https, plain) = (free_port(), free_port());
    let _edge = EdgeProcess::start(&config(https, plain, &pki, &db, b[0].addr), &[https, plain]);

    // 127.0.0.2 is DE: allowed, and the backend learns the country.
    let r = get_from("127.0.0.2", plain, &[("X-Client-Country", "US")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-client-country"],
        "DE",
        "a client-sent country is replaced"
    );
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "127.0.0.2");

    // 127.0.0.66 is KP: blocked by the site's country policy.
    let r = get_from("127.0.0.66", plain, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("KP"), "{}", r.text());

    // From the trusted proxy (127.0.0.1), X-Forwarded-For names the client: 192.0.2.66 is KP.
    let r = get_from("127.0.0.1", plain, &[("X-Forwarded-For", "192.0.2.66")]).await;
    assert_eq!(r.status, 403, "XFF from a trusted peer is honoured");
    let r = get_from(
        "127.0.0.1",
        plain,
        &[("X-Forwarded-For", "203.0.113.9, 127.0.0.1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-client-country"],
        "CN",
        "right-most untrusted address"
    );
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "203.0.113.9");

    // From an untrusted peer, the same header is ignored.
    let r = get_from("127.0.0.2", plain, &[("X-Forwarded-For", "192.0.2.66")]).await;
    assert_eq!(r.status, 200, "XFF from an untrusted peer is not believed");
    assert_eq!(r.json()["headers"]["x-client-country"], "DE");

    // Network rule: 127.0.0.5 is closed before any TLS: no certificate is ever sent.
    let tcp = connect_from("127.0.0.5", https).await;
    if let Ok(tcp) = tcp {
        let cfg = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
        let name = rustls::pki_types::ServerName::try_from("api.example.test").expect("name");
        let handshake = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await;
        assert!(handshake.is_err(), "denied source completes no handshake");
    }
    // A plain request from a denied source gets no HTTP answer either.
    if let Ok(mut s) = connect_from("127.0.0.6", plain).await {
        let answer = send_raw(&mut s, get_request("api.example.test", "/", &[]).as_bytes()).await;
        assert!(
            answer.is_err(),
            "denied source gets no response: {answer:?}"
        );
    }
    // An allowed source still completes TLS.
    let tcp = connect_from("127.0.0.2", https).await.expect("connect");
    let cfg = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("api.example.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let r = send_raw(
        &mut tls,
        get_request("api.example.test", "/", &[]).as_bytes(),
    )
    .await
    .expect("response");
    assert_eq!(r.status, 200);
}
