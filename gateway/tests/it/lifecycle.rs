//! Process lifecycle: SIGTERM lets requests in flight finish and writes
//! out their access log lines; a graceful
//! upgrade (`serve --upgrade`, then SIGQUIT to the old process) hands the
//! listening sockets over without refusing a connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{echo_upstream, start};

/// An upstream that answers `slow` after `delay`; counts requests received.
async fn slow_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                    )
                    .await;
            });
        }
    });
    (addr, received)
}

/// Waits until more than `count` requests have succeeded (at most 10 s).
async fn served_beyond(ok: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::SeqCst) <= count {
        assert!(Instant::now() < deadline, "requests stopped being served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn public_route(upstream: SocketAddr) -> String {
    format!(
        r#"
[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish_then_exits() {
    let (upstream, received) = slow_upstream(Duration::from_millis(700)).await;
    let mut gw = start(&public_route(upstream));
    let url = format!("http://{}/slow", gw.addr);
    let in_flight = tokio::spawn(async move {
        let resp = reqwest::get(url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal("TERM");
    // The request that was in flight completes…
    assert_eq!(in_flight.await.unwrap(), (200, "slow".to_owned()));
    // …new connections are no longer accepted, and the process exits cleanly.
    let status = tokio::task::block_in_place(|| gw.exited_within(Duration::from_secs(10)))
        .expect("the gateway did not exit after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(std::net::TcpStream::connect(gw.addr).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_is_written_out_before_exit() {
    let (upstream, received) = slow_upstream(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let mut gw = start(&format!(
        "{}\n[access_log]\npath = \"{}\"\n",
        public_route(upstream),
        log.display()
    ));
    let url = format!("http://{}/last", gw.addr);
    let in_flight = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(url)
            .header("x-request-id", "the-last-one")
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal("TERM");
    assert_eq!(in_flight.await.unwrap(), 200);
    let status = tokio::task::block_in_place(|| gw.exited_within(Duration::from_secs(10)))
        .expect("the gateway did not exit after SIGTERM");
    assert!(status.success(), "{status}");
    // Read only after the exit: nothing could have been written later.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines().any(|l| l.contains("\"the-last-one\"")),
        "the last request's line is missing: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_upgrade_refuses_no_connection() {
    let upstream = echo_upstream().await;
    let mut old = start(&public_route(upstream));
    let addr = old.addr;

    // Fresh connections all through the hand-over, so any moment without
    // a listener would show as a refused connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let mut errors = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match http.get(format!("http://{addr}/ping")).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            errors.push(format!("{other:?}"));
                        }
                    }
                }
                errors
            })
        })
        .collect();
    // Traffic is flowing before the hand-over starts.
    served_beyond(&ok, 20).await;

    let new = tokio::task::block_in_place(|| old.successor());
    old.signal("QUIT");
    let status = tokio::task::block_in_place(|| old.exited_within(Duration::from_secs(20)))
        .expect("the old gateway did not exit after handing over");
    assert!(status.success(), "{status}");
    // Only the successor is left: it must be serving.
    let before = ok.load(Ordering::SeqCst);
    served_beyond(&ok, before + 20).await;
    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for task in load {
        errors.extend(task.await.unwrap());
    }
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        ok.load(Ordering::SeqCst) > before,
        "no request was served after the old process exited"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    let metrics = reqwest::get(format!("http://{}/metrics", new.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gateway_requests_total"), "{metrics}");
}
