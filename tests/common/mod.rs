//! Test harness: real certificates, real backends, the real `portcullis`
//! binary on ephemeral loopback ports, and real TLS clients.
#![allow(dead_code)]

use portcullis::demo::backend::{self, EchoBackend};
use portcullis::demo::certs::DemoCa;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// An HTTPS listener `name` on 127.0.0.1:`port` with one default certificate. `extra` holds more
/// keys of the listener table (`proxy_protocol = true`, `http2 = true`), one per line.
pub fn https_listener_toml(name: &str, port: u16, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "{name}"
bind = "127.0.0.1:{port}"
protocol = "https"
{extra}
[[listeners.certificates]]
cert = "{}"
key = "{}"
default = true
"#,
        cert.display(),
        key.display()
    )
}

/// A site for every host, routed to the pool "gw" of one backend at `backend`.
pub fn catch_all_site_toml(backend: SocketAddr) -> String {
    format!(
        r#"
[[sites]]
name = "s"
hosts = ["*"]
routes = [{{ pool = "gw" }}]

[[pools]]
name = "gw"
backends = [{{ address = "{backend}" }}]
"#
    )
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A temporary directory with a CA and certificates in it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DemoCa,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: DemoCa::new("Test CA").expect("ca"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate for `names` and writes `<stem>.pem` and `<stem>.key`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let issued = self
            .ca
            .issue(names.first().copied().unwrap_or(stem), names)
            .expect("issue");
        let (c, k) = (
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        );
        std::fs::write(&c, issued.cert_pem).expect("write cert");
        std::fs::write(&k, issued.key_pem).expect("write key");
        (c, k)
    }

    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        let pem = self.ca.cert_pem();
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(c.expect("ca pem")).expect("add root");
        }
        roots
    }
}

/// Starts `n` echo backends named `prefix-0..n`.
pub async fn backends(prefix: &str, n: usize) -> Vec<EchoBackend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            backend::start(&format!("{prefix}-{i}"), ([127, 0, 0, 1], 0).into())
                .await
                .expect("backend"),
        );
    }
    out
}

/// A server that accepts connections and never reads or answers (a hung backend or store); it
/// holds them until the test's runtime ends.
pub async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A running `portcullis run` process; killed on drop.
pub struct EdgeProcess {
    child: Child,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

impl EdgeProcess {
    /// Writes `config` to a file and runs the edge; waits until `ports` accept connections.
    pub fn start(config: &str, ports: &[u16]) -> EdgeProcess {
        Self::start_with_stdout(config, ports, false)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Like [`EdgeProcess::start`]; `show_stdout` passes the access log through to the test output.
    pub fn start_with_stdout(config: &str, ports: &[u16], show_stdout: bool) -> EdgeProcess {
        let stdout = if show_stdout {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::spawn(config, ports, stdout, Stdio::inherit())
    }

    /// Like [`EdgeProcess::start`], with the edge's own log (stderr) written to `stderr_file`.
    pub fn start_with_stderr_file(config: &str, ports: &[u16], stderr_file: &Path) -> EdgeProcess {
        let file = std::fs::File::create(stderr_file).expect("create stderr file");
        Self::spawn(config, ports, Stdio::null(), Stdio::from(file))
    }

    fn spawn(config: &str, ports: &[u16], stdout: Stdio, stderr: Stdio) -> EdgeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new(bin())
            .args(["run", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn portcullis");
        let edge = EdgeProcess {
            child,
            config_path,
            _dir: dir,
        };
        for &port in ports {
            wait_for_port(port);
        }
        edge
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("port {port} never opened");
}

/// Runs `portcullis check -c FILE`; returns (success, stdout, stderr).
pub fn check(config: &str, dir: &Path) -> (bool, String, String) {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A rustls client config trusting `pki`, with chosen versions and ALPN.
pub fn client_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(pki.root_store())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Opens a TLS connection to 127.0.0.1:port with SNI `sni`.
pub async fn tls_connect(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// A GET of `/` for `host` on a new TLS connection (SNI `host`).
pub async fn tls_get(cfg: Arc<rustls::ClientConfig>, port: u16, host: &str) -> Resp {
    let mut tls = tls_connect(cfg, port, host).await.expect("handshake");
    send_raw(&mut tls, get_request(host, "/", &[]).as_bytes())
        .await
        .expect("response")
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes and reads one response (Content-Length or close-delimited).
pub async fn send_raw<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    raw: &[u8],
) -> std::io::Result<Resp> {
    stream.write_all(raw).await?;
    read_response(stream).await
}

/// Reads one HTTP/1.1 response from a stream.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(std::io::Error::other)??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof before response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers_buf = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers_buf);
    resp.parse(&buf[..head_end])
        .map_err(std::io::Error::other)?;
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = buf[head_end..].to_vec();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match len {
        Some(len) => {
            while body.len() < len {
                let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                    .await
                    .map_err(std::io::Error::other)??;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body)).await;
        }
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A GET with Host and extra headers, on a fresh plain connection.
pub async fn http_get(
    port: u16,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    send_raw(&mut s, get_request(host, path, extra).as_bytes()).await
}

/// The text of a GET request with `Connection: close`.
pub fn get_request(host: &str, path: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

pub fn backend_addr(b: &EchoBackend) -> SocketAddr {
    b.addr
}

/// `redis-server`, where installed (`scripts/test` installs it).
pub fn redis_server_path() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/redis-server");
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    })
}

/// A real `redis-server` on a loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start on `port` (or a free one). `None` when redis-server is missing.
    pub fn start(port: Option<u16>) -> Option<RedisServer> {
        let Some(bin) = redis_server_path() else {
            eprintln!("SKIPPED: redis-server is not installed; install it to run the shared rate-limit tests");
            return None;
        };
        let port = port.unwrap_or_else(free_port);
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut srv = RedisServer {
            child: Some(child),
            port,
            _dir: dir,
        };
        srv.wait_ready();
        Some(srv)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut buf) {
                        if buf[..n].starts_with(b"+PONG") {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not become ready on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
