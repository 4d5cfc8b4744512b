//! `sidecar serve`: bind both listeners, start reload triggers, serve until
//! a shutdown signal, then drain within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::authn::Authn;
use crate::config::Config;
use crate::grpc::{ExtAuthz, Spans};
use crate::http::{ApiState, router};
use decision::Engine;

/// Serve the HTTP API and ext_authz gRPC until `shutdown` resolves.
pub async fn run(
    config: Config,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen on `http` address {}", config.http))?;
    let grpc = TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("cannot listen on `grpc` address {}", config.grpc))?;
    let http_addr: SocketAddr = http.local_addr()?;
    let grpc_addr: SocketAddr = grpc.local_addr()?;

    let _watcher = if config.watch {
        match crate::reload::watch(engine.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the policy directory; reload by SIGHUP or the admin API");
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(crate::reload::on_sighup(engine.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let verifier = if config.issuers.is_empty() {
        None
    } else {
        let verifier = Arc::new(tokens::Verifier::new(&config.issuers)?);
        verifier.start().await;
        Some(verifier)
    };
    let sink: Option<Arc<dyn feed::Sink>> = config.feed.entities.then(|| {
        Arc::new(feed::EngineSink {
            engine: engine.clone(),
            prefix: config.feed.subject_prefix.clone(),
        }) as Arc<dyn feed::Sink>
    });
    let following = feed::start(&config.feed, sink)
        .map_err(|e| anyhow::anyhow!("feed.{}: {}", e.key, e.message))?;
    if let Some(f) = &following {
        engine
            .metrics()
            .registry
            .register(Box::new(feed::StatusCollector::new(f.status.clone())))
            .context("feed metrics")?;
    }
    let authn = Authn::new(verifier, engine.metrics().clone(), following);
    let api = router(
        ApiState {
            engine: engine.clone(),
            admin_token: config.admin_token.as_deref().map(Arc::from),
            authn: authn.clone(),
        },
        config.max_body_bytes,
    );
    let http_server =
        axum::serve(http, api.into_make_service()).with_graceful_shutdown(stopped(stop_rx.clone()));
    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            ExtAuthz::new(
                engine.clone(),
                config.claims.clone(),
                authn,
                Spans::of(&config.tracing),
            )
            .into_service(),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            stopped(stop_rx),
        );
    let http_task = tokio::spawn(async move { http_server.await });
    let grpc_task = tokio::spawn(grpc_server);

    let snapshot = engine.snapshot();
    tracing::info!(
        http = %http_addr,
        grpc = %grpc_addr,
        version = %snapshot.bundle.version,
        policies = snapshot.bundle.sources.len(),
        entities = snapshot.bundle.entity_count(),
        build = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    shutdown.await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async {
        let (h, g) = tokio::join!(http_task, grpc_task);
        (h, g)
    })
    .await;
    match drained {
        Ok((h, g)) => {
            h.context("http server task")?.context("http server")?;
            g.context("grpc server task")?.context("grpc server")?;
            tracing::info!("stopped");
        }
        Err(_) => tracing::warn!(
            grace_secs = config.shutdown_grace_secs,
            "grace period over; closing remaining connections"
        ),
    }
    Ok(())
}
