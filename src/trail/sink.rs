//! Where a group of records is made durable: appended to the audit journal (the default, and
//! on PostgreSQL with `audit_journal_dir`), or committed to the database.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::indexer::{Wake, Written};
use crate::audit::AuditEvent;
use crate::journal::JournalWriter;
use crate::storage::Storage;

/// The durable write.
pub(super) enum Sink {
    /// The journal; each group written is handed to the indexer.
    Journal {
        writer: Box<JournalWriter>,
        indexer: flume::Sender<Wake>,
        encoded: Vec<Vec<u8>>,
        /// The index keeps no `detail`: the events handed to the indexer need none, and
        /// with the kept claims it is most of an event's memory while groups wait there.
        slim_index: bool,
    },
    /// The database commit (PostgreSQL without a journal).
    Database {
        store: Arc<dyn Storage>,
        /// Wait for the database's disk (`audit_durability = "fsync"`).
        durable: bool,
        runtime: Handle,
    },
}

impl Sink {
    /// Makes `events` durable, all or none.
    pub(super) fn commit(&mut self, mut events: Vec<AuditEvent>) -> Result<(), String> {
        match self {
            Sink::Journal {
                writer,
                indexer,
                encoded,
                slim_index,
            } => {
                // The buffers are kept from group to group: no allocation per record.
                if encoded.len() < events.len() {
                    encoded.resize_with(events.len(), Vec::new);
                }
                for (event, buffer) in events.iter().zip(encoded.iter_mut()) {
                    buffer.clear();
                    serde_json::to_writer(&mut *buffer, event).map_err(|e| e.to_string())?;
                }
                let records: Vec<&[u8]> =
                    encoded[..events.len()].iter().map(Vec::as_slice).collect();
                let newest = events.iter().map(|e| e.time).max().unwrap_or(0);
                let appended = writer
                    .append(&records, newest)
                    .map_err(|e| format!("audit journal: {e}"))?;
                if *slim_index {
                    for event in &mut events {
                        event.detail = serde_json::Value::Null;
                        event.claims_text = None;
                    }
                }
                // When the indexer's queue is full it reads these from the journal instead.
                let _ = indexer.try_send(Wake::Written(Written {
                    first_seq: appended.first_seq,
                    positions: appended.positions,
                    events,
                }));
                Ok(())
            }
            Sink::Database {
                store,
                durable,
                runtime,
            } => store
                .append_audit_blocking(&events, *durable, runtime)
                .map_err(|e| e.to_string()),
        }
    }

    /// Between groups: syncs what [`crate::journal::Durability::Os`] left unsynced.
    pub(super) fn idle(&mut self) -> Result<(), String> {
        match self {
            Sink::Journal { writer, .. } if writer.has_unsynced() => {
                writer.sync().map_err(|e| format!("audit journal: {e}"))
            }
            _ => Ok(()),
        }
    }

    /// After a failure, with nothing to write: can records be made durable again?
    pub(super) fn probe(&mut self) -> Result<(), String> {
        match self {
            Sink::Journal { writer, .. } => {
                writer.reopen().map_err(|e| format!("audit journal: {e}"))
            }
            Sink::Database { store, runtime, .. } => {
                runtime.block_on(store.ping()).map_err(|e| e.to_string())
            }
        }
    }
}
