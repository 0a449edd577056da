//! Reading the journal: frame by frame from a sequence number (the indexer, recovery), or one
//! record at its position (queries). Every frame read is checked (length, CRC, chain);
//! damage is an error that names the file and offset, never a record skipped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame::{self, FrameError, Header};
use super::position::Position;
use super::segment;
use super::{JournalError, Shared};

/// A frame read and checked.
pub struct Frame {
    /// Its header.
    pub header: Header,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Reads the frame at `offset` of `file`. `Ok(None)` at the end of the written part.
pub fn read_frame(file: &File, offset: u64) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; frame::HEADER_BYTES];
    if file.read_exact_at(&mut head, offset).is_err() {
        // Past the end of the file: nothing was written there.
        return Ok(None);
    }
    let header = match frame::read_header(&head) {
        Err(FrameError::End) => return Ok(None),
        other => other?,
    };
    let mut payload = vec![0u8; header.payload_len as usize];
    file.read_exact_at(&mut payload, offset + frame::HEADER_BYTES as u64)
        .map_err(|_| FrameError::Damaged("frame runs past the end of the segment"))?;
    frame::check_crc(&head, &payload)?;
    Ok(Some(Frame { header, payload }))
}

/// A record read back, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// Its place.
    pub position: Position,
    /// Its bytes.
    pub record: Vec<u8>,
}

/// Reads the journal in order from a sequence number.
pub struct Cursor {
    shared: Arc<Shared>,
    /// The segment being read, and the next frame's offset in it.
    segment: u32,
    file: Option<File>,
    offset: u64,
    /// The CRC the next frame must chain from.
    prev_crc: Option<u32>,
    /// The next record to hand out.
    next_seq: u64,
    /// An error met after records were read, for the next call.
    deferred: Option<JournalError>,
}

impl Cursor {
    pub(super) fn new(shared: Arc<Shared>, from_seq: u64) -> Self {
        Self {
            shared,
            segment: 0,
            file: None,
            offset: 0,
            prev_crc: None,
            next_seq: from_seq,
            deferred: None,
        }
    }

    /// The next record this cursor hands out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Up to `max` records from the next one on, never past what the writer has made
    /// durable. Empty when there is nothing new. An error met after some records were read
    /// is returned by the next call, so no record read is ever dropped.
    pub fn read(&mut self, max: usize) -> Result<Vec<Entry>, JournalError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let durable = self.shared.durable_seq();
        let mut out = Vec::new();
        while out.len() < max && self.next_seq <= durable {
            match self.step(&mut out) {
                Ok(()) => {}
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads the next frame into `out`, or moves on to the next segment.
    fn step(&mut self, out: &mut Vec<Entry>) -> Result<(), JournalError> {
        if self.file.is_none() {
            self.locate()?;
        }
        let path = segment::path(&self.shared.dir, self.segment);
        let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        if (self.shared.valid_end(self.segment)).is_some_and(|end| self.offset >= end) {
            // The segment is sealed and read: on to the next.
            self.file = None;
            return Ok(());
        }
        let file = self.file.as_ref().expect("located");
        let frame = read_frame(file, self.offset)
            .map_err(|e| corrupt(self.offset, e.to_string()))?
            .ok_or_else(|| {
                corrupt(
                    self.offset,
                    "the journal ends before its durable records".into(),
                )
            })?;
        let header = frame.header;
        if self.prev_crc.is_some_and(|crc| crc != header.prev_crc) {
            return Err(corrupt(
                self.offset,
                "the frame does not follow the one before".into(),
            ));
        }
        let records = frame::records(&header, &frame.payload)
            .map_err(|e| corrupt(self.offset, e.to_string()))?;
        if header.first_seq > self.next_seq {
            return Err(corrupt(
                self.offset,
                format!(
                    "record {} where {} was due",
                    header.first_seq, self.next_seq
                ),
            ));
        }
        for (index, record) in records.into_iter().enumerate() {
            let seq = header.first_seq + index as u64;
            if seq < self.next_seq {
                continue;
            }
            out.push(Entry {
                seq,
                position: Position {
                    segment: self.segment,
                    offset: self.offset as u32,
                    index: index as u16,
                },
                record,
            });
            self.next_seq += 1;
        }
        self.prev_crc = Some(header.crc);
        self.offset = header.next_offset(self.offset);
        Ok(())
    }

    /// Finds the segment and frame holding `next_seq`, reading frame headers from the start
    /// of its segment.
    fn locate(&mut self) -> Result<(), JournalError> {
        let number = self
            .shared
            .segment_holding(self.next_seq)
            .ok_or(JournalError::Missing { seq: self.next_seq })?;
        let path = segment::path(&self.shared.dir, number);
        let (file, header) = match segment::open(&self.shared.dir, number, false) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Removed by hand: what it held is gone. Say so, and go on with the next
                // segment, so that records written after it are still indexed.
                let next = self
                    .shared
                    .segment_after(number)
                    .ok_or(JournalError::io(&path, e))?;
                let first = self.next_seq;
                self.next_seq = next.first_seq.max(first);
                self.prev_crc = None;
                return Err(JournalError::Lost {
                    path,
                    first,
                    end: self.next_seq,
                });
            }
            Err(e) => return Err(JournalError::io(&path, e)),
        };
        self.segment = number;
        self.offset = segment::FRAMES_START;
        self.prev_crc = Some(header.prev_crc).filter(|_| header.prev_end != 0);
        let mut seq = header.first_seq;
        // Skip whole frames before the one that holds `next_seq`.
        loop {
            let path = segment::path(&self.shared.dir, number);
            let frame = read_frame(&file, self.offset).map_err(|e| JournalError::Corrupt {
                path: path.clone(),
                offset: self.offset,
                reason: e.to_string(),
            })?;
            let Some(frame) = frame else { break };
            if frame.header.first_seq != seq {
                return Err(JournalError::Corrupt {
                    path,
                    offset: self.offset,
                    reason: format!("record {} where {seq} was due", frame.header.first_seq),
                });
            }
            if frame.header.seqs().end > self.next_seq {
                break;
            }
            seq = frame.header.seqs().end;
            self.prev_crc = Some(frame.header.crc);
            self.offset = frame.header.next_offset(self.offset);
        }
        self.file = Some(file);
        Ok(())
    }
}

/// Reads records at their positions, keeping the frame read last: the records of one group
/// commit share a frame, and the index lists them side by side, so a page of them reads and
/// decompresses each frame once rather than once per record. Needs only the folder: it
/// reads, never recovers or cuts, so it may read the journal of a running broker.
pub struct PositionReader {
    dir: PathBuf,
    /// The frame last read.
    last: Option<ReadFrame>,
}

impl PositionReader {
    /// A reader of the journal in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, last: None }
    }

    /// The journal's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record at `position`.
    pub fn read(&mut self, position: Position) -> Result<Vec<u8>, JournalError> {
        let key = (position.segment, position.offset);
        if self.last.as_ref().is_none_or(|(at, _)| *at != key) {
            let records = read_frame_at(&self.dir, position)?;
            self.last = Some((key, records));
        }
        let (_, records) = self.last.as_ref().expect("just read");
        records
            .get(usize::from(position.index))
            .cloned()
            .ok_or_else(|| JournalError::Corrupt {
                path: segment::path(&self.dir, position.segment),
                offset: u64::from(position.offset),
                reason: format!("the frame holds no record {}", position.index),
            })
    }
}

/// A frame's place (segment, offset) and its records.
type ReadFrame = ((u32, u32), Vec<Vec<u8>>);

/// The records of the frame holding `position`.
fn read_frame_at(dir: &Path, position: Position) -> Result<Vec<Vec<u8>>, JournalError> {
    let path = segment::path(dir, position.segment);
    let file = File::open(&path).map_err(|e| JournalError::io(&path, e))?;
    let offset = u64::from(position.offset);
    let corrupt = |reason: String| JournalError::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    let frame = read_frame(&file, offset)
        .map_err(|e| corrupt(e.to_string()))?
        .ok_or_else(|| corrupt("no frame at this position".into()))?;
    frame::records(&frame.header, &frame.payload).map_err(|e| corrupt(e.to_string()))
}
