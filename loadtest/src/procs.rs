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

/// The demo upstream (`gateway echo`, from the gateway binary `bin`) on a
/// free loopback port.
pub fn echo(bin: &Path) -> Result<Listening, String> {
    let addr = free_addr()?;
    let mut proc = spawn("echo", bin, &["echo", "--listen", &addr.to_string()], &[])?;
    proc.wait_for_port(addr, START)?;
    Ok(Listening { proc, addr })
}

/// A quiet sidecar on `policies`; `addr` is its gRPC (ext_authz) address.
pub fn sidecar(bin: &Path, policies: &Path) -> Result<Listening, String> {
    let (http, grpc) = (free_addr()?, free_addr()?);
    let mut proc = spawn(
        "sidecar",
        bin,
        &[
            "serve",
            "--http",
            &http.to_string(),
            "--grpc",
            &grpc.to_string(),
            "--policies",
            &policies.display().to_string(),
        ],
        &[("PORTCULLIS_SIDECAR__LOG_LEVEL", "warn")],
    )?;
    proc.wait_for_port(grpc, START)?;
    Ok(Listening { proc, addr: grpc })
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

/// `portcullis` for `up`, built with its one-service binaries, which `up`
/// runs the services from (a no-op when fresh).
pub fn build_portcullis() -> Result<PathBuf, String> {
    let bins = [
        "portcullis",
        "portcullis-gateway",
        "portcullis-sidecar",
        "portcullis-authserver",
    ];
    let pairs: Vec<_> = bins.iter().map(|bin| ("portcullis", *bin)).collect();
    Ok(build_release(&pairs)?.remove(0))
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
    gateway_under(&[], bin, dir, name, 2, config)
}

/// As [`gateway`], with `threads` worker threads, started by `wrapper`
/// (e.g. `valgrind --tool=callgrind`) when it is not empty.
pub fn gateway_under(
    wrapper: &[String],
    bin: &Path,
    dir: &Path,
    name: &str,
    threads: usize,
    config: &str,
) -> Result<Listening, String> {
    let (addr, admin) = (free_addr()?, free_addr()?);
    let path = dir.join(format!("gateway-{name}.toml"));
    let text = format!(
        "listen = \"{addr}\"\nadmin = \"{admin}\"\nthreads = {threads}\nlog_level = \"warn\"\naccess_log = {{ enabled = false }}\n{config}"
    );
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let args = ["serve", "--config", &path.display().to_string()];
    let mut proc = spawn_under(wrapper, &format!("gateway ({name})"), bin, &args)?;
    let start = start_time(wrapper);
    proc.wait_for_port(addr, start)?;
    proc.wait_for_port(admin, start)?;
    Ok(Listening { proc, addr })
}

/// `bin` with `args`, started by `wrapper` when it is not empty.
fn spawn_under(
    wrapper: &[String],
    name: &str,
    bin: &Path,
    args: &[&str],
) -> Result<Process, String> {
    let Some((program, wrapper_args)) = wrapper.split_first() else {
        return spawn(name, bin, args, &[]);
    };
    let mut all: Vec<&str> = wrapper_args.iter().map(String::as_str).collect();
    let bin = bin.display().to_string();
    all.push(&bin);
    all.extend_from_slice(args);
    spawn(name, Path::new(program), &all, &[])
}

/// How long a process has to start listening; an instrumenting wrapper
/// slows start-up many times.
fn start_time(wrapper: &[String]) -> Duration {
    if wrapper.is_empty() { START } else { START * 6 }
}

/// A path nginx answers itself with a 401 and a small JSON body, as the
/// gateway answers a request without a token.
pub const NGINX_LOCAL: &str = "/local";

/// nginx as a plain reverse proxy to `upstream` (2 workers, upstream
/// keep-alive, no access log; `NGINX_LOCAL` answered without it), or `None`
/// when nginx is not installed.
pub fn nginx(dir: &Path, upstream: SocketAddr) -> Result<Option<Listening>, String> {
    nginx_under(&[], dir, upstream)
}

/// As [`nginx`], started by `wrapper` when it is not empty: then as one
/// process (no master, one worker), so the wrapper sees every request.
pub fn nginx_under(
    wrapper: &[String],
    dir: &Path,
    upstream: SocketAddr,
) -> Result<Option<Listening>, String> {
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
            "daemon off;\nmaster_process {master};\nworker_processes {workers};\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
               upstream echo {{ server {upstream}; keepalive 64; keepalive_requests 1000000000; }}\n\
               server {{\n    listen {addr};\n    location = {local} {{\n      default_type application/json;\n      return 401 '{{\"error\":\"invalid_request\",\"message\":\"a bearer token is required\"}}';\n    }}\n    location / {{\n      proxy_pass http://echo;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            err = prefix.join("logs/error.log").display(),
            tmp = prefix.display(),
            local = NGINX_LOCAL,
            master = if wrapper.is_empty() { "on" } else { "off" },
            workers = if wrapper.is_empty() { 2 } else { 1 },
        ),
    )
    .map_err(|e| e.to_string())?;
    // SIGTERM first: nginx's master stops its workers on SIGTERM, and
    // SIGKILL would orphan them.
    let mut proc = spawn_under(
        wrapper,
        "nginx",
        bin,
        &[
            "-p",
            &prefix.display().to_string(),
            "-c",
            &conf.display().to_string(),
        ],
    )?
    .stopped_by(Stop::Signal("TERM", Duration::from_secs(5)));
    proc.wait_for_port(addr, start_time(wrapper))?;
    Ok(Some(Listening { proc, addr }))
}

pub use testkit::{cpu_seconds, peak_rss_mib, resident_split_mib, rss_mib};

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
