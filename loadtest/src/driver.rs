//! A closed-loop HTTP/1.1 load driver: `connections` keep-alive connections,
//! each sending its next request as soon as the previous answer is read,
//! for a fixed time after a warm-up. It runs on one thread so its own cost
//! is bounded and the same for every target.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What each request looks like; connection `i` uses `headers[i % len]`.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<Vec<(String, String)>>,
    /// The status every answer should have (anything else is a failure).
    pub expect: u16,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests sent in the measured window, answered or not.
    pub requests: u64,
    /// Of those, the ones answered with the expected status.
    pub succeeded: u64,
    /// Transport errors and any status other than 200.
    pub errors: u64,
    /// The errors by kind (`status 503`, `connect`, ...), so a report can
    /// say what failed, not only how often.
    pub failures: BTreeMap<String, u64>,
    pub seconds: f64,
    latencies_us: Vec<u32>,
}

impl Outcome {
    /// Successful answers per second: a proxy that fails fast must not
    /// look fast.
    pub fn rps(&self) -> f64 {
        self.succeeded as f64 / self.seconds
    }

    /// Latency percentile in milliseconds (`p` in 0..=1).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 * p) as usize).min(self.latencies_us.len() - 1);
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// The single thread the driver runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the driver's runtime: {e}"))
}

/// Drive `target` and collect the outcome. Runs on the caller's runtime
/// (meant to be a current-thread one).
pub async fn run(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    run_measured(target, connections, warmup, duration, || ())
        .await
        .0
}

/// As `run`, and `at_start` is called when the measured time begins (after
/// the warm-up): a snapshot of, say, CPU counters that the caller compares
/// with their values when this returns.
pub async fn run_measured<T: Send + 'static>(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    at_start: impl FnOnce() -> T + Send + 'static,
) -> (Outcome, T) {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + duration;
    let snapshot = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        at_start()
    });
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            connection(&target, c, measure_from, stop).await
        }));
    }
    let mut out = Outcome {
        seconds: duration.as_secs_f64(),
        ..Outcome::default()
    };
    for task in tasks {
        match task.await {
            Ok(tally) => {
                out.requests += tally.requests;
                out.succeeded += tally.succeeded;
                out.latencies_us.extend(tally.latencies_us);
                for (kind, n) in tally.failures {
                    out.errors += n;
                    *out.failures.entry(kind).or_default() += n;
                }
            }
            Err(_) => {
                out.errors += 1;
                *out.failures.entry("driver task".into()).or_default() += 1;
            }
        }
    }
    out.latencies_us.sort_unstable();
    match snapshot.await {
        Ok(taken) => (out, taken),
        // `at_start` panicked: nothing to compare with.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// One connection's share of the outcome.
struct Tally {
    requests: u64,
    succeeded: u64,
    latencies_us: Vec<u32>,
    failures: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_default() += 1;
    }
}

/// A failed request's kind, from its status or the transport error.
fn failure(answer: &Result<hyper::StatusCode, hyper::Error>, expect: u16) -> Option<String> {
    match answer {
        Ok(status) if status.as_u16() == expect => None,
        Ok(status) => Some(format!("status {}", status.as_u16())),
        Err(e) if e.is_incomplete_message() => Some("connection closed mid-response".into()),
        Err(e) if e.is_closed() || e.is_canceled() => Some("connection closed".into()),
        Err(_) => Some("transport error".into()),
    }
}

async fn connection(target: &Target, index: usize, measure_from: Instant, stop: Instant) -> Tally {
    let mut tally = Tally {
        requests: 0,
        succeeded: 0,
        latencies_us: Vec::with_capacity(100_000),
        failures: BTreeMap::new(),
    };
    let headers = &target.headers[index % target.headers.len().max(1)];
    'reconnect: while Instant::now() < stop {
        let Ok(stream) = tokio::net::TcpStream::connect(target.addr).await else {
            tally.fail("connect");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.fail("handshake");
            continue;
        };
        tokio::spawn(conn);
        loop {
            let began = Instant::now();
            if began >= stop {
                break 'reconnect;
            }
            let mut request = Request::get(target.path.as_str()).header("host", "loadtest");
            for (k, v) in headers {
                request = request.header(k.as_str(), v.as_str());
            }
            let Ok(request) = request.body(Empty::<Bytes>::new()) else {
                tally.fail("request");
                break 'reconnect;
            };
            let answer = match sender.send_request(request).await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.into_body().collect().await.map(|_| status)
                }
                Err(e) => Err(e),
            };
            let failed = failure(&answer, target.expect);
            let broken = failed.is_some();
            if began >= measure_from {
                tally.requests += 1;
                tally
                    .latencies_us
                    .push(began.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                match failed {
                    Some(kind) => tally.fail(kind),
                    None => tally.succeeded += 1,
                }
            }
            if broken {
                continue 'reconnect;
            }
        }
    }
    tally
}

/// One request must succeed before a scenario is measured.
pub fn probe(rt: &tokio::runtime::Runtime, title: &str, target: &Target) -> Result<(), String> {
    let probe = rt.block_on(run(target, 1, Duration::ZERO, Duration::from_millis(200)));
    if probe.requests == 0 || probe.errors > 0 {
        return Err(format!(
            "{title}: the probe failed ({} of {} requests)",
            probe.errors, probe.requests
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive server that answers every other request with 503.
    async fn flaky_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut answered = 0u64;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            answered += 1;
                            let status = if answered.is_multiple_of(2) {
                                "503 Unavailable"
                            } else {
                                "200 OK"
                            };
                            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                            if socket.write_all(head.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn failed_answers_are_counted_but_not_as_throughput() {
        let target = Target {
            addr: flaky_server().await,
            path: "/".into(),
            headers: vec![vec![]],
            expect: 200,
        };
        let out = run(
            &target,
            2,
            Duration::from_millis(50),
            Duration::from_millis(300),
        )
        .await;
        let refused = out.failures.get("status 503").copied().unwrap_or(0);
        assert!(out.succeeded > 0 && refused > 0, "{out:?}");
        assert_eq!(out.succeeded + refused, out.requests, "{out:?}");
        assert_eq!(out.errors, refused, "{out:?}");
        assert_eq!(out.rps(), out.succeeded as f64 / out.seconds);
    }
}
