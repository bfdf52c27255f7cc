//! Packaging, checked where no image can be built and systemd is not PID 1 (docs/operations.md,
//! "Packaging"):
//!
//! - deploy/lint-dockerfile.py passes on deploy/Dockerfile and catches each mistake it is for;
//! - deploy/verify-unit.sh (`systemd-analyze verify`) fails on a misspelt directive;
//! - the edge runs the way systemd runs deploy/portcullis.service: the unit's own ExecStartPre,
//!   ExecStart and ExecReload lines, as its User= with its capabilities, NoNewPrivileges=,
//!   LimitNOFILE= and file-system sandbox, emulated with `unshare`, `mount` (tests/packaging/
//!   sandbox.sh), `prlimit` and `setpriv`; stopped with its KillSignal= within TimeoutStopSec=.
//!   A directive the emulation does not know fails the test, so the unit and the test cannot
//!   drift apart. Needs root (it creates the `portcullis` system user if absent, mount
//!   namespaces, a privileged port); it says so and skips otherwise. CI runs as root.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_rustls::rustls;

const UNIT: &str = "deploy/portcullis.service";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile lint

/// Runs the linter on `dockerfile` with build context `root`; returns (success, stdout + stderr).
fn lint_dockerfile(dockerfile: &Path, root: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo().join("deploy/lint-dockerfile.py"))
        .arg("--root")
        .arg(root)
        .arg(dockerfile)
        .output()
        .expect("python3 (scripts/prereqs.sh --tests installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn dockerfile_lint_passes_and_catches_each_mistake() {
    let dockerfile = repo().join("deploy/Dockerfile");
    let (ok, text) = lint_dockerfile(&dockerfile, repo());
    assert!(ok, "deploy/Dockerfile:\n{text}");

    // One mistake at a time, each of which a build or a first run would show: (replace, with,
    // the rule that must report it).
    let original = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    let mistakes = [
        ("FROM rust:1-bookworm", "FROM rust:latest", "pinned-base"),
        ("FROM debian:bookworm-slim", "FROM debian", "pinned-base"),
        ("FROM rust:1-bookworm", "FROM rust:1", "glibc"),
        ("debian:bookworm-slim", "debian:trixie-slim", "glibc"),
        ("USER 10001:10001", "USER root", "non-root"),
        ("USER 10001:10001", "USER portcullis", "non-root"),
        ("USER 10001:10001\n", "", "non-root"),
        (
            "install -y --no-install-recommends cmake",
            "install -y cmake",
            "apt",
        ),
        ("cmake && rm -rf /var/lib/apt/lists/*", "cmake", "apt"),
        (
            "RUN apt-get update && apt-get install",
            "RUN apt-get install",
            "apt",
        ),
        ("COPY . .", "ADD . .", "no-add"),
        ("--from=build", "--from=builder", "copy-from"),
        ("EXPOSE 443 80", "EXPOSE 8443 8080", "expose"),
        ("-p 443:443 -p 80:80", "-p 443:8443", "expose"),
        (
            r#"ENTRYPOINT ["/usr/local/bin/portcullis"]"#,
            "ENTRYPOINT /usr/local/bin/portcullis",
            "exec-form",
        ),
        ("--profile production", "--profile prod", "cargo-profile"),
        ("--profile production", "--release", "binary-path"),
        ("cargo build --locked", "cargo build", "cargo-locked"),
        ("--bin portcullis", "--bin portculis", "cargo-bin"),
        (
            "/src/target/production/portcullis /usr/local/bin/portcullis",
            "/src/target/production/portcullis /usr/bin/portcullis",
            "entrypoint",
        ),
        ("WORKDIR /src", "WORKDIR src", "workdir"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mutated = dir.path().join("Dockerfile");
    for (from, to, rule) in mistakes {
        assert!(original.contains(from), "mistake no longer applies: {from}");
        std::fs::write(&mutated, original.replacen(from, to, 1)).expect("write");
        let (ok, text) = lint_dockerfile(&mutated, repo());
        assert!(
            !ok && text.contains(&format!(": {rule}: ")),
            "{from} -> {to}: expected rule {rule}, got:\n{text}"
        );
    }

    // The build context: a .dockerignore that keeps target/ out, and what cargo needs in.
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(context.path().join("examples")).expect("mkdir");
    for file in ["Cargo.toml", "examples/portcullis.toml"] {
        std::fs::copy(repo().join(file), context.path().join(file)).expect("copy");
    }
    let (ok, text) = lint_dockerfile(&dockerfile, context.path());
    assert!(!ok && text.contains(": dockerignore: "), "{text}");
    std::fs::write(context.path().join(".dockerignore"), "target\n.git\nsrc/\n").expect("write");
    let (ok, text) = lint_dockerfile(&dockerfile, context.path());
    assert!(!ok && text.contains("excludes src"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// systemd-analyze verify

#[test]
fn unit_verify_refuses_a_misspelt_directive() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze not installed (scripts/prereqs.sh --ci installs it)");
        return;
    }
    let verify = |unit: &Path| {
        Command::new("bash")
            .arg(repo().join("deploy/verify-unit.sh"))
            .arg(unit)
            .output()
            .expect("bash")
    };
    let out = verify(&repo().join(UNIT));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("portcullis.service");
    let text = std::fs::read_to_string(repo().join(UNIT)).expect("unit");
    assert!(text.contains("\nNoNewPrivileges="));
    std::fs::write(
        &copy,
        text.replacen("\nNoNewPrivileges=", "\nNoNewPrivilege=", 1),
    )
    .expect("write");
    let out = verify(&copy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("NoNewPrivilege"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The unit, as the emulation understands it

/// Every directive of the unit, by what it does to the process. Parsing fails on any other.
#[derive(Debug, Default)]
struct Unit {
    user: String,
    group: String,
    exec_start_pre: Vec<Vec<String>>,
    exec_start: Vec<String>,
    exec_reload: Vec<String>,
    /// Without "SIG", as `kill -s` takes it.
    kill_signal: String,
    timeout_stop: Duration,
    limit_nofile: (u64, u64),
    ambient_caps: Vec<String>,
    bounding_caps: Vec<String>,
    no_new_privileges: bool,
    protect_system_strict: bool,
    protect_home: bool,
    /// ReadWritePaths=, then the LogsDirectory= and RuntimeDirectory= paths (created by systemd).
    read_write_paths: Vec<String>,
    created_directories: Vec<String>,
}

impl Unit {
    fn parse(text: &str) -> Result<Unit, String> {
        let mut unit = Unit::default();
        let mut section = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            let at = || format!("{UNIT}:{}", n + 1);
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.ends_with('\\') {
                return Err(format!("{}: continuation lines are not emulated", at()));
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("{}: not a directive: {line}", at()))?;
            let refuse = |why: &str| format!("{}: {key}={value}: {why}", at());
            match (section.as_str(), key) {
                // Ordering, documentation and installation: nothing here changes how the
                // process runs once started.
                ("Unit", "Description" | "Documentation" | "After" | "Wants")
                | ("Install", "WantedBy") => {}
                // Started when exec'd; the test then waits for its port.
                ("Service", "Type") if value == "simple" => {}
                ("Service", "User") => unit.user = value.to_string(),
                ("Service", "Group") => unit.group = value.to_string(),
                ("Service", "ExecStartPre") => unit
                    .exec_start_pre
                    .push(exec_line(value).map_err(|e| refuse(&e))?),
                ("Service", "ExecStart") if unit.exec_start.is_empty() => {
                    unit.exec_start = exec_line(value).map_err(|e| refuse(&e))?
                }
                ("Service", "ExecReload") => {
                    unit.exec_reload = exec_line(value).map_err(|e| refuse(&e))?
                }
                ("Service", "KillSignal") => {
                    unit.kill_signal = value
                        .strip_prefix("SIG")
                        .ok_or_else(|| refuse("expected SIGNAME"))?
                        .to_string()
                }
                ("Service", "TimeoutStopSec") => {
                    unit.timeout_stop = timespan(value).ok_or_else(|| refuse("time span"))?
                }
                // A clean exit (which the test requires) is not restarted; RestartSec= only
                // matters to a restart.
                ("Service", "Restart") if value == "on-failure" => {}
                ("Service", "RestartSec") => {
                    timespan(value).ok_or_else(|| refuse("time span"))?;
                }
                ("Service", "LimitNOFILE") => {
                    let (soft, hard) = value.split_once(':').unwrap_or((value, value));
                    unit.limit_nofile = soft
                        .parse()
                        .ok()
                        .zip(hard.parse().ok())
                        .ok_or_else(|| refuse("a number or soft:hard"))?;
                }
                ("Service", "AmbientCapabilities") => {
                    unit.ambient_caps = caps(value).map_err(|e| refuse(&e))?
                }
                ("Service", "CapabilityBoundingSet") => {
                    unit.bounding_caps = caps(value).map_err(|e| refuse(&e))?
                }
                ("Service", "NoNewPrivileges") => {
                    unit.no_new_privileges = boolean(value).ok_or_else(|| refuse("boolean"))?
                }
                ("Service", "ProtectSystem") if value == "strict" => {
                    unit.protect_system_strict = true
                }
                ("Service", "ProtectHome") if boolean(value).is_some() => {
                    unit.protect_home = boolean(value) == Some(true)
                }
                // PrivateTmp=true would need a private /tmp: not emulated.
                ("Service", "PrivateTmp") if boolean(value) == Some(false) => {}
                ("Service", "ReadWritePaths") => {
                    for path in value.split_whitespace() {
                        if !path.starts_with('/') {
                            return Err(refuse("absolute paths only (no '-' prefix)"));
                        }
                        unit.read_write_paths.push(path.to_string());
                    }
                }
                ("Service", "LogsDirectory" | "RuntimeDirectory") => {
                    let base = if key == "LogsDirectory" {
                        "/var/log"
                    } else {
                        "/run"
                    };
                    for name in value.split_whitespace() {
                        let path = format!("{base}/{name}");
                        unit.created_directories.push(path.clone());
                        unit.read_write_paths.push(path);
                    }
                }
                _ => {
                    return Err(format!(
                        "{}: [{section}] {key}={value} is not emulated by tests/packaging.rs: \
                         teach the emulation what it does",
                        at()
                    ))
                }
            }
        }
        if unit.exec_start.is_empty() || unit.user.is_empty() || unit.kill_signal.is_empty() {
            return Err(format!(
                "{UNIT}: ExecStart=, User= and KillSignal= are expected"
            ));
        }
        Ok(unit)
    }
}

/// An Exec line as systemd splits it, for the plain lines the unit has: no prefixes, quotes or
/// escapes, and no variable but `$MAINPID` (a word of its own).
fn exec_line(value: &str) -> Result<Vec<String>, String> {
    if value.starts_with(['@', '-', ':', '+', '!']) || value.contains(['"', '\'', '\\']) {
        return Err("prefixes, quotes and escapes are not emulated".into());
    }
    let words: Vec<String> = value.split_whitespace().map(String::from).collect();
    if words.iter().any(|w| w.contains('$') && w != "$MAINPID") {
        return Err("no variable but $MAINPID is emulated".into());
    }
    match words.first() {
        Some(program) if program.starts_with('/') => Ok(words),
        _ => Err("the program must be an absolute path".into()),
    }
}

fn timespan(value: &str) -> Option<Duration> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let n: u64 = number.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "min" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A capability list; only names whose bit `cap_bit` knows (to read /proc/PID/status).
fn caps(value: &str) -> Result<Vec<String>, String> {
    value
        .split_whitespace()
        .map(|c| {
            cap_bit(c)
                .map(|_| c.to_string())
                .ok_or_else(|| format!("{c} is not emulated (add its bit to cap_bit)"))
        })
        .collect()
}

/// Bit numbers of the capabilities the unit uses (linux/capability.h).
fn cap_bit(name: &str) -> Option<u32> {
    match name {
        "CAP_NET_BIND_SERVICE" => Some(10),
        _ => None,
    }
}

#[test]
fn the_emulation_refuses_directives_it_does_not_know() {
    let unit = std::fs::read_to_string(repo().join(UNIT)).expect("unit");
    Unit::parse(&unit).expect("deploy/portcullis.service");
    for extra in [
        "PrivateDevices=true",
        "PrivateTmp=true",
        "ProtectSystem=full",
        "ReadWritePaths=-/var/lib/portcullis",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "ExecStartPre=-/usr/local/bin/portcullis check",
        "ExecStart=/usr/local/bin/portcullis run -c ${CONFIG}",
    ] {
        let text = unit.replacen("[Service]\n", &format!("[Service]\n{extra}\n"), 1);
        let err = Unit::parse(&text).expect_err(extra);
        assert!(err.contains(extra.split('=').next().unwrap()), "{err}");
    }
}

/// Stopping takes `graceful_shutdown_seconds` (the grace period) plus up to as long again for
/// the runtimes to finish (pingora); the unit's comment asks for TimeoutStopSec= above twice it,
/// or systemd kills the edge in the middle of draining.
#[test]
fn timeout_stop_sec_leaves_room_for_the_example_graceful_shutdown() {
    let unit = Unit::parse(&std::fs::read_to_string(repo().join(UNIT)).expect("unit"))
        .expect("deploy/portcullis.service");
    let example: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("examples/portcullis.toml")).unwrap())
            .expect("examples/portcullis.toml");
    let grace = example["server"]["graceful_shutdown_seconds"]
        .as_integer()
        .expect("graceful_shutdown_seconds") as u64;
    assert!(
        unit.timeout_stop > Duration::from_secs(2 * grace),
        "TimeoutStopSec={:?} but the example drains for up to {}s",
        unit.timeout_stop,
        2 * grace
    );
}

// ---------------------------------------------------------------------------------------------
// The edge under the unit

/// The unit's execution environment around one test root: every path the unit names that is
/// Portcullis's own (it contains "portcullis": the binary, /etc/portcullis, /var/log/portcullis,
/// /run/portcullis) lives under `root`; system paths (`/bin/kill`) are used as they are.
struct Emulation {
    unit: Unit,
    root: tempfile::TempDir,
    uid: u32,
    gid: u32,
    nofile: (u64, u64),
}

impl Emulation {
    fn host(&self, path: &str) -> PathBuf {
        if path.starts_with('/') && path.contains("portcullis") {
            self.root.path().join(&path[1..])
        } else {
            PathBuf::from(path)
        }
    }

    /// `argv` (one of the unit's Exec lines) as systemd would run it: file-system sandbox,
    /// limits, then user, groups, capabilities and no_new_privs, in a clean environment.
    /// Output goes to `journal`, opened out here as systemd opens it for the service.
    fn command(&self, argv: &[String], main_pid: Option<u32>, journal: &Path) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .args(["--mount", "--propagation", "private", "sh"])
            .arg(repo().join("tests/packaging/sandbox.sh"));
        if self.unit.protect_system_strict {
            cmd.arg("--protect-system=strict");
        }
        if self.unit.protect_home {
            cmd.arg("--protect-home");
        }
        for path in &self.unit.read_write_paths {
            cmd.arg(format!("--read-write={}", self.host(path).display()));
        }
        let setpriv_caps = |caps: &[String]| {
            let names: Vec<String> = caps
                .iter()
                .map(|c| format!(",+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect();
            format!("-all{}", names.concat())
        };
        let ambient = setpriv_caps(&self.unit.ambient_caps);
        let bounding = setpriv_caps(&self.unit.bounding_caps);
        cmd.arg("--")
            .arg("prlimit")
            .arg(format!("--nofile={}:{}", self.nofile.0, self.nofile.1))
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--reset-env")
            // Ambient capabilities must be inheritable too; both survive the change of user.
            .arg(format!("--inh-caps={ambient}"))
            .arg(format!("--ambient-caps={ambient}"))
            .arg(format!("--bounding-set={bounding}"));
        if self.unit.no_new_privileges {
            cmd.arg("--no-new-privs");
        }
        for word in argv {
            match (word.as_str(), main_pid) {
                ("$MAINPID", Some(pid)) => cmd.arg(pid.to_string()),
                ("$MAINPID", None) => panic!("$MAINPID outside ExecReload"),
                _ => cmd.arg(self.host(word)),
            };
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal)
            .expect("journal");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("journal"))
            .stderr(log);
        cmd
    }
}

/// The running edge; killed if the test fails before stopping it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root_user() -> bool {
    proc_status("self")
        .get("Uid")
        .is_some_and(|uid| uid.split_whitespace().next() == Some("0"))
}

/// /proc/PID/status as key -> value.
fn proc_status(pid: &str) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The unit's User= and Group=, created when absent as the unit's header tells an administrator
/// to (a system user without home or shell). This changes the test machine's /etc/passwd once.
fn ensure_user(user: &str, group: &str) -> (u32, u32) {
    let exists = Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        output(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ]));
    }
    let uid = output(Command::new("id").args(["-u", user]));
    // Without Group=, systemd takes the user's own group.
    let gid = if group.is_empty() {
        output(Command::new("id").args(["-g", user]))
    } else {
        let entry = output(Command::new("getent").args(["group", group]));
        entry.split(':').nth(2).unwrap_or_default().to_string()
    };
    (uid.parse().expect("uid"), gid.parse().expect("gid"))
}

/// The first free port under 1024 on 127.0.0.1, 443 first.
fn privileged_port() -> u16 {
    std::iter::once(443)
        .chain((600..1024).rev())
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port under 1024")
}

/// An HTTPS listener on `port` in front of `backend`, access log to `access_log`, and a short
/// drain so that the stop below takes a second.
fn config(port: u16, certs: &Path, backend: std::net::SocketAddr, access_log: &Path) -> String {
    let (cert, key) = (certs.join("edge.pem"), certs.join("edge.key"));
    format!(
        "[server]\nthreads = 2\ngraceful_shutdown_seconds = 1\n\n\
         [logging]\naccess_log = \"{}\"\n{}{}",
        access_log.display(),
        https_listener_toml("public-https", port, &cert, &key, ""),
        catch_all_site_toml(backend),
    )
}

/// Writes `path` as root:`gid` with `mode`, as an administrator installs a configuration the
/// service may read but not change.
fn install(path: &Path, contents: &[u8], gid: u32, mode: u32) {
    std::fs::write(path, contents).expect("write");
    std::os::unix::fs::chown(path, Some(0), Some(gid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

async fn instance(cfg: std::sync::Arc<rustls::ClientConfig>, port: u16) -> String {
    let r = tls_get(cfg, port, "edge.test").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["instance"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// /proc/PID of the running edge shows what the unit asks for: user, group, capabilities,
/// no_new_privs, the open files limit, and the mounts of ProtectSystem=, ProtectHome= and
/// ReadWritePaths=. unshare, sh, prlimit and setpriv all exec, so PID is the edge itself (what
/// systemd calls $MAINPID).
fn check_process(emu: &Emulation, pid: u32, port: u16) {
    let status = proc_status(&pid.to_string());
    assert!(status["Name"].starts_with("portcullis"), "{status:?}");
    assert_eq!(
        status["Uid"],
        format!("{0}\t{0}\t{0}\t{0}", emu.uid),
        "User="
    );
    assert_eq!(
        status["Gid"],
        format!("{0}\t{0}\t{0}\t{0}", emu.gid),
        "Group="
    );
    let mask = |caps: &[String]| {
        caps.iter()
            .map(|c| 1u64 << cap_bit(c).unwrap())
            .sum::<u64>()
    };
    let ambient = format!("{:016x}", mask(&emu.unit.ambient_caps));
    for set in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(status[set], ambient, "{set}: AmbientCapabilities=");
    }
    assert_eq!(
        status["CapBnd"],
        format!("{:016x}", mask(&emu.unit.bounding_caps)),
        "CapabilityBoundingSet="
    );
    assert_eq!(
        status["NoNewPrivs"],
        if emu.unit.no_new_privileges { "1" } else { "0" }
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files")
        .split_whitespace()
        .collect();
    assert_eq!(
        (open_files[3], open_files[4]),
        (
            emu.nofile.0.to_string().as_str(),
            emu.nofile.1.to_string().as_str()
        ),
        "LimitNOFILE="
    );
    // ProtectSystem=strict: every mount it sees is read-only but the API file systems and the
    // writable paths; ProtectHome=: /root and /home are empty mounts of their own.
    let writable: Vec<String> = emu
        .unit
        .read_write_paths
        .iter()
        .map(|p| emu.host(p).display().to_string())
        .collect();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let mut seen_home = false;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (point, options) = (fields[4], fields[5]);
        let api = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|a| point == *a || point.starts_with(&format!("{a}/")));
        let read_only = options.split(',').any(|o| o == "ro");
        if writable.iter().any(|w| w == point) {
            assert!(!read_only, "ReadWritePaths: {line}");
        } else if !api && emu.unit.protect_system_strict {
            assert!(read_only, "ProtectSystem=strict: {line}");
        }
        seen_home |= point == "/root" && line.contains(" - tmpfs ");
    }
    assert_eq!(seen_home, emu.unit.protect_home, "ProtectHome=: {mounts}");
    // Listening on `port` took CAP_NET_BIND_SERVICE: the edge is not root, and ports under
    // ip_unprivileged_port_start are privileged.
    let unprivileged: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .map(|s| s.trim().parse().unwrap_or(1024))
            .unwrap_or(1024);
    if port >= unprivileged {
        eprintln!(
            "NOTE: ip_unprivileged_port_start={unprivileged}: port {port} proves no capability"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_runs_as_the_unit_runs_it() {
    if !root_user() {
        eprintln!(
            "SKIPPED: running deploy/portcullis.service's sandbox needs root (a system user, \
             mount namespaces, setuid and capabilities); CI runs this as root"
        );
        return;
    }
    let unit = Unit::parse(&std::fs::read_to_string(repo().join(UNIT)).expect("unit"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (uid, gid) = ensure_user(&unit.user, &unit.group);

    // LimitNOFILE= above this runner's hard limit needs CAP_SYS_RESOURCE, which a container may
    // not grant even to root: then the hard limit it has, said out loud.
    let mut nofile = unit.limit_nofile;
    let probe = format!("--nofile={}:{}", nofile.0, nofile.1);
    if !Command::new("prlimit")
        .args([&probe, "true"])
        .stderr(Stdio::null())
        .status()
        .expect("prlimit")
        .success()
    {
        let hard = output(Command::new("sh").args(["-c", "ulimit -Hn"]));
        let hard: u64 = hard.parse().expect("ulimit -Hn");
        eprintln!("NOTE: LimitNOFILE={nofile:?} is above this runner's hard limit; using {hard}");
        nofile = (nofile.0.min(hard), nofile.1.min(hard));
    }

    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let emu = Emulation {
        unit,
        root,
        uid,
        gid,
        nofile,
    };
    let journal = emu.root.path().join("journal.log");
    let dump = || std::fs::read_to_string(&journal).unwrap_or_default();

    // Install: the binary where ExecStart= runs it, the configuration and certificates readable
    // by the service's group; systemd creates LogsDirectory= and RuntimeDirectory= for User=.
    let binary = emu.host(&emu.unit.exec_start[0]);
    std::fs::create_dir_all(binary.parent().unwrap()).expect("mkdir");
    std::fs::copy(bin(), &binary).expect("install binary");
    for dir in &emu.unit.created_directories {
        let dir = emu.host(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
    }
    let config_path = emu.host(
        emu.unit
            .exec_start
            .iter()
            .skip_while(|w| *w != "-c")
            .nth(1)
            .expect("ExecStart -c FILE"),
    );
    let certs = config_path.parent().unwrap().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let pki = Pki::new();
    let issued = pki.ca.issue("edge.test", &["edge.test"]).expect("issue");
    install(
        &certs.join("edge.pem"),
        issued.cert_pem.as_bytes(),
        gid,
        0o644,
    );
    install(
        &certs.join("edge.key"),
        issued.key_pem.as_bytes(),
        gid,
        0o640,
    );

    let a = backends("a", 1).await;
    let b = backends("b", 1).await;
    let port = privileged_port();
    let access_log = emu.host("/var/log/portcullis").join("access.log");
    assert!(
        emu.unit
            .read_write_paths
            .iter()
            .any(|p| p == "/var/log/portcullis"),
        "the unit makes /var/log/portcullis writable"
    );
    install(
        &config_path,
        config(port, &certs, a[0].addr, &access_log).as_bytes(),
        gid,
        0o640,
    );

    // ExecStartPre=, each to success, then ExecStart=.
    for pre in &emu.unit.exec_start_pre {
        let status = emu
            .command(pre, None, &journal)
            .status()
            .expect("ExecStartPre");
        assert!(status.success(), "{pre:?}: {status}\n{}", dump());
    }
    let mut edge = Running(
        emu.command(&emu.unit.exec_start, None, &journal)
            .spawn()
            .expect("ExecStart"),
    );
    let pid = edge.0.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = edge.0.try_wait().expect("wait") {
            panic!(
                "the edge exited ({status}) before listening on {port}:\n{}",
                dump()
            );
        }
        assert!(
            Instant::now() < deadline,
            "port {port} never opened:\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    check_process(&emu, pid, port);

    // A request through the edge reaches the backend and is logged under ReadWritePaths=.
    let cfg = client_config(&pki, rustls::ALL_VERSIONS, &[b"http/1.1"]);
    assert_eq!(instance(cfg.clone(), port).await, "a-0", "{}", dump());
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = loop {
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"edge.test\"")) {
            break serde_json::from_str::<serde_json::Value>(line).expect("JSON line");
        }
        assert!(
            Instant::now() < deadline,
            "no access log line in {access_log:?}:\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(logged["status"], 200, "{logged}");
    assert_eq!(logged["upstream_addr"], a[0].addr.to_string(), "{logged}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&access_log).expect("log").uid(),
        uid,
        "written by User="
    );

    // ExecReload= (as systemd runs it: same user and sandbox) applies a new configuration.
    install(
        &config_path,
        config(port, &certs, b[0].addr, &access_log).as_bytes(),
        gid,
        0o640,
    );
    let status = emu
        .command(&emu.unit.exec_reload, Some(pid), &journal)
        .status()
        .expect("ExecReload");
    assert!(status.success(), "ExecReload: {status}\n{}", dump());
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance(cfg.clone(), port).await != "b-0" {
        assert!(
            Instant::now() < deadline,
            "the reload never applied:\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // KillSignal=: a clean exit (status 0, so Restart=on-failure leaves it) within
    // TimeoutStopSec=, after which systemd would have killed it.
    let stopping = Instant::now();
    output(Command::new("kill").args(["-s", &emu.unit.kill_signal, &pid.to_string()]));
    let status = loop {
        if let Some(status) = edge.0.try_wait().expect("wait") {
            break status;
        }
        if stopping.elapsed() > emu.unit.timeout_stop {
            panic!(
                "still running after TimeoutStopSec={:?}:\n{}",
                emu.unit.timeout_stop,
                dump()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("stopped in {:?}", stopping.elapsed());
    assert_eq!(status.code(), Some(0), "{status}\n{}", dump());
}
