//! `sidecar`: serve decisions, or validate and test a policy directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use bootstrap::EXIT_CONFIG;
use clap::{Parser, Subcommand};
use decision::decision_log::DecisionLog;
use decision::metrics::Metrics;
use decision::{Engine, EngineOptions};

#[derive(Debug, Parser)]
#[command(
    name = "sidecar",
    version,
    about = "Portcullis Cedar policy decision point"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (:8081) and Envoy ext_authz gRPC (:9191).
    Serve {
        /// TOML config file; `PORTCULLIS_SIDECAR__*` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Policy directory (overrides `policies`).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// HTTP listen address (overrides `http`).
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// gRPC listen address (overrides `grpc`).
        #[arg(long)]
        grpc: Option<std::net::SocketAddr>,
        /// Validate the config and the policy directory, then exit.
        #[arg(long)]
        check: bool,
    },
    /// Validate a policy directory: schema, policies, entities, routes.
    Validate {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the policy tests in `DIR/tests/*.toml`.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
}

/// The policy directory cannot be loaded (EX_DATAERR).
const EXIT_POLICIES: u8 = 65;

/// Runs the command line `args` (the first is the program name) to an exit code.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Serve {
            config,
            policies,
            http,
            grpc,
            check,
        } => serve(config.as_deref(), policies, http, grpc, check),
        Command::Validate { dir } => validate(&dir),
        Command::Test { dir } => test(&dir),
    }
}

fn serve(
    file: Option<&Path>,
    policies: Option<PathBuf>,
    http: Option<std::net::SocketAddr>,
    grpc: Option<std::net::SocketAddr>,
    check: bool,
) -> ExitCode {
    let mut config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    config.policies = policies.unwrap_or(config.policies);
    config.http = http.unwrap_or(config.http);
    config.grpc = grpc.unwrap_or(config.grpc);
    if let Err(e) = config.validate() {
        return config_error(&e);
    }
    let traces = match bootstrap::telemetry::Tracing::start(&config.tracing, "portcullis-sidecar") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    bootstrap::telemetry::init_logging(&config.log_level, config.log_format, traces.as_ref());
    let metrics = Metrics::new();
    let engine = match Engine::new(&config.policies, &config.engine_options(), metrics.clone()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "error: policy directory `{}` is invalid:\n{e}",
                config.policies.display()
            );
            return ExitCode::from(EXIT_POLICIES);
        }
    };
    if check {
        println!("config and policies OK");
        return ExitCode::SUCCESS;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        builder.worker_threads(config.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let engine = if config.decision_log.enabled {
            let log = DecisionLog::start(&config.decision_log, metrics.log_dropped.clone())
                .map_err(|e| {
                    anyhow::anyhow!("decision_log.path `{}`: {e}", config.decision_log.path)
                })?;
            engine.with_log(log)
        } else {
            engine
        };
        crate::server::run(config, Arc::new(engine), bootstrap::shutdown::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sidecar failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &bootstrap::ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn load(dir: &Path) -> Result<Engine, ExitCode> {
    Engine::new(dir, &EngineOptions::default(), Metrics::new()).map_err(|e| {
        eprintln!("{e}");
        eprintln!("error: policy directory `{}` is invalid", dir.display());
        ExitCode::from(EXIT_POLICIES)
    })
}

fn validate(dir: &Path) -> ExitCode {
    match load(dir) {
        Ok(engine) => {
            let snap = engine.snapshot();
            println!(
                "{}: OK ({} policies, {} entities, version {})",
                dir.display(),
                snap.bundle.sources.len(),
                snap.bundle.entity_count(),
                snap.bundle.version
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn test(dir: &Path) -> ExitCode {
    let engine = match load(dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let cases = match crate::policy_test::load_cases(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_POLICIES);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for named in &cases {
        let result = named.case.run(&engine).and_then(|o| named.case.verify(&o));
        match result {
            Ok(()) => {
                passed += 1;
                println!("PASS {}: {}", named.file, named.case.name);
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}: {}\n     {why}", named.file, named.case.name);
            }
        }
    }
    println!("policy tests: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
