//! `portcullis up`: the whole stack on one machine, on embedded defaults.
//!
//! Each service runs as a child process of this binary (`portcullis
//! gateway ...` and so on), in its own process group so that Ctrl-C reaches
//! only us and the services stop in order: the gateway first, so no request
//! reaches a service that has already gone. Their output goes to log files;
//! the terminal shows what a user needs: URLs, the demo accounts and a
//! `curl` line that works as printed.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

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

/// A TOML string literal.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
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
    // The sidecar verifies bearer tokens of the authserver itself too, so
    // Envoy's ext_authz configs work in front of this stack unchanged.
    let sidecar_config = data.join("sidecar.toml");
    bootstrap::fs::write_atomically(
        &sidecar_config,
        format!(
            "# Written by `portcullis up` at every start.\n[[issuers]]\nissuer = {}\naudiences = [\"portcullis\"]\n",
            toml_string(&format!("http://{AUTHSERVER}"))
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
    // Written once the authserver listens, which it now does.
    let authserver: Value = serde_json::from_slice(
        &std::fs::read(&authserver_credentials)
            .with_context(|| format!("`{}`", authserver_credentials.display()))?,
    )
    .context("the authserver's dev credentials")?;
    let demo = Demo::read(&authserver)?;

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

/// What the generated configs and the printed instructions need from the
/// authserver's dev credentials.
struct Demo {
    issuer: String,
    admin_token: String,
    username: String,
    password: String,
    web_secret: String,
    service_id: String,
    service_secret: String,
}

impl Demo {
    fn read(credentials: &Value) -> anyhow::Result<Self> {
        let field = |pointer: &str| {
            credentials
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the authserver's dev credentials lack `{pointer}`"))
        };
        Ok(Self {
            issuer: field("/issuer")?,
            admin_token: field("/admin_token")?,
            username: field("/user/username")?,
            password: field("/user/password")?,
            web_secret: field("/clients/web/client_secret")?,
            service_id: field("/clients/service/client_id")?,
            service_secret: field("/clients/service/client_secret")?,
        })
    }

    /// One shell line needing only curl and sed: a fresh client_credentials
    /// token, then the protected API with it, so it never expires in the
    /// terminal's scrollback.
    fn curl_line(&self) -> String {
        format!(
            "curl -s http://{GATEWAY}/api/orders -H \"authorization: Bearer $(curl -s -u {}:{} \
             -d grant_type=client_credentials -d scope=orders:read {}/token | sed -E \
             's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\"",
            self.service_id, self.service_secret, self.issuer
        )
    }
}

/// The gateway in front of the demo upstream: `/public` for everyone,
/// `/api` for bearer tokens, everything else for signed-in browsers; the
/// sidecar decides both (so `/admin/*` needs the admin role).
fn gateway_toml(demo: &Demo, data: &Path, redis_url: Option<&str>) -> anyhow::Result<String> {
    let cookie_secret = authserver::crypto::random_token::<32>();
    let s = toml_string;
    let redis = redis_url.map_or(String::new(), |url| format!("redis_url = {}\n", s(url)));
    Ok(format!(
        r#"# Written by `portcullis up` at every start; the secrets change each time.
listen = "{GATEWAY}"
admin = "{GATEWAY_ADMIN}"
shutdown_grace_secs = 2
upgrade_sock = {sock}
# The authserver shares the host 127.0.0.1, so the browser sends its cookies
# here too; the demo app never sees them.
private_cookies = [{auth_cookies}]
{redis}
[sidecar]
address = "http://{SIDECAR_GRPC}"
# Roomier than the 5 ms default: a dev stack may be a debug build, and the
# first check also opens the connection.
deadline_ms = 50

[[issuers]]
issuer = {issuer}
audiences = ["portcullis"]
token_type = "at+jwt"

[session]
issuer = {issuer}
client_id = "demo-web"
client_secret = {web_secret}
redirect_uri = "http://{GATEWAY}/_auth/callback"
scopes = ["openid", "profile", "email", "groups", "offline_access", "orders:read"]
access_audience = "portcullis"
cookie_secret = {cookie_secret}
post_logout_redirect_uri = "http://{GATEWAY}/"

[[upstreams]]
name = "demo"
addresses = ["{UPSTREAM}"]
health_check = {{ path = "/healthz", interval_ms = 2000, timeout_ms = 1000, unhealthy_threshold = 2, healthy_threshold = 1 }}

[[routes]]
path_prefix = "/public"
upstream = "demo"
auth = "public"

[[routes]]
path_prefix = "/api"
upstream = "demo"
auth = "jwt"
policy = true

[[routes]]
path_prefix = "/"
upstream = "demo"
auth = "session"
policy = true
"#,
        sock = s(&data.join("gateway-upgrade.sock").display().to_string()),
        issuer = s(&demo.issuer),
        web_secret = s(&demo.web_secret),
        cookie_secret = s(&cookie_secret),
        auth_cookies = {
            let names = authserver::session::Cookies::new(false);
            format!("{}, {}", s(names.session), s(names.csrf))
        },
    ))
}

/// The services started so far, in order.
#[derive(Default)]
struct Stack {
    logs: PathBuf,
    children: Vec<Service>,
}

struct Service {
    name: &'static str,
    process: tokio::process::Child,
    log: PathBuf,
}

impl Stack {
    fn spawn<A>(
        &mut self,
        name: &'static str,
        command: &str,
        args: impl IntoIterator<Item = A>,
        env: &[(&str, OsString)],
    ) -> anyhow::Result<()>
    where
        A: Into<OsString>,
    {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let log = self.logs.join(format!("{}.log", name.replace(' ', "-")));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("cannot create `{}`", log.display()))?;
        let mut process = tokio::process::Command::new(exe);
        // The stack is what `up` says it is: no inherited overrides (they
        // could move a listener off loopback or change the database).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTCULLIS_") {
                process.env_remove(key);
            }
        }
        let process = process
            .arg(command)
            .args(args.into_iter().map(Into::into))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        self.children.push(Service { name, process, log });
        Ok(())
    }

    /// Waits until `url` answers 2xx, failing early if the service exits.
    async fn ready(&mut self, name: &str, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(service) = self.children.iter_mut().find(|s| s.name == name)
                && let Some(status) = service.process.try_wait()?
            {
                bail!(
                    "the {name} exited at start ({status}); its log `{}`:\n{}",
                    service.log.display(),
                    tail(&service.log)
                );
            }
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {name} was not ready at {url} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each running service's pid, by name (for scripts and load runners).
    fn pids(&self) -> Value {
        self.children
            .iter()
            .filter_map(|s| Some((s.name.replace(' ', "_"), json!(s.process.id()?))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// SIGKILL to every service still running.
    async fn kill(&mut self) {
        for service in &mut self.children {
            let _ = service.process.kill().await;
        }
        self.children.clear();
    }

    /// The first service to exit on its own.
    async fn first_exit(&mut self) -> (&'static str, ExitStatus, PathBuf) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            for service in &mut self.children {
                if let Ok(Some(status)) = service.process.try_wait() {
                    return (service.name, status, service.log.clone());
                }
            }
        }
    }

    /// SIGTERM to each service, the last started first; SIGKILL to one
    /// that has not exited within `STOP_TIMEOUT`.
    async fn stop(&mut self) {
        while let Some(mut service) = self.children.pop() {
            if let Ok(Some(_)) = service.process.try_wait() {
                continue;
            }
            if let Some(pid) = service.process.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            match tokio::time::timeout(STOP_TIMEOUT, service.process.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "the {} did not stop within {STOP_TIMEOUT:?}; killing it",
                        service.name
                    );
                    let _ = service.process.kill().await;
                }
            }
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
