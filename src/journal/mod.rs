//! The audit journal: an append-only log on the local disk, and the durable write of every
//! audit record. The database is only its index (see [`crate::audit`]).
//!
//! The shape is etcd's write-ahead log: segment files preallocated to their full size, frames
//! carrying a group of records with their length and a chained CRC32C, one write and one
//! `fdatasync` per group commit. Opening it cuts a torn tail (the last group, interrupted
//! before its sync: nobody was told it was written) at the last good frame, with a warning;
//! damage anywhere before that tail refuses to open, naming the file and offset. Records are
//! opaque bytes here; each has a sequence number and a [`Position`] an index can keep.

mod frame;
mod position;
mod reader;
mod recover;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use position::{MAX_RECORDS_PER_FRAME, MAX_SEGMENT_BYTES, Position};
pub use reader::{Cursor, Entry, PositionReader};
pub use writer::{Appended, JournalWriter};

/// Smallest segment size accepted (tests use it; production wants megabytes).
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// Default segment size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The most bytes ever written and not yet synced, so the most a crash can tear. Recovery
/// cuts damage within this distance of the end as a torn tail; damage that has any written
/// byte further on is corruption.
pub const TAIL_WINDOW: u64 = 8 << 20;

/// When a group counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// On stable storage (`fdatasync`) before it is acknowledged: survives power loss.
    Fsync,
    /// Handed to the operating system before it is acknowledged, synced within
    /// a fraction of a second: survives a crash of the process, not of the machine.
    Os,
}

/// Why the journal cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file could not be read or written.
    #[error("audit journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Damaged data where records must be.
    #[error("audit journal {path} is damaged at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The segment that should hold a record is gone.
    #[error("audit journal record {seq} is in no segment (removed by hand, or by retention)")]
    Missing {
        /// The record.
        seq: u64,
    },
    /// A segment was removed (by hand) before its records were read: they are lost. A cursor
    /// that reports this has moved on to the next segment.
    #[error("audit journal {path} was removed before it was read: records {first}..{end} are lost")]
    Lost {
        /// The file that is gone.
        path: PathBuf,
        /// The first lost record.
        first: u64,
        /// The first record after them.
        end: u64,
    },
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// How to open a journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Its folder (created if missing).
    pub dir: PathBuf,
    /// Size of each segment file.
    pub segment_bytes: u64,
    /// When a group counts as written.
    pub durability: Durability,
}

/// What the writer and readers share.
pub(crate) struct Shared {
    dir: PathBuf,
    journal_id: [u8; 16],
    /// The last sequence number written (0: none yet).
    durable: AtomicU64,
    segments: RwLock<Vec<SegmentInfo>>,
}

#[derive(Debug, Clone, Copy)]
struct SegmentInfo {
    number: u32,
    first_seq: u64,
    /// Its valid length once a later segment has started.
    end: Option<u64>,
}

impl Shared {
    fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn publish_durable(&self, seq: u64) {
        self.durable.store(seq, Ordering::Release);
    }

    fn segments(&self) -> std::sync::RwLockReadGuard<'_, Vec<SegmentInfo>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn segments_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SegmentInfo>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }

    fn valid_end(&self, number: u32) -> Option<u64> {
        self.segments()
            .iter()
            .find(|s| s.number == number)
            .and_then(|s| s.end)
    }

    /// The segment after `number`, if the journal has one.
    fn segment_after(&self, number: u32) -> Option<SegmentInfo> {
        self.segments().iter().find(|s| s.number > number).copied()
    }

    fn segment_holding(&self, seq: u64) -> Option<u32> {
        let segments = self.segments();
        segments
            .iter()
            .rev()
            .find(|s| s.first_seq <= seq)
            .map(|s| s.number)
    }

    /// A new segment, sealing the one before at `prev_end`.
    fn add_segment(&self, number: u32, first_seq: u64, prev_end: u64) {
        let mut segments = self.segments_mut();
        if let Some(last) = segments.last_mut() {
            last.end = Some(prev_end);
        }
        segments.push(SegmentInfo {
            number,
            first_seq,
            end: None,
        });
    }

    /// Forgets a segment a failed group had started; the one before is open again.
    fn drop_segment(&self, number: u32) {
        let mut segments = self.segments_mut();
        segments.retain(|s| s.number != number);
        if let Some(last) = segments.last_mut() {
            last.end = None;
        }
    }
}

/// Reads records; cheap to clone.
#[derive(Clone)]
pub struct JournalReader {
    shared: Arc<Shared>,
}

impl JournalReader {
    /// The journal's id, as text.
    pub fn id(&self) -> String {
        uuid::Uuid::from_bytes(self.shared.journal_id)
            .simple()
            .to_string()
    }

    /// The last sequence number written (0 when nothing has been).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq()
    }

    /// A cursor that reads from `seq` on.
    pub fn cursor(&self, seq: u64) -> Cursor {
        Cursor::new(self.shared.clone(), seq)
    }

    /// The record at `position`.
    pub fn read(&self, position: Position) -> Result<Vec<u8>, JournalError> {
        self.positions().read(position)
    }

    /// A reader of records by position (see [`PositionReader`]).
    pub fn positions(&self) -> PositionReader {
        PositionReader::new(self.shared.dir.clone())
    }

    /// The first sequence number still in the journal.
    pub fn first_seq(&self) -> u64 {
        self.shared.segments().first().map_or(1, |s| s.first_seq)
    }

    /// Removes whole sealed segments whose every record is older than `before` (Unix
    /// seconds) and at or before `indexed` (a segment not yet indexed is kept whatever its
    /// age); returns how many were removed. The open segment is never removed.
    pub fn remove_older(&self, before: i64, indexed: u64) -> Result<usize, JournalError> {
        recover::remove_older(&self.shared, before, indexed)
    }
}

/// Opens (or creates) the journal in `options.dir`: checks and, where torn, cuts the tail of
/// its last segment, and returns its writer and a reader. `first_seq` numbers the first
/// record of a new journal.
pub fn open(
    options: &JournalOptions,
    first_seq: u64,
) -> Result<(JournalWriter, JournalReader), JournalError> {
    let (shared, tail) = recover::open(&options.dir, options.segment_bytes, first_seq)?;
    let shared = Arc::new(shared);
    let writer = JournalWriter::new(
        shared.clone(),
        options.durability,
        options.segment_bytes,
        tail,
    )
    .map_err(|e| JournalError::io(&options.dir, e))?;
    Ok((writer, JournalReader { shared }))
}
