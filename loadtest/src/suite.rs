//! `loadtest gateway`: the gateway's scenarios beside a plain proxy and
//! nginx, interleaved rounds, one report.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Auth, GatewayConfig, Route};
use tokens::testing::{SigningKey, TestIssuer, now};

use crate::driver::{self, Outcome, Target};
use crate::procs;
use crate::report::{errors_cell, median_by_rate, rounds_cell, rounds_row, write_report};

struct Scenario {
    key: &'static str,
    title: &'static str,
    target: Target,
    /// Processes whose CPU time this scenario is charged with.
    pids: Vec<u32>,
    /// The proxy's own pid (gateway or nginx), for CPU per request.
    proxy: u32,
}

pub(crate) fn gateway_suite(
    connections: usize,
    seconds: u64,
    rounds: usize,
    out: &Path,
) -> Result<(), String> {
    let bins = procs::build_release(&[
        ("portcullis-gateway", "gateway"),
        ("portcullis-sidecar", "sidecar"),
    ])?;
    let (gateway_bin, sidecar_bin) = (&bins[0], &bins[1]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = root.join("policies");
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;

    // The token issuer runs on its own runtime for the whole run.
    let issuer_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let key = SigningKey::es256("load-1");
    let issuer = issuer_rt.block_on(TestIssuer::start(&[&key]));
    // One token per connection (a service client the demo policies allow to
    // list orders), so caches see many callers.
    let tokens: Vec<Vec<(String, String)>> = (0..connections)
        .map(|i| {
            let mut c = issuer.claims("billing");
            c["client_id"] = json!("billing");
            c["scope"] = json!("orders:read");
            c["jti"] = json!(format!("load-{i}"));
            c["exp"] = json!(now() + 3600);
            vec![("authorization".into(), format!("Bearer {}", key.sign(&c)))]
        })
        .collect();

    let echo = procs::echo(gateway_bin)?;
    let echo_addr = echo.addr;
    let sidecar = procs::sidecar(sidecar_bin, &policies)?;
    let sidecar_grpc = sidecar.addr;

    let routes = |policy: bool| {
        GatewayConfig::new()
            .issuer(&issuer.url, &["api"])
            .upstream("echo", &[echo_addr])
            .route(Route::new("/public", "echo", Auth::Public))
            .route(Route::new("/jwt", "echo", Auth::Jwt))
            .route(Route::new("/api", "echo", Auth::Jwt).set("policy", policy))
            .to_toml()
    };
    let sidecar_table = |cache: u64| {
        format!(
            "[sidecar]\naddress = \"http://{sidecar_grpc}\"\ndeadline_ms = 50\ncache_entries = {cache}\n"
        )
    };
    let gw_sidecar = procs::gateway(
        gateway_bin,
        work.path(),
        "sidecar",
        &format!("{}{}", sidecar_table(100_000), routes(true)),
    )?;
    let gw_nocache = procs::gateway(
        gateway_bin,
        work.path(),
        "sidecar-nocache",
        &format!("{}{}", sidecar_table(0), routes(true)),
    )?;
    // The same gateway with work stealing on (threads share upstream
    // connections): what the default, off, saves.
    let gw_stealing = procs::gateway(
        gateway_bin,
        work.path(),
        "sidecar-stealing",
        &format!(
            "work_stealing = true\n{}{}",
            sidecar_table(100_000),
            routes(true)
        ),
    )?;
    // The same gateway exporting its spans (the default sample ratio) to
    // an OTLP collector on this machine: what tracing costs.
    let collector = testkit::OtlpReceiver::counting();
    let gw_traced = procs::gateway(
        gateway_bin,
        work.path(),
        "sidecar-traced",
        &format!(
            "[tracing]\notlp_endpoint = \"{}\"\n{}{}",
            collector.endpoint,
            sidecar_table(100_000),
            routes(true)
        ),
    )?;
    let gw_embedded = procs::gateway(
        gateway_bin,
        work.path(),
        "embedded",
        &format!("policies = \"{}\"\n{}", policies.display(), routes(true)),
    )?;
    // The same public route forwarded by pingora-proxy rather than the
    // gateway's own HTTP/1.1 path: what the direct path saves.
    let gw_pingora = procs::gateway(
        gateway_bin,
        work.path(),
        "pingora-forwarding",
        &format!("forwarding = \"pingora\"\n{}", routes(false)),
    )?;
    let nginx = procs::nginx(work.path(), echo_addr)?;

    let target = |addr, path: &str, headers: &[Vec<(String, String)>]| Target {
        addr,
        path: path.into(),
        headers: headers.to_vec(),
        expect: 200,
    };
    let none = vec![Vec::new()];
    let mut scenarios = vec![
        Scenario {
            key: "a_public",
            title: "(a) gateway, public route",
            target: target(gw_sidecar.addr, "/public/orders", &none),
            pids: vec![gw_sidecar.proc.pid(), echo.proc.pid()],
            proxy: gw_sidecar.proc.pid(),
        },
        Scenario {
            key: "a_public_pingora",
            title: "(a) forwarded by pingora-proxy (`forwarding = \"pingora\"`)",
            target: target(gw_pingora.addr, "/public/orders", &none),
            pids: vec![gw_pingora.proc.pid(), echo.proc.pid()],
            proxy: gw_pingora.proc.pid(),
        },
        Scenario {
            key: "b_jwt",
            title: "(b) gateway, JWT route",
            target: target(gw_sidecar.addr, "/jwt/orders", &tokens),
            pids: vec![gw_sidecar.proc.pid(), echo.proc.pid()],
            proxy: gw_sidecar.proc.pid(),
        },
        Scenario {
            key: "c_sidecar",
            title: "(c) gateway, JWT + sidecar over gRPC (decision cache on)",
            target: target(gw_sidecar.addr, "/api/orders", &tokens),
            pids: vec![gw_sidecar.proc.pid(), sidecar.proc.pid(), echo.proc.pid()],
            proxy: gw_sidecar.proc.pid(),
        },
        Scenario {
            key: "c_sidecar_stealing",
            title: "(c) with work stealing on",
            target: target(gw_stealing.addr, "/api/orders", &tokens),
            pids: vec![gw_stealing.proc.pid(), sidecar.proc.pid(), echo.proc.pid()],
            proxy: gw_stealing.proc.pid(),
        },
        Scenario {
            key: "c_sidecar_traced",
            title: "(c) with tracing on (default sample ratio 0.01, OTLP/gRPC to a collector)",
            target: target(gw_traced.addr, "/api/orders", &tokens),
            pids: vec![
                gw_traced.proc.pid(),
                sidecar.proc.pid(),
                echo.proc.pid(),
                collector.pid(),
            ],
            proxy: gw_traced.proc.pid(),
        },
        Scenario {
            key: "c_sidecar_nocache",
            title: "(c′) gateway, JWT + sidecar over gRPC, every request asks",
            target: target(gw_nocache.addr, "/api/orders", &tokens),
            pids: vec![gw_nocache.proc.pid(), sidecar.proc.pid(), echo.proc.pid()],
            proxy: gw_nocache.proc.pid(),
        },
        Scenario {
            key: "d_embedded",
            title: "(d) gateway, JWT + embedded engine",
            target: target(gw_embedded.addr, "/api/orders", &tokens),
            pids: vec![gw_embedded.proc.pid(), echo.proc.pid()],
            proxy: gw_embedded.proc.pid(),
        },
    ];
    // Each proxy answering by itself, no upstream: the floor its HTTP
    // server half sets under every proxied row.
    scenarios.push(Scenario {
        key: "gateway_local",
        title: "gateway answers by itself (401, no token)",
        target: Target {
            expect: 401,
            ..target(gw_sidecar.addr, "/jwt/orders", &none)
        },
        pids: vec![gw_sidecar.proc.pid()],
        proxy: gw_sidecar.proc.pid(),
    });
    if let Some(n) = &nginx {
        scenarios.push(Scenario {
            key: "nginx",
            title: "nginx, plain reverse proxy",
            target: target(n.addr, "/public/orders", &none),
            pids: vec![n.proc.pid(), echo.proc.pid()],
            proxy: n.proc.pid(),
        });
        scenarios.push(Scenario {
            key: "nginx_local",
            title: "nginx answers by itself (`return 401`)",
            target: Target {
                expect: 401,
                ..target(n.addr, procs::NGINX_LOCAL, &none)
            },
            pids: vec![n.proc.pid()],
            proxy: n.proc.pid(),
        });
    }

    let driver_rt = driver::runtime()?;
    for s in &scenarios {
        driver::probe(&driver_rt, s.title, &s.target)?;
    }
    // rounds × scenarios, interleaved: a.1 b.1 ... a.2 b.2 ...
    let mut measured: Vec<Measured> = scenarios
        .iter()
        .map(|s| Measured {
            key: s.key,
            title: s.title,
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=rounds {
        for (s, m) in scenarios.iter().zip(&mut measured) {
            eprintln!("round {round}/{rounds}: {} for {seconds} s ...", s.title);
            // CPU from the end of the warm-up, when requests start to count.
            let (pids, proxy) = (s.pids.clone(), s.proxy);
            let (outcome, (cpu_before, proxy_before)) = driver_rt.block_on(driver::run_measured(
                &s.target,
                connections,
                Duration::from_secs(1),
                Duration::from_secs(seconds),
                move || {
                    let each: Vec<f64> = pids.iter().map(|p| procs::cpu_seconds(*p)).collect();
                    (each, procs::cpu_seconds(proxy))
                },
            ));
            let cpu: f64 = s
                .pids
                .iter()
                .zip(cpu_before)
                .map(|(p, before)| procs::cpu_seconds(*p) - before)
                .sum();
            let proxy_cpu = procs::cpu_seconds(s.proxy) - proxy_before;
            m.rounds.push(Round {
                outcome,
                cpu,
                proxy_cpu,
            });
        }
    }
    drop(issuer_rt);
    let mut report = report(&measured, connections, seconds, rounds);
    // Resident memory after the run: the (c) gateway and its sidecar, as
    // one pod's pair.
    let rss = procs::rss_mib(gw_sidecar.proc.pid()) + procs::rss_mib(sidecar.proc.pid());
    report["ratios"]["gateway_and_sidecar_rss_mib"] = json!((rss * 10.0).round() / 10.0);
    report["spans_exported"] = json!(collector.received());
    let md = markdown(&report, nginx.is_none());
    write_report(out, "gateway", &report, &md)
}

/// One scenario's rounds.
struct Measured {
    key: &'static str,
    title: &'static str,
    rounds: Vec<Round>,
}

/// One timed run: what the client saw, and the CPU seconds of the
/// scenario's processes and of the proxy alone.
struct Round {
    outcome: Outcome,
    cpu: f64,
    proxy_cpu: f64,
}

impl Measured {
    /// The round with the median rate, which the report's row shows.
    fn median(&self) -> Option<&Round> {
        median_by_rate(&self.rounds, |r| &r.outcome)
    }
}

fn report(measured: &[Measured], connections: usize, seconds: u64, rounds: usize) -> Value {
    let median = |key: &str| measured.iter().find(|m| m.key == key)?.median();
    let rps = |key: &str| median(key).map(|r| r.outcome.rps());
    let p99 = |key: &str| median(key).map(|r| r.outcome.percentile_ms(0.99));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 1000.0).round() / 1000.0),
        _ => None,
    };
    let rows: Vec<Value> = measured
        .iter()
        .filter_map(|m| Some((m, m.median()?)))
        .map(|(m, median)| {
            let o = &median.outcome;
            let per_request = |s: f64| {
                if o.requests > 0 {
                    s / o.requests as f64 * 1e6
                } else {
                    0.0
                }
            };
            let mut row = rounds_row(m.key, m.title, m.rounds.iter().map(|r| &r.outcome), o);
            row["cpu_us_per_request"] = json!((per_request(median.cpu) * 10.0).round() / 10.0);
            row["proxy_cpu_us_per_request"] =
                json!((per_request(median.proxy_cpu) * 10.0).round() / 10.0);
            row
        })
        .collect();
    let a = rps("a_public");
    // What forwarding adds to a proxy's own CPU per request: a proxied
    // row minus the same proxy answering by itself.
    let proxy_us = |key: &str| {
        let r = median(key)?;
        (r.outcome.requests > 0).then(|| r.proxy_cpu / r.outcome.requests as f64 * 1e6)
    };
    let forwarding_us = |proxied: &str, local: &str| {
        Some(((proxy_us(proxied)? - proxy_us(local)?) * 10.0).round() / 10.0)
    };
    let gateway_forwarding = forwarding_us("a_public", "gateway_local");
    let pingora_forwarding = forwarding_us("a_public_pingora", "gateway_local");
    let nginx_forwarding = forwarding_us("nginx", "nginx_local");
    json!({
        "suite": "gateway",
        "unix_time": now(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "client": "loadtest driver: one thread, HTTP/1.1 keep-alive, closed loop",
        "results": rows,
        "ratios": {
            "a_over_a_pingora": ratio(a, rps("a_public_pingora")),
            "b_over_a": ratio(rps("b_jwt"), a),
            "c_over_a": ratio(rps("c_sidecar"), a),
            "c_nocache_over_a": ratio(rps("c_sidecar_nocache"), a),
            "c_over_c_stealing": ratio(rps("c_sidecar"), rps("c_sidecar_stealing")),
            "c_traced_over_c": ratio(rps("c_sidecar_traced"), rps("c_sidecar")),
            "d_over_a": ratio(rps("d_embedded"), a),
            "a_over_nginx": ratio(a, rps("nginx")),
            "a_pingora_over_nginx": ratio(rps("a_public_pingora"), rps("nginx")),
            "local_over_nginx_local": ratio(rps("gateway_local"), rps("nginx_local")),
            "gateway_forwarding_cpu_us": gateway_forwarding,
            "pingora_forwarding_cpu_us": pingora_forwarding,
            "nginx_forwarding_cpu_us": nginx_forwarding,
            "c_p99_added_ms": match (p99("c_sidecar"), p99("a_public")) {
                (Some(c), Some(a)) => Some(((c - a) * 1000.0).round() / 1000.0),
                _ => None,
            },
            "c_nocache_p99_added_ms": match (p99("c_sidecar_nocache"), p99("a_public")) {
                (Some(c), Some(a)) => Some(((c - a) * 1000.0).round() / 1000.0),
                _ => None,
            },
        },
    })
}

fn markdown(report: &Value, nginx_missing: bool) -> String {
    let mut md = format!(
        "# Gateway load test\n\n{} cores, {} connections, {} s per scenario after 1 s warm-up, \
         {} interleaved rounds; each row is the scenario's median round (every round's req/s in \
         the last column; errors of all rounds); {}.\n\n\
         | scenario | req/s | p50 ms | p90 ms | p99 ms | errors (all rounds) | CPU µs/req (all) | CPU µs/req (proxy) | req/s each round |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        report["cores"],
        report["connections"],
        report["seconds"],
        report["rounds"],
        report["client"].as_str().unwrap_or("")
    );
    for r in report["results"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            r["title"].as_str().unwrap_or(""),
            r["rps"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p90_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            errors_cell(r),
            r["cpu_us_per_request"],
            r["proxy_cpu_us_per_request"],
            rounds_cell(r),
        ));
    }
    md.push_str("\n| ratio | value | target |\n|---|---:|---:|\n");
    for (key, target) in [
        ("a_over_a_pingora", ""),
        ("b_over_a", "≥ 0.93"),
        ("c_over_a", "≥ 0.85"),
        ("c_nocache_over_a", ""),
        ("c_over_c_stealing", ""),
        ("c_traced_over_c", "≥ 0.95"),
        ("d_over_a", "≥ 0.85"),
        ("a_over_nginx", "≥ 0.80"),
        ("a_pingora_over_nginx", ""),
        ("local_over_nginx_local", ""),
        ("gateway_forwarding_cpu_us", ""),
        ("pingora_forwarding_cpu_us", ""),
        ("nginx_forwarding_cpu_us", ""),
        ("c_p99_added_ms", "≤ 1 ms"),
        ("c_nocache_p99_added_ms", ""),
        ("gateway_and_sidecar_rss_mib", "≤ 64"),
    ] {
        md.push_str(&format!(
            "| {key} | {} | {target} |\n",
            report["ratios"][key]
        ));
    }
    md.push_str(
        "\n`*_forwarding_cpu_us`: the proxy's CPU per request on the proxied row minus its CPU \
         per request answering by itself, i.e. what sending the request upstream and relaying \
         the answer costs it.\n",
    );
    md.push_str(&format!(
        "\nTracing row: the collector (`testkit::OtlpReceiver`, counting) received {} spans \
         from the traced gateway by the end of the run; its CPU is in the row's CPU (all).\n",
        report["spans_exported"]
    ));
    if nginx_missing {
        md.push_str("\nnginx was not found (install it, e.g. `apt-get install nginx-light`), so its row is missing.\n");
    }
    md
}
