//! Segment files: `NNNNNNNNNN.journal`, numbered from 1, each preallocated to its full size
//! (so a sync writes data, not a growing file's size) and opened by a header that makes it
//! self-describing (frames start on the page after it):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "STSJRNL1"
//!      8    16  journal id (random; the index remembers how far it has read *this* journal)
//!     24     4  segment number
//!     28     4  valid length of the previous segment (0 for the first segment)
//!     32     8  sequence number of the first record in this segment
//!     40     4  CRC of the previous segment's last frame (the chain continues here)
//!     44    16  reserved (0)
//!     60     4  CRC32C of bytes 0..60
//! ```
//!
//! The previous segment's valid length is what lets the writer abandon a segment after a
//! failed write or sync: whatever lies past that length was never acknowledged, and readers
//! never look at it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of a segment header.
pub const HEADER_BYTES: u64 = 64;
/// Where the first frame starts: the page after the header's.
pub const FRAMES_START: u64 = super::frame::ALIGN;
const MAGIC: &[u8; 8] = b"STSJRNL1";
const SUFFIX: &str = ".journal";

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The journal's id.
    pub journal_id: [u8; 16],
    /// Its number.
    pub number: u32,
    /// Valid length of the previous segment.
    pub prev_end: u32,
    /// First record's sequence number.
    pub first_seq: u64,
    /// CRC of the previous segment's last frame.
    pub prev_crc: u32,
}

impl SegmentHeader {
    fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut bytes = [0u8; HEADER_BYTES as usize];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..24].copy_from_slice(&self.journal_id);
        bytes[24..28].copy_from_slice(&self.number.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.prev_end.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.first_seq.to_le_bytes());
        bytes[40..44].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; HEADER_BYTES as usize]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if &bytes[0..8] != MAGIC || crc32c::crc32c(&bytes[..60]) != u32_at(60) {
            return None;
        }
        Some(Self {
            journal_id: bytes[8..24].try_into().expect("16 bytes"),
            number: u32_at(24),
            prev_end: u32_at(28),
            first_seq: u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")),
            prev_crc: u32_at(40),
        })
    }
}

/// The path of segment `number` in `dir`.
pub fn path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}{SUFFIX}"))
}

/// The segment numbers in `dir`, ascending. Other files are left alone.
pub fn list(dir: &Path) -> io::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if stem.len() == 10
            && let Ok(number) = stem.parse::<u32>()
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Creates a segment: preallocated to `size` bytes, its header written and synced, and its
/// directory entry synced, so that it survives a power loss before any frame does.
pub fn create(dir: &Path, header: &SegmentHeader, size: u64) -> io::Result<File> {
    let path = path(dir, header.number);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let made = (|| {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size)?;
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = made {
        // A segment that could not be made whole is not left behind to be read.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

/// Opens segment `number` for reading (and writing, when `write`) and reads its header.
pub fn open(dir: &Path, number: u32, write: bool) -> io::Result<(File, SegmentHeader)> {
    let path = path(dir, number);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)?;
    let mut bytes = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let header = SegmentHeader::decode(&bytes).filter(|h| h.number == number);
    let header = header.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: the segment header is damaged", path.display()),
        )
    })?;
    Ok((file, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_damage_is_seen() {
        let header = SegmentHeader {
            journal_id: [7; 16],
            number: 3,
            prev_end: 4096,
            first_seq: 1234,
            prev_crc: 99,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Some(header));
        for i in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert_eq!(SegmentHeader::decode(&damaged), None, "byte {i}");
        }
    }

    #[test]
    fn segments_are_created_whole_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for number in [2, 1, 10] {
            let header = SegmentHeader {
                journal_id: [1; 16],
                number,
                prev_end: 0,
                first_seq: u64::from(number) * 100,
                prev_crc: 0,
            };
            create(dir.path(), &header, 64 * 1024).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
        assert_eq!(list(dir.path()).unwrap(), [1, 2, 10]);
        let (file, header) = open(dir.path(), 10, false).unwrap();
        assert_eq!(header.first_seq, 1000);
        assert_eq!(file.metadata().unwrap().len(), 64 * 1024);
        let header = SegmentHeader {
            journal_id: [1; 16],
            number: 2,
            prev_end: 0,
            first_seq: 0,
            prev_crc: 0,
        };
        assert!(
            create(dir.path(), &header, 4096).is_err(),
            "never overwritten"
        );
    }
}
