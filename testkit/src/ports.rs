//! Loopback ports for binaries that must be told theirs (Pingora binds
//! the listeners it is given and cannot report a port 0).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port free now and never handed out before in this process (the OS
/// may offer a just-released port again, and tests run in parallel).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() >= deadline {
            return Err(format!("nothing listened on {addr} within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    #[test]
    fn waiting_sees_a_listener_and_times_out_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(wait_for_port(addr, Duration::from_secs(1)).is_ok());
        drop(listener);
        // Port 1: privileged and outside the ephemeral range, so nothing
        // else takes it and a connect cannot meet itself (a loopback
        // connect whose source port happens to equal a free destination
        // port connects to itself).
        let nothing = SocketAddr::from(([127, 0, 0, 1], 1));
        let err = wait_for_port(nothing, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("nothing listened"), "{err}");
    }
}
