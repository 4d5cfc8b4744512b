//! `portcullis up`: the whole stack on one machine, on embedded defaults.
//!
//! Each service runs as a child process (`portcullis-gateway ...`, or this
//! binary as `portcullis gateway ...`: see `stack.rs`), in its own process
//! group so that Ctrl-C reaches only us and the services stop in order: the
//! gateway first, so no request reaches a service that has already gone.
//! Their output goes to log files; the terminal shows what a user needs:
//! URLs, the demo accounts and a `curl` line that works as printed.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

mod demo;
mod stack;

use demo::{Demo, gateway_toml, toml_string};
use stack::{Stack, tail};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Where the authserver's database and master key, the generated
    /// gateway config and the services' logs are kept across runs.
    #[arg(long, default_value = ".portcullis")]
    data_dir: PathBuf,
    /// The policy directory the sidecar serves (reloaded on change).
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Also write the service URLs, the demo user and clients and a
    /// protected URL as JSON to FILE (readable by the owner only).
    #[arg(long)]
    dev_credentials: Option<PathBuf>,
    /// The authserver's database, `postgres://…` (default: SQLite under
    /// the data directory).
    #[arg(long)]
    database_url: Option<String>,
    /// Redis for the authserver's ephemeral state and for gateway sessions
    /// too large for a cookie (default: in-process, cookies only).
    #[arg(long)]
    redis_url: Option<String>,
}

/// Where everything listens. Fixed, because the authserver's demo web
/// client is registered with the gateway's callback URL on port 8000.
const GATEWAY: &str = "127.0.0.1:8000";
const GATEWAY_ADMIN: &str = "127.0.0.1:9000";
const AUTHSERVER: &str = "127.0.0.1:8080";
const SIDECAR_HTTP: &str = "127.0.0.1:8081";
const SIDECAR_GRPC: &str = "127.0.0.1:9191";
const UPSTREAM: &str = "127.0.0.1:3000";

/// How long a service may take to become ready, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
        let mut stack = Stack::default();
        let mut signal = std::pin::pin!(stop_signal());
        let started = tokio::select! {
            result = start(&mut stack, &options) => Some(result),
            () = &mut signal => None,
        };
        let code = match started {
            None => ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
            Some(Ok(())) => tokio::select! {
                () = &mut signal => ExitCode::SUCCESS,
                (name, status, log) = stack.first_exit() => {
                    eprintln!("error: the {name} stopped ({status}); the others are stopping too");
                    eprintln!("{}", tail(&log));
                    ExitCode::FAILURE
                }
            },
        };
        say("stopping... (again to kill)");
        let stopped = tokio::select! {
            () = stack.stop() => true,
            () = stop_signal() => false,
        };
        if !stopped {
            stack.kill().await;
        }
        say("stopped");
        code
    })
}

/// Ctrl-C or SIGTERM, and also a closed terminal (SIGHUP) or Ctrl-\
/// (SIGQUIT): the services are in process groups of their own, so whatever
/// would end `up` must stop them first.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let other = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = bootstrap::shutdown::signal() => {}
        () = other(SignalKind::hangup()) => {}
        () = other(SignalKind::quit()) => {}
    }
}

/// A line on stdout; a closed stdout (`up | head`) is no reason to stop.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn start(stack: &mut Stack, options: &Options) -> anyhow::Result<()> {
    for (addr, name) in [
        (GATEWAY, "gateway"),
        (GATEWAY_ADMIN, "gateway admin"),
        (AUTHSERVER, "authserver"),
        (SIDECAR_HTTP, "sidecar HTTP"),
        (SIDECAR_GRPC, "sidecar gRPC"),
        (UPSTREAM, "demo upstream"),
    ] {
        std::net::TcpListener::bind(addr).with_context(|| {
            format!("{addr} ({name}) is not free: is another `portcullis up` running?")
        })?;
    }
    if !options.policies.join("schema.cedarschema").is_file() {
        bail!(
            "no policy directory at `{}`: run from the repository root or pass --policies DIR",
            options.policies.display()
        );
    }
    let data = std::path::absolute(&options.data_dir)
        .with_context(|| format!("data directory `{}`", options.data_dir.display()))?;
    // The logs and files in here hold the demo secrets: owner only.
    let logs = data.join("logs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&logs)
        .and_then(|()| std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("cannot create `{}`", logs.display()))?;
    stack.logs = logs.clone();
    if options.database_url.is_some() {
        say(
            "note: --dev creates (or resets the secrets of) the user `demo` and the clients \
             `demo-*` in the --database-url database",
        );
    }

    stack.spawn(
        "demo upstream",
        "gateway",
        ["echo", "--listen", UPSTREAM],
        &[],
    )?;
    let authserver_credentials = data.join("authserver-credentials.json");
    match std::fs::remove_file(&authserver_credentials) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("cannot remove the previous authserver credentials");
        }
        _ => {}
    }
    let mut authserver_args: Vec<OsString> = vec![
        "--dev".into(),
        "serve".into(),
        "--listen".into(),
        AUTHSERVER.into(),
        "--dev-credentials".into(),
        OsString::from(&authserver_credentials),
    ];
    for (flag, value) in [
        ("--database-url", &options.database_url),
        ("--redis-url", &options.redis_url),
    ] {
        if let Some(value) = value {
            authserver_args.extend([flag.into(), value.into()]);
        }
    }
    stack.spawn(
        "authserver",
        "authserver",
        authserver_args,
        &[(
            "PORTCULLIS_AUTHSERVER__DATA_DIR",
            data.join("authserver").into_os_string(),
        )],
    )?;
    stack
        .ready("demo upstream", &format!("http://{UPSTREAM}/healthz"))
        .await?;
    stack
        .ready(
            "authserver",
            &format!("http://{AUTHSERVER}/.well-known/openid-configuration"),
        )
        .await?;
    // Written once the authserver listens, which it now does.
    let authserver: Value = serde_json::from_slice(
        &std::fs::read(&authserver_credentials)
            .with_context(|| format!("`{}`", authserver_credentials.display()))?,
    )
    .context("the authserver's dev credentials")?;
    let demo = Demo::read(&authserver)?;
    // The sidecar verifies bearer tokens of the authserver itself too, so
    // Envoy's ext_authz configs work in front of this stack unchanged; it
    // follows the change feed for users, groups and revocations.
    let sidecar_config = data.join("sidecar.toml");
    bootstrap::fs::write_atomically(
        &sidecar_config,
        format!(
            "# Written by `portcullis up` at every start.\n[[issuers]]\nissuer = {}\naudiences = [\"portcullis\"]\n\n{}",
            toml_string(&demo.issuer),
            demo.feed_toml(),
        )
        .as_bytes(),
    )
    .with_context(|| format!("cannot write `{}`", sidecar_config.display()))?;
    stack.spawn(
        "sidecar",
        "sidecar",
        [
            "serve".into(),
            "--config".into(),
            OsString::from(&sidecar_config),
            "--policies".into(),
            OsString::from(&options.policies),
            "--http".into(),
            SIDECAR_HTTP.into(),
            "--grpc".into(),
            SIDECAR_GRPC.into(),
        ],
        &[],
    )?;
    stack
        .ready("sidecar", &format!("http://{SIDECAR_HTTP}/readyz"))
        .await?;
    let gateway_config = data.join("gateway.toml");
    let gateway_text = gateway_toml(&demo, &data, options.redis_url.as_deref())?;
    bootstrap::fs::write_atomically(&gateway_config, gateway_text.as_bytes())
        .with_context(|| format!("cannot write `{}`", gateway_config.display()))?;
    stack.spawn(
        "gateway",
        "gateway",
        [
            "serve".into(),
            "--config".into(),
            gateway_config.into_os_string(),
        ],
        &[],
    )?;
    stack
        .ready("gateway", &format!("http://{GATEWAY_ADMIN}/readyz"))
        .await?;

    let curl = demo.curl_line();
    say(&format!(
        "\
Portcullis is up. Data in {data}, logs in {logs}.
The authserver keeps its records in {store}, its short-lived state {ephemeral}.

  gateway     http://{GATEWAY}    admin: http://{GATEWAY_ADMIN}/metrics
  authserver  {issuer}    the issuer; admin token: {admin}
  sidecar     http://{SIDECAR_HTTP}    ext_authz gRPC: {SIDECAR_GRPC}
  demo app    http://{UPSTREAM}    (the unprotected upstream)

  In a browser: http://{GATEWAY}/ and sign in as {user} / {password}
  Demo clients: demo-web (the gateway's sessions), demo-spa (public, PKCE),
                {service_id} / {service_secret} (client_credentials)

  A call through the gateway with a demo-service token, decided by the sidecar:
    {curl}

  SCIM provisioning: {issuer}/scim/v2 with the bearer token {scim}
  (users and groups reach the sidecar's decisions within a second)

Ctrl-C stops everything.",
        data = data.display(),
        logs = logs.display(),
        store = if options.database_url.is_some() {
            "the --database-url database"
        } else {
            "SQLite under the data directory"
        },
        ephemeral = if options.redis_url.is_some() {
            "in Redis"
        } else {
            "in-process"
        },
        issuer = demo.issuer,
        admin = demo.admin_token,
        user = demo.username,
        password = demo.password,
        service_id = demo.service_id,
        service_secret = demo.service_secret,
        scim = demo.scim_token,
    ));
    // Last: scripts take this file as the sign that everything is up.
    if let Some(path) = &options.dev_credentials {
        let json = json!({
            "services": {
                "gateway": format!("http://{GATEWAY}"),
                "gateway_admin": format!("http://{GATEWAY_ADMIN}"),
                "authserver": demo.issuer,
                "sidecar": format!("http://{SIDECAR_HTTP}"),
                "sidecar_ext_authz_grpc": SIDECAR_GRPC,
                "demo_upstream": format!("http://{UPSTREAM}"),
            },
            "issuer": demo.issuer,
            "admin_token": authserver["admin_token"],
            "user": authserver["user"],
            "clients": authserver["clients"],
            "service_tokens": authserver["service_tokens"],
            "protected_url": format!("http://{GATEWAY}/api/orders"),
            "public_url": format!("http://{GATEWAY}/public/welcome"),
            "browser_url": format!("http://{GATEWAY}/"),
            "curl": curl,
            "logs": logs,
            "pids": stack.pids(),
        });
        let bytes = serde_json::to_vec_pretty(&json)?;
        bootstrap::fs::write_atomically(path, &bytes)
            .with_context(|| format!("cannot write --dev-credentials `{}`", path.display()))?;
    }
    Ok(())
}
