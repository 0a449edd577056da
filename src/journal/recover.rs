//! Opening a journal after whatever stopped it, and removing segments past retention.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use super::frame;
use super::reader::read_frame;
use super::segment::{self, SegmentHeader};
use super::writer::Tail;
use super::{JournalError, SegmentInfo, Shared, TAIL_WINDOW};

/// Opens the journal in `dir` (creating it with `first_seq` when empty).
pub(super) fn open(
    dir: &Path,
    segment_bytes: u64,
    first_seq: u64,
) -> Result<(Shared, Tail), JournalError> {
    std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
    let mut numbers = segment::list(dir).map_err(|e| JournalError::io(dir, e))?;
    if numbers.is_empty() {
        return create(dir, segment_bytes, first_seq);
    }
    let last = *numbers.last().expect("not empty");
    if numbers.len() > 1 && unfinished(dir, last)? {
        // A crash while the segment was being made: it never held a record.
        tracing::warn!(segment = %segment::path(dir, last).display(), "removing an audit journal segment whose creation was interrupted");
        let path = segment::path(dir, last);
        std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        numbers.pop();
    }
    let headers = read_headers(dir, &numbers)?;
    let (last_header, last_file) = {
        let number = *numbers.last().expect("not empty");
        let (file, header) = segment::open(dir, number, true)
            .map_err(|e| JournalError::io(&segment::path(dir, number), e))?;
        (header, file)
    };
    let tail = scan_tail(dir, last_file, &last_header)?;
    let infos = headers
        .iter()
        .enumerate()
        .map(|(i, h)| SegmentInfo {
            number: h.number,
            first_seq: h.first_seq,
            end: headers.get(i + 1).map(|next| u64::from(next.prev_end)),
        })
        .collect();
    let shared = Shared {
        dir: dir.to_owned(),
        journal_id: last_header.journal_id,
        durable: AtomicU64::new(tail.next_seq - 1),
        segments: RwLock::new(infos),
    };
    Ok((shared, tail))
}

fn create(dir: &Path, segment_bytes: u64, first_seq: u64) -> Result<(Shared, Tail), JournalError> {
    let header = SegmentHeader {
        journal_id: *uuid::Uuid::new_v4().as_bytes(),
        number: 1,
        prev_end: 0,
        first_seq,
        prev_crc: 0,
    };
    let file = segment::create(dir, &header, segment_bytes)
        .map_err(|e| JournalError::io(&segment::path(dir, 1), e))?;
    let shared = Shared {
        dir: dir.to_owned(),
        journal_id: header.journal_id,
        durable: AtomicU64::new(first_seq - 1),
        segments: RwLock::new(vec![SegmentInfo {
            number: 1,
            first_seq,
            end: None,
        }]),
    };
    let tail = Tail {
        file,
        number: 1,
        offset: segment::FRAMES_START,
        prev_crc: 0,
        next_seq: first_seq,
    };
    Ok((shared, tail))
}

/// A last segment whose header never made it to disk, and nothing after it either.
fn unfinished(dir: &Path, number: u32) -> Result<bool, JournalError> {
    let path = segment::path(dir, number);
    if segment::open(dir, number, false).is_ok() {
        return Ok(false);
    }
    let file = File::open(&path).map_err(|e| JournalError::io(&path, e))?;
    let written =
        last_nonzero(&file, segment::FRAMES_START).map_err(|e| JournalError::io(&path, e))?;
    Ok(written.is_none())
}

/// Every segment's header; they must be one journal's, numbered without a gap, in order.
fn read_headers(dir: &Path, numbers: &[u32]) -> Result<Vec<SegmentHeader>, JournalError> {
    let mut headers: Vec<SegmentHeader> = Vec::with_capacity(numbers.len());
    for &number in numbers {
        let path = segment::path(dir, number);
        let (_, header) = segment::open(dir, number, false).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => JournalError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "the segment header is damaged".into(),
            },
            _ => JournalError::io(&path, e),
        })?;
        if let Some(before) = headers.last() {
            let problem = if header.journal_id != before.journal_id {
                Some("it belongs to another journal")
            } else if header.number != before.number + 1 {
                Some("the segment before it is missing")
            } else if header.first_seq < before.first_seq {
                Some("its records are numbered before the previous segment's")
            } else {
                None
            };
            if let Some(reason) = problem {
                return Err(JournalError::Corrupt {
                    path,
                    offset: 0,
                    reason: reason.into(),
                });
            }
        }
        headers.push(header);
    }
    Ok(headers)
}

/// Reads the last segment's frames to their end; cuts a torn tail, refuses damage before it.
fn scan_tail(dir: &Path, file: File, header: &SegmentHeader) -> Result<Tail, JournalError> {
    let path = segment::path(dir, header.number);
    let mut offset = segment::FRAMES_START;
    let mut prev_crc = header.prev_crc;
    let mut next_seq = header.first_seq;
    // Damage, a broken chain or the zeros past the written part all end the scan here.
    while let Ok(Some(frame)) = read_frame(&file, offset) {
        let h = frame.header;
        if h.prev_crc != prev_crc
            || h.first_seq != next_seq
            || frame::records(&h, &frame.payload).is_err()
        {
            break;
        }
        prev_crc = h.crc;
        next_seq = h.seqs().end;
        offset = h.next_offset(offset);
    }
    let io_err = |e| JournalError::io(&path, e);
    if let Some(last) = last_nonzero(&file, offset).map_err(io_err)? {
        if last >= offset + TAIL_WINDOW {
            return Err(JournalError::Corrupt {
                path,
                offset,
                reason: format!(
                    "records were written {} bytes past damage that is not a torn tail",
                    last - offset
                ),
            });
        }
        tracing::warn!(
            file = %path.display(),
            offset,
            bytes = last + 1 - offset,
            "audit journal: cutting a torn tail (a group interrupted before it was synced, never acknowledged)"
        );
        let zeros = vec![0u8; (last + 1 - offset) as usize];
        file.write_all_at(&zeros, offset).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
    }
    Ok(Tail {
        file,
        number: header.number,
        offset,
        prev_crc,
        next_seq,
    })
}

/// The offset of the last byte at or past `from` that is not zero.
fn last_nonzero(file: &File, from: u64) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut last = None;
    let mut at = from;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            last = Some(at + i as u64);
        }
        at += n as u64;
    }
    Ok(last)
}

/// See [`super::JournalReader::remove_older`].
pub(super) fn remove_older(
    shared: &Shared,
    before: i64,
    indexed: u64,
) -> Result<usize, JournalError> {
    let mut removed = 0;
    loop {
        let (first, next) = {
            let segments = shared.segments();
            match (segments.first(), segments.get(1)) {
                (Some(first), Some(next)) => (*first, *next),
                _ => return Ok(removed),
            }
        };
        // Every record of `first` is before `next.first_seq`.
        if next.first_seq == 0 || next.first_seq - 1 > indexed {
            return Ok(removed);
        }
        let end = first.end.unwrap_or(0);
        let path = segment::path(&shared.dir, first.number);
        if newest_time(&path, end)? >= before {
            return Ok(removed);
        }
        std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        shared.segments_mut().retain(|s| s.number != first.number);
        tracing::info!(file = %path.display(), "audit journal segment removed (past retention, indexed)");
        removed += 1;
    }
}

/// The newest record time in a sealed segment, from its frame headers.
fn newest_time(path: &Path, end: u64) -> Result<i64, JournalError> {
    let file = File::open(path).map_err(|e| JournalError::io(path, e))?;
    let mut offset = segment::FRAMES_START;
    let mut newest = i64::MIN;
    while offset < end {
        let mut head = [0u8; frame::HEADER_BYTES];
        file.read_exact_at(&mut head, offset)
            .map_err(|e| JournalError::io(path, e))?;
        let header = frame::read_header(&head).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: e.to_string(),
        })?;
        newest = newest.max(header.max_time);
        offset = header.next_offset(offset);
    }
    Ok(newest)
}
