//! The real services tests run against (PostgreSQL and Redis on loopback,
//! restarted by `scripts/services.sh`). Outside CI a missing service skips
//! the test with a note; under CI (`CI` set) it fails it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `Some(())` when the service is there; `None` with a note when it is
/// not and the test may skip; a panic when it is not and CI is running.
pub fn required(what: &str, problem: Option<String>) -> Option<()> {
    match problem {
        None => Some(()),
        Some(e) if std::env::var_os("CI").is_some() => {
            panic!("{what} is required under CI and is not reachable: {e}")
        }
        Some(e) => {
            eprintln!("SKIPPED: {what} not reachable: {e}");
            None
        }
    }
}

/// The test Redis (`PORTCULLIS_TEST_REDIS`, default the local one), once
/// it answers PING.
pub fn redis_url() -> Option<String> {
    let url =
        std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    required(&format!("Redis at {url}"), ping(&url).err())?;
    Some(url)
}

fn ping(url: &str) -> Result<(), String> {
    let addr = url
        .strip_prefix("redis://")
        .ok_or("not a redis:// URL")?
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let addr = addr.rsplit('@').next().unwrap_or(addr);
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).map_err(|e| e.to_string())?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!(
            "PING answered {:?}",
            String::from_utf8_lossy(&reply)
        ))
    }
}
