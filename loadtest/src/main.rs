//! The load runner, against 127.0.0.1 only. `loadtest gateway`: the
//! gateway's benchmark, all in one run on this machine: it builds and starts
//! the release binaries (echo upstream, sidecar, gateways) and nginx as the
//! outside reference, drives each scenario with the same closed-loop client,
//! and writes a Markdown and a JSON report with the ratios to the baselines.
//! `loadtest stack`: the k6 scenarios against `portcullis up`, with Envoy
//! and nginx as baselines (`stack.rs`). `loadtest scim`: SCIM on
//! PostgreSQL at scale and the change feed's latency (`scim.rs`).
//! `loadtest device`: device-flow polling by many waiting devices
//! (`device.rs`). `loadtest federation`: a federated sign-in's own cost
//! (`federation.rs`). `loadtest faults`: each service killed, PostgreSQL
//! and Redis restarted, the JWKS cut off, the upstream slowed, under k6
//! load: error windows, recovery times, acknowledged writes kept
//! (`faults/`). `loadtest count`: the gateway's instructions per request
//! under callgrind, beside nginx's (`count.rs`).

mod count;
mod device;
mod driver;
mod faults;
mod federation;
mod procs;
mod report;
mod scim;
mod stack;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::driver::Target;

#[derive(Debug, Parser)]
#[command(name = "loadtest", about = "Portcullis load runner")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, clap::Subcommand)]
enum Suite {
    /// Gateway scenarios against a plain proxy baseline and nginx.
    Gateway {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Every scenario runs this many times, interleaved; the report
        /// keeps each one's median round (this machine's speed drifts
        /// within a minute, so one round each compares different moments).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where `gateway.md` and `gateway.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// The k6 scenarios against `portcullis up`, then the bearer workload
    /// at full speed through the gateway, Envoy and nginx.
    Stack {
        /// Per k6 scenario and per full-speed run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Connections of the full-speed runs.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Full-speed rounds, interleaved; each way in keeps its median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where `stack.md` and `stack.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// SCIM on PostgreSQL at scale (lookups, filtered pages, bulk), then
    /// the change feed: SCIM change to decision at every follower.
    Scim {
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 5_000)]
        groups: usize,
        /// Sidecars following the feed.
        #[arg(long, default_value_t = 20)]
        followers: usize,
        /// Group changes, each an add and a remove.
        #[arg(long, default_value_t = 25)]
        rounds: usize,
        /// Requests per query kind.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Leave the database behind for inspection.
        #[arg(long)]
        keep_database: bool,
        /// Where `scim.md` and `scim.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// Device-flow sign-ins waiting: each device polls `/token` at its
    /// interval; `/healthz` at the same rate is the baseline.
    Device {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// How long the polling (and then the baseline) runs.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Where `device.md` and `device.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// Federated sign-ins through an OpenID provider stand-in: the
    /// authserver's own cost, a password sign-in as the baseline.
    Federation {
        /// Sign-ins of each kind (first, returning, password).
        #[arg(long, default_value_t = 200)]
        signins: usize,
        /// Where `federation.md` and `federation.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// Faults under k6 load, one per window: every service SIGKILLed and
    /// restarted, PostgreSQL and Redis restarted, the issuer's JWKS cut
    /// off, the upstream slowed; then every acknowledged write looked for.
    Faults {
        /// Bearer API requests per second through the gateway.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Seconds per fault (at least 20).
        #[arg(long, default_value_t = 30)]
        window: u64,
        /// Where `faults.md` and `faults.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// The gateway's instructions per request by scenario, and nginx's,
    /// counted by callgrind (repeatable where rates are noisy).
    Count {
        /// Measured requests per scenario, after a warm-up.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Keep the callgrind profiles here (for `callgrind_annotate`).
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Where `instructions.md` and `instructions.json` go.
        #[arg(long, default_value = "loadtest/reports")]
        out: PathBuf,
    },
    /// Drive one URL with the closed-loop client and print the outcome:
    /// for profiling a running service (e.g. under `perf record`).
    Drive {
        /// A loopback address, e.g. 127.0.0.1:8000.
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "/")]
        path: String,
        /// `name: value`, repeatable.
        #[arg(long = "header")]
        headers: Vec<String>,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The status every answer should have, e.g. 401 to measure a
        /// proxy answering by itself.
        #[arg(long, default_value_t = 200)]
        expect_status: u16,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().suite {
        Suite::Gateway {
            connections,
            seconds,
            rounds,
            out,
        } => suite::gateway_suite(connections, seconds, rounds.max(1), &out),
        Suite::Stack {
            seconds,
            connections,
            rounds,
            out,
        } => stack::run(seconds, connections, rounds.max(1), &out),
        Suite::Scim {
            users,
            groups,
            followers,
            rounds,
            samples,
            keep_database,
            out,
        } => scim::run(scim::Options {
            users,
            groups,
            followers: followers.max(1),
            rounds,
            samples: samples.max(1),
            keep_database,
            out,
        }),
        Suite::Device {
            devices,
            seconds,
            out,
        } => device::run(device::Options {
            devices: devices.max(1),
            seconds: seconds.max(1),
            out,
        }),
        Suite::Federation { signins, out } => federation::run(federation::Options {
            signins: signins.max(1),
            out,
        }),
        Suite::Faults { rate, window, out } => faults::run(faults::Options {
            rate: rate.max(1),
            window,
            out,
        }),
        Suite::Count {
            requests,
            keep,
            out,
        } => count::run(count::Options {
            requests: requests.max(1),
            keep,
            out,
        }),
        Suite::Drive {
            addr,
            path,
            headers,
            connections,
            seconds,
            expect_status,
        } => drive(addr, path, &headers, connections, seconds, expect_status),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drive(
    addr: std::net::SocketAddr,
    path: String,
    headers: &[String],
    connections: usize,
    seconds: u64,
    expect: u16,
) -> Result<(), String> {
    if !addr.ip().is_loopback() {
        return Err(format!("{addr}: load goes to 127.0.0.0/8 only"));
    }
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("--header `{h}`: expected `name: value`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let target = Target {
        addr,
        path,
        headers: vec![headers],
        expect,
    };
    let rt = driver::runtime()?;
    driver::probe(&rt, "drive", &target)?;
    let outcome = rt.block_on(driver::run(
        &target,
        connections,
        Duration::from_secs(1),
        Duration::from_secs(seconds),
    ));
    println!(
        "{}",
        serde_json::to_string_pretty(&report::outcome_row("drive", "drive", &outcome))
            .map_err(|e| e.to_string())?
    );
    Ok(())
}
