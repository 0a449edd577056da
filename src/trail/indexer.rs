//! Feeding the database's audit index from the journal, off the exchange path, in batches.
//!
//! The index remembers how far it has read each journal (its mark, moved in the same
//! transaction as the rows), so after a crash the records past the mark are indexed once,
//! and none twice. While the database is unreachable the indexer waits and retries; the
//! journal keeps every record meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::audit::AuditEvent;
use crate::journal::{Cursor, JournalError};
use crate::storage::{IndexEntry, Storage, StorageError};

/// Records per index transaction.
const BATCH: usize = 2048;
/// How long the indexer sleeps when nobody wakes it.
const TICK: Duration = Duration::from_millis(100);
/// After indexing, how long the indexer lets records gather before it indexes again, so that
/// an index transaction carries many groups, not one: SQLite writes each page a transaction
/// touched to its WAL in full, and under load one group per transaction wrote ~3 KB per
/// record where a transaction of a thousand writes ~0.3 KB. Lists lag by about this much.
const GATHER: Duration = Duration::from_millis(100);
/// Waits between tries while the database fails, doubling up to the last.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Why records could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The journal cannot be read where records must be.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A record does not decode (its frame's CRC was right: a bug, not the disk).
    #[error("audit journal record {seq} does not decode: {reason}")]
    Record {
        /// Which.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The database did not take the batch.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Reads the journal from the index's mark on, and indexes what it reads.
pub(super) struct Indexer {
    store: Arc<dyn Storage>,
    runtime: Handle,
    journal_id: String,
    cursor: Cursor,
    /// Read from the journal but not yet indexed (the database failed).
    pending: Vec<IndexEntry>,
    /// The last sequence number indexed, for those who wait for their record.
    indexed: watch::Sender<u64>,
}

impl Indexer {
    pub(super) fn new(
        store: Arc<dyn Storage>,
        runtime: Handle,
        journal_id: String,
        cursor: Cursor,
        indexed: watch::Sender<u64>,
    ) -> Self {
        Self {
            store,
            runtime,
            journal_id,
            cursor,
            pending: Vec::new(),
            indexed,
        }
    }

    /// Indexes everything durable now (start-up: before the broker serves, so that queries
    /// never miss a record that was committed before a crash).
    pub(super) async fn catch_up(&mut self) -> Result<u64, IndexError> {
        let mut total = 0;
        loop {
            let batch = self.next_batch()?;
            if batch == 0 {
                return Ok(total);
            }
            self.store
                .index_audit(&self.journal_id, &self.pending)
                .await?;
            self.done();
            total += batch as u64;
        }
    }

    /// Runs on its own thread for the life of the process, woken by `wake` after each group
    /// the committer wrote.
    pub(super) fn run(mut self, wake: flume::Receiver<()>) {
        let mut failures = 0usize;
        loop {
            if failures == 0 {
                if let Err(flume::RecvTimeoutError::Disconnected) = wake.recv_timeout(TICK) {
                    return;
                }
            } else {
                std::thread::sleep(BACKOFF[(failures - 1).min(BACKOFF.len() - 1)]);
            }
            match self.step() {
                Ok(indexed) => {
                    if failures > 0 {
                        tracing::info!("audit index caught up with the journal again");
                    }
                    failures = 0;
                    if indexed > 0 {
                        std::thread::sleep(GATHER);
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::error!(error = %e, "audit index behind the journal; retrying (exchanges go on: the journal keeps every record)");
                    }
                    failures += 1;
                }
            }
        }
    }

    /// Indexes until nothing durable is left, or until something fails; how many records.
    fn step(&mut self) -> Result<usize, IndexError> {
        let mut indexed = 0;
        loop {
            if self.pending.is_empty() && self.next_batch()? == 0 {
                return Ok(indexed);
            }
            self.store
                .index_audit_blocking(&self.journal_id, &self.pending, &self.runtime)?;
            indexed += self.pending.len();
            self.done();
        }
    }

    /// Reads the next batch into `pending`; how many records. Records whose segment was
    /// removed by hand before they were read are reported and passed over: the ones after
    /// them must still be indexed.
    fn next_batch(&mut self) -> Result<usize, IndexError> {
        let entries = loop {
            match self.cursor.read(BATCH) {
                Err(JournalError::Lost { path, first, end }) => {
                    tracing::error!(file = %path.display(), lost = ?(first..end), "audit journal records were removed before they were indexed");
                }
                other => break other?,
            }
        };
        for entry in entries {
            let event: AuditEvent =
                serde_json::from_slice(&entry.record).map_err(|e| IndexError::Record {
                    seq: entry.seq,
                    reason: e.to_string(),
                })?;
            self.pending.push(IndexEntry {
                seq: entry.seq,
                position: entry.position.pack(),
                event,
            });
        }
        Ok(self.pending.len())
    }

    fn done(&mut self) {
        if let Some(last) = self.pending.last() {
            self.indexed.send_replace(last.seq);
        }
        self.pending.clear();
    }
}
