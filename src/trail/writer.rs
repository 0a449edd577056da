//! Group commit of audit records.
//!
//! Every exchange waits until its audit record is durable before it answers (an unaudited
//! token is never issued), but records are made durable together: one committer takes every
//! record that arrived while the previous group was being written and writes them as one
//! group, so the per-write cost (an fsync) is shared by all of them.
//!
//! The committer is a thread of its own, not a task: it blocks on the write and then wakes
//! the waiting exchanges itself, with no hop to another thread and back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::sink::Sink;
use crate::audit::AuditEvent;
use crate::metrics::Metrics;

/// Most records in one group; also bounds the memory a stalled disk can pin.
pub const MAX_BATCH: usize = 1024;
/// How long a commit waits for more records once concurrent exchanges are seen (the batch
/// already holds more than one). Each write costs the same sync whatever its size; on the
/// benchmark's 2-core machine, without the wait groups averaged 4 records, with it 14, and
/// CPU per exchange fell by ~8 µs. Longer waits cost more latency than they save (1 ms:
/// -30% throughput with 32 connections). A lone exchange never waits.
pub const GATHER: Duration = Duration::from_micros(200);
/// Records waiting for the writer; senders wait (backpressure) beyond this.
const QUEUE: usize = 8192;
/// How often an idle committer syncs what `os` durability left unsynced, and, after a
/// failure, tries whether records can be written again.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// The audit record could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("audit record not committed: {0}")]
pub struct AuditError(pub String);

struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<(), String>>,
}

/// Hands records to the committer thread and waits for them to be durable.
#[derive(Clone)]
pub struct AuditWriter {
    queue: flume::Sender<Pending>,
    healthy: Arc<AtomicBool>,
    running: Arc<RunningCommit>,
    journaled: bool,
}

/// A commit that does not return (a lock wait in the database, a stalled disk) stops every
/// exchange as surely as one that fails: past this, `/readyz` says so while it still runs.
const STALLED: Duration = Duration::from_secs(2);

/// When the commit in progress started (nanoseconds after `base`, plus one; 0: none runs).
struct RunningCommit {
    base: Instant,
    since: AtomicU64,
}

impl RunningCommit {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    fn start(&self) {
        let at = self.base.elapsed().as_nanos() as u64 + 1;
        self.since.store(at, Ordering::Release);
    }

    fn end(&self) {
        self.since.store(0, Ordering::Release);
    }

    /// How long the commit in progress has run, if one does.
    fn running_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            at => Some(
                self.base
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(at - 1)),
            ),
        }
    }
}

impl AuditWriter {
    /// Starts the committer thread over `sink`; it stops once every `AuditWriter` clone is
    /// dropped.
    pub(super) fn spawn(sink: Sink, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (queue, rx) = flume::bounded(QUEUE);
        let healthy = Arc::new(AtomicBool::new(true));
        let running = Arc::new(RunningCommit::new());
        let journaled = matches!(sink, Sink::Journal { .. });
        let committer = Committer {
            sink,
            metrics,
            healthy: healthy.clone(),
            running: running.clone(),
        };
        std::thread::Builder::new()
            .name("sts-audit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Self {
            queue,
            healthy,
            running,
            journaled,
        })
    }

    /// Whether records are made durable in the journal (else in the database).
    pub fn is_journaled(&self) -> bool {
        self.journaled
    }

    /// Whether the last write (or, after a failure, the last try) made records durable,
    /// and no write has been running for longer than [`STALLED`]: `/readyz` says not ready
    /// while records cannot be made durable.
    pub fn can_commit(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
            && self.running.running_for().is_none_or(|d| d < STALLED)
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
    sink: Sink,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    running: Arc<RunningCommit>,
}

impl Committer {
    fn run(mut self, rx: flume::Receiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        loop {
            match rx.recv_timeout(IDLE_TICK) {
                Ok(first) => batch.push(first),
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => {
                    self.idle();
                    return;
                }
            }
            // Everything that queued up while the previous group was being written.
            batch.extend(rx.try_iter().take(MAX_BATCH - 1));
            if batch.len() > 1 && batch.len() < MAX_BATCH {
                // Exchanges are arriving concurrently: let more of them join this group.
                std::thread::sleep(GATHER);
                let room = MAX_BATCH - batch.len();
                batch.extend(rx.try_iter().take(room));
            }
            let (events, waiting): (Vec<AuditEvent>, Vec<_>) =
                batch.drain(..).map(|p| (p.event, p.done)).unzip();
            let result = self.commit(events);
            for done in waiting {
                // A requester that went away no longer needs the answer.
                let _ = done.send(result.clone());
            }
        }
    }

    fn commit(&mut self, events: Vec<AuditEvent>) -> Result<(), String> {
        let started = Instant::now();
        let records = events.len();
        self.running.start();
        // A bug while writing must fail this group closed, not stop the thread and with it
        // every later exchange.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.sink.commit(events)))
            .unwrap_or_else(|_| Err("the audit committer failed unexpectedly".to_owned()));
        self.running.end();
        self.metrics
            .audit_batch(records, started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::error!(error = %e, records, "audit records not committed; failing closed");
        }
        self.set_healthy(result.is_ok());
        result
    }

    fn idle(&mut self) {
        self.running.start();
        let result = match self.healthy.load(Ordering::Acquire) {
            true => self.sink.idle(),
            false => self.sink.probe(),
        };
        self.running.end();
        if let Err(e) = &result {
            tracing::debug!(error = %e, "audit records cannot be committed");
        }
        self.set_healthy(result.is_ok());
    }

    fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::AcqRel) != healthy && healthy {
            tracing::info!("audit records are committed again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_stalled_only_while_it_runs_past_the_bound() {
        let running = RunningCommit::new();
        assert_eq!(running.running_for(), None);
        running.start();
        let ran = running.running_for().expect("a commit runs");
        assert!(ran < STALLED, "{ran:?}");
        running.end();
        assert_eq!(running.running_for(), None);
    }
}
