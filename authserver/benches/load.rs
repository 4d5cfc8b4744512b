//! Load runner for the authserver's hot endpoints: `client_credentials` at
//! `POST /token` and `POST /introspect`, N keep-alive connections on
//! loopback against the real release binary, on the embedded backends
//! (SQLite + in-process) and on PostgreSQL + Redis. Baselines measured in
//! the same run: ES256 signing and argon2id verification in process (the
//! latter bounds the password-login rate). Bounded in time.
//!
//! cargo bench -p portcullis-authserver --bench load [-- --seconds 8 --connections 32]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

struct Server {
    _process: testkit::Process,
    addr: SocketAddr,
    creds: Value,
    _dir: tempfile::TempDir,
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let creds_path = dir.path().join("creds.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authserver"));
    cmd.current_dir(dir.path())
        .arg("--dev")
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0", "--dev-credentials"])
        .arg(&creds_path)
        .env(
            "PORTCULLIS_AUTHSERVER__LOG_LEVEL",
            "warn,authserver::server=info",
        )
        .envs(env.iter().copied());
    let mut process = testkit::Process::start("authserver", cmd);
    let listening = process
        .wait_for_log("listening", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    // The credentials file appears whole (written, then renamed).
    let creds = process
        .wait_until(Duration::from_secs(10), "a --dev-credentials file", |_| {
            serde_json::from_slice(&std::fs::read(&creds_path).ok()?).ok()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    Server {
        _process: process,
        addr: listening["listen"].as_str().unwrap().parse().unwrap(),
        creds,
        _dir: dir,
    }
}

struct Outcome {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 * p) as usize)
            .min(self.latencies_us.len().saturating_sub(1));
        f64::from(self.latencies_us.get(i).copied().unwrap_or(0)) / 1000.0
    }
}

/// `connections` keep-alive connections each sending `body` to `path` in a
/// closed loop for one warm-up second plus `seconds`.
async fn drive(
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
    path: &'static str,
    auth: String,
    body: String,
) -> Outcome {
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (auth, body) = (auth.clone(), Bytes::from(body.clone()));
        tasks.push(tokio::task::spawn_local(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::task::spawn_local(conn);
            let (mut n, mut errors, mut lat) = (0usize, 0usize, Vec::with_capacity(100_000));
            loop {
                let t = Instant::now();
                if t.duration_since(start) > warmup + run {
                    break;
                }
                let req = hyper::Request::post(path)
                    .header("host", "authserver")
                    .header("authorization", &auth)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if t.duration_since(start) >= warmup {
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    n += 1;
                    errors += usize::from(!ok);
                }
                if !ok {
                    // A broken connection would spin; note it and stop.
                    if sender.ready().await.is_err() {
                        break;
                    }
                }
            }
            (n, errors, lat)
        }));
    }
    let mut out = Outcome {
        requests: 0,
        errors: 0,
        elapsed: run,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (n, e, lat) = t.await.unwrap();
        out.requests += n;
        out.errors += e;
        out.latencies_us.extend(lat);
    }
    out
}

fn in_process_signing(seconds: u64) -> f64 {
    let (signer, _) = tokens::Signer::generate(jsonwebtoken::Algorithm::ES256, "bench").unwrap();
    let claims = serde_json::json!({"iss": "http://127.0.0.1", "sub": "demo-service", "aud": "portcullis",
        "exp": 2_000_000_000u64, "iat": 1_700_000_000u64, "jti": "abcdefghijklmnopqrstuv", "client_id": "demo-service",
        "scope": "orders:read orders:write"});
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        signer.sign("at+jwt", &claims).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn in_process_argon2(seconds: u64) -> f64 {
    let passwords = authserver::password::Passwords::new(&Default::default()).unwrap();
    let hash = passwords.hash("correct horse battery").unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        assert!(passwords.verify("correct horse battery", Some(&hash)));
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.windows(2)
        .find(|w| w[0] == name)
        .map_or(default, |w| w[1].parse().expect(name))
}

fn main() {
    let seconds = arg("--seconds", 8);
    let connections = usize::try_from(arg("--connections", 32)).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "authserver load: {connections} connections, {seconds} s per run, {cores} cores, client and server on this machine\n"
    );
    let sign = in_process_signing(2);
    let argon = in_process_argon2(2);
    println!("| baseline (in process, 1 thread) | per second |\n|---|---:|");
    println!("| ES256 JWT signing | {sign:.0} |");
    println!("| argon2id verify (19 MiB, t=2): bounds password logins per core | {argon:.1} |\n");
    println!(
        "| backend | endpoint | requests/s | p50 ms | p99 ms | errors | vs in-process signing |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");

    let pg = std::env::var("PORTCULLIS_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("pc_bench_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([pg.as_str(), "-qc", sql])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let have_pg = psql(&format!("CREATE SCHEMA {schema}"));
    let pg_url = format!("{pg}?options=-c%20search_path%3D{schema}");
    let prefix = format!("pc_bench:{}:", std::process::id());
    /// Label, command-line arguments, environment.
    type Backend<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let mut backends: Vec<Backend> = vec![("SQLite + in-process", vec![], vec![])];
    if have_pg {
        backends.push((
            "PostgreSQL + Redis",
            vec![
                "--database-url",
                &pg_url,
                "--redis-url",
                "redis://127.0.0.1:6379",
            ],
            vec![("PORTCULLIS_AUTHSERVER__REDIS_PREFIX", prefix.as_str())],
        ));
    } else {
        println!("(PostgreSQL not reachable: its row is skipped)");
    }
    for (label, args, env) in backends {
        let server = start(&args, &env);
        let c = &server.creds["clients"]["service"];
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c["client_id"].as_str().unwrap(),
                c["client_secret"].as_str().unwrap()
            ))
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let mut tokens = local.block_on(
            &rt,
            drive(
                server.addr,
                connections,
                seconds,
                "/token",
                basic.clone(),
                "grant_type=client_credentials".into(),
            ),
        );
        // One token to introspect, fetched like any client would.
        let token = {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-H",
                    &format!("authorization: {basic}"),
                    "-d",
                    "grant_type=client_credentials",
                ])
                .arg(format!("http://{}/token", server.addr))
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        };
        let mut intro = local.block_on(
            &rt,
            drive(
                server.addr,
                connections,
                seconds,
                "/introspect",
                basic,
                format!("token={token}"),
            ),
        );
        for (endpoint, r) in [
            ("POST /token (client_credentials, ES256)", &mut tokens),
            ("POST /introspect", &mut intro),
        ] {
            println!(
                "| {label} | {endpoint} | {:.0} | {:.2} | {:.2} | {} | {:.2} |",
                r.rps(),
                r.pct(0.5),
                r.pct(0.99),
                r.errors,
                r.rps() / sign
            );
        }
    }
    if have_pg {
        psql(&format!("DROP SCHEMA {schema} CASCADE"));
    }
}
