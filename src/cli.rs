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
    },
    /// Check a configuration file and print every error and warning.
    Check {
        #[arg(short, long, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Run the zero-setup demo: throwaway certificates, two demo backends.
    Demo,
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(&config),
        Command::Demo => demo(),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Loads and compiles a file, printing every diagnostic to stderr.
fn load_plan(path: &Path) -> Option<RuntimePlan> {
    let compiled = config::load_file(path).and_then(plan::compile);
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
}

fn run(path: &Path) -> ExitCode {
    init_logging(true);
    let Some(plan) = load_plan(path) else {
        return ExitCode::FAILURE;
    };
    serve(plan)
}

fn serve(plan: RuntimePlan) -> ExitCode {
    match crate::server::build(plan) {
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
            serve(plan)
        }
        Err(errors) => {
            print_diagnostics(&errors);
            ExitCode::FAILURE
        }
    }
}
