//! Group commit of audit records.
//!
//! Every exchange waits until its audit record is durable before it answers (an unaudited
//! token is never issued), but records are committed together: one writer task takes every
//! record that arrived while the previous transaction was committing and writes them in one
//! transaction, so SQLite's per-commit cost (an fsync) is shared by all of them.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::AuditEvent;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// Most records in one transaction; also bounds the memory a slow database can pin.
const MAX_BATCH: usize = 1024;
/// Records waiting for the writer; senders wait (backpressure) beyond this.
const QUEUE: usize = 8192;

/// The audit record could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("audit record not committed: {0}")]
pub struct AuditError(pub String);

struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<(), String>>,
}

/// Hands records to the writer task and waits for their commit.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer task.
    pub fn spawn(store: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(rx, store, metrics));
        Self { queue }
    }

    /// Returns once `event` is committed (or failed to be).
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending { event, done })
            .await
            .map_err(|_| AuditError("the audit writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| AuditError("the audit writer has stopped".into()))?
            .map_err(AuditError)
    }
}

async fn write_batches(
    mut rx: mpsc::Receiver<Pending>,
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, waiting): (Vec<AuditEvent>, Vec<_>) =
            batch.drain(..).map(|p| (p.event, p.done)).unzip();
        let started = Instant::now();
        let result = store.append_audit(&events).await.map_err(|e| e.to_string());
        metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.audit_batch_size.observe(events.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, records = events.len(), "audit batch failed to commit");
        }
        for done in waiting {
            // A requester that went away no longer needs the answer.
            let _ = done.send(result.clone());
        }
    }
}
