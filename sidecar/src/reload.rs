//! What triggers a reload: a change in the policy directory, or SIGHUP.
//! (`POST /v1/admin/reload` lives with the admin API.) The engine validates
//! the new set and keeps the old one when it is refused.

use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use decision::Engine;

/// Editors write a file in several steps; wait for the burst to end.
const SETTLE: Duration = Duration::from_millis(150);

/// Watch the policy directory. Keep the returned watcher alive.
pub fn watch(engine: Arc<Engine>) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        // Our own temporary files (atomic entity writes) start with a dot.
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        });
        if relevant {
            // A full channel already holds a pending reload.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(engine.dir(), RecursiveMode::NonRecursive)?;
    tokio::spawn(debounce(engine, rx));
    Ok(watcher)
}

async fn debounce(engine: Arc<Engine>, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        reload(&engine, "file change").await;
    }
}

/// Reload on every SIGHUP.
pub async fn on_sighup(engine: Arc<Engine>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change or the admin API");
            return;
        };
        while hup.recv().await.is_some() {
            reload(&engine, "SIGHUP").await;
        }
    }
}

async fn reload(engine: &Arc<Engine>, trigger: &'static str) {
    let engine = engine.clone();
    tracing::debug!(trigger, "reloading policies");
    // Errors are logged, counted and kept for /v1/status by the engine.
    let _ = tokio::task::spawn_blocking(move || engine.reload()).await;
}
