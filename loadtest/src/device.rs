//! `loadtest device`: the device authorization grant (RFC 8628) at scale.
//! On the embedded defaults (SQLite, in-process stores) it starts
//! `devices` device sign-ins (`/device_authorization`, `demo-tv`), then
//! polls `/token` for every one of them at the interval the server asked
//! for (5 s), spread evenly, as waiting devices do: an open loop at
//! `devices / interval` requests a second, every answer expected to be
//! `authorization_pending`. The baseline, in the same run and at the same
//! rate, is `/healthz` (the HTTP stack alone). Figures: latency, and the
//! authserver's own CPU time per request (from /proc, so the client's
//! share of the two cores is not counted).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::procs::{self, free_addr};
use crate::report::write_report;

pub struct Options {
    pub devices: usize,
    pub seconds: u64,
    pub out: PathBuf,
}

const CLIENT: &str = "demo-tv";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Latencies (ms) and answers of one phase.
#[derive(Default)]
struct Phase {
    ms: Vec<f64>,
    unexpected: Vec<String>,
    cpu_seconds: f64,
    wall: Duration,
}

impl Phase {
    fn row(&mut self, key: &str, title: &str) -> Value {
        self.ms.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let i = ((self.ms.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.ms.get(i).map_or(0.0, |v| (v * 100.0).round() / 100.0)
        };
        let n = self.ms.len() + self.unexpected.len();
        json!({
            "scenario": key,
            "title": title,
            "requests": n,
            "errors": self.unexpected.len(),
            "first_errors": self.unexpected.iter().take(3).collect::<Vec<_>>(),
            "rps": (n as f64 / self.wall.as_secs_f64()).round() as u64,
            "p50_ms": at(0.50),
            "p90_ms": at(0.90),
            "p99_ms": at(0.99),
            "cpu_ms_per_request": if n == 0 { 0.0 } else {
                (self.cpu_seconds * 1e6 / n as f64).round() / 1e3
            },
        })
    }
}

pub fn run(opts: Options) -> Result<(), String> {
    let bin = procs::build_portcullis()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = free_addr()?;
    let mut authserver = procs::authserver(&bin, dir.path(), addr, &[], &[], &[])?;
    authserver.wait_for_port(addr, Duration::from_secs(60))?;
    let pid = authserver.pid();
    let base = format!("http://{addr}");
    let rt = crate::driver::runtime()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())?;

    let cpu = || procs::cpu_seconds(pid);
    let before = cpu();
    let (codes, mut started, interval) = rt.block_on(start_devices(&http, &base, opts.devices))?;
    started.cpu_seconds = cpu() - before;
    let rate = opts.devices as f64 / interval.as_secs_f64();
    let window = Duration::from_secs(opts.seconds);

    let before = cpu();
    let mut polls = rt.block_on(open_loop(&http, &base, &codes, interval, window, true))?;
    polls.cpu_seconds = cpu() - before;
    let before = cpu();
    let mut floor = rt.block_on(open_loop(&http, &base, &codes, interval, window, false))?;
    floor.cpu_seconds = cpu() - before;

    let rows = vec![
        started.row(
            "device_authorization",
            "`/device_authorization` (a new device sign-in)",
        ),
        polls.row(
            "poll",
            "`/token` poll of a waiting device (`authorization_pending`)",
        ),
        floor.row("healthz", "baseline: `/healthz` at the same rate"),
    ];
    let ratio = |k: &str| {
        let cpu = rows[1][k].as_f64().unwrap_or(0.0);
        let base = rows[2][k].as_f64().unwrap_or(0.0);
        if base > 0.0 {
            (cpu / base * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    let report = json!({
        "devices": opts.devices,
        "interval_seconds": interval.as_secs(),
        "rate_per_second": rate.round(),
        "seconds": opts.seconds,
        "rows": rows,
        "poll_to_healthz": {"cpu": ratio("cpu_ms_per_request"), "p50": ratio("p50_ms"), "p99": ratio("p99_ms")},
    });
    let mut md = format!(
        "# Device flow polling\n\n{} devices waiting, each polling `/token` every {} s as told (an open loop at {:.0} requests/s, spread evenly, for {} s); the authserver on the embedded defaults (SQLite, in-process stores), one loopback machine (2 cores) for client and server. CPU is the authserver's own (from /proc).\n\n| what | requests | errors | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/request |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        opts.devices,
        interval.as_secs(),
        rate,
        opts.seconds
    );
    for r in &report["rows"].as_array().cloned().unwrap_or_default() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["title"].as_str().unwrap_or(""),
            r["requests"],
            r["errors"],
            r["rps"],
            r["p50_ms"],
            r["p90_ms"],
            r["p99_ms"],
            r["cpu_ms_per_request"]
        ));
    }
    md.push_str(&format!(
        "\nA poll against the `/healthz` floor at the same rate: CPU ×{}, p50 ×{}, p99 ×{}.\n",
        report["poll_to_healthz"]["cpu"],
        report["poll_to_healthz"]["p50"],
        report["poll_to_healthz"]["p99"]
    ));
    write_report(&opts.out, "device", &report, &md)
}

/// `n` device sign-ins, 16 at a time: their device codes, the phase, and
/// the polling interval the server asked for.
async fn start_devices(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> Result<(Vec<String>, Phase, Duration), String> {
    let url = format!("{base}/device_authorization");
    let started = Instant::now();
    let mut phase = Phase::default();
    let mut codes = Vec::with_capacity(n);
    let mut interval = 5;
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut calls = tokio::task::JoinSet::new();
        for _ in chunk {
            let req = http
                .post(&url)
                .form(&[("client_id", CLIENT), ("scope", "openid profile")]);
            calls.spawn(async move {
                let at = Instant::now();
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body: Value = resp.json().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((at.elapsed(), status, body))
            });
        }
        while let Some(result) = calls.join_next().await {
            let (took, status, body) = result.map_err(|e| e.to_string())??;
            match body["device_code"].as_str() {
                Some(code) if status.is_success() => {
                    codes.push(code.to_owned());
                    interval = body["interval"].as_u64().unwrap_or(5);
                    phase.ms.push(took.as_secs_f64() * 1e3);
                }
                _ => return Err(format!("device_authorization: {status} {body}")),
            }
        }
    }
    phase.wall = started.elapsed();
    Ok((codes, phase, Duration::from_secs(interval.max(1))))
}

/// For `window`, each code is polled once per `interval` at its own
/// offset (or `/healthz` asked in its place, `poll == false`).
async fn open_loop(
    http: &reqwest::Client,
    base: &str,
    codes: &[String],
    interval: Duration,
    window: Duration,
    poll: bool,
) -> Result<Phase, String> {
    let started = Instant::now();
    let results = Arc::new(std::sync::Mutex::new(Phase::default()));
    let mut tasks = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / codes.len() as f64);
        let (http, results, code) = (http.clone(), results.clone(), code.clone());
        let (token, health) = (format!("{base}/token"), format!("{base}/healthz"));
        tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::from_std(started) + offset;
            while next.duration_since(tokio::time::Instant::from_std(started)) < window {
                tokio::time::sleep_until(next).await;
                next += interval;
                let at = Instant::now();
                let answer = if poll {
                    let form = [
                        ("grant_type", GRANT),
                        ("device_code", &code),
                        ("client_id", CLIENT),
                    ];
                    match http.post(&token).form(&form).send().await {
                        Ok(r) => r
                            .text()
                            .await
                            .map(|t| t.contains("\"authorization_pending\"")),
                        Err(e) => Err(e),
                    }
                } else {
                    match http.get(&health).send().await {
                        Ok(r) => r.text().await.map(|t| t == "ok"),
                        Err(e) => Err(e),
                    }
                };
                let took = at.elapsed().as_secs_f64() * 1e3;
                let mut r = results.lock().unwrap_or_else(|p| p.into_inner());
                match answer {
                    Ok(true) => r.ms.push(took),
                    Ok(false) => r.unexpected.push("an unexpected answer".into()),
                    Err(e) => r.unexpected.push(e.to_string()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let mut phase = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    phase.wall = started.elapsed();
    Ok(phase)
}
