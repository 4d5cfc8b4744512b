//! Load runner for the sidecar's network surfaces: `POST /v1/is_authorized`
//! and ext_authz gRPC `Check`, N concurrent connections on loopback against
//! the real binary, with the in-process decision rate measured in the same
//! run as the baseline. Bounded in time; stops by itself.
//!
//! Two modes per surface: as fast as the connections go (closed loop: the
//! throughput), and paced at `--rate` decisions/s spread over the same
//! connections (the latency at that load; a request sent late because the
//! previous one was slow is still timed from its send).
//!
//! cargo bench -p portcullis-sidecar --bench load [-- --seconds 8 --connections 32 --rate 25000]

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use decision::Metrics;
use decision::{CheckRequest, Claims, Engine, EngineOptions};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

struct Args {
    seconds: u64,
    connections: usize,
    /// Target decisions/s of the paced runs.
    rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 8,
        connections: 32,
        rate: 25_000.0,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--seconds" => a.seconds = pair[1].parse().expect("--seconds N"),
            "--connections" => a.connections = pair[1].parse().expect("--connections N"),
            "--rate" => a.rate = pair[1].parse().expect("--rate N"),
            _ => {}
        }
    }
    a
}

struct Server {
    process: testkit::Process,
    http: SocketAddr,
    grpc: SocketAddr,
}

fn start(dir: &std::path::Path, cache: bool, workers: usize) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
    cmd.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
        "--policies",
    ])
    .arg(dir)
    .env(
        "PORTCULLIS_SIDECAR__CACHE__MAX_ENTRIES",
        if cache { "100000" } else { "0" },
    )
    .env("PORTCULLIS_SIDECAR__DECISION_LOG__PATH", "/dev/null")
    .env("PORTCULLIS_SIDECAR__WATCH", "false")
    .env("PORTCULLIS_SIDECAR__WORKERS", workers.to_string())
    .env("PORTCULLIS_SIDECAR__LOG_LEVEL", "warn,sidecar::server=info");
    let mut process = testkit::Process::start("sidecar", cmd);
    let listening = process
        .wait_for_log("listening", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    Server {
        http: listening["http"].as_str().unwrap().parse().unwrap(),
        grpc: listening["grpc"].as_str().unwrap().parse().unwrap(),
        process,
    }
}

/// Requests spread over 40 users and their orders (mostly allows).
fn user(i: usize) -> String {
    format!("user-{}", i % 40 + 1)
}

struct Result {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// The server's CPU seconds over the timed part of the run.
    server_cpu: f64,
}

impl Result {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    /// The server's CPU per answered decision, in µs.
    fn cpu_us(&self) -> f64 {
        self.server_cpu / self.requests.max(1) as f64 * 1e6
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 * p) as usize)
            .min(self.latencies_us.len().saturating_sub(1));
        f64::from(self.latencies_us.get(i).copied().unwrap_or(0)) / 1000.0
    }
}

async fn drive<F, Fut>(
    server: u32,
    connections: usize,
    seconds: u64,
    pace: Option<Duration>,
    make: F,
) -> Result
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<
            Output = Box<
                dyn FnMut(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>,
            >,
        >,
{
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs(seconds);
    let start = Instant::now();
    // The server's CPU from the end of the warm-up to the end of the run.
    let cpu = tokio::task::spawn_local(async move {
        tokio::time::sleep(warmup).await;
        let before = testkit::cpu_seconds(server);
        tokio::time::sleep(run).await;
        testkit::cpu_seconds(server) - before
    });
    let mut handles = Vec::new();
    for c in 0..connections {
        let mut call = make(c).await;
        handles.push(tokio::task::spawn_local(async move {
            let mut lat = Vec::with_capacity(200_000);
            let (mut n, mut errors) = (0usize, 0usize);
            let mut i = c;
            // Stagger the connections' schedules across one interval.
            let mut next = tokio::time::Instant::now()
                + pace.map_or(Duration::ZERO, |p| p * c as u32 / connections as u32);
            loop {
                if let Some(p) = pace {
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                let t = Instant::now();
                if t.duration_since(start) > warmup + run {
                    break;
                }
                let ok = call(i).await;
                i += connections;
                if t.duration_since(start) >= warmup {
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    n += 1;
                    errors += usize::from(!ok);
                }
            }
            (n, errors, lat)
        }));
    }
    let mut out = Result {
        requests: 0,
        errors: 0,
        elapsed: run,
        latencies_us: Vec::new(),
        server_cpu: 0.0,
    };
    for h in handles {
        let (n, e, lat) = h.await.unwrap();
        out.requests += n;
        out.errors += e;
        out.latencies_us.extend(lat);
    }
    out.server_cpu = cpu.await.unwrap();
    out
}

async fn http_load(server: &Server, a: &Args, pace: Option<Duration>) -> Result {
    let addr = server.http;
    drive(server.process.pid(), a.connections, a.seconds, pace, |_| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::task::spawn_local(conn);
        let sender = std::rc::Rc::new(tokio::sync::Mutex::new(sender));
        Box::new(move |i: usize| {
            let sender = sender.clone();
            Box::pin(async move {
                let body = format!(
                    r#"{{"principal":{{"type":"App::User","id":"{}"}},"action":{{"type":"App::Action","id":"ReadOrder"}},"resource":{{"type":"App::Order","id":"o-gen-{}"}},"context":{{"scopes":["openid"],"amr":["pwd"],"time":0}}}}"#,
                    user(i),
                    i % 40 + 1
                );
                let req = hyper::Request::post("/v1/is_authorized")
                    .header("host", "sidecar")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let mut s = sender.lock().await;
                match s.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        ok && body.is_ok_and(|b| b.starts_with(br#"{"decision":"Allow""#))
                    }
                    Err(_) => false,
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>
        }) as Box<dyn FnMut(usize) -> _>
    })
    .await
}

/// gRPC over a raw HTTP/2 connection with the requests encoded up front,
/// the way native load tools (ghz, h2load) drive a server: the client's own
/// cost stays small next to the server's on the shared cores.
async fn grpc_load(server: &Server, a: &Args, pace: Option<Duration>) -> Result {
    let addr = server.grpc;
    use envoy_types::pb::envoy::service::auth::v3::{
        AttributeContext, CheckRequest as Pb, CheckResponse, attribute_context,
    };
    use prost::Message;
    let frames: std::rc::Rc<Vec<Bytes>> = std::rc::Rc::new(
        (0..40)
            .map(|i| {
                let claims = serde_json::json!({"sub": user(i), "amr": ["pwd"], "scope": "openid"});
                let mut metadata = envoy_types::pb::envoy::config::core::v3::Metadata::default();
                metadata.filter_metadata.insert(
                    "envoy.filters.http.jwt_authn".into(),
                    decision::envoy::json_to_struct(&serde_json::Map::from_iter([(
                        "jwt_payload".to_owned(),
                        claims,
                    )])),
                );
                let req = Pb {
                    attributes: Some(AttributeContext {
                        request: Some(attribute_context::Request {
                            http: Some(attribute_context::HttpRequest {
                                method: "GET".into(),
                                path: format!("/api/orders/o-gen-{}", i % 40 + 1),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        metadata_context: Some(metadata),
                        ..Default::default()
                    }),
                };
                let body = req.encode_to_vec();
                let mut frame = Vec::with_capacity(5 + body.len());
                frame.push(0);
                frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
                frame.extend_from_slice(&body);
                Bytes::from(frame)
            })
            .collect(),
    );
    drive(server.process.pid(), a.connections, a.seconds, pace, |_| {
        let frames = frames.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (send, conn) = h2::client::handshake(stream).await.unwrap();
            tokio::task::spawn_local(conn);
            Box::new(move |i: usize| {
                let (mut send, frames) = (send.clone(), frames.clone());
                Box::pin(async move {
                    let call = async {
                        std::future::poll_fn(|cx| send.poll_ready(cx)).await.ok()?;
                        let req = http::Request::post(format!(
                            "http://{addr}/envoy.service.auth.v3.Authorization/Check"
                        ))
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(())
                        .ok()?;
                        let (response, mut body_out) = send.send_request(req, false).ok()?;
                        body_out.send_data(frames[i % 40].clone(), true).ok()?;
                        let mut body = response.await.ok()?.into_body();
                        let mut buf = Vec::new();
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.ok()?;
                            let _ = body.flow_control().release_capacity(chunk.len());
                            buf.extend_from_slice(&chunk);
                        }
                        let trailers = body.trailers().await.ok()??;
                        let ok = trailers.get("grpc-status").is_some_and(|s| s == "0");
                        let resp = CheckResponse::decode(buf.get(5..)?).ok()?;
                        Some(ok && resp.status.is_some_and(|s| s.code == 0))
                    };
                    call.await.unwrap_or(false)
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>
            }) as Box<dyn FnMut(usize) -> _>
        }
    })
    .await
}

/// Microseconds per decision on one thread, in process, the same workload
/// as each surface: `Engine::check` with the callers' claims (what gRPC
/// `Check` asks), and `Engine::is_authorized` with the request's JSON
/// values (what `POST /v1/is_authorized` asks, its body already parsed).
fn in_process(dir: &std::path::Path, cache: bool, seconds: u64) -> (f64, f64) {
    let options = EngineOptions {
        cache_entries: if cache { 100_000 } else { 0 },
        ..Default::default()
    };
    let engine = Engine::new(dir, &options, Metrics::new()).unwrap();
    let claims: Vec<Claims> = (0..40)
        .map(|i| {
            Claims::from_json(
                serde_json::json!({"sub": user(i), "amr": ["pwd"], "scope": "openid"})
                    .as_object()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let paths: Vec<String> = (0..40)
        .map(|i| format!("/api/orders/o-gen-{}", i + 1))
        .collect();
    let timed = |decide: &mut dyn FnMut(usize)| {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < Duration::from_secs(seconds) {
            for i in 0..40 {
                decide(i);
                n += 1;
            }
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let check = timed(&mut |i| {
        let d = engine.check(&CheckRequest {
            method: "GET",
            path: &paths[i],
            claims: Some(&claims[i]),
            ..Default::default()
        });
        assert!(d.allowed());
    });
    let direct = timed(&mut |i| {
        let request = decision::DirectRequest {
            principal: serde_json::json!({"type": "App::User", "id": user(i)}),
            action: serde_json::json!({"type": "App::Action", "id": "ReadOrder"}),
            resource: serde_json::json!({"type": "App::Order", "id": format!("o-gen-{}", i % 40 + 1)}),
            context: serde_json::json!({"scopes": ["openid"], "amr": ["pwd"], "time": 0}),
            entities: None,
        };
        assert!(engine.is_authorized(request, None).unwrap().allowed());
    });
    (check, direct)
}

fn main() {
    let a = args();
    let dir = support::grown_policies(100);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sidecar load: {} connections, {} s per run, {cores} cores, client and server on this machine",
        a.connections, a.seconds
    );
    println!("workload: 20 policies, ~100 entities, 40 users reading their orders\n");
    println!(
        "| surface | cache | server threads | load | decisions/s | p50 ms | p99 ms | errors | server CPU µs/decision | × in-process |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let paced = Duration::from_secs_f64(a.connections as f64 / a.rate);
    for cache in [false, true] {
        let (check_us, direct_us) = in_process(dir.path(), cache, 2);
        let label = if cache { "on" } else { "off" };
        println!(
            "| in-process `Engine::check` (what `Check` asks) | {label} | 1 | max | {:.0} | | | | {check_us:.1} | 1.00 |",
            1e6 / check_us
        );
        println!(
            "| in-process `Engine::is_authorized` (what `/v1/is_authorized` asks) | {label} | 1 | max | {:.0} | | | | {direct_us:.1} | 1.00 |",
            1e6 / direct_us
        );
        // All cores, then one core left to the client (a sidecar sized to
        // one core next to its caller).
        for workers in [cores, 1] {
            let server = start(dir.path(), cache, workers);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for pace in [None, Some(paced)] {
                let load = pace.map_or("max".to_owned(), |_| format!("{:.0}/s", a.rate));
                let http = tokio::task::LocalSet::new().block_on(&rt, http_load(&server, &a, pace));
                let grpc = tokio::task::LocalSet::new().block_on(&rt, grpc_load(&server, &a, pace));
                for (surface, mut r, base_us) in [
                    ("HTTP `POST /v1/is_authorized`", http, direct_us),
                    ("gRPC ext_authz `Check`", grpc, check_us),
                ] {
                    println!(
                        "| {surface} | {label} | {workers} | {load} | {:.0} | {:.3} | {:.3} | {} | {:.1} | {:.2} |",
                        r.rps(),
                        r.pct(0.5),
                        r.pct(0.99),
                        r.errors,
                        r.cpu_us(),
                        r.cpu_us() / base_us
                    );
                }
            }
        }
    }
}
