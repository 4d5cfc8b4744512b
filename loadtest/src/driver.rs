//! A closed-loop HTTP/1.1 load driver: `connections` keep-alive connections,
//! each sending its next request as soon as the previous answer is read,
//! for a fixed time after a warm-up. It runs on one thread so its own cost
//! is bounded and the same for every target.

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
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    /// Transport errors and any status other than 200.
    pub errors: u64,
    pub seconds: f64,
    latencies_us: Vec<u32>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
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

/// Drive `target` and collect the outcome. Runs on the caller's runtime
/// (meant to be a current-thread one).
pub async fn run(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + duration;
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
        if let Ok((requests, errors, latencies)) = task.await {
            out.requests += requests;
            out.errors += errors;
            out.latencies_us.extend(latencies);
        } else {
            out.errors += 1;
        }
    }
    out.latencies_us.sort_unstable();
    out
}

async fn connection(
    target: &Target,
    index: usize,
    measure_from: Instant,
    stop: Instant,
) -> (u64, u64, Vec<u32>) {
    let (mut requests, mut errors) = (0u64, 0u64);
    let mut latencies = Vec::with_capacity(100_000);
    let headers = &target.headers[index % target.headers.len().max(1)];
    'reconnect: while Instant::now() < stop {
        let Ok(stream) = tokio::net::TcpStream::connect(target.addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            errors += 1;
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
                errors += 1;
                break 'reconnect;
            };
            let ok = match sender.send_request(request).await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.into_body().collect().await.is_ok() && status == 200
                }
                Err(_) => false,
            };
            if began >= measure_from {
                requests += 1;
                errors += u64::from(!ok);
                latencies.push(began.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            if !ok {
                continue 'reconnect;
            }
        }
    }
    (requests, errors, latencies)
}
