//! Reading the audit trail: pages of records, newest first, and the records of one request,
//! which are found as soon as the request was answered (read-your-decision).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::audit::{AuditEvent, AuditFilter, AuditKind, AuditRecord};
use crate::journal::{JournalReader, Position, PositionReader};
use crate::storage::{AuditRow, Storage, StorageError};

/// Largest page of audit records.
pub const MAX_PAGE: u32 = 500;
/// How long a lookup by request id waits for the indexer to reach the records that were
/// durable when it was asked (a decision answered a moment ago).
const READ_YOUR_DECISION: Duration = Duration::from_secs(2);
/// How long a list waits for the same, before it answers with what is indexed.
const LIST_WAIT: Duration = Duration::from_secs(1);

/// One page of records and the cursor of the next (older) page, if there may be one.
#[derive(Debug)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `before_id` for the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// The journal behind the index, when there is one.
#[derive(Clone)]
pub(super) struct Journaled {
    pub(super) reader: JournalReader,
    pub(super) indexed: watch::Receiver<u64>,
    pub(super) wake_indexer: flume::Sender<super::indexer::Wake>,
}

/// Queries over the audit trail.
pub struct AuditTrail {
    store: Arc<dyn Storage>,
    /// The running broker's journal: queries wait for its indexer.
    journal: Option<Journaled>,
    /// The journal's folder, where rows that keep part of their event find the rest.
    files: Option<PathBuf>,
}

/// Which rows of a page need their whole event (read from the journal when the index keeps
/// only part of it).
pub type Whole = fn(&AuditEvent) -> bool;

impl AuditTrail {
    pub(super) fn new(store: Arc<dyn Storage>, journal: Option<Journaled>) -> Self {
        let files = journal
            .as_ref()
            .map(|j| j.reader.positions().dir().to_owned());
        Self {
            store,
            journal,
            files,
        }
    }

    /// The trail of a database some broker keeps, read from outside it (`policy diff
    /// --database-url`): nothing is written, nothing waits for an indexer. `journal_dir` is
    /// that broker's journal folder, if it has one.
    pub fn read_only(store: Arc<dyn Storage>, journal_dir: Option<PathBuf>) -> Self {
        Self {
            store,
            journal: None,
            files: journal_dir,
        }
    }

    /// Exchange records at or after `since`, newest first by time: a page of at most
    /// `limit` (≤ [`MAX_PAGE`]) before `cursor` (the time and id of the previous page's
    /// last record). Only rows that `whole` picks are completed from the journal; the
    /// others keep what the index has. Keyset paging over the time index: each page is one
    /// bounded range scan, however long the period or old the log.
    pub async fn exchanges(
        &self,
        since: i64,
        cursor: Option<(i64, i64)>,
        limit: u32,
        whole: Whole,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        if cursor.is_none() {
            self.wait_indexed(LIST_WAIT).await;
        }
        let filter = AuditFilter {
            since: Some(since),
            kind: Some(AuditKind::Exchange),
            by_time: true,
            before_time: cursor.map(|(time, _)| time),
            before_id: cursor.map(|(_, id)| id),
            limit: limit.clamp(1, MAX_PAGE),
            ..AuditFilter::default()
        };
        let rows = self.store.query_audit(&filter).await?;
        self.resolve(rows, whole).await
    }

    /// The records matching `filter`, a page of at most `filter.limit` (≤ [`MAX_PAGE`]).
    /// Records durable when it was asked are in it, unless the indexer is more than
    /// [`LIST_WAIT`] behind (a database outage, a burst): lists may lag, by design.
    pub async fn page(&self, filter: &AuditFilter) -> Result<AuditPage, StorageError> {
        self.wait_indexed(LIST_WAIT).await;
        let mut filter = filter.clone();
        filter.limit = filter.limit.clamp(1, MAX_PAGE);
        let rows = self.store.query_audit(&filter).await?;
        // A full page may have a successor; a short one is the last.
        let next = (rows.len() == filter.limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let records = self.resolve(rows, |_| true).await?;
        Ok(AuditPage { records, next })
    }

    /// The records of one request (an exchange has one; an admin change one per write).
    /// A request answered a moment ago is found even if the indexer has not reached it.
    pub async fn by_request(&self, request_id: &str) -> Result<Vec<AuditRecord>, StorageError> {
        let mut rows = self.store.audit_by_request(request_id).await?;
        if rows.is_empty() && self.journal.is_some() {
            // Read again even when the wait returns at once: the indexer may have reached the
            // record between the read above and the wait's check, and then nothing waits.
            self.wait_indexed(READ_YOUR_DECISION).await;
            rows = self.store.audit_by_request(request_id).await?;
        }
        self.resolve(rows, |_| true).await
    }

    /// Waits, at most `limit`, until the index holds every record durable now.
    async fn wait_indexed(&self, limit: Duration) {
        let Some(journal) = &self.journal else {
            return;
        };
        let durable = journal.reader.durable_seq();
        if *journal.indexed.borrow() >= durable {
            return;
        }
        let _ = journal.wake_indexer.try_send(super::indexer::Wake::Nudge);
        let mut indexed = journal.indexed.clone();
        let reached = indexed.wait_for(|seq| *seq >= durable);
        let _ = tokio::time::timeout(limit, reached).await;
    }

    /// The whole events of rows that keep only part of theirs (those `whole` picks), read
    /// from the journal. A record the journal no longer has (its files removed by hand) is
    /// shown as the index keeps it, with the reason in its detail, rather than failing the
    /// whole page.
    async fn resolve(
        &self,
        rows: Vec<AuditRow>,
        whole: Whole,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let partial = |r: &AuditRow| r.journal_position.is_some() && whole(&r.event);
        if !rows.iter().any(partial) {
            return Ok(rows
                .into_iter()
                .map(|r| AuditRecord {
                    id: r.id,
                    event: r.event,
                })
                .collect());
        }
        let mut reader = self.files.clone().map(PositionReader::new);
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|row| {
                    let event = match row.journal_position {
                        Some(packed) if whole(&row.event) => {
                            match read_event(reader.as_mut(), packed, &row.event) {
                                Ok(event) => event,
                                Err(reason) => {
                                    tracing::warn!(request_id = %row.event.request_id, error = %reason, "audit record not in the journal");
                                    let mut partial = row.event;
                                    partial.detail = json!({"journal_unavailable": reason});
                                    partial
                                }
                            }
                        }
                        _ => row.event,
                    };
                    AuditRecord { id: row.id, event }
                })
                .collect()
        })
        .await
        .map_err(|e| StorageError::Corrupt(format!("reading the audit journal stopped: {e}")))
    }
}

/// The whole record a slim row points at. The row's own columns must agree with it: a
/// journal folder replaced by another (new segments numbered from 1 again) would otherwise
/// answer with another request's record.
fn read_event(
    reader: Option<&mut PositionReader>,
    packed: i64,
    row: &AuditEvent,
) -> Result<AuditEvent, String> {
    let reader = reader.ok_or("the record is in an audit journal, and none is configured")?;
    let position =
        Position::unpack(packed).ok_or(format!("journal position {packed} is not valid"))?;
    let bytes = reader.read(position).map_err(|e| e.to_string())?;
    let event: AuditEvent =
        serde_json::from_slice(&bytes).map_err(|e| format!("journal record: {e}"))?;
    if event.request_id != row.request_id || event.time != row.time {
        return Err(format!(
            "the journal holds another record at position {packed} (the journal was replaced)"
        ));
    }
    Ok(event)
}
