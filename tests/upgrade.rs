//! Zero-downtime binary upgrade (pingora's graceful upgrade): a new process
//! started with `run --upgrade` takes over the listening socket when the old
//! one gets SIGQUIT; requests keep being answered throughout.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_under_load_drops_nothing() {
    let b = backends("gw", 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let sock = dir.path().join("upgrade.sock");
    let cfg = format!(
        "[server]\nupgrade_sock = \"{}\"\npid_file = \"{}\"\ngraceful_shutdown_seconds = 2\n[logging]\naccess_log = \"off\"\n[[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n[[sites]]\nname = \"s\"\nhosts = [\"*\"]\nroutes = [{{ pool = \"gw\" }}]\n[[pools]]\nname = \"gw\"\nbackends = [{{ address = \"{}\" }}]\n",
        sock.display(),
        dir.path().join("pid").display(),
        b[0].addr
    );
    let old = EdgeProcess::start(&cfg, &[port]);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http_get(port, "gw.example.test", "/", &[]).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = Command::new(bin())
        .args(["run", "--upgrade", "-c"])
        .arg(&old.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn new edge");
    // The new process compiles its plan, then waits (retrying every second) for
    // the old one to hand over its sockets, which SIGQUIT starts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        new.try_wait().expect("wait").is_none(),
        "the new process is waiting for the sockets"
    );
    let status = Command::new("kill")
        .args(["-QUIT", &old.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(4000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 50, "{ok} requests");
    assert_eq!(failed, 0, "no request failed across the upgrade ({ok} ok)");
    assert!(
        new.try_wait().expect("wait").is_none(),
        "the new process serves on"
    );
    let r = http_get(port, "gw.example.test", "/", &[])
        .await
        .expect("get");
    assert_eq!(r.status, 200);
    let _ = new.kill();
    let _ = new.wait();
    drop(old);
}
