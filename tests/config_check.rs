//! `portcullis check`: every class of configuration error is reported with the
//! file, the key path and the line, and a bad config exits non-zero.

mod common;

use common::*;

fn base(pki: &Pki) -> String {
    let (cert, key) = pki.issue("edge", &["api.example.test"]);
    format!(
        r#"[[listeners]]
name = "https"
bind = "127.0.0.1:8443"
protocol = "https"
[[listeners.certificates]]
cert = "{}"
key = "{}"
default = true

[[sites]]
name = "api"
hosts = ["api.example.test"]
routes = [{{ pool = "apim" }}]

[[pools]]
name = "apim"
backends = [{{ address = "127.0.0.1:9001" }}]
"#,
        cert.display(),
        key.display()
    )
}

#[test]
fn shipped_example_is_accepted() {
    let out = std::process::Command::new(bin())
        .args([
            "check",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/portcullis.toml"),
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn valid_config_passes() {
    let pki = Pki::new();
    let (ok, stdout, stderr) = check(&base(&pki), pki.dir.path());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("apim (1 backend(s))"), "{stdout}");
}

#[test]
fn unknown_key_names_key_and_line() {
    let pki = Pki::new();
    let cfg = base(&pki).replace("protocol = \"https\"", "protocol = \"https\"\nhttp3 = true");
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("portcullis.toml:5"),
        "line of the unknown key: {stderr}"
    );
    assert!(stderr.contains("listeners[0]"), "key path: {stderr}");
    assert!(stderr.contains("unknown field `http3`"), "{stderr}");
}

#[test]
fn bad_address_is_an_error() {
    let pki = Pki::new();
    let cfg = base(&pki).replace("127.0.0.1:9001", "gateway-one");
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(stderr.contains("pools[0].backends[0].address"), "{stderr}");
    assert!(
        stderr.contains("invalid address \"gateway-one\""),
        "{stderr}"
    );
    assert!(stderr.contains("portcullis.toml:17"), "line: {stderr}");
}

#[test]
fn node_id_must_be_one_token() {
    // It is sent in Via, and loop detection splits Via on commas and spaces.
    let pki = Pki::new();
    let cfg = format!("[server]\nnode_id = \"edge one, two\"\n{}", base(&pki));
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(stderr.contains("server.node_id"), "{stderr}");
    assert!(stderr.contains("portcullis.toml:2"), "line: {stderr}");
    let cfg = format!("[server]\nnode_id = \"edge-west.1\"\n{}", base(&pki));
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(ok, "{stderr}");
}

#[test]
fn missing_cert_file_is_an_error() {
    let pki = Pki::new();
    let cfg = base(&pki).replace("edge.pem", "missing.pem");
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("listeners[0].certificates[0].cert"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert!(stderr.contains("portcullis.toml:6"), "line: {stderr}");
}

#[test]
fn cert_key_mismatch_is_an_error() {
    let pki = Pki::new();
    let (_, other_key) = pki.issue("other", &["other.example.test"]);
    let cfg = base(&pki).replace(
        &pki.path("edge.key").display().to_string(),
        &other_key.display().to_string(),
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("listeners[0].certificates[0].key"),
        "{stderr}"
    );
    assert!(stderr.contains("does not match"), "{stderr}");
}

#[test]
fn unused_pool_is_a_warning_only() {
    let pki = Pki::new();
    let cfg = format!(
        "{}\n[[pools]]\nname = \"spare\"\nbackends = [{{ address = \"127.0.0.1:9002\" }}]\n",
        base(&pki)
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(ok, "a warning does not fail the check: {stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("pool \"spare\" is not used"),
        "{stderr}"
    );
    assert!(stderr.contains("pools[1].name"), "{stderr}");
}

#[test]
fn site_pointing_to_missing_pool_is_an_error() {
    let pki = Pki::new();
    let cfg = base(&pki).replace(
        "routes = [{ pool = \"apim\" }]",
        "routes = [{ pool = \"nope\" }]",
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("sites[0].routes[0].pool") && stderr.contains("no pool named \"nope\""),
        "{stderr}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let pki = Pki::new();
    let cfg = base(&pki)
        .replace("127.0.0.1:9001", "nowhere")
        .replace("127.0.0.1:8443", "localhost");
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("listeners[0].bind") && stderr.contains("pools[0].backends[0].address"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_config_and_starts_nothing() {
    let pki = Pki::new();
    let port = free_port();
    let cfg = base(&pki)
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace("\"apim\" }", "\"nope\" }");
    let path = pki.path("bad.toml");
    std::fs::write(&path, cfg).expect("write");
    let out = std::process::Command::new(bin())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pool named"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );
}

/// A listener that cannot bind (the address is taken) stops `run` with an error naming it,
/// instead of an edge that runs on without the listener.
#[test]
fn run_exits_when_a_listener_cannot_bind() {
    let pki = Pki::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let cfg = base(&pki).replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"));
    let path = pki.path("taken.toml");
    std::fs::write(&path, cfg).expect("write");
    let mut child = std::process::Command::new(bin())
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the edge kept running without its listener");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert!(!status.success());
    assert!(
        stderr.contains(&format!(
            "listener https: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn read_buffer_size_is_bounded() {
    let pki = Pki::new();
    let cfg = base(&pki).replace(
        "protocol = \"https\"",
        "protocol = \"https\"\nread_buffer_bytes = 100",
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("listeners[0].read_buffer_bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("1024 to 1048576"), "{stderr}");
    assert!(stderr.contains("portcullis.toml:5"), "line: {stderr}");
    let cfg = base(&pki).replace(
        "protocol = \"https\"",
        "protocol = \"https\"\nread_buffer_bytes = 16384",
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(ok, "{stderr}");
}

#[test]
fn work_stealing_is_a_bool() {
    let pki = Pki::new();
    let cfg = format!(
        "[server]\nthreads = 2\nwork_stealing = \"yes\"\n\n{}",
        base(&pki)
    );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    assert!(stderr.contains("server.work_stealing"), "{stderr}");
    assert!(stderr.contains("portcullis.toml:3"), "line: {stderr}");
    let cfg = format!("[server]\nwork_stealing = true\n\n{}", base(&pki));
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(ok, "{stderr}");
}

/// A file with several independent mistakes gets one error for each, with its line and key path,
/// and a syntax error does not hide the type errors elsewhere in the file.
#[test]
fn every_independent_mistake_is_reported() {
    let pki = Pki::new();
    let cfg = base(&pki)
        .replace("protocol = \"https\"", "protocol = \"htps\"\nhttp3 = true")
        .replace("127.0.0.1:9001", "127.0.0.1:99999")
        .replace(
            "[[sites]]",
            "[waf.policy]\nmode = \"preventoin\"\n\n[[sites]]",
        );
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 4, "{stderr}");
    for (needle, line) in [
        ("listeners[0].protocol", ":4:"),
        ("listeners[0].http3", ":5:"),
        ("waf.policy.mode", ":12:"),
        ("pools[0].backends[0].address", ":"),
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(needle) && e.contains(line)),
            "{needle} at {line}: {stderr}"
        );
    }

    // A syntax error, and a type error further down.
    let cfg = base(&pki)
        .replace("default = true", "default = tru e")
        .replace("name = \"apim\"", "name = 7");
    let (ok, _, stderr) = check(&cfg, pki.dir.path());
    assert!(!ok);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(errors.iter().any(|e| e.contains(":8:")), "{stderr}");
    assert!(
        errors.iter().any(|e| e.contains("pools[0].name")),
        "{stderr}"
    );
}
