//! `loadtest count`: the gateway's instructions per request, counted by
//! callgrind. Seconds on this noisy 2-core machine drift by a factor of two
//! within a minute; instruction counts repeat for the same binary and
//! input, so a change to the hot path shows here even when the rate does
//! not. Each proxy runs alone under callgrind, one worker thread, one
//! keep-alive connection: a warm-up, then the counters zeroed, then the
//! measured requests, then a dump. nginx, as one process, is the baseline.
//! The kernel's share (syscalls, loopback TCP) is not counted: these are
//! the proxy's own instructions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Auth, GatewayConfig, Route};
use tokens::testing::{SigningKey, TestIssuer, now};

use crate::procs::{self, Listening};
use crate::report::write_report;

pub struct Options {
    pub requests: usize,
    /// Keep each proxy's callgrind profile here (for `callgrind_annotate`).
    pub keep: Option<PathBuf>,
    pub out: PathBuf,
}

const WARMUP: usize = 200;

/// One proxy and one request shape.
struct Case {
    key: &'static str,
    title: &'static str,
    path: &'static str,
    bearer: bool,
    expect: u16,
}

pub fn run(options: Options) -> Result<(), String> {
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        if Command::new(tool).arg("--help").output().is_err() {
            return Err(format!(
                "{tool} is not installed (apt-get install valgrind)"
            ));
        }
    }
    let bins = procs::build_release(&[
        ("portcullis-gateway", "gateway"),
        ("portcullis-sidecar", "sidecar"),
    ])?;
    let (gateway_bin, sidecar_bin) = (&bins[0], &bins[1]);
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let keep = options.keep.clone().unwrap_or(work.path().join("profiles"));
    std::fs::create_dir_all(&keep).map_err(|e| format!("{}: {e}", keep.display()))?;

    let issuer_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let key = SigningKey::es256("count-1");
    let issuer = issuer_rt.block_on(TestIssuer::start(&[&key]));
    let mut claims = issuer.claims("billing");
    claims["client_id"] = json!("billing");
    claims["scope"] = json!("orders:read");
    claims["exp"] = json!(now() + 3600);
    let token = key.sign(&claims);

    let echo = procs::echo(gateway_bin)?;
    let echo_addr = echo.addr;
    let sidecar = procs::sidecar(sidecar_bin, &policies)?;
    let sidecar_grpc = sidecar.addr;
    // The gateway suite's routes; the decision cache on, so once warm the
    // sidecar is not asked and what is counted is the gateway's own work
    // (the deadline is for the warm-up's question, slow under callgrind).
    let config = format!(
        "[sidecar]\naddress = \"http://{sidecar_grpc}\"\ndeadline_ms = 10000\ncache_entries = 100000\n{}",
        GatewayConfig::new()
            .issuer(&issuer.url, &["api"])
            .upstream("echo", &[echo_addr])
            .route(Route::new("/public", "echo", Auth::Public))
            .route(Route::new("/jwt", "echo", Auth::Jwt))
            .route(Route::new("/api", "echo", Auth::Jwt).set("policy", true))
            .to_toml()
    );

    let cases = [
        Case {
            key: "a",
            title: "(a) public route",
            path: "/public/x",
            bearer: false,
            expect: 200,
        },
        Case {
            key: "b",
            title: "(b) JWT route",
            path: "/jwt/x",
            bearer: true,
            expect: 200,
        },
        Case {
            key: "c",
            title: "(c) JWT + sidecar, decision cached",
            path: "/api/orders",
            bearer: true,
            expect: 200,
        },
        Case {
            key: "refused",
            title: "answers by itself (401, no token)",
            path: "/jwt/x",
            bearer: false,
            expect: 401,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let profile = keep.join(format!("gateway-{}.out", case.key));
        let gateway = procs::gateway_under(
            &callgrind(&profile),
            gateway_bin,
            work.path(),
            case.key,
            1,
            &config,
        )?;
        let bearer = case.bearer.then_some(token.as_str());
        let counted = count(&gateway, &profile, case, bearer, options.requests)?;
        eprintln!(
            "{}: {:.1}k instructions a request",
            case.title,
            counted.total / 1e3
        );
        rows.push((case.key, case.title, counted));
    }
    let nginx_case = Case {
        key: "nginx",
        title: "nginx, plain reverse proxy",
        path: "/public/x",
        bearer: false,
        expect: 200,
    };
    let profile = keep.join("nginx.out");
    if let Some(nginx) = procs::nginx_under(&callgrind(&profile), work.path(), echo_addr)? {
        let counted = count(&nginx, &profile, &nginx_case, None, options.requests)?;
        rows.push((nginx_case.key, nginx_case.title, counted));
    }
    drop(issuer_rt);
    let (report, md) = report(&rows, options.requests);
    write_report(&options.out, "instructions", &report, &md)
}

/// The counts, and as rate ratios: `x` over `y` is `y`'s cost over `x`'s.
fn report(rows: &[(&str, &str, Counted)], requests: usize) -> (Value, String) {
    let get = |key: &str| rows.iter().find(|(k, ..)| *k == key).map(|(.., c)| *c);
    let ratio = |x: &str, y: &str, cost: fn(&Counted) -> f64| {
        get(x)
            .zip(get(y))
            .map(|(x, y)| (cost(&y) / cost(&x) * 1000.0).round() / 1000.0)
    };
    let pairs = [
        ("b_over_a", "b", "a"),
        ("c_over_a", "c", "a"),
        ("a_over_nginx", "a", "nginx"),
    ];
    let ratios = |cost: fn(&Counted) -> f64| {
        pairs
            .iter()
            .map(|(name, x, y)| ((*name).to_owned(), json!(ratio(x, y, cost))))
            .collect::<serde_json::Map<String, Value>>()
    };
    let json = json!({
        "requests": requests,
        "per_request": rows
            .iter()
            .map(|(key, _, c)| {
                ((*key).to_owned(), json!({"total": c.total.round(), "sha256": c.sha256.round(), "memcpy": c.memcpy.round()}))
            })
            .collect::<serde_json::Map<String, Value>>(),
        "rate_ratios": ratios(|c| c.total),
        "rate_ratios_of_the_rest": ratios(Counted::rest),
    });
    let mut md = format!(
        "# The gateway's instructions per request\n\n\
         Counted by callgrind (`loadtest count`): each proxy alone, one worker thread, one \
         keep-alive connection, {WARMUP} requests of warm-up, then {requests} counted. The \
         proxy's own instructions only: the kernel's work (syscalls, loopback TCP) is not in \
         them. These counts repeat from run to run, so they show a change that the noisy rates \
         of `loadtest gateway` cannot.\n\n\
         Two kinds of work are counted unlike the CPU runs them: valgrind has no SHA-NI, so \
         SHA-256 runs its AVX code (about 18 instructions a byte; this CPU has SHA-NI), and \
         glibc's memcpy copies from 2 KiB up with `rep movsb`, counted one instruction a byte. \
         Both are shown apart (memcpy whole, small copies too); the rest is the fairer \
         comparison.\n\n\
         | scenario | instructions a request | of them SHA-256 | of them memcpy | the rest |\n\
         |---|---:|---:|---:|---:|\n"
    );
    for (_, title, c) in rows {
        md.push_str(&format!(
            "| {title} | {:.1}k | {:.1}k | {:.1}k | {:.1}k |\n",
            c.total / 1e3,
            c.sha256 / 1e3,
            c.memcpy / 1e3,
            c.rest() / 1e3
        ));
    }
    md.push_str(
        "\nAs rate ratios (the inverse of the cost ratios, as `loadtest gateway` reports \
         them; the kernel's share, the same for each, brings real ones closer to 1):\n\n\
         | ratio | all instructions | the rest |\n|---|---:|---:|\n",
    );
    for (name, x, y) in pairs {
        if let (Some(all), Some(rest)) = (ratio(x, y, |c| c.total), ratio(x, y, Counted::rest)) {
            md.push_str(&format!("| {name} | {all:.3} | {rest:.3} |\n"));
        }
    }
    (json, md)
}

/// `valgrind --tool=callgrind`, writing `profile`.
fn callgrind(profile: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", profile.display()),
    ]
}

/// Instructions per request of `case` at `proxy`, from the dump callgrind
/// writes for the measured requests alone.
fn count(
    proxy: &Listening,
    profile: &Path,
    case: &Case,
    bearer: Option<&str>,
    requests: usize,
) -> Result<Counted, String> {
    let mut conn = Connection::open(proxy.addr, case.path, bearer)?;
    for _ in 0..WARMUP {
        conn.exchange(case.expect)?;
    }
    let pid = proxy.proc.pid().to_string();
    valgrind_tool("callgrind_control", &["-z", &pid])?;
    for _ in 0..requests {
        conn.exchange(case.expect)?;
    }
    valgrind_tool("callgrind_control", &["-d", &pid])?;
    let dump = PathBuf::from(format!("{}.1", profile.display()));
    let per = |n: u64| n as f64 / requests as f64;
    Ok(Counted {
        total: per(dumped_total(&dump)?),
        sha256: per(inclusive(&dump, "sha256_block_data_order")?),
        memcpy: per(inclusive(&dump, "memmove-vec-unaligned-erms")?),
    })
}

/// Instructions per request, and of them the two kinds callgrind counts
/// unlike the CPU runs them.
#[derive(Clone, Copy)]
struct Counted {
    total: f64,
    /// SHA-256's block function (AVX code under valgrind, SHA-NI here).
    sha256: f64,
    /// glibc's memcpy, whose `rep movsb` (copies from 2 KiB) counts one
    /// instruction a byte.
    memcpy: f64,
}

impl Counted {
    fn rest(&self) -> f64 {
        self.total - self.sha256 - self.memcpy
    }
}

/// The largest inclusive count of a function whose line in
/// `callgrind_annotate` contains `name` (0 when it never ran).
fn inclusive(dump: &Path, name: &str) -> Result<u64, String> {
    let dump = dump.display().to_string();
    let annotated = valgrind_tool(
        "callgrind_annotate",
        &["--inclusive=yes", "--threshold=100", &dump],
    )?;
    Ok(annotated
        .lines()
        .filter(|l| l.contains(name))
        .filter_map(|l| l.split_whitespace().next()?.replace(',', "").parse().ok())
        .max()
        .unwrap_or(0))
}

/// The instruction total of a dump (callgrind writes the first dump asked
/// for beside the profile, as `<profile>.1`).
fn dumped_total(dump: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no instruction total", dump.display()))
}

/// Runs one of valgrind's tools; its output, or why it failed.
fn valgrind_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One keep-alive connection sending the same request again and again.
struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let auth = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request = format!("GET {path} HTTP/1.1\r\nhost: api.example.com\r\n{auth}\r\n");
        Ok(Self {
            stream,
            request: request.into_bytes(),
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends the request and reads the whole answer, which must have
    /// status `expect` and a `content-length` or chunked body.
    fn exchange(&mut self, expect: u16) -> Result<(), String> {
        self.stream
            .write_all(&self.request)
            .map_err(|e| format!("send: {e}"))?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
        if status != expect {
            return Err(format!("expected {expect}, got {head:?}"));
        }
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        match length {
            Some(n) => {
                while self.buf.len() < head_end + n {
                    self.fill()?;
                }
            }
            None if head.contains("transfer-encoding: chunked") => {
                while !self.buf[head_end..].ends_with(b"0\r\n\r\n") {
                    self.fill()?;
                }
            }
            None => return Err(format!("an answer without a length: {head:?}")),
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the proxy closed the connection".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
