//! The audit trail: every decision's record made durable before its answer is sent, indexed
//! in the database for queries, and kept for the retention period.
//!
//! On the embedded default (and on PostgreSQL with `audit_journal_dir`) the durable write is
//! an append to the local audit journal ([`crate::journal`]), and the database is its index,
//! fed by an indexer off the exchange path. On PostgreSQL without a journal the durable
//! write is the database commit itself: several replicas' local disks may not outlive them.

mod indexer;
mod queries;
mod retention;
mod sink;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::journal::{self, Durability, JournalError, JournalOptions};
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};

pub use indexer::IndexError;
pub use queries::{AuditPage, AuditTrail, MAX_PAGE, Whole};
pub use writer::{AuditError, AuditWriter, GATHER, MAX_BATCH};

use indexer::Indexer;
use queries::Journaled;
use sink::Sink;

/// How the trail is kept.
#[derive(Debug, Clone)]
pub struct TrailOptions {
    /// What makes a record durable.
    pub durable_write: DurableWrite,
    /// How long records are kept.
    pub retention: Duration,
}

/// What makes an audit record durable.
#[derive(Debug, Clone)]
pub enum DurableWrite {
    /// An append to the journal (the database is its index).
    Journal(JournalOptions),
    /// The database commit itself (PostgreSQL without a journal), as durable as this says.
    Database(Durability),
}

/// Why the trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// The journal cannot be opened (damaged before its tail, or not writable).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Records committed to the journal before a crash could not be indexed.
    #[error("indexing the audit journal at start: {0}")]
    Index(#[from] IndexError),
    /// The database did not answer.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The index holds records the journal does not: acknowledged records were lost from
    /// the journal (damage cut as if it were a torn tail, files restored from an older
    /// copy). New records would reuse sequence numbers the index already holds.
    #[error(
        "the audit index holds records of journal {journal} up to number {indexed}, but the \
         journal in {dir} ends at {durable}: records that were acknowledged are missing from it. \
         Restore the journal folder, or move it aside to start a new journal"
    )]
    JournalBehindIndex {
        /// The journal's id.
        journal: String,
        /// Its folder.
        dir: std::path::PathBuf,
        /// The index's high-water mark.
        indexed: u64,
        /// The last record in the journal.
        durable: u64,
    },
    /// A thread could not be started.
    #[error("starting the audit threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// Opens the trail: with a journal, indexes what it holds past the index's mark before
/// returning (so queries miss nothing committed before a crash), then starts the committer,
/// the indexer and retention. Must be called within the Tokio runtime the store uses.
pub async fn start(
    options: TrailOptions,
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
) -> Result<(AuditWriter, AuditTrail), TrailError> {
    let runtime = Handle::current();
    let journal_options = match options.durable_write {
        DurableWrite::Journal(journal) => journal,
        DurableWrite::Database(durability) => {
            let sink = Sink::Database {
                store: store.clone(),
                durable: durability == Durability::Fsync,
                runtime,
            };
            retention::spawn(store.clone(), None, options.retention);
            return Ok((
                AuditWriter::spawn(sink, metrics)?,
                AuditTrail::new(store, None),
            ));
        }
    };
    let (writer, reader) = {
        let options = journal_options.clone();
        tokio::task::spawn_blocking(move || journal::open(&options, 1))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??
    };
    let journal_id = reader.id();
    let mark = store.journal_mark(&journal_id).await?;
    if let Some(indexed) = mark.filter(|&m| m > reader.durable_seq()) {
        return Err(TrailError::JournalBehindIndex {
            journal: journal_id,
            dir: journal_options.dir.clone(),
            indexed,
            durable: reader.durable_seq(),
        });
    }
    let from = match mark {
        Some(mark) => mark + 1,
        None => reader.first_seq(),
    };
    if from < reader.first_seq() {
        tracing::error!(
            journal = %journal_options.dir.display(),
            missing = ?(from..reader.first_seq()),
            "audit journal records were removed before they were indexed"
        );
    }
    let from = from.max(reader.first_seq());
    let (indexed_tx, indexed) = watch::channel(from - 1);
    let mut indexer = Indexer::new(
        store.clone(),
        runtime,
        journal_id,
        reader.clone(),
        from,
        indexed_tx,
        metrics.clone(),
    );
    let replayed = indexer.catch_up().await?;
    if replayed > 0 {
        tracing::info!(records = replayed, "audit journal records indexed at start");
    }
    let (wake_indexer, wake) = flume::bounded(indexer::HANDOFF_QUEUE);
    std::thread::Builder::new()
        .name("sts-audit-index".into())
        .spawn(move || indexer.run(wake))?;
    let sink = Sink::Journal {
        writer: Box::new(writer),
        indexer: wake_indexer.clone(),
        encoded: Vec::new(),
        slim_index: !store.index_keeps_detail(),
    };
    retention::spawn(
        store.clone(),
        Some((reader.clone(), indexed.clone())),
        options.retention,
    );
    let journaled = Journaled {
        reader,
        indexed,
        wake_indexer,
    };
    Ok((
        AuditWriter::spawn(sink, metrics)?,
        AuditTrail::new(store, Some(journaled)),
    ))
}
