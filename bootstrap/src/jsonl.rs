//! JSON lines written off the hot path: the gateway's access log and the
//! sidecar's decision log. A request only does a non-blocking `try_send`;
//! a full queue drops the record (the caller counts it). A writer thread
//! drains the queue on a timer, never woken per record: a wake-up per
//! record would cost the hot path a futex call and a context switch, on a
//! machine where the proxy needs every core. [`JsonLines::close`] (or drop)
//! writes out what is queued before the process exits.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the writer drains the queue; the queue holds what arrives in
/// between.
const DRAIN_EVERY: Duration = Duration::from_millis(25);

/// Renders one record as one JSON value (no newline) into the buffer.
pub type Render<T> = fn(&T, &mut Vec<u8>);

pub struct JsonLines<T> {
    tx: mpsc::SyncSender<T>,
    closing: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<T> std::fmt::Debug for JsonLines<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> JsonLines<T> {
    /// Open `path` (`-` is stdout; a file is appended to) and start the
    /// writer thread `name`, with room for `queue` records.
    pub fn start(name: &str, path: &str, queue: usize, render: Render<T>) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let stop = closing.clone();
        let writer = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_loop(&rx, sink, render, &stop))?;
        Ok(Self {
            tx,
            closing,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queue a record; never blocks. `false` when it was dropped (the
    /// queue is full, or the log is closed).
    pub fn send(&self, record: T) -> bool {
        !self.closing.load(Ordering::Relaxed) && self.tx.try_send(record).is_ok()
    }
}

impl<T> JsonLines<T> {
    /// Write out what is queued and stop the writer. Records sent after
    /// this are dropped.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

impl<T> Drop for JsonLines<T> {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop<T>(
    rx: &mpsc::Receiver<T>,
    mut sink: Box<dyn Write + Send>,
    render: Render<T>,
    closing: &AtomicBool,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        // Read before draining: whatever was queued before `close` is in
        // this drain.
        let last = closing.load(Ordering::Relaxed);
        while let Ok(record) = rx.try_recv() {
            render(&record, &mut buf);
            buf.push(b'\n');
        }
        if !buf.is_empty() {
            // A sink that fails (a closed stdout) loses these lines; the
            // queue keeps draining so requests never wait on it.
            let _ = sink.write_all(&buf).and_then(|()| sink.flush());
            buf.clear();
        }
        if last {
            return;
        }
        std::thread::park_timeout(DRAIN_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(n: &u32, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{{\"n\":{n}}}").as_bytes());
    }

    #[test]
    fn close_writes_out_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = JsonLines::start("test-log", path.to_str().unwrap(), 1000, render).unwrap();
        for n in 0..500 {
            assert!(log.send(n));
        }
        log.close();
        assert!(!log.send(500), "closed");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 500);
        assert_eq!(lines[0], r#"{"n":0}"#);
        assert_eq!(lines[499], r#"{"n":499}"#);
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = JsonLines::start("test-log", path.to_str().unwrap(), 4, render).unwrap();
        let sent = (0..10_000).filter(|n| log.send(*n)).count();
        assert!(sent < 10_000, "some were dropped");
        drop(log);
        let written = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(written, sent, "every record accepted was written");
    }
}
