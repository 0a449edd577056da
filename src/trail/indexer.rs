//! Feeding the database's audit index from the journal, off the exchange path, in batches.
//!
//! The committer hands each group it wrote to the indexer as it is, so records are not read
//! back and decoded; whatever the hand-off missed (its queue was full, the broker restarted)
//! is read from the journal files. The index remembers how far it has read each journal (its
//! mark, moved in the same transaction as the rows), so after a crash the records past the
//! mark are indexed once, and none twice. While the database is unreachable the indexer
//! waits and retries; the journal keeps every record meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::audit::AuditEvent;
use crate::journal::{Cursor, JournalError, JournalReader, Position};
use crate::metrics::Metrics;
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
/// Groups handed over and not yet taken; past this the committer drops hand-offs and the
/// indexer reads those records from the journal instead, parsing each back (at peak that
/// read-back was a fifth of the broker's CPU when the queue held 64 groups: ~900 groups a
/// second fill 64 in less than one gather). 512 is about half a second of groups at peak;
/// the events of a slim index carry no detail, a few hundred bytes each.
pub(super) const HANDOFF_QUEUE: usize = 512;
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

/// What wakes the indexer.
pub(super) enum Wake {
    /// A group the committer made durable, as it was written.
    Written(Written),
    /// Someone waits for the index to catch up (a lookup by request id).
    Nudge,
}

/// Where the indexer may take the records it indexes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Source {
    /// Hand-offs only (and the journal files for a gap between two of them).
    HandOffs,
    /// Also the journal files, past the last hand-off: at start, after a failure, when
    /// hand-offs stopped coming (one dropped last would otherwise wait for the next
    /// exchange), and when a lookup waits for the index.
    Files,
}

/// A group as the committer wrote it.
pub(super) struct Written {
    pub(super) first_seq: u64,
    pub(super) positions: Vec<Position>,
    pub(super) events: Vec<AuditEvent>,
}

/// Indexes the journal from the index's mark on.
pub(super) struct Indexer {
    store: Arc<dyn Storage>,
    runtime: Handle,
    journal_id: String,
    reader: JournalReader,
    /// Reading the journal files, from where the hand-offs did not cover.
    cursor: Option<Cursor>,
    /// The next record to index.
    next_seq: u64,
    /// Groups handed over, in order, not yet taken.
    handed: VecDeque<Written>,
    /// Taken (from hand-offs or files) but not yet indexed (the database failed).
    pending: Vec<IndexEntry>,
    /// The last sequence number indexed, for those who wait for their record.
    indexed: watch::Sender<u64>,
    /// Where operators see the index fall behind.
    metrics: Arc<Metrics>,
}

impl Indexer {
    pub(super) fn new(
        store: Arc<dyn Storage>,
        runtime: Handle,
        journal_id: String,
        reader: JournalReader,
        from_seq: u64,
        indexed: watch::Sender<u64>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            runtime,
            journal_id,
            reader,
            cursor: None,
            next_seq: from_seq,
            handed: VecDeque::new(),
            pending: Vec::new(),
            indexed,
            metrics,
        }
    }

    /// Indexes everything durable now (start-up: before the broker serves, so that queries
    /// never miss a record that was committed before a crash).
    pub(super) async fn catch_up(&mut self) -> Result<u64, IndexError> {
        let mut total = 0;
        loop {
            let batch = self.next_batch(Source::Files)?;
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

    /// Runs on its own thread for the life of the process, woken by the committer's
    /// hand-offs and by lookups that wait.
    pub(super) fn run(mut self, wake: flume::Receiver<Wake>) {
        let mut failures = 0usize;
        loop {
            // Hand-offs only, while they come: the records the journal holds past them
            // have hand-offs on their way. Files are read for a gap between hand-offs (one
            // was dropped), and when the hand-offs stop or someone waits.
            let mut source = Source::HandOffs;
            if failures == 0 {
                match wake.recv_timeout(TICK) {
                    Ok(first) => source = source.max(self.take(first)),
                    Err(flume::RecvTimeoutError::Timeout) => source = Source::Files,
                    Err(flume::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                std::thread::sleep(BACKOFF[(failures - 1).min(BACKOFF.len() - 1)]);
                source = Source::Files;
            }
            for w in wake.try_iter() {
                source = source.max(self.take(w));
            }
            let result = self.step(source);
            let behind = self
                .reader
                .durable_seq()
                .saturating_sub(*self.indexed.borrow());
            self.metrics.audit_index(behind, result.is_err());
            match result {
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

    /// Keeps a hand-off; says where the records to index next may be read.
    fn take(&mut self, wake: Wake) -> Source {
        match wake {
            Wake::Written(group) => {
                self.handed.push_back(group);
                Source::HandOffs
            }
            Wake::Nudge => Source::Files,
        }
    }

    /// Indexes until nothing is left to index from `source`, or until something fails; how
    /// many records.
    fn step(&mut self, source: Source) -> Result<usize, IndexError> {
        let mut indexed = 0;
        loop {
            if self.pending.is_empty() && self.next_batch(source)? == 0 {
                return Ok(indexed);
            }
            self.store
                .index_audit_blocking(&self.journal_id, &self.pending, &self.runtime)?;
            indexed += self.pending.len();
            self.done();
        }
    }

    /// Takes the next records into `pending` (from hand-offs where they reach the next record,
    /// else, for a gap or with [`Source::Files`], from the journal files); how many.
    fn next_batch(&mut self, source: Source) -> Result<usize, IndexError> {
        while self
            .handed
            .front()
            .is_some_and(|g| end_of(g) <= self.next_seq)
        {
            self.handed.pop_front();
        }
        match self.handed.front() {
            Some(group) if group.first_seq <= self.next_seq => self.take_handed(),
            // A gap before the next hand-off (or none): read it from the journal.
            Some(group) => {
                let gap = (group.first_seq - self.next_seq) as usize;
                self.read_files(gap.min(BATCH))?;
            }
            None if source == Source::Files => self.read_files(BATCH)?,
            // Their hand-offs are on their way: reading them back would cost what the
            // hand-off saves (a read, a CRC check and a parse per record).
            None => {}
        }
        Ok(self.pending.len())
    }

    /// Moves handed-over records from `next_seq` on into `pending`.
    fn take_handed(&mut self) {
        while self.pending.len() < BATCH {
            let Some(group) = self.handed.front_mut() else {
                return;
            };
            if group.first_seq > self.next_seq {
                return;
            }
            let skip = (self.next_seq - group.first_seq) as usize;
            let first = group.first_seq;
            for (i, (position, event)) in group
                .positions
                .drain(..)
                .zip(group.events.drain(..))
                .enumerate()
                .skip(skip)
            {
                self.pending.push(IndexEntry {
                    seq: first + i as u64,
                    position: position.pack(),
                    event,
                });
            }
            self.handed.pop_front();
            self.next_seq = self.pending.last().map_or(self.next_seq, |e| e.seq + 1);
        }
    }

    /// Reads up to `max` records from `next_seq` on from the journal files into `pending`.
    /// Records whose segment was removed by hand before they were read are reported and
    /// passed over: the ones after them must still be indexed.
    fn read_files(&mut self, max: usize) -> Result<(), IndexError> {
        if self
            .cursor
            .as_ref()
            .is_none_or(|c| c.next_seq() != self.next_seq)
        {
            self.cursor = Some(self.reader.cursor(self.next_seq));
        }
        let cursor = self.cursor.as_mut().expect("a cursor");
        let entries = loop {
            match cursor.read(max) {
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
        self.next_seq = cursor.next_seq();
        Ok(())
    }

    fn done(&mut self) {
        if let Some(last) = self.pending.last() {
            self.indexed.send_replace(last.seq);
        }
        self.pending.clear();
    }
}

fn end_of(group: &Written) -> u64 {
    group.first_seq + group.events.len() as u64
}
