//! `loadtest stack`: the k6 scenarios (`loadtest/k6`) against `portcullis
//! up` at their target rates, then the bearer workload at full speed
//! through the gateway (JWT + sidecar), Envoy (jwt_authn + ext_authz → the
//! same sidecar, `envoy/jwt_authn-ext_authz-grpc.yaml` unchanged), the
//! gateway's public route and nginx, all in one run on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::driver::{self, Target};
use crate::procs;
use testkit::{Process, Stop};

/// The k6 scenarios in the order they run; the login flows last, as they
/// leave sessions (and, with a second factor, users) behind.
const SCENARIOS: [&str; 6] = [
    "api_bearer",
    "browser_session",
    "sidecar_decisions",
    "authserver_tokens",
    "login_flow",
    "login_mfa",
];

/// `portcullis up`'s fixed addresses, and the Envoy config's listener.
const GATEWAY: &str = "127.0.0.1:8000";
const UPSTREAM: &str = "127.0.0.1:3000";
const ENVOY: &str = "127.0.0.1:10000";

pub fn run(seconds: u64, connections: usize, rounds: usize, out: &Path) -> Result<(), String> {
    let k6 = which("k6").ok_or("k6 is not installed (scripts/install-deps.sh)")?;
    let envoy = which("envoy").ok_or("envoy is not installed (scripts/install-deps.sh)")?;
    let portcullis = procs::build_portcullis()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let credentials = work.path().join("credentials.json");
    let up = Stack::start(&portcullis, &root, work.path(), &credentials)?;
    let stack: Value = serde_json::from_slice(
        &std::fs::read(&credentials).map_err(|e| format!("{}: {e}", credentials.display()))?,
    )
    .map_err(|e| e.to_string())?;

    let mut k6_rows = Vec::new();
    for name in SCENARIOS {
        eprintln!("k6 {name} for {seconds} s ...");
        let summary = work.path().join(format!("{name}.json"));
        let log = work.path().join(format!("{name}.log"));
        let cpu_before = up.cpu();
        let status = Command::new(&k6)
            .args(["run", "--quiet", "--no-color", "--summary-export"])
            .arg(&summary)
            .arg("-e")
            .arg(format!("PORTCULLIS_CREDENTIALS={}", credentials.display()))
            .arg("-e")
            .arg(format!("DURATION={seconds}s"))
            .arg(root.join("loadtest/k6").join(format!("{name}.js")))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?)
            .status()
            .map_err(|e| format!("k6: {e}"))?;
        let cpu = up.cpu() - cpu_before;
        let summary: Value = serde_json::from_slice(
            &std::fs::read(&summary).map_err(|e| format!("{name}: no k6 summary: {e}"))?,
        )
        .map_err(|e| e.to_string())?;
        let mut row = k6_row(name, &summary, status.success(), cpu);
        row["failures"] = failures(&std::fs::read_to_string(&log).unwrap_or_default()).into();
        k6_rows.push(row);
    }
    let memory = up.memory()?;

    // Full speed, one workload, four ways in.
    let token = service_token(&stack)?;
    let _envoy = procs::envoy(&envoy, &root.join("envoy/jwt_authn-ext_authz-grpc.yaml"))?;
    let _nginx = procs::nginx(work.path(), addr(UPSTREAM)?)?;
    let bearer = vec![vec![(
        "authorization".to_owned(),
        format!("Bearer {token}"),
    )]];
    let mut targets = vec![
        (
            "gateway_jwt_sidecar",
            "Portcullis gateway: JWT + sidecar decision",
            Target {
                addr: addr(GATEWAY)?,
                path: "/api/orders".into(),
                headers: bearer.clone(),
                expect: 200,
            },
        ),
        (
            "envoy_jwt_sidecar",
            "Envoy 1.40: jwt_authn + ext_authz gRPC → the same sidecar",
            Target {
                addr: addr(ENVOY)?,
                path: "/api/orders".into(),
                headers: bearer,
                expect: 200,
            },
        ),
        (
            "gateway_public",
            "Portcullis gateway: public route",
            Target {
                addr: addr(GATEWAY)?,
                path: "/public/welcome".into(),
                headers: vec![Vec::new()],
                expect: 200,
            },
        ),
    ];
    if let Some(nginx) = &_nginx {
        targets.push((
            "nginx",
            "nginx: plain reverse proxy",
            Target {
                addr: nginx.addr,
                path: "/public/welcome".into(),
                headers: vec![Vec::new()],
                expect: 200,
            },
        ));
    }
    let rt = driver::runtime()?;
    for (_, title, target) in &targets {
        driver::probe(&rt, title, target)?;
    }
    // rounds × ways in, interleaved, each way's median round kept: this
    // machine's speed drifts within a minute.
    let mut measured: Vec<Vec<driver::Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for ((_, title, target), outcomes) in targets.iter().zip(&mut measured) {
            eprintln!("round {round}/{rounds}: {title} for {seconds} s ...");
            outcomes.push(rt.block_on(driver::run(
                target,
                connections,
                Duration::from_secs(1),
                Duration::from_secs(seconds),
            )));
        }
    }
    let speed_rows: Vec<Value> = targets
        .iter()
        .zip(&measured)
        .filter_map(|((key, title, _), outcomes)| {
            let median = crate::report::median_by_rate(outcomes, |o| o)?;
            Some(crate::report::rounds_row(
                key,
                title,
                outcomes.iter(),
                median,
            ))
        })
        .collect();
    drop(up);

    let rps = |key: &str| {
        speed_rows
            .iter()
            .find(|r| r["scenario"] == key)
            .and_then(|r| r["rps"].as_f64())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    let report = json!({
        "suite": "stack",
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "seconds": seconds,
        "connections": connections,
        "rounds": rounds,
        "k6": k6_rows,
        "memory_mib": memory,
        "full_speed": speed_rows,
        "ratios": {
            "gateway_over_envoy": ratio(rps("gateway_jwt_sidecar"), rps("envoy_jwt_sidecar")),
            "gateway_jwt_sidecar_over_public": ratio(rps("gateway_jwt_sidecar"), rps("gateway_public")),
            "gateway_public_over_nginx": ratio(rps("gateway_public"), rps("nginx")),
        },
    });
    crate::report::write_report(out, "stack", &report, &markdown(&report))
}

/// `portcullis up` and its services (gateway, sidecar, authserver, demo
/// upstream), whose CPU and memory the report charges. Dropped, it is
/// stopped as Ctrl-C stops it, so no service outlives the run.
struct Stack {
    _up: Process,
    /// Service name → pid, from the credentials `up` writes.
    pids: Vec<(String, u32)>,
}

impl Stack {
    fn start(bin: &Path, root: &Path, dir: &Path, credentials: &Path) -> Result<Self, String> {
        let data = dir.join("data");
        // Dropped, it is stopped as Ctrl-C stops it: `up` stops its
        // services in order.
        let mut up = procs::spawn(
            "portcullis up",
            bin,
            &[
                "up",
                "--data-dir",
                &data.display().to_string(),
                "--policies",
                &root.join("policies").display().to_string(),
                "--dev-credentials",
                &credentials.display().to_string(),
            ],
            &[],
        )?
        .stopped_by(Stop::Signal("INT", Duration::from_secs(30)));
        up.wait_until(Duration::from_secs(120), "its credentials file", |_| {
            credentials.exists().then_some(())
        })
        .map_err(|e| format!("{e}\nsee the logs in {}", data.join("logs").display()))?;
        let stack: Value = serde_json::from_slice(
            &std::fs::read(credentials).map_err(|e| format!("{}: {e}", credentials.display()))?,
        )
        .map_err(|e| e.to_string())?;
        let pids = stack["pids"]
            .as_object()
            .ok_or("the credentials name no pids")?
            .iter()
            .filter_map(|(name, pid)| Some((name.clone(), u32::try_from(pid.as_u64()?).ok()?)))
            .collect();
        Ok(Self { _up: up, pids })
    }

    fn pid(&self, service: &str) -> Result<u32, String> {
        self.pids
            .iter()
            .find(|(n, _)| n == service)
            .map(|(_, pid)| *pid)
            .ok_or_else(|| format!("`up` runs no {service}"))
    }

    fn cpu(&self) -> f64 {
        self.pids
            .iter()
            .map(|(_, pid)| procs::cpu_seconds(*pid))
            .sum()
    }

    /// Peak resident memory (VmHWM) of the gateway and the sidecar so far,
    /// and what each has resident now, split into its own memory and the
    /// pages mapped from its executable.
    fn memory(&self) -> Result<Value, String> {
        let peak = |service: &str| -> Result<f64, String> {
            procs::peak_rss_mib(self.pid(service)?)
                .ok_or_else(|| format!("{service}: its peak memory (VmHWM) cannot be read"))
        };
        let split = |service: &str| -> Result<(f64, f64), String> {
            procs::resident_split_mib(self.pid(service)?)
                .ok_or_else(|| format!("{service}: its RssAnon/RssFile cannot be read"))
        };
        let (gateway, sidecar) = (peak("gateway")?, peak("sidecar")?);
        let ((gateway_anon, gateway_file), (sidecar_anon, sidecar_file)) =
            (split("gateway")?, split("sidecar")?);
        let sum = |a: f64, b: f64| ((a + b) * 10.0).round() / 10.0;
        Ok(json!({
            "gateway": gateway,
            "sidecar": sidecar,
            "gateway_plus_sidecar": sum(gateway, sidecar),
            "now": {
                "gateway_anon": gateway_anon,
                "gateway_file": gateway_file,
                "sidecar_anon": sidecar_anon,
                "sidecar_file": sidecar_file,
                "anon_together": sum(gateway_anon, sidecar_anon),
                "file_together": sum(gateway_file, sidecar_file),
            },
        }))
    }
}

fn k6_row(name: &str, summary: &Value, thresholds_ok: bool, cpu: f64) -> Value {
    let metrics = &summary["metrics"];
    // The scenario's own requests (its thresholds are on these), not setup's.
    let duration = &metrics[format!("http_req_duration{{scenario:{name}}}").as_str()];
    let requests = metrics["http_reqs"]["count"].as_f64().unwrap_or(0.0);
    let ms = |v: &Value| (v.as_f64().unwrap_or(0.0) * 100.0).round() / 100.0;
    json!({
        "scenario": name,
        "requests": requests,
        "rps": (metrics["http_reqs"]["rate"].as_f64().unwrap_or(0.0) * 10.0).round() / 10.0,
        "iterations": metrics["iterations"]["count"],
        "p50_ms": ms(&duration["med"]),
        "p95_ms": ms(&duration["p(95)"]),
        "p99_ms": ms(&duration["p(99)"]),
        "error_rate": metrics["http_req_failed"]["value"],
        "checks_failed": metrics["checks"]["fails"],
        // k6 passes `checks: rate==1` when no check ran at all (an
        // iteration that threw before its check): every iteration checks.
        "thresholds_ok": thresholds_ok
            && metrics["checks"]["passes"].as_f64().unwrap_or(0.0)
                >= metrics["iterations"]["count"].as_f64().unwrap_or(f64::MAX),
        "stack_cpu_us_per_request": if requests > 0.0 { (cpu / requests * 1e7).round() / 10.0 } else { 0.0 },
        // Whole sign-ins, where the scenario times them (login_mfa).
        "sign_in": metrics.get("sign_in_ms").map(|whole| json!({
            "p50_ms": ms(&whole["med"]),
            "p95_ms": ms(&whole["p(95)"]),
            "password_step_p95_ms": ms(&metrics["password_step_ms"]["p(95)"]),
            "after_password_p50_ms": ms(&metrics["sign_in_after_password_ms"]["med"]),
            "after_password_p95_ms": ms(&metrics["sign_in_after_password_ms"]["p(95)"]),
        })),
    })
}

/// What the scenario's `verify` logged about failed requests (`FAILED GET
/// url -> 503 [...] body`), the first few, so a crossed threshold has a
/// cause in the report.
fn failures(k6_stderr: &str) -> Vec<String> {
    k6_stderr
        .lines()
        .filter_map(|line| {
            let at = line.find("FAILED ")?;
            let msg = &line[at..];
            Some(
                msg.split("\" source=console")
                    .next()
                    .unwrap_or(msg)
                    .to_owned(),
            )
        })
        .take(5)
        .collect()
}

/// A client_credentials token of the demo service client, with curl.
fn service_token(stack: &Value) -> Result<String, String> {
    let service = &stack["clients"]["service"];
    let out = Command::new("curl")
        .args(["-s", "--fail-with-body", "-u"])
        .arg(format!(
            "{}:{}",
            service["client_id"].as_str().unwrap_or(""),
            service["client_secret"].as_str().unwrap_or("")
        ))
        .args([
            "-d",
            "grant_type=client_credentials",
            "-d",
            "scope=orders:read",
        ])
        .arg(format!("{}/token", stack["issuer"].as_str().unwrap_or("")))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let body: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "token response: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no access_token in {body}"))
}

fn addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn markdown(report: &Value) -> String {
    let mut md = format!(
        "# Stack load test\n\n`portcullis up` (release build) on {} cores; every k6 scenario at its \
         target rate for {} s, then the bearer workload at full speed ({} connections, the \
         runner's closed-loop client) four ways in, {} interleaved rounds, each way's median \
         round shown (every round's req/s in the last column; errors of all rounds). Load \
         generators share the cores.\n\n\
         ## k6 scenarios\n\n\
         | scenario | req/s | p50 ms | p95 ms | p99 ms | error rate | thresholds | stack CPU µs/req |\n\
         |---|---:|---:|---:|---:|---:|---|---:|\n",
        report["cores"], report["seconds"], report["connections"], report["rounds"]
    );
    for r in report["k6"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["scenario"].as_str().unwrap_or(""),
            r["rps"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["error_rate"],
            if r["thresholds_ok"] == true {
                "pass"
            } else {
                "**crossed**"
            },
            r["stack_cpu_us_per_request"],
        ));
    }
    let failed: String = report["k6"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            let scenario = r["scenario"].as_str().unwrap_or("");
            r["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |f| format!("- {scenario}: `{}`\n", f.as_str().unwrap_or("")))
        })
        .collect();
    for r in report["k6"].as_array().into_iter().flatten() {
        let s = &r["sign_in"];
        if s.is_object() {
            md.push_str(&format!(
                "\n{}: a whole sign-in (every request, redirects included) p50 {} ms, p95 {} ms; \
                 the password step alone (argon2id) p95 {} ms; the rest of the sign-in p50 {} ms, \
                 p95 {} ms (the authentication SLO: < 100 ms apart from the hash).\n",
                r["scenario"].as_str().unwrap_or(""),
                s["p50_ms"],
                s["p95_ms"],
                s["password_step_p95_ms"],
                s["after_password_p50_ms"],
                s["after_password_p95_ms"],
            ));
        }
    }
    if !failed.is_empty() {
        md.push_str("\nFailed requests, as the scenarios logged them:\n\n");
        md.push_str(&failed);
    }
    md.push_str(&format!(
        "\nPeak resident memory after the k6 scenarios: gateway {} MiB, sidecar {} MiB, together {} MiB (target ≤ 64). \
         Resident at that point, split: their own memory (RssAnon) gateway {} MiB, sidecar {} MiB, together {} MiB; \
         pages of their executables (RssFile, `portcullis-gateway` and `portcullis-sidecar`) together {} MiB, \
         clean pages shared with the page cache; the kernel maps 64 KiB of an executable around each page of \
         code a process touches.\n\n\
         ## Full speed, same token, same sidecar, same upstream\n\n\
         | way in | req/s | p50 ms | p99 ms | errors (all rounds) | req/s each round |\n|---|---:|---:|---:|---:|---|\n",
        report["memory_mib"]["gateway"],
        report["memory_mib"]["sidecar"],
        report["memory_mib"]["gateway_plus_sidecar"],
        report["memory_mib"]["now"]["gateway_anon"],
        report["memory_mib"]["now"]["sidecar_anon"],
        report["memory_mib"]["now"]["anon_together"],
        report["memory_mib"]["now"]["file_together"],
    ));
    for r in report["full_speed"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} | {} |\n",
            r["title"].as_str().unwrap_or(""),
            r["rps"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            crate::report::errors_cell(r),
            crate::report::rounds_cell(r),
        ));
    }
    md.push_str(&format!(
        "\n| ratio | value | target |\n|---|---:|---:|\n\
         | gateway (JWT + sidecar) / Envoy (jwt_authn + ext_authz) | {} | ≥ 6 |\n\
         | gateway (JWT + sidecar) / gateway public route | {} | |\n\
         | gateway public route / nginx | {} | |\n",
        report["ratios"]["gateway_over_envoy"],
        report["ratios"]["gateway_jwt_sidecar_over_public"],
        report["ratios"]["gateway_public_over_nginx"],
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::failures;

    #[test]
    fn failures_are_read_from_k6_console_lines() {
        let log = concat!(
            "time=\"2026-11-29T17:53:51Z\" level=info msg=\"setup\" source=console\n",
            "time=\"2026-11-29T17:53:51Z\" level=error msg=\"FAILED GET http://127.0.0.1:8000/api/orders -> 503 ",
            "[allowed with the verified identity] {\\\"error\\\":\\\"sidecar\\\"}\" source=console\n",
        );
        assert_eq!(
            failures(log),
            [
                "FAILED GET http://127.0.0.1:8000/api/orders -> 503 [allowed with the verified identity] \
                 {\\\"error\\\":\\\"sidecar\\\"}"
            ]
        );
        assert!(failures("time=\"x\" level=info msg=\"fine\"\n").is_empty());
    }
}
