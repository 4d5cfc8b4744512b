//! A TCP relay the runner puts on a link between two services, to break
//! that link on demand: open, slow (every chunk the far side sends back is
//! held for a while), or cut (connections are accepted and held, and
//! nothing passes either way until the link is open again, as in a network
//! partition).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Open,
    /// Each chunk of the answer direction is held this long.
    Slow(Duration),
    Cut,
}

/// The link as one word, so every connection reads it without a lock:
/// 0 open, `u64::MAX` cut, anything else a delay in milliseconds.
#[derive(Debug, Default)]
struct State(AtomicU64);

impl State {
    fn get(&self) -> Link {
        match self.0.load(Ordering::Relaxed) {
            0 => Link::Open,
            u64::MAX => Link::Cut,
            ms => Link::Slow(Duration::from_millis(ms)),
        }
    }

    fn set(&self, link: Link) {
        let word = match link {
            Link::Open => 0,
            Link::Cut => u64::MAX,
            Link::Slow(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1).max(1),
        };
        self.0.store(word, Ordering::Relaxed);
    }
}

/// Listens on a loopback port and relays every connection to `target`.
pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// How often a held chunk looks again whether the link is open.
const CUT_POLL: Duration = Duration::from_millis(20);

impl Relay {
    pub fn start(rt: &tokio::runtime::Runtime, target: SocketAddr) -> Result<Self, String> {
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("relay: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(State::default());
        let shared = state.clone();
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target, shared.clone()));
            }
        });
        Ok(Self { addr, state })
    }

    pub fn set(&self, link: Link) {
        self.state.set(link);
    }
}

async fn relay(client: TcpStream, target: SocketAddr, state: Arc<State>) {
    while state.get() == Link::Cut {
        tokio::time::sleep(CUT_POLL).await;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::join!(
        pipe(client_in, server_out, state.clone(), false),
        pipe(server_in, client_out, state, true),
    );
}

/// Copies `from` to `to` until either side closes; `answers` marks the
/// direction a slow link delays.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: Arc<State>, answers: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            match state.get() {
                Link::Cut => tokio::time::sleep(CUT_POLL).await,
                Link::Slow(d) if answers => {
                    tokio::time::sleep(d).await;
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_open_slow_or_cut() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let echo = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let target = echo.local_addr().unwrap();
        rt.spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut b).await {
                        if s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let relay = Relay::start(&rt, target).unwrap();
        let round_trip = |within: Duration| {
            rt.block_on(async {
                let mut s = TcpStream::connect(relay.addr).await.unwrap();
                s.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                let started = std::time::Instant::now();
                tokio::time::timeout(within, s.read_exact(&mut b))
                    .await
                    .ok()
                    .map(|r| (r.is_ok() && &b == b"ping", started.elapsed()))
            })
        };
        let (ok, _) = round_trip(Duration::from_secs(5)).unwrap();
        assert!(ok, "open: the echo comes back");
        relay.set(Link::Slow(Duration::from_millis(300)));
        let (ok, took) = round_trip(Duration::from_secs(5)).unwrap();
        assert!(ok && took >= Duration::from_millis(300), "slow: {took:?}");
        relay.set(Link::Cut);
        assert_eq!(round_trip(Duration::from_millis(300)), None, "cut: nothing");
        relay.set(Link::Open);
        assert!(round_trip(Duration::from_secs(5)).unwrap().0, "open again");
    }
}
