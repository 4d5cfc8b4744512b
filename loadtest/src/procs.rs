//! The processes a run starts, on loopback ports, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::{Process, Stop};

/// Starts `bin` with `args` and `env`, its output collected, SIGKILLed
/// when dropped unless told otherwise.
pub fn spawn(
    name: &str,
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Process, String> {
    let mut cmd = Command::new(bin);
    cmd.args(args).envs(env.iter().copied());
    Process::spawn(name, cmd)
}

/// The authserver in dev mode on `listen`, its data in `dir`, quiet;
/// `global` before `serve` (e.g. `--database-url`), `serve` after it, and
/// `env` on top (`PORTCULLIS_AUTHSERVER__*` settings).
pub fn authserver(
    bin: &Path,
    dir: &Path,
    listen: SocketAddr,
    global: &[&str],
    serve: &[&str],
    env: &[(&str, &str)],
) -> Result<Process, String> {
    let listen = listen.to_string();
    let mut args = vec!["authserver", "--dev"];
    args.extend_from_slice(global);
    args.extend_from_slice(&["serve", "--listen", &listen]);
    args.extend_from_slice(serve);
    let data = dir.join("authserver").display().to_string();
    let mut all = vec![
        ("PORTCULLIS_AUTHSERVER__DATA_DIR", data.as_str()),
        ("PORTCULLIS_AUTHSERVER__LOG_LEVEL", "warn"),
    ];
    all.extend_from_slice(env);
    spawn("authserver", bin, &args, &all)
}

/// How long a process has to start listening.
const START: Duration = Duration::from_secs(30);

/// A proxy under test and where it listens.
pub struct Listening {
    pub proc: Process,
    pub addr: SocketAddr,
}

/// A loopback address for a process that must be told its port.
pub fn free_addr() -> Result<SocketAddr, String> {
    Ok(SocketAddr::from(([127, 0, 0, 1], testkit::free_port())))
}

/// Build release binaries (a no-op when fresh) and return their paths, next
/// to this runner's own executable.
pub fn build_release(bins: &[(&str, &str)]) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "--quiet"]);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build --release failed".into());
    }
    let dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no directory for binaries")?;
    Ok(bins.iter().map(|(_, bin)| dir.join(bin)).collect())
}

/// A gateway with `routes` appended to its listeners, 2 worker threads.
pub fn gateway(bin: &Path, dir: &Path, name: &str, config: &str) -> Result<Listening, String> {
    let (addr, admin) = (free_addr()?, free_addr()?);
    let path = dir.join(format!("gateway-{name}.toml"));
    let text = format!(
        "listen = \"{addr}\"\nadmin = \"{admin}\"\nthreads = 2\nlog_level = \"warn\"\naccess_log = {{ enabled = false }}\n{config}"
    );
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let mut proc = spawn(
        &format!("gateway ({name})"),
        bin,
        &["serve", "--config", &path.display().to_string()],
        &[],
    )?;
    proc.wait_for_port(addr, START)?;
    proc.wait_for_port(admin, START)?;
    Ok(Listening { proc, addr })
}

/// A path nginx answers itself with a 401 and a small JSON body, as the
/// gateway answers a request without a token.
pub const NGINX_LOCAL: &str = "/local";

/// nginx as a plain reverse proxy to `upstream` (2 workers, upstream
/// keep-alive, no access log; `NGINX_LOCAL` answered without it), or `None`
/// when nginx is not installed.
pub fn nginx(dir: &Path, upstream: SocketAddr) -> Result<Option<Listening>, String> {
    let Some(bin) = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        return Ok(None);
    };
    let addr = free_addr()?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
               upstream echo {{ server {upstream}; keepalive 64; keepalive_requests 1000000000; }}\n\
               server {{\n    listen {addr};\n    location = {local} {{\n      default_type application/json;\n      return 401 '{{\"error\":\"invalid_request\",\"message\":\"a bearer token is required\"}}';\n    }}\n    location / {{\n      proxy_pass http://echo;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            err = prefix.join("logs/error.log").display(),
            tmp = prefix.display(),
            local = NGINX_LOCAL,
        ),
    )
    .map_err(|e| e.to_string())?;
    // SIGTERM first: nginx's master stops its workers on SIGTERM, and
    // SIGKILL would orphan them.
    let mut proc = spawn(
        "nginx",
        bin,
        &[
            "-p",
            &prefix.display().to_string(),
            "-c",
            &conf.display().to_string(),
        ],
        &[],
    )?
    .stopped_by(Stop::Signal("TERM", Duration::from_secs(5)));
    proc.wait_for_port(addr, START)?;
    Ok(Some(Listening { proc, addr }))
}

pub use testkit::{cpu_seconds, peak_rss_mib, rss_mib};

/// Envoy with `config` as users copy it (its listener on 127.0.0.1:10000),
/// one worker per core.
pub fn envoy(bin: &Path, config: &Path) -> Result<Process, String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string();
    let mut proc = spawn(
        "envoy",
        bin,
        &[
            "-c",
            &config.display().to_string(),
            "--concurrency",
            &cores,
            "--disable-hot-restart",
            "--base-id",
            "9311",
            "-l",
            "error",
        ],
        &[],
    )?;
    proc.wait_for_port(SocketAddr::from(([127, 0, 0, 1], 10000)), START)?;
    Ok(proc)
}
