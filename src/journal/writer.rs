//! Appending groups of records: one write of one or more frames, then (with
//! [`Durability::Fsync`]) one `fdatasync`, before any record of the group is acknowledged.
//!
//! Any failed write, sync or check leaves the current segment for good: the next group starts
//! a new segment whose header records how long the old one validly is, so bytes a failed
//! write may have left behind are never read. While no new segment can be made (a full disk,
//! a vanished directory), every append fails, and the caller fails closed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::{self, Encoder};
use super::position::{MAX_RECORDS_PER_FRAME, Position};
use super::segment::{self, SegmentHeader};
use super::{Durability, Shared, TAIL_WINDOW};

/// With [`Durability::Os`], written groups are synced at least this often.
const OS_SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// What one append made durable.
#[derive(Debug)]
pub struct Appended {
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Each record's place, in order.
    pub positions: Vec<Position>,
}

/// The open segment.
struct Open {
    file: File,
    number: u32,
    /// Where the next frame goes.
    offset: u64,
}

/// Where the journal's acknowledged part ends.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// The segment and the offset just past the last frame.
    segment: u32,
    offset: u64,
    /// That frame's CRC, which the next frame chains from.
    prev_crc: u32,
    /// The next record's sequence number.
    next_seq: u64,
}

/// The journal's only writer.
pub struct JournalWriter {
    shared: Arc<Shared>,
    durability: Durability,
    segment_bytes: u64,
    /// `None` after a failure: the next append starts a new segment.
    open: Option<Open>,
    /// Where the last acknowledged group ends: what a failed group falls back to.
    acked: Mark,
    /// Where the group being written has got to.
    at: Mark,
    encoder: Encoder,
    buffer: Vec<u8>,
    /// Bytes written since the last sync, and when that was.
    unsynced: u64,
    synced_at: Instant,
}

/// Where recovery left the journal.
pub(super) struct Tail {
    pub file: File,
    pub number: u32,
    pub offset: u64,
    pub prev_crc: u32,
    pub next_seq: u64,
}

impl JournalWriter {
    pub(super) fn new(
        shared: Arc<Shared>,
        durability: Durability,
        segment_bytes: u64,
        tail: Tail,
    ) -> io::Result<Self> {
        let mark = Mark {
            segment: tail.number,
            offset: tail.offset,
            prev_crc: tail.prev_crc,
            next_seq: tail.next_seq,
        };
        Ok(Self {
            shared,
            durability,
            segment_bytes,
            open: Some(Open {
                file: tail.file,
                number: tail.number,
                offset: tail.offset,
            }),
            acked: mark,
            at: mark,
            encoder: Encoder::new()?,
            buffer: Vec::new(),
            unsynced: 0,
            synced_at: Instant::now(),
        })
    }

    /// Appends `records` (the newest written at `max_time`) and returns once they are
    /// durable as configured. On error nothing of the group counts as written.
    pub fn append(&mut self, records: &[&[u8]], max_time: i64) -> io::Result<Appended> {
        match self.try_append(records, max_time) {
            Ok(appended) => {
                self.acked = self.at;
                self.shared.publish_durable(self.acked.next_seq - 1);
                Ok(appended)
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    /// After a failure: whatever the group left is past the acknowledged end, and the next
    /// group starts a new segment that says where that end is. Segments the group started
    /// hold nothing acknowledged and are removed.
    fn abandon(&mut self) {
        self.open = None;
        for number in self.acked.segment + 1..=self.at.segment {
            let _ = std::fs::remove_file(segment::path(&self.shared.dir, number));
            self.shared.drop_segment(number);
        }
        self.at = self.acked;
        self.unsynced = 0;
    }

    fn try_append(&mut self, records: &[&[u8]], max_time: i64) -> io::Result<Appended> {
        if self.open.is_none() {
            self.roll()?;
        }
        let mut positions = Vec::with_capacity(records.len());
        let first_seq = self.at.next_seq;
        let mut rest = records;
        while !rest.is_empty() {
            let take = frame_fill(rest);
            self.write_frame(&rest[..take], max_time, &mut positions)?;
            rest = &rest[take..];
        }
        match self.durability {
            Durability::Fsync => self.sync()?,
            Durability::Os if self.synced_at.elapsed() >= OS_SYNC_INTERVAL => self.sync()?,
            Durability::Os => {}
        }
        self.check_linked()?;
        Ok(Appended {
            first_seq,
            positions,
        })
    }

    /// Writes one frame, starting a new segment first when it does not fit.
    fn write_frame(
        &mut self,
        records: &[&[u8]],
        max_time: i64,
        positions: &mut Vec<Position>,
    ) -> io::Result<()> {
        self.buffer.clear();
        let crc = self.encoder.encode(
            records,
            self.at.next_seq,
            max_time,
            self.at.prev_crc,
            &mut self.buffer,
        )?;
        // Frames start on a page: the zeros up to the next one go out with this write.
        let padded = frame::align_up(self.buffer.len() as u64);
        self.buffer.resize(padded as usize, 0);
        let len = padded;
        if segment::FRAMES_START + len > self.segment_bytes {
            return Err(io::Error::other(
                "an audit record group does not fit in a journal segment",
            ));
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.offset + len > self.segment_bytes)
        {
            // A whole segment: sealed at its end; nothing is lost.
            self.sync()?;
            self.roll()?;
        }
        if self.unsynced + len > TAIL_WINDOW {
            // Recovery cuts a torn tail only within this window; never leave more unsynced.
            self.sync()?;
        }
        let open = self.open.as_mut().expect("a segment is open");
        open.file.write_all_at(&self.buffer, open.offset)?;
        for index in 0..records.len() {
            positions.push(Position {
                segment: open.number,
                offset: open.offset as u32,
                index: index as u16,
            });
        }
        open.offset += len;
        self.unsynced += len;
        self.at = Mark {
            segment: open.number,
            offset: open.offset,
            prev_crc: crc,
            next_seq: self.at.next_seq + records.len() as u64,
        };
        Ok(())
    }

    /// Makes everything written so far durable (also called by the committer in
    /// [`Durability::Os`] when it has been idle a while).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        let open = self
            .open
            .as_ref()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        open.file.sync_data()?;
        self.unsynced = 0;
        self.synced_at = Instant::now();
        Ok(())
    }

    /// After a failure: starts a new segment now, so that a caller can tell whether groups
    /// can be written again before it has one to write.
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.open.is_none()
            && let Err(e) = self.roll()
        {
            self.abandon();
            return Err(e);
        }
        if let Err(e) = self.check_linked() {
            self.abandon();
            return Err(e);
        }
        Ok(())
    }

    /// Whether written records wait for a sync.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced > 0
    }

    /// A segment whose file was removed (its directory deleted) takes records into nothing.
    fn check_linked(&self) -> io::Result<()> {
        let open = self
            .open
            .as_ref()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        match rustix::fs::fstat(&open.file)?.st_nlink {
            0 => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the journal segment was removed",
            )),
            _ => Ok(()),
        }
    }

    /// Starts the segment after the one written to, recording where that one validly ends.
    fn roll(&mut self) -> io::Result<()> {
        let number = self.at.segment + 1;
        if !Position::segment_fits(number) {
            return Err(io::Error::other(
                "the journal has used every segment number",
            ));
        }
        let header = SegmentHeader {
            journal_id: self.shared.journal_id,
            number,
            prev_end: self.at.offset as u32,
            first_seq: self.at.next_seq,
            prev_crc: self.at.prev_crc,
        };
        let file = segment::create(&self.shared.dir, &header, self.segment_bytes)?;
        self.shared
            .add_segment(number, self.at.next_seq, self.at.offset);
        self.open = Some(Open {
            file,
            number,
            offset: segment::FRAMES_START,
        });
        self.at.segment = number;
        self.at.offset = segment::FRAMES_START;
        self.unsynced = 0;
        tracing::debug!(
            segment = number,
            first_seq = self.at.next_seq,
            "audit journal segment started"
        );
        Ok(())
    }
}

/// How many of `records` go into the next frame.
fn frame_fill(records: &[&[u8]]) -> usize {
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        bytes += record.len() + 4;
        if i == MAX_RECORDS_PER_FRAME || (i > 0 && bytes > frame::MAX_GROUP_BYTES) {
            return i;
        }
    }
    records.len()
}
