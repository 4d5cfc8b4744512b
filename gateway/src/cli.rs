//! `gateway serve --config FILE`: run the proxy; `--check` validates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::AccessLog;
use crate::authz::{Authorizer, SidecarClient};
use crate::config::Config;
use crate::header_deadline::HeaderDeadline;
use crate::proxy::{Gateway, Parts};
use crate::session::Sessions;
use crate::tls::SniResolver;
use bootstrap::EXIT_CONFIG;
use bootstrap::redis::Redis;
use clap::{Parser, Subcommand};

/// Bounds each Redis command, a cluster's retries and redirections included.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Portcullis edge proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the proxy.
    Serve {
        /// TOML config file; `PORTCULLIS_GATEWAY__*` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Validate the config, then exit.
        #[arg(long)]
        check: bool,
        /// Take the listening sockets over from the running gateway (at
        /// `upgrade_sock`); send that one SIGQUIT once this one has started.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file and exit.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the demo upstream: answers every request with the method, path,
    /// headers and body it received, as JSON.
    Echo {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
}

/// Runs the command line `args` (the first is the program name) to an exit code.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let (file, check, upgrade) = match cli.command {
        Command::Serve {
            config,
            check,
            upgrade,
        } => (config, check, upgrade),
        Command::Check { config } => (config, true, false),
        Command::Echo { listen } => return echo(listen),
    };
    let config = match Config::load(file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let tls = match config
        .tls
        .as_ref()
        .map(|t| SniResolver::load(&t.certificates))
    {
        None => None,
        Some(Ok(resolver)) => Some(Arc::new(resolver)),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if check {
        println!("config OK");
        return ExitCode::SUCCESS;
    }
    let traces = match bootstrap::telemetry::Tracing::start(&config.tracing, "portcullis-gateway") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    bootstrap::telemetry::init_logging(&config.log_level, config.log_format, traces.as_ref());
    // Key fetching and refresh and upstream health checks run on a runtime
    // of their own; Pingora builds its own runtimes for the proxy threads.
    let keys_runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("jwks")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the key runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verifier = if config.issuers.is_empty() {
        None
    } else {
        match tokens::Verifier::new(&config.issuers) {
            Ok(v) => {
                let v = Arc::new(v);
                keys_runtime.block_on(v.start());
                Some(v)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    };
    let engine = match &config.policies {
        Some(dir) => match decision::Engine::new(
            dir,
            &decision::EngineOptions::default(),
            decision::metrics::Metrics::new(),
        ) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                eprintln!(
                    "error: policy directory `{}` is invalid:\n{e}",
                    dir.display()
                );
                return ExitCode::from(65);
            }
        },
        None => None,
    };
    let authorizer = match (&engine, &config.sidecar) {
        (Some(engine), _) => Some(Authorizer::embedded(engine.clone())),
        (None, Some(sidecar)) => match SidecarClient::new(sidecar) {
            Ok(client) => Some(Authorizer::Sidecar(Box::new(client))),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        },
        (None, None) => None,
    };
    // The change feed's entities go to the embedded engine; with a sidecar
    // deciding (and following them), they tell which cached verdicts are
    // outdated.
    let sink = match (&engine, &authorizer) {
        (Some(engine), _) => Some(Arc::new(feed::EngineSink {
            engine: engine.clone(),
            prefix: config.feed.subject_prefix.clone(),
        }) as Arc<dyn feed::Sink>),
        (None, Some(Authorizer::Sidecar(client))) => Some(client.feed_sink()),
        _ => None,
    };
    let mut feed_config = config.feed.clone();
    feed_config.entities &= sink.is_some();
    let following = {
        let _runtime = keys_runtime.enter();
        match feed::start(&feed_config, sink) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    };
    // One connection (or cluster client) for sessions and rate limits; a
    // stalled Redis answers within the timeout, never holds a request.
    let redis = match config
        .redis_url
        .as_deref()
        .map(|url| Redis::new(url, REDIS_TIMEOUT))
    {
        None => None,
        Some(Ok(redis)) => Some(Arc::new(redis)),
        Some(Err(e)) => {
            eprintln!("error: redis_url {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let sessions = match &config.session {
        None => None,
        Some(session) => {
            // One verifier for both of the provider's tokens: the ID token
            // (audience: our client id) and the access token.
            // Its subjects are named as the same issuer's bearer tokens' are.
            let subject_prefix = config
                .issuers
                .iter()
                .find(|i| i.issuer == session.issuer)
                .and_then(|i| i.subject_prefix.clone());
            let issuer: Result<tokens::IssuerConfig, _> =
                serde_json::from_value(serde_json::json!({
                    "issuer": session.issuer,
                    "audiences": [session.client_id, session.access_audience],
                    "subject_prefix": subject_prefix,
                }));
            let built = issuer
                .map_err(|e| e.to_string())
                .and_then(|i| tokens::Verifier::new(&[i]).map_err(|e| e.to_string()))
                .and_then(|v| {
                    let v = Arc::new(v);
                    keys_runtime.block_on(v.start());
                    Sessions::new(
                        session,
                        v,
                        subject_prefix,
                        redis
                            .clone()
                            .map(|redis| (redis, config.redis_prefix.as_str())),
                    )
                });
            match built {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: session: {e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            }
        }
    };
    let conf = ServerConf {
        threads: config.threads,
        work_stealing: config.work_stealing,
        ca_file: config
            .upstream_ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        grace_period_seconds: Some(config.shutdown_grace_secs),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_grace_secs),
        upgrade_sock: config.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let access_log = if config.access_log.enabled {
        match AccessLog::start(&config.access_log, metrics.access_log_dropped.clone()) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                eprintln!("error: access log `{}`: {e}", config.access_log.path);
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    } else {
        None
    };
    if let Some(f) = &following
        && let Err(e) = metrics
            .registry
            .register(Box::new(feed::StatusCollector::new(f.status.clone())))
    {
        eprintln!("error: feed metrics: {e}");
        return ExitCode::FAILURE;
    }
    let gateway = Gateway::new(
        &config,
        Parts {
            verifier: verifier.clone(),
            authorizer,
            sessions,
            access_log: access_log.clone(),
            metrics: metrics.clone(),
            feed: following.clone(),
            redis,
            tracer: traces.as_ref().map(|t| t.tracer().clone()),
        },
        &server.configuration,
    );
    {
        let _background = keys_runtime.enter();
        for upstream in gateway.upstreams() {
            upstream.spawn_health_checks();
        }
    }
    let mut logic = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = config.h2c;
    logic.server_options = Some(options);
    let mut proxy = pingora::services::listening::Service::new(
        "proxy".into(),
        HeaderDeadline::new(
            logic,
            Duration::from_secs(config.request_header_timeout_secs),
            metrics.header_timeouts.clone(),
        ),
    );
    proxy.add_tcp(&config.listen.to_string());
    if let (Some(tls_config), Some(resolver)) = (&config.tls, tls) {
        let mut settings = match TlsSettings::intermediate("", "") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: TLS settings: {e}");
                return ExitCode::FAILURE;
            }
        };
        settings.set_cert_resolver(resolver);
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls_config.listen.to_string(), None, settings);
    }
    server.add_service(proxy);
    let mut admin = pingora::services::listening::Service::new(
        "admin".into(),
        crate::admin::Admin {
            verifier,
            metrics,
            feed: following,
            engine,
        },
    );
    admin.add_tcp(&config.admin.to_string());
    server.add_service(admin);
    tracing::info!(listen = %config.listen, tls = ?config.tls.as_ref().map(|t| t.listen), admin = %config.admin, routes = config.routes.len(), build = env!("CARGO_PKG_VERSION"), "listening");
    server.run(RunArgs::default());
    // Served and drained: the last requests' lines go out before we exit.
    if let Some(log) = access_log {
        log.close();
    }
    drop(keys_runtime);
    ExitCode::SUCCESS
}

fn echo(listen: std::net::SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        };
        eprintln!("echo upstream listening on http://{listen}");
        tokio::select! {
            result = crate::echo::serve(listener) => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            () = bootstrap::shutdown::signal() => ExitCode::SUCCESS,
        }
    })
}
