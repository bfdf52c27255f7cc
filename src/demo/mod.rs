//! `portcullis demo`: the edge on an embedded configuration, with a throwaway
//! CA and two in-process backends, so a newcomer sees it work with no files.
//! The demo config goes through the same loader and compiler as `run`.

pub mod backend;
pub mod certs;

use crate::config::{self, Diagnostic};
use crate::plan::{self, RuntimePlan};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The embedded demo configuration template.
pub const DEMO_TOML: &str = include_str!("demo.toml");

/// The demo API's OpenAPI document, enforced under `/api`.
pub const DEMO_OPENAPI: &str = include_str!("openapi.yaml");

/// The project's test country map; the demo builds its database from it.
pub const TEST_COUNTRIES_CSV: &str = include_str!("../../geoip/test-countries.csv");

/// Writes the demo certificates into `dir`; returns the CA certificate path.
pub fn write_demo_pki(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let ca = certs::DemoCa::new("Portcullis demo CA")?;
    let server = ca.issue(
        "localhost",
        &["localhost", "demo.portcullis.test", "127.0.0.1", "::1"],
    )?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem())?;
    std::fs::write(dir.join("server.pem"), server.cert_pem)?;
    std::fs::write(dir.join("server.key"), server.key_pem)?;
    let mmdb = crate::geo::build_mmdb(TEST_COUNTRIES_CSV, crate::geo::MmdbLayout::GeoIp2)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(dir.join("countries.mmdb"), mmdb)?;
    std::fs::write(dir.join("openapi.yaml"), DEMO_OPENAPI)?;
    Ok(ca_path)
}

/// The demo configuration text for a certificate directory and two backends.
pub fn demo_config_text(dir: &Path, backend_a: SocketAddr, backend_b: SocketAddr) -> String {
    DEMO_TOML
        .replace("{dir}", &dir.display().to_string())
        .replace("{backend_a}", &backend_a.to_string())
        .replace("{backend_b}", &backend_b.to_string())
}

/// Compiles the demo configuration; errors here are bugs in the demo itself.
pub fn demo_plan(
    dir: &Path,
    backend_a: SocketAddr,
    backend_b: SocketAddr,
) -> Result<RuntimePlan, Vec<Diagnostic>> {
    let text = demo_config_text(dir, backend_a, backend_b);
    let loaded = config::load_str("<embedded demo config>", &text, dir.to_path_buf())?;
    plan::compile(loaded).map(|(plan, _warnings)| plan)
}

/// Starts the two demo backends on their own runtime thread; returns their addresses.
pub fn start_backends() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("cannot start runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let any: SocketAddr = ([127, 0, 0, 1], 0).into();
                let started = async {
                    let a = backend::start("gateway-a", any).await?;
                    let b = backend::start("gateway-b", any).await?;
                    Ok::<_, std::io::Error>((a, b))
                }
                .await;
                match started {
                    Ok(backends) => {
                        let _ = tx.send(Ok((backends.0.addr, backends.1.addr)));
                        // Serve for as long as the process lives; the backends stop when dropped.
                        std::future::pending::<()>().await;
                        drop(backends);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            });
        })?;
    rx.recv()?
}

/// Prints what a newcomer can try.
pub fn print_welcome(ca_path: &Path) {
    let ca = ca_path.display();
    println!(
        "Portcullis demo is running.\n\
         \n  HTTPS edge      https://127.0.0.1:8443  (HTTP/2 and HTTP/1.1)\
         \n  redirect        http://127.0.0.1:8080 -> https\
         \n  admin           http://127.0.0.1:9900/status\
         \n  demo CA         {ca}\
         \n\nTry:\
         \n  curl -k https://127.0.0.1:8443/anything\
         \n  curl --cacert {ca} https://localhost:8443/hello?x=1\
         \n  curl -k --http2 -sv https://127.0.0.1:8443/ 2>&1 | grep -i 'HTTP/2'\
         \n  curl -si http://127.0.0.1:8080/some/path?q=1\
         \n  curl -s http://127.0.0.1:9900/status\
         \n  curl -k --interface 127.0.0.66 https://127.0.0.1:8443/   # 127.0.0.66 maps to KP: blocked by country (403)\
         \n  curl -k \"https://127.0.0.1:8443/search?q=1%27%20OR%20%271%27%3D%271\"   # SQL injection: blocked by the WAF (403)\
         \n  curl -k https://127.0.0.1:8443/api/items/42   # the demo API: allowed by its OpenAPI contract\
         \n  curl -k https://127.0.0.1:8443/api/items/abc  # not an integer id: 400, application/problem+json\
         \n  curl -k -H 'content-type: application/json' -d '{{\"name\":\"saw\",\"price\":-1}}' https://127.0.0.1:8443/api/items   # 400: the price is below its minimum\
         \n  curl -k -H 'X-Portcullis-Trace: demo-trace' -sI \"https://127.0.0.1:8443/?q=%3Cscript%3E\"   # see each stage's decision\
         \n\nPress Ctrl-C to stop."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::validate::Head;

    /// The embedded demo compiles, and its API contract refuses what its document forbids.
    #[test]
    fn the_demo_compiles_with_its_api_contract() {
        let dir = tempfile::tempdir().expect("dir");
        write_demo_pki(dir.path()).expect("demo files");
        let a: SocketAddr = ([127, 0, 0, 1], 9).into();
        let b: SocketAddr = ([127, 0, 0, 1], 10).into();
        let plan = demo_plan(dir.path(), a, b).expect("demo plan");
        let contract = &plan.sites[0].contracts[0];
        assert_eq!(contract.base_path, "/api");
        let status = |method: &str, target: &str| {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            contract
                .check_head(&Head {
                    method,
                    path,
                    query: (!query.is_empty()).then_some(query),
                    headers: Vec::new(),
                })
                .status(contract)
        };
        assert_eq!(status("GET", "/api/items/42"), None);
        assert_eq!(status("GET", "/api/items?limit=5&tag=tools"), None);
        assert_eq!(status("GET", "/api/items/abc"), Some(400));
        assert_eq!(status("DELETE", "/api/items/42"), Some(401));
        assert_eq!(status("GET", "/api/users"), Some(404));
    }
}
