//! The journal's contract: what was appended is read back in order and at its position,
//! survives reopening, a torn tail is cut, damage before it refuses to open, a failed group
//! leaves nothing behind, retention removes only indexed old segments.

use std::os::unix::fs::FileExt;

use super::*;

fn options(dir: &Path, segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        dir: dir.to_owned(),
        segment_bytes,
        durability: Durability::Fsync,
    }
}

/// Bytes that do not compress (xorshift from the seed), as real records' random ids do not.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn record(seq: u64) -> Vec<u8> {
    let mut bytes = format!("record {seq} ").into_bytes();
    bytes.extend(noise(seq, 100 + (seq % 7) as usize * 50));
    bytes
}

/// Appends records `from..to` in groups of `group`.
fn append(writer: &mut JournalWriter, from: u64, to: u64, group: u64) -> Vec<Position> {
    let mut positions = Vec::new();
    let mut seq = from;
    while seq < to {
        let end = (seq + group).min(to);
        let records: Vec<Vec<u8>> = (seq..end).map(record).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let appended = writer.append(&refs, 1_796_000_000 + seq as i64).unwrap();
        assert_eq!(appended.first_seq, seq);
        positions.extend(appended.positions);
        seq = end;
    }
    positions
}

fn read_all(reader: &JournalReader, from: u64) -> Vec<Entry> {
    let mut cursor = reader.cursor(from);
    let mut all = Vec::new();
    loop {
        let batch = cursor.read(100).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    segment::path(dir, *segment::list(dir).unwrap().last().unwrap())
}

#[test]
fn records_come_back_in_order_at_their_positions_across_segments_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap();
    let positions = append(&mut writer, 1, 600, 9);
    assert!(
        segment::list(dir.path()).unwrap().len() >= 3,
        "segments rolled"
    );
    assert_eq!(reader.durable_seq(), 599);
    let all = read_all(&reader, 1);
    assert_eq!(all.len(), 599);
    for (entry, position) in all.iter().zip(&positions) {
        assert_eq!(entry.record, record(entry.seq));
        assert_eq!(entry.position, *position);
        assert_eq!(reader.read(*position).unwrap(), record(entry.seq));
    }
    // From the middle of a frame in the middle of a segment.
    let tail = read_all(&reader, 333);
    assert_eq!(tail.first().unwrap().seq, 333);
    assert_eq!(tail.len(), 267);
    drop((writer, reader));

    let (mut writer, reader) = open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap();
    assert_eq!(reader.durable_seq(), 599);
    append(&mut writer, 600, 700, 10);
    let all = read_all(&reader, 1);
    assert_eq!(all.len(), 699);
    assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
}

#[test]
fn a_torn_tail_is_cut_and_writing_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open(&options(dir.path(), 1 << 20), 1).unwrap();
    append(&mut writer, 1, 50, 5);
    drop(writer);
    // A group interrupted mid-write: part of a frame of garbage after the last good one.
    let path = last_segment(dir.path());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xAB; 700], scan_end(&path)).unwrap();
    drop(file);

    let (mut writer, reader) = open(&options(dir.path(), 1 << 20), 1).unwrap();
    assert_eq!(reader.durable_seq(), 49, "the torn group is not a record");
    append(&mut writer, 50, 60, 5);
    let all = read_all(&reader, 1);
    assert_eq!(all.len(), 59);
    assert_eq!(all.last().unwrap().record, record(59));
    drop((writer, reader));
    let (_, reader) = open(&options(dir.path(), 1 << 20), 1).unwrap();
    assert_eq!(
        reader.durable_seq(),
        59,
        "nothing of the cut tail came back"
    );
}

/// Where the written part of a segment ends (the first zero header).
fn scan_end(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut offset = segment::FRAMES_START;
    while let Ok(Some(frame)) = reader::read_frame(&file, offset) {
        offset = frame.header.next_offset(offset);
    }
    offset
}

#[test]
fn damage_before_the_tail_refuses_to_open_and_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open(&options(dir.path(), 32 << 20), 1).unwrap();
    // More than the tail window of records after the damage.
    for seq in 0..200u64 {
        writer.append(&[&noise(seq, 64 * 1024)], 0).unwrap();
    }
    drop(writer);
    let path = last_segment(dir.path());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xFF; 8], segment::FRAMES_START + 40)
        .unwrap();
    drop(file);
    match open(&options(dir.path(), 32 << 20), 1) {
        Err(JournalError::Corrupt {
            path: named,
            offset,
            ..
        }) => {
            assert_eq!(named, path);
            assert_eq!(offset, segment::FRAMES_START);
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a damaged journal opened"),
    }
}

#[test]
fn damage_in_an_older_segment_is_an_error_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap();
    append(&mut writer, 1, 400, 4);
    let first = segment::path(dir.path(), 1);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    file.write_all_at(&[0x5A; 4], segment::FRAMES_START + 200)
        .unwrap();
    let mut cursor = reader.cursor(1);
    let mut error = None;
    for _ in 0..10 {
        match cursor.read(50) {
            Ok(_) => continue,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    match error {
        Some(JournalError::Corrupt { path, .. }) => assert_eq!(path, first),
        other => panic!("expected corruption in {}, got {other:?}", first.display()),
    }
}

#[test]
fn a_failed_group_leaves_no_record_and_the_next_one_starts_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open(&options(dir.path(), 1 << 20), 1).unwrap();
    append(&mut writer, 1, 20, 4);
    // The segment's file disappears under the writer (its directory was deleted and made
    // again): the group cannot be durable, so it fails.
    std::fs::remove_file(segment::path(dir.path(), 1)).unwrap();
    assert!(writer.append(&[b"lost"], 0).is_err());
    assert_eq!(reader.durable_seq(), 19);
    let appended = writer.append(&[b"after"], 0).unwrap();
    assert_eq!(
        appended.first_seq, 20,
        "no number was used by the failed group"
    );
    assert_eq!(appended.positions[0].segment, 2);
    assert_eq!(reader.read(appended.positions[0]).unwrap(), b"after");
}

#[test]
fn retention_removes_only_old_indexed_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap();
    append(&mut writer, 1, 600, 9);
    let segments = segment::list(dir.path()).unwrap().len();
    // Nothing indexed yet: nothing removed, however old.
    assert_eq!(reader.remove_older(i64::MAX, 0).unwrap(), 0);
    // Indexed, but newer than the cutoff: kept.
    assert_eq!(reader.remove_older(1_796_000_000, 599).unwrap(), 0);
    let removed = reader.remove_older(i64::MAX, 599).unwrap();
    assert_eq!(removed, segments - 1, "the open segment stays");
    assert!(reader.first_seq() > 1);
    append(&mut writer, 600, 610, 5);
    let (_, reopened) = {
        drop(writer);
        open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap()
    };
    assert_eq!(reopened.durable_seq(), 609);
}

#[test]
fn a_segment_removed_before_it_was_read_is_reported_and_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open(&options(dir.path(), MIN_SEGMENT_BYTES), 1).unwrap();
    append(&mut writer, 1, 600, 9);
    let segments = segment::list(dir.path()).unwrap();
    assert!(segments.len() >= 3);
    std::fs::remove_file(segment::path(dir.path(), segments[1])).unwrap();
    let mut cursor = reader.cursor(1);
    let mut read = Vec::new();
    let mut lost = None;
    loop {
        match cursor.read(1000) {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => read.extend(batch),
            Err(JournalError::Lost { first, end, .. }) => lost = Some(first..end),
            Err(e) => panic!("{e}"),
        }
    }
    let lost = lost.expect("the removed segment is reported");
    assert_eq!(read.len() as u64 + (lost.end - lost.start), 599);
    assert_eq!(
        read.last().unwrap().seq,
        599,
        "records after the gap are read"
    );
}
