//! The command line: `run`, `check`, `demo`.

use crate::config::{self, Diagnostic, Severity};
use crate::plan::{self, RuntimePlan};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "WAF and TLS-terminating edge proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the edge with a configuration file.
    Run {
        #[arg(short, long, default_value = "portcullis.toml")]
        config: PathBuf,
        /// Take over the listening sockets of a running edge (zero-downtime
        /// binary upgrade; then send SIGQUIT to the old process).
        #[arg(long)]
        upgrade: bool,
    },
    /// Check a configuration file and print every error and warning.
    Check {
        #[arg(short, long, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Run the zero-setup demo: throwaway certificates, two demo backends.
    Demo,
    /// Country databases: build one from a CSV, or see what the edge sees for an address.
    Geoip {
        #[command(subcommand)]
        command: GeoipCommand,
    },
    /// API contracts: check an OpenAPI document as the edge reads it, or draft one from logs.
    Openapi {
        #[command(subcommand)]
        command: OpenapiCommand,
    },
    /// Run the WAF offline over labelled requests (go-ftw YAML, raw HTTP files,
    /// JSONL) and report attacks caught and benign requests allowed.
    Replay {
        /// Take the rule sets, the default WAF policy and the sites' API contracts (checked
        /// before the WAF, on the paths they cover) from this configuration.
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: crate::replay::ReplayArgs,
    },
    /// Ask a running edge to reload its configuration (through its admin listener).
    Reload {
        /// The configuration file; its `[admin] bind` is where the request goes.
        #[arg(short, long, default_value = "portcullis.toml")]
        config: PathBuf,
        /// The admin address, instead of reading it from the configuration.
        #[arg(long)]
        admin: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OpenapiCommand {
    /// Read and compile a document (and the files its `$ref`s name) as `[[sites.openapi]]`
    /// would; list its operations and what the edge does not enforce; errors name file, line
    /// and JSON pointer.
    Check {
        document: PathBuf,
        /// The path the API is served under at the edge (default: the first `servers` URL's).
        #[arg(long)]
        base_path: Option<String>,
    },
    /// Draft an OpenAPI 3.1 document from the edge's access logs (JSON lines; `-` reads
    /// standard input): paths templated where segments are numbers, UUIDs or hex ids, methods,
    /// query parameters with their types. A draft to review, not to enforce unread.
    Learn {
        /// Access log files.
        #[arg(long = "from", required = true, num_args = 1..)]
        from: Vec<PathBuf>,
        /// Learn only requests to this Host.
        #[arg(long)]
        host: Option<String>,
        /// Write the YAML here instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GeoipCommand {
    /// Build a MaxMind-format database from `network,country` lines.
    Build {
        csv: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// `geoip2` (country.iso_code) or `dbip` (flat country_code).
        #[arg(long, default_value = "geoip2")]
        layout: crate::geo::MmdbLayout,
    },
    /// Print the country (and the raw record) the edge would see for an address.
    Lookup {
        #[arg(short, long)]
        database: PathBuf,
        ip: String,
        /// `country_iso_code`, `registered_country` or `country_code`.
        #[arg(long, default_value = "country_iso_code")]
        field: crate::geo::GeoField,
    },
}

fn replay(config_path: Option<&Path>, mut args: crate::replay::ReplayArgs) -> ExitCode {
    let mut contracts = Vec::new();
    let policy = match config_path {
        None => None,
        Some(path) => {
            let loaded = match config::load_file(path) {
                Ok(l) => l,
                Err(errors) => {
                    print_diagnostics(&errors);
                    return ExitCode::FAILURE;
                }
            };
            if args.rulesets.is_none() {
                args.rulesets = loaded
                    .config
                    .waf
                    .rulesets
                    .as_ref()
                    .map(|d| loaded.base_dir.join(d));
            }
            // Every site's API contracts, in configuration order: a case goes through the first
            // one whose base path covers it, as it would at the edge on that site.
            for site in &loaded.config.sites {
                for api in &site.openapi {
                    match crate::openapi::compile::compile(api, &loaded.base_dir) {
                        Ok(c) => contracts.push(std::sync::Arc::new(c)),
                        Err(errors) => {
                            for e in errors {
                                eprintln!("{}: sites.openapi: {e}", path.display());
                            }
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            match crate::waf::Policy::from_config(&loaded.config.waf.policy) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("{}: waf.policy: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match crate::replay::run_with_contracts(args, policy, &contracts) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn openapi(command: OpenapiCommand) -> ExitCode {
    use crate::openapi::cli::{check_cmd, learn_cmd};
    let result = match command {
        OpenapiCommand::Check {
            document,
            base_path,
        } => check_cmd(&document, base_path),
        OpenapiCommand::Learn { from, host, out } => {
            learn_cmd(&from, host.as_deref(), out.as_deref())
        }
    };
    print_outcome(result)
}

fn geoip(command: GeoipCommand) -> ExitCode {
    let result = match command {
        GeoipCommand::Build { csv, out, layout } => crate::geo::cli::build_cmd(&csv, &out, layout)
            .map(|()| format!("wrote {}", out.display())),
        GeoipCommand::Lookup {
            database,
            ip,
            field,
        } => crate::geo::cli::lookup_cmd(&database, &ip, field),
    };
    print_outcome(result)
}

/// Prints a tool's report (or its error) and turns it into the exit status.
fn print_outcome(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, upgrade } => run(&config, upgrade),
        Command::Demo => demo(),
        Command::Reload { config, admin } => reload(&config, admin.as_deref()),
        Command::Geoip { command } => geoip(command),
        Command::Openapi { command } => openapi(command),
        Command::Replay { config, args } => replay(config.as_deref(), args),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let installed = if json {
        tracing::subscriber::set_global_default(builder.json().flatten_event(true).finish())
    } else {
        tracing::subscriber::set_global_default(builder.compact().finish())
    };
    if installed.is_ok() && log::set_boxed_logger(Box::new(PingoraLog::default())).is_ok() {
        log::set_max_level(tracing_log::AsLog::as_log(
            &tracing::level_filters::LevelFilter::current(),
        ));
    }
}

/// Pingora ERROR lines that are no error of the edge, by module and a text in the message. They
/// are passed on at DEBUG. This is for the paths where pingora offers no hook: an error on a
/// request's proxy path is quieted in `Edge::suppress_error_log` instead, by its source.
const DEMOTED_PINGORA_ERRORS: &[(&str, &str)] = &[
    // A handshake the ClientHello gate refused: counted by reason in
    // portcullis_tls_handshake_failures_total, and a load balancer's TCP health check (connect,
    // then close) would log one every few seconds.
    (
        "pingora_core::services::listening",
        crate::tls_gate::REFUSED,
    ),
    // A client that closed its connection, or was cut (head deadline), in the middle of a
    // request head: a slowloris run would log one per connection.
    ("pingora_proxy", "Fail to proxy: Downstream"),
    // A pooled backend connection its idle watcher still held (typically one the backend had
    // just closed): pingora connects anew.
    (
        "pingora_core::connectors",
        "failed to acquire reusable stream",
    ),
];

/// Carries the `log` records of pingora (and other crates) into the edge's tracing output, with
/// [`DEMOTED_PINGORA_ERRORS`] at DEBUG.
#[derive(Default)]
struct PingoraLog(tracing_log::LogTracer);

fn is_demoted(record: &log::Record) -> bool {
    record.level() == log::Level::Error
        && DEMOTED_PINGORA_ERRORS.iter().any(|(module, text)| {
            record.target() == *module && record.args().to_string().contains(text)
        })
}

impl log::Log for PingoraLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !is_demoted(record) {
            return self.0.log(record);
        }
        self.0.log(
            &log::Record::builder()
                .level(log::Level::Debug)
                .target(record.target())
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Loads and compiles a file, printing every diagnostic to stderr.
fn load_plan(path: &Path) -> Option<RuntimePlan> {
    let compiled = config::read_file(path).and_then(plan::compile);
    match compiled {
        Ok((plan, warnings)) => {
            print_diagnostics(&warnings);
            Some(plan)
        }
        Err(errors) => {
            print_diagnostics(&errors);
            let n = errors
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            eprintln!("{}: {n} error(s); nothing was started", path.display());
            None
        }
    }
}

fn print_diagnostics(items: &[Diagnostic]) {
    for d in items {
        eprintln!("{d}");
    }
}

fn check(path: &Path) -> ExitCode {
    let Some(plan) = load_plan(path) else {
        return ExitCode::FAILURE;
    };
    println!("{}: OK", path.display());
    print_summary(&plan);
    ExitCode::SUCCESS
}

/// What a configuration contains, in a few lines.
pub fn print_summary(plan: &RuntimePlan) {
    println!("listeners:");
    for l in &plan.listeners {
        println!("  {} {} {:?}", l.name, l.bind, l.protocol);
    }
    println!("sites:");
    for s in &plan.sites {
        println!("  {} ({} route(s))", s.name, s.routes.len());
    }
    println!("pools:");
    for p in &plan.pools {
        println!("  {} ({} backend(s))", p.name, p.backends.len());
    }
    match &plan.network.geo {
        Some(db) => println!("geoip: {}", db.metadata()),
        None => println!("geoip: none"),
    }
    println!("network rules:");
    for line in plan.network.rules.summary() {
        println!("  {line}");
    }
    println!("waf rules by category (PL1 PL2 PL3 PL4):");
    for (category, by_pl) in plan.waf.rule_count_by_category_and_pl() {
        println!(
            "  {category:<22} {:>4} {:>4} {:>4} {:>4}",
            by_pl[0], by_pl[1], by_pl[2], by_pl[3]
        );
    }
    for s in &plan.sites {
        let p = &s.waf_policy;
        println!(
            "site {}: waf {:?}, paranoia {}, threshold {}, {} custom rule(s), {} rate limit(s)",
            s.name,
            p.mode,
            p.paranoia_level,
            p.anomaly_threshold,
            s.custom_rules.len(),
            s.rate_limiter.as_ref().map_or(0, |l| l.rules().len())
        );
    }
}

fn run(path: &Path, upgrade: bool) -> ExitCode {
    init_logging(true);
    let Some(plan) = load_plan(path) else {
        return ExitCode::FAILURE;
    };
    serve(plan, Some(path.to_path_buf()), upgrade)
}

fn serve(plan: RuntimePlan, config_path: Option<PathBuf>, upgrade: bool) -> ExitCode {
    match crate::server::build(plan, config_path, upgrade) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> ExitCode {
    init_logging(false);
    let dir = std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
    let started =
        crate::demo::write_demo_pki(&dir).and_then(|ca| Ok((ca, crate::demo::start_backends()?)));
    let (ca_path, (a, b)) = match started {
        Ok(v) => v,
        Err(e) => {
            eprintln!("demo: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::demo::demo_plan(&dir, a, b) {
        Ok(plan) => {
            crate::demo::print_welcome(&ca_path);
            serve(plan, None, false)
        }
        Err(errors) => {
            print_diagnostics(&errors);
            ExitCode::FAILURE
        }
    }
}

/// Sends `POST /reload` to the admin listener and prints the answer.
fn reload(config_path: &Path, admin: Option<&str>) -> ExitCode {
    let admin = match admin {
        Some(a) => a.to_string(),
        None => match config::load_file(config_path) {
            Ok(loaded) => match loaded.config.admin {
                Some(a) => a.bind,
                None => {
                    eprintln!(
                        "{}: no [admin] listener configured; pass --admin ADDR",
                        config_path.display()
                    );
                    return ExitCode::FAILURE;
                }
            },
            Err(errors) => {
                print_diagnostics(&errors);
                return ExitCode::FAILURE;
            }
        },
    };
    match post_reload(&admin) {
        Ok((status, body)) => {
            println!("{body}");
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot reach the admin listener at {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn post_reload(admin: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        stream,
        "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
