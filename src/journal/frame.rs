//! One frame: a group of records written (and synced) together.
//!
//! ```text
//! offset  size  field
//!      0     4  payload length (bytes after the header)
//!      4     4  CRC32C of bytes 8.. of the header and the payload
//!      8     4  CRC of the previous frame (chains the frames: a stale or reordered frame
//!               breaks the chain even when its own CRC is right)
//!     12     2  record count (≥ 1)
//!     14     1  codec: 0 = raw, 1 = zstd
//!     15     1  reserved (0)
//!     16     8  sequence number of the first record
//!     24     8  newest record time (Unix seconds), so retention needs no payload
//!     32     …  payload: each record as a u32 length and its bytes, compressed as a whole
//! ```
//!
//! Frames start on page boundaries ([`ALIGN`]); the zeros between one frame's end and the next
//! page are written with it. A header of zeros is where the written part of a preallocated
//! segment ends. All integers are little-endian.

use std::cell::RefCell;
use std::ops::Range;

/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 32;
/// Every frame starts at a multiple of this (a page). A group's last page is synced with it;
/// were the next group written into the rest of that page, the page would be written (and
/// synced) again: padding to the page halves what small groups write.
pub const ALIGN: u64 = 4096;
/// Largest payload accepted when reading, compressed or not: a length past this is damage,
/// not a frame (the writer splits groups long before).
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// Largest group the writer puts in one frame, before compression.
pub const MAX_GROUP_BYTES: usize = 4 << 20;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// zstd's fast level -5 (no entropy coding of literals): a group of 12 exchange records
/// (1.2 KB of JSON each, claims kept) compressed in 13 µs against 35 µs at level 1 on the
/// benchmark machine, to 3.4 KB against 1.9 KB. Frames are padded to a page, so both take one
/// page to disk at that size: the slower level would save bytes only in large groups.
const ZSTD_LEVEL: i32 = -5;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// CRC of this frame.
    pub crc: u32,
    /// CRC of the frame before it.
    pub prev_crc: u32,
    /// Records in the frame.
    pub count: u16,
    /// How the payload is encoded.
    codec: u8,
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Newest record time.
    pub max_time: i64,
}

impl Header {
    /// The frame's records' sequence numbers.
    pub fn seqs(&self) -> Range<u64> {
        self.first_seq..self.first_seq + u64::from(self.count)
    }

    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + self.payload_len as usize
    }

    /// Where the frame after this one (at `offset`) starts.
    pub fn next_offset(&self, offset: u64) -> u64 {
        align_up(offset + self.frame_len() as u64)
    }
}

/// `offset` rounded up to [`ALIGN`].
pub fn align_up(offset: u64) -> u64 {
    offset.div_ceil(ALIGN) * ALIGN
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header is all zeros: the end of the written part of a segment.
    #[error("end of the written part")]
    End,
    /// Not a frame: a wrong length, codec or CRC, or a broken chain.
    #[error("{0}")]
    Damaged(&'static str),
}

/// Reads a header and checks what can be checked without the payload.
pub fn read_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, FrameError> {
    if bytes.iter().all(|&b| b == 0) {
        return Err(FrameError::End);
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let header = Header {
        payload_len: u32_at(0),
        crc: u32_at(4),
        prev_crc: u32_at(8),
        count: u16::from_le_bytes([bytes[12], bytes[13]]),
        codec: bytes[14],
        first_seq: u64_at(16),
        max_time: u64_at(24) as i64,
    };
    if header.payload_len as usize > MAX_PAYLOAD_BYTES {
        return Err(FrameError::Damaged("frame length out of bounds"));
    }
    if header.count == 0 || !matches!(header.codec, CODEC_RAW | CODEC_ZSTD) || bytes[15] != 0 {
        return Err(FrameError::Damaged("frame header is not valid"));
    }
    Ok(header)
}

/// Checks the frame's CRC over its header and `payload`.
pub fn check_crc(header_bytes: &[u8; HEADER_BYTES], payload: &[u8]) -> Result<(), FrameError> {
    let stored = u32::from_le_bytes(header_bytes[4..8].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header_bytes[8..]), payload);
    match crc == stored {
        true => Ok(()),
        false => Err(FrameError::Damaged("frame CRC does not match")),
    }
}

thread_local! {
    /// One decompression context per reading thread: setting one up costs more than
    /// decompressing a frame of records (1.3% of the broker's CPU in a profile of list queries
    /// under load, each frame making its own).
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// A zstd payload, decompressed (into exactly its recorded size, at most
/// [`MAX_PAYLOAD_BYTES`]).
fn decompress(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let damaged = |_| FrameError::Damaged("frame payload does not decompress");
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let decompressor = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(damaged)?),
        };
        decompressor
            .decompress(payload, MAX_PAYLOAD_BYTES)
            .map_err(damaged)
    })
}

/// The records of a checked frame's payload.
pub fn records(header: &Header, payload: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let plain;
    let body = match header.codec {
        CODEC_ZSTD => {
            plain = decompress(payload)?;
            &plain[..]
        }
        _ => payload,
    };
    let mut records = Vec::with_capacity(usize::from(header.count));
    let mut rest = body;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(FrameError::Damaged("record length cut short"))?;
        let len = u32::from_le_bytes(*len) as usize;
        let record = tail
            .get(..len)
            .ok_or(FrameError::Damaged("record cut short"))?;
        records.push(record.to_vec());
        rest = &tail[len..];
    }
    match records.len() == usize::from(header.count) {
        true => Ok(records),
        false => Err(FrameError::Damaged(
            "record count does not match the header",
        )),
    }
}

/// Builds frames; holds its buffers and compressor between groups.
pub struct Encoder {
    plain: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            plain: Vec::new(),
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
        })
    }

    /// The frame of `records` (at most `u16::MAX`, at most [`MAX_GROUP_BYTES`] together),
    /// appended to `out`; returns its CRC.
    pub fn encode(
        &mut self,
        records: &[&[u8]],
        first_seq: u64,
        max_time: i64,
        prev_crc: u32,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u32> {
        self.plain.clear();
        for record in records {
            self.plain
                .extend_from_slice(&(record.len() as u32).to_le_bytes());
            self.plain.extend_from_slice(record);
        }
        let payload = self.compressor.compress(&self.plain)?;
        let mut header = [0u8; HEADER_BYTES];
        header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[8..12].copy_from_slice(&prev_crc.to_le_bytes());
        header[12..14].copy_from_slice(&(records.len() as u16).to_le_bytes());
        header[14] = CODEC_ZSTD;
        header[16..24].copy_from_slice(&first_seq.to_le_bytes());
        header[24..32].copy_from_slice(&(max_time as u64).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[8..]), &payload);
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        Ok(crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(records: &[&[u8]], first_seq: u64, prev_crc: u32) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let crc = Encoder::new()
            .unwrap()
            .encode(records, first_seq, 1_796_000_000, prev_crc, &mut out)
            .unwrap();
        (out, crc)
    }

    fn decode(bytes: &[u8]) -> Result<(Header, Vec<Vec<u8>>), FrameError> {
        let head: &[u8; HEADER_BYTES] = bytes[..HEADER_BYTES].try_into().unwrap();
        let header = read_header(head)?;
        let payload = &bytes[HEADER_BYTES..header.frame_len()];
        check_crc(head, payload)?;
        Ok((header, records(&header, payload)?))
    }

    #[test]
    fn frames_round_trip() {
        let (bytes, crc) = frame(&[b"one", b"", b"three"], 41, 7);
        let (header, records) = decode(&bytes).unwrap();
        assert_eq!(header.seqs(), 41..44);
        assert_eq!((header.crc, header.prev_crc), (crc, 7));
        assert_eq!(header.max_time, 1_796_000_000);
        assert_eq!(records, [b"one".to_vec(), vec![], b"three".to_vec()]);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let (bytes, _) = frame(&[b"a record of some length", b"another"], 1, 0);
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            // A flipped length may also point past the buffer; either way it is no frame.
            let len_ok = read_header(damaged[..HEADER_BYTES].try_into().unwrap())
                .is_ok_and(|h| h.frame_len() <= damaged.len());
            if len_ok {
                assert!(decode(&damaged).is_err(), "bit {i} went unnoticed");
            }
        }
    }

    #[test]
    fn zeros_are_the_end() {
        assert_eq!(read_header(&[0; HEADER_BYTES]), Err(FrameError::End));
    }
}
