//! Group commit of audit records.
//!
//! Every exchange waits until its audit record is durable before it answers (an unaudited
//! token is never issued), but records are committed together: one committer takes every
//! record that arrived while the previous transaction was committing and writes them in one
//! transaction, so SQLite's per-commit cost (an fsync) is shared by all of them.
//!
//! The committer is a thread of its own, not a task: it blocks on the commit and then wakes
//! the waiting exchanges itself. With SQLite it writes through a synchronous connection on
//! that thread (no hop to a driver thread and back); with PostgreSQL it drives the async
//! pool from there.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{AuditEvent, Spool};
use crate::metrics::Metrics;
use crate::storage::Storage;

/// Most records in one transaction; also bounds the memory a slow database can pin.
const MAX_BATCH: usize = 1024;
/// How long a commit waits for more records once concurrent exchanges are seen (the batch
/// already holds more than one). Each commit costs ~80 µs of CPU (mostly the fsync), whatever
/// its size; on the benchmark's 2-core machine, without the wait commits averaged 4 records,
/// with it 14, and CPU per exchange fell by ~8 µs. Longer waits cost more latency than they
/// save (1 ms: -30% throughput with 32 connections). A lone exchange never waits.
const GATHER: Duration = Duration::from_micros(200);
/// Records waiting for the writer; senders wait (backpressure) beyond this.
const QUEUE: usize = 8192;
/// How often spooled records are offered to the database when no exchange comes by.
const REPLAY_INTERVAL: Duration = Duration::from_secs(2);

/// The audit record could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("audit record not committed: {0}")]
pub struct AuditError(pub String);

struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<(), String>>,
}

/// Where records go when the database does not answer, and for how long.
pub struct SpoolPolicy {
    /// The spool.
    pub spool: Spool,
    /// Longest outage covered by spooling; then exchanges fail closed.
    pub grace: Duration,
}

/// Hands records to the committer thread and waits for their commit.
#[derive(Clone)]
pub struct AuditWriter {
    queue: flume::Sender<Pending>,
    outage: Arc<Outage>,
}

/// When the current database outage began (milliseconds since the epoch; 0: none), and
/// how long spooling may cover it (`None`: no spool).
struct Outage {
    since_ms: AtomicU64,
    grace: Option<Duration>,
}

impl Outage {
    fn begin(&self) -> u64 {
        let now = now_ms();
        match self
            .since_ms
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => now,
            Err(since) => since,
        }
    }

    fn end(&self) {
        self.since_ms.store(0, Ordering::SeqCst);
    }

    /// Can a record be made durable now (database up, or spooling within grace)?
    fn can_record(&self) -> bool {
        let since = self.since_ms.load(Ordering::SeqCst);
        since == 0
            || self
                .grace
                .is_some_and(|g| now_ms().saturating_sub(since) < g.as_millis() as u64)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl AuditWriter {
    /// Starts the committer thread; it stops once every `AuditWriter` clone is dropped.
    /// Must be called within the Tokio runtime that the store's async calls use.
    pub fn spawn(
        store: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        spool: Option<SpoolPolicy>,
    ) -> std::io::Result<Self> {
        let (queue, rx) = flume::bounded(QUEUE);
        let outage = Arc::new(Outage {
            since_ms: AtomicU64::new(0),
            grace: spool.as_ref().map(|s| s.grace),
        });
        let committer = Committer {
            store,
            metrics,
            spool: spool.map(|s| s.spool),
            outage: outage.clone(),
            runtime: Handle::current(),
        };
        std::thread::Builder::new()
            .name("sts-audit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Self { queue, outage })
    }

    /// The database does not answer: can exchanges still be audited (spooled, within the
    /// grace period)? `/readyz` asks.
    pub fn covers_outage(&self) -> bool {
        self.outage.begin();
        self.outage.can_record()
    }

    /// Returns once `event` is durable (or failed to be).
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send_async(Pending { event, done })
            .await
            .map_err(|_| AuditError("the audit writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| AuditError("the audit writer has stopped".into()))?
            .map_err(AuditError)
    }
}

/// The committer thread's state.
struct Committer {
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    spool: Option<Spool>,
    outage: Arc<Outage>,
    runtime: Handle,
}

impl Committer {
    fn run(mut self, rx: flume::Receiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        loop {
            match rx.recv_timeout(REPLAY_INTERVAL) {
                Ok(first) => batch.push(first),
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.replay_spool();
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
            // Everything that queued up while the previous batch was committing.
            batch.extend(rx.try_iter().take(MAX_BATCH - 1));
            if batch.len() > 1 && batch.len() < MAX_BATCH {
                // Exchanges are arriving concurrently: let more of them join this commit.
                std::thread::sleep(GATHER);
                let room = MAX_BATCH - batch.len();
                batch.extend(rx.try_iter().take(room));
            }
            let (events, waiting): (Vec<AuditEvent>, Vec<_>) =
                batch.drain(..).map(|p| (p.event, p.done)).unzip();
            // A bug while committing must fail this batch closed, not stop the thread and
            // with it every later exchange.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.commit(&events)))
                .unwrap_or_else(|_| Err("the audit committer failed unexpectedly".to_owned()));
            for done in waiting {
                // A requester that went away no longer needs the answer.
                let _ = done.send(result.clone());
            }
        }
    }

    /// Makes `events` durable: in the database (after any spooled records, to keep their
    /// order), else in the spool while the outage is within grace.
    fn commit(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        let started = Instant::now();
        self.replay_spool();
        let result = match self.spool.as_ref().is_some_and(Spool::has_pending) {
            // Spooled records still wait: the database is still down.
            true => Err("the database is unavailable (records are spooled)".to_owned()),
            false => self
                .store
                .append_audit_blocking(events, &self.runtime)
                .map_err(|e| e.to_string()),
        };
        self.metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.audit_batch_size.observe(events.len() as f64);
        match result {
            Ok(()) => {
                self.outage.end();
                Ok(())
            }
            Err(e) => self.spool_or_fail(events, e),
        }
    }

    fn spool_or_fail(&mut self, events: &[AuditEvent], error: String) -> Result<(), String> {
        self.outage.begin();
        let Some(spool) = self.spool.as_mut().filter(|_| self.outage.can_record()) else {
            tracing::error!(error = %error, records = events.len(), "audit batch failed to commit; failing closed");
            return Err(error);
        };
        match spool.append(events) {
            Ok(()) => {
                tracing::warn!(error = %error, records = events.len(), "database unavailable; audit records spooled locally");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit spool write failed; failing closed");
                Err(format!("{error}; spool: {e}"))
            }
        }
    }

    /// Copies spooled records into the database when it answers again.
    fn replay_spool(&mut self) {
        let Some(spool) = self.spool.as_mut().filter(|s| s.has_pending()) else {
            return;
        };
        let (store, runtime) = (&self.store, &self.runtime);
        match spool.replay(|chunk| store.append_audit_blocking(chunk, runtime)) {
            Ok(n) => {
                self.outage.end();
                tracing::info!(records = n, "spooled audit records copied to the database");
            }
            Err(e) => {
                tracing::debug!(error = %e, "spooled audit records still wait for the database")
            }
        }
    }
}
