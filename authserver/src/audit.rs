//! Audit events that change nothing else (logins, tokens issued, refreshed
//! or revoked) are written by group commit: concurrent requests' events go
//! to the database in one transaction, and each request waits until its
//! event is committed. Durable before the response, like a single insert,
//! without one disk sync per token (which bounds SQLite near 4k/s).
//! Events that belong to a change are written in that change's transaction
//! instead (`store`).

use tokio::sync::{mpsc, oneshot};

use crate::model::AuditEvent;
use crate::store::{Store, StoreError};

/// Most events committed in one transaction.
const BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), String>>;

#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<(AuditEvent, Reply)>,
}

#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(String);

impl From<AuditError> for crate::error::OAuthError {
    fn from(e: AuditError) -> Self {
        Self::unavailable(&e)
    }
}

impl AuditLog {
    /// Starts the writer task (on the current runtime).
    pub fn start(store: Store) -> Self {
        let (queue, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(write(store, rx));
        Self { queue }
    }

    /// Records `event`; returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (reply, done) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| AuditError("the writer has stopped".into()))?;
        done.await
            .map_err(|_| AuditError("the writer has stopped".into()))?
            .map_err(AuditError)
    }
}

async fn write(store: Store, mut rx: mpsc::Receiver<(AuditEvent, Reply)>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let events: Vec<&AuditEvent> = batch.iter().map(|(e, _)| e).collect();
        let result = store
            .audit_all(&events)
            .await
            .map_err(|e: StoreError| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, events = batch.len(), "audit batch failed; the requests fail too");
        }
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}
