//! `authserver serve`: bind, serve, keep signing keys fresh, drain on
//! shutdown within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::App;

/// Binds the `listen` address (port 0 picks one), before the app is opened:
/// in dev mode the issuer URL is derived from the bound address.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on `listen` address {listen}"))
}

/// Serves until `shutdown` resolves. `on_listening` runs once serving.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let refresh = tokio::spawn(keep_keys_fresh(app.clone()));
    let sweep = tokio::spawn(sweep_gauges(app.clone()));
    let feed = tokio::spawn(crate::feed::keep_current(app.clone()));
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    tracing::info!(
        listen = %addr,
        issuer = %app.issuer,
        database = app.store.backend_name(),
        ephemeral = app.ephemeral.backend_name(),
        dev = app.config.dev,
        build = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    on_listening(addr);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        crate::http::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    let task = tokio::spawn(async move { server.await });
    shutdown.await;
    let _ = stop_tx.send(true);
    refresh.abort();
    sweep.abort();
    feed.abort();
    match tokio::time::timeout(grace, task).await {
        Ok(done) => done.context("server task")?.context("server")?,
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing remaining connections"
        ),
    }
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads signing keys so rotations elsewhere are picked up; a failed
/// read keeps the keys already loaded.
async fn keep_keys_fresh(app: Arc<App>) {
    let every = Duration::from_secs(app.config.tokens.key_refresh_seconds);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = app.keys.reload().await {
            tracing::warn!(error = %e, "cannot reload signing keys; keeping the current ones");
        }
    }
}

/// Keeps the "active" gauges current between scrapes.
async fn sweep_gauges(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        app.metrics.sweep(crate::app::now());
    }
}
