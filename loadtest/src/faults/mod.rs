//! `loadtest faults`: the stack in production shape (PostgreSQL, Redis,
//! authserver, sidecar, gateway following the change feed) under a steady
//! k6 load (`loadtest/k6/faults.js`) while the runner breaks one thing at
//! a time, each in a window of its own: every service SIGKILLed and
//! started again, PostgreSQL and Redis restarted, the issuer's JWKS cut off
//! from the gateway, the upstream slowed past the gateway's read timeout.
//! Meanwhile SCIM users and sidecar entities are written; afterwards every
//! acknowledged write is looked for. The report gives each fault's error
//! window and recovery time, and whether the gateway ever failed open.

mod relay;
mod stack;
mod timeline;
mod writes;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use relay::Link;
use stack::{Service, Stack};
use timeline::{Scenario, Window};

/// Load before the first fault (the baseline window).
const WARMUP: Duration = Duration::from_secs(10);
/// How long PostgreSQL and Redis stay down, the upstream slow, and the
/// JWKS cut off (two of the gateway's 10 s refreshes fail in it).
const DOWN: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(10);
const JWKS_CUT: Duration = Duration::from_secs(20);
/// Each answer of the slowed upstream is held this long (past the
/// gateway's read timeout).
const SLOW: Duration = Duration::from_secs(2);

pub struct Options {
    /// Requests per second of the `allowed` scenario.
    pub rate: u32,
    /// Seconds per fault window.
    pub window: u64,
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(Service),
    Postgres,
    Redis,
    JwksCut,
    SlowUpstream,
}

const FAULTS: [Fault; 7] = [
    Fault::Kill(Service::Gateway),
    Fault::Kill(Service::Sidecar),
    Fault::Kill(Service::Authserver),
    Fault::Postgres,
    Fault::Redis,
    Fault::JwksCut,
    Fault::SlowUpstream,
];

impl Fault {
    fn title(self) -> String {
        match self {
            Self::Kill(s) => format!("{} SIGKILLed", s.name()),
            Self::Postgres => "PostgreSQL restarted".into(),
            Self::Redis => "Redis restarted".into(),
            Self::JwksCut => "issuer's JWKS unreachable".into(),
            Self::SlowUpstream => "slow upstream".into(),
        }
    }

    fn action(self) -> String {
        match self {
            Self::Kill(_) => "SIGKILL, then started again at once (as an orchestrator does)".into(),
            Self::Postgres => format!(
                "`pg_ctlcluster stop --mode fast`, {} s down, `start`",
                DOWN.as_secs()
            ),
            Self::Redis => format!(
                "SIGTERM (nothing kept on disk), {} s down, started on the same port",
                DOWN.as_secs()
            ),
            Self::JwksCut => format!(
                "the gateway's link to the JWKS cut for {} s (connections held, nothing passes); keys refetched every 10 s",
                JWKS_CUT.as_secs()
            ),
            Self::SlowUpstream => format!(
                "every upstream answer held {} s for {} s (the gateway's read timeout: {} ms)",
                SLOW.as_secs(),
                OUTAGE.as_secs(),
                stack::UPSTREAM_READ_TIMEOUT_MS
            ),
        }
    }
}

/// When a fault began, when it was over (the service restarted, the link
/// restored), and when the service answered its readiness check again.
#[derive(Debug, Clone, Copy)]
struct Event {
    fault: Fault,
    injected: f64,
    restored: f64,
    ready: f64,
}

/// Unix seconds, as k6's CSV gives them.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn run(opts: Options) -> Result<(), String> {
    let k6 = crate::stack::which("k6").ok_or("k6 is not installed (scripts/install-deps.sh)")?;
    for tool in ["redis-server", "pg_ctlcluster"] {
        crate::stack::which(tool).ok_or_else(|| {
            format!("{tool} is not installed: the faults run restarts this machine's PostgreSQL and runs a Redis of its own")
        })?;
    }
    let window = Duration::from_secs(opts.window.max(20));
    let bin = crate::procs::build_portcullis()?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut stack = Stack::start(&bin, work.path(), &rt)?;
    let credentials = work.path().join("credentials.json");
    std::fs::write(&credentials, stack.credentials().to_string()).map_err(|e| e.to_string())?;
    let targets = writes::Targets {
        issuer: stack.issuer(),
        scim_token: stack.scim_token.clone(),
        sidecar: stack.sidecar_url(),
        sidecar_token: stack.admin_token().to_owned(),
    };

    let planned = WARMUP + window * FAULTS.len() as u32 + Duration::from_secs(5);
    let csv = work.path().join("k6.csv");
    let log = work.path().join("k6.log");
    eprintln!(
        "k6 for {} s, faults every {} s ...",
        planned.as_secs(),
        window.as_secs()
    );
    let mut load = Command::new(&k6)
        .args([
            "run",
            "--quiet",
            "--no-color",
            "--system-tags",
            "status,scenario,name",
        ])
        .arg("--out")
        .arg(format!("csv={}", csv.display()))
        .arg("-e")
        .arg(format!("PORTCULLIS_CREDENTIALS={}", credentials.display()))
        .arg("-e")
        .arg(format!("DURATION={}s", planned.as_secs()))
        .arg("-e")
        .arg(format!("RATE={}", opts.rate))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("k6/faults.js"))
        .env("K6_CSV_TIME_FORMAT", "unix_milli")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("k6: {e}"))?;
    let writer = writes::Writer::start(&rt, targets.clone());
    let started = Instant::now();
    std::thread::sleep(WARMUP);
    if let Ok(Some(status)) = load.try_wait() {
        return Err(format!(
            "k6 stopped before the first fault ({status}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    let mut events = Vec::new();
    for (i, fault) in FAULTS.into_iter().enumerate() {
        eprintln!("fault {}/{}: {} ...", i + 1, FAULTS.len(), fault.title());
        match inject(&mut stack, &rt, fault) {
            Ok(event) => events.push(event),
            Err(e) => {
                let _ = load.kill();
                return Err(format!("{}: {e}", fault.title()));
            }
        }
        let next = WARMUP + window * (i as u32 + 1);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    let k6_status = load.wait().map_err(|e| format!("k6: {e}"))?;
    let written = writer.finish(&rt)?;
    eprintln!("looking for every acknowledged write ...");
    let audited: std::collections::HashSet<String> = stack
        .database
        .query(
            &stack.database.name,
            "SELECT target FROM audit_events WHERE action = 'scim.user.create'",
        )?
        .lines()
        .map(str::to_owned)
        .collect();
    let verified = rt.block_on(writes::verify(&targets, &written, &audited))?;
    drop(stack);

    let samples = timeline::read_csv(&csv)?;
    if samples.is_empty() {
        return Err(format!(
            "k6 ({k6_status}) recorded no request: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    let end = samples.last().map_or(0.0, |s| s.at) + 1.0;
    let first = events.first().map_or(end, |e| e.injected);
    let baseline = Window {
        from: samples[0].at,
        to: first,
        restored: first,
    };
    let mut rows = vec![row(
        "no fault (baseline)",
        "",
        &samples,
        baseline,
        &written,
        None,
    )];
    for (i, e) in events.iter().enumerate() {
        let to = events.get(i + 1).map_or(end, |n| n.injected);
        let w = Window {
            from: e.injected,
            to,
            restored: e.restored,
        };
        rows.push(row(
            &e.fault.title(),
            &e.fault.action(),
            &samples,
            w,
            &written,
            Some(e),
        ));
    }
    let report = json!({
        "suite": "faults",
        "unix_time": unix_now() as u64,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "rate": opts.rate,
        "window_seconds": window.as_secs(),
        "faults": rows,
        "writes": verified,
        "fail_open": rows.iter().map(|r| r["refused"]["opened_2xx"].as_u64().unwrap_or(0)).sum::<u64>(),
    });
    crate::report::write_report(&opts.out, "faults", &report, &markdown(&report))
}

fn inject(stack: &mut Stack, rt: &tokio::runtime::Runtime, fault: Fault) -> Result<Event, String> {
    let injected = unix_now();
    let (restored, ready) = match fault {
        Fault::Kill(service) => {
            stack.kill(service);
            let restored = unix_now();
            stack.restart(rt, service)?;
            (restored, unix_now())
        }
        Fault::Postgres => {
            postgres("stop")?;
            std::thread::sleep(DOWN);
            let restored = unix_now();
            postgres("start")?;
            (restored, unix_now())
        }
        Fault::Redis => {
            stack.stop_redis();
            std::thread::sleep(DOWN);
            let restored = unix_now();
            stack.start_redis()?;
            (restored, unix_now())
        }
        Fault::JwksCut | Fault::SlowUpstream => {
            let (relay, link, outage) = match fault {
                Fault::JwksCut => (&stack.jwks, Link::Cut, JWKS_CUT),
                _ => (&stack.upstream, Link::Slow(SLOW), OUTAGE),
            };
            relay.set(link);
            std::thread::sleep(outage);
            relay.set(Link::Open);
            let restored = unix_now();
            (restored, restored)
        }
    };
    Ok(Event {
        fault,
        injected,
        restored,
        ready,
    })
}

/// `pg_ctlcluster` on every cluster of this machine (how
/// `scripts/services.sh` starts them); returns once it is done.
fn postgres(action: &str) -> Result<(), String> {
    let versions =
        std::fs::read_dir("/etc/postgresql").map_err(|e| format!("/etc/postgresql: {e}"))?;
    for version in versions {
        let version = version.map_err(|e| e.to_string())?.file_name();
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.arg("--skip-systemctl-redirect");
        if action == "stop" {
            cmd.args(["--mode", "fast"]);
        }
        let status = cmd
            .arg(&version)
            .args(["main", action])
            .status()
            .map_err(|e| format!("pg_ctlcluster: {e}"))?;
        if !status.success() {
            return Err(format!("pg_ctlcluster {version:?} main {action}: {status}"));
        }
    }
    Ok(())
}

/// One fault's line of the report.
fn row(
    title: &str,
    action: &str,
    samples: &[timeline::Sample],
    w: Window,
    written: &[writes::Write],
    event: Option<&Event>,
) -> Value {
    let writes_in = |kind| {
        let these: Vec<&writes::Write> = written
            .iter()
            .filter(|x| x.kind == kind && x.at >= w.from && x.at < w.to)
            .collect();
        let acked = these
            .iter()
            .filter(|x| x.outcome == writes::Outcome::Acknowledged)
            .count();
        json!({"sent": these.len(), "acknowledged": acked})
    };
    json!({
        "fault": title,
        "action": action,
        "restart_to_ready_ms": event.map(|e| ((e.ready - e.restored) * 1000.0).round() as i64),
        "allowed": timeline::summarize(samples, Scenario::Allowed, w),
        "refused": timeline::summarize(samples, Scenario::Refused, w),
        "tokens": timeline::summarize(samples, Scenario::Tokens, w),
        "scim_writes": writes_in(writes::Kind::ScimUser),
        "entity_writes": writes_in(writes::Kind::Entity),
    })
}

fn markdown(r: &Value) -> String {
    let cell = |s: &Value| match s["failed"].as_u64() {
        Some(0) => format!("0 of {}", s["sent"]),
        _ => format!(
            "{} of {} ({}); {} ms, recovered {} ms after",
            s["failed"],
            s["sent"],
            statuses(&s["failed_by_status"]),
            s["error_window_ms"],
            s["recovery_ms"],
        ),
    };
    let mut md = format!(
        "# Faults under load\n\n\
         The stack in production shape on {cores} cores (PostgreSQL, Redis, authserver, sidecar and \
         gateway following the change feed, the echo upstream), k6 (`loadtest/k6/faults.js`) \
         at {rate} req/s of bearer API calls through the gateway (`allowed`, 200 expected; the \
         gateway's decision cache off, so each needs the sidecar), 30 req/s the gateway must \
         refuse (`refused`: no token, a key never published, a path every policy forbids) and \
         10 client_credentials tokens/s (`tokens`). Meanwhile 5 SCIM users/s and 5 sidecar \
         entities/s are written. One fault per {window} s window; a cell gives the failed \
         requests by status (`no answer`: connection refused or reset; `not sent`: every VU \
         busy), the time from the first failure to the last, and how long after the fault \
         ended the last one came.\n\n\
         | fault | what was done | `allowed` failed | `refused` answered 2xx | `tokens` failed | writes acknowledged (SCIM, entities) | restart → ready |\n\
         |---|---|---|---:|---|---|---:|\n",
        cores = r["cores"],
        rate = r["rate"],
        window = r["window_seconds"],
    );
    for f in r["faults"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}/{}, {}/{} | {} |\n",
            f["fault"].as_str().unwrap_or(""),
            f["action"].as_str().unwrap_or(""),
            cell(&f["allowed"]),
            f["refused"]["opened_2xx"],
            cell(&f["tokens"]),
            f["scim_writes"]["acknowledged"],
            f["scim_writes"]["sent"],
            f["entity_writes"]["acknowledged"],
            f["entity_writes"]["sent"],
            f["restart_to_ready_ms"]
                .as_i64()
                .map_or(String::new(), |ms| format!("{ms} ms")),
        ));
    }
    let w = &r["writes"];
    let n = |v: &Value| v.as_array().map_or(0, Vec::len);
    md.push_str(&format!(
        "\nThe gateway answered 2xx to a request it must refuse {fail_open} times in the whole run.\n\n\
         ## Acknowledged writes, looked for after the faults\n\n\
         | | sent | acknowledged | unanswered (may or may not have happened) | acknowledged but missing |\n|---|---:|---:|---:|---|\n\
         | SCIM users (PostgreSQL) | {us} | {ua} | {uu} | {um} |\n\
         | their audit events | | {ua} | | {am} |\n\
         | those users in the sidecar's directory (change feed) | | {ua} | | {dm} |\n\
         | sidecar entities (entity file) | {es} | {ea} | {eu} | {em} |\n",
        fail_open = r["fail_open"],
        us = w["scim_users"]["sent"],
        ua = w["scim_users"]["acknowledged"],
        uu = w["scim_users"]["unanswered"],
        um = n(&w["scim_users"]["missing"]),
        am = n(&w["scim_users"]["audit_event_missing"]),
        dm = n(&w["scim_users"]["not_in_sidecar_directory"]),
        es = w["entities"]["sent"],
        ea = w["entities"]["acknowledged"],
        eu = w["entities"]["unanswered"],
        em = n(&w["entities"]["missing"]),
    ));
    md
}

fn statuses(by_status: &Value) -> String {
    by_status
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, n)| format!("{n}× {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}
