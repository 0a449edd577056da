//! Where a record lies: segment, frame offset, and its index in the frame, packed into one
//! `i64` for the index database.

/// Bits of each part: 2²² segments (of up to 1 GiB each), offsets below 2³⁰, 2¹¹ records
/// per frame; 63 bits in all, so the packed form is a non-negative `i64`.
const SEGMENT_BITS: u32 = 22;
const OFFSET_BITS: u32 = 30;
const INDEX_BITS: u32 = 11;

/// The most records the writer puts in one frame.
pub const MAX_RECORDS_PER_FRAME: usize = 1 << INDEX_BITS;
/// The largest segment whose offsets a position can hold.
pub const MAX_SEGMENT_BYTES: u64 = 1 << OFFSET_BITS;

/// A record's place in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment number.
    pub segment: u32,
    /// Offset of the record's frame in the segment.
    pub offset: u32,
    /// The record's index in its frame.
    pub index: u16,
}

impl Position {
    /// The packed form.
    pub fn pack(self) -> i64 {
        debug_assert!(self.segment < 1 << SEGMENT_BITS);
        debug_assert!(u64::from(self.offset) < MAX_SEGMENT_BYTES);
        debug_assert!(usize::from(self.index) < MAX_RECORDS_PER_FRAME);
        (i64::from(self.segment) << (OFFSET_BITS + INDEX_BITS))
            | (i64::from(self.offset) << INDEX_BITS)
            | i64::from(self.index)
    }

    /// Unpacks [`Position::pack`]'s form; `None` for a value it cannot have made.
    pub fn unpack(packed: i64) -> Option<Self> {
        if packed < 0 {
            return None;
        }
        let packed = packed as u64;
        Some(Self {
            segment: (packed >> (OFFSET_BITS + INDEX_BITS)) as u32,
            offset: ((packed >> INDEX_BITS) & ((1 << OFFSET_BITS) - 1)) as u32,
            index: (packed & ((1 << INDEX_BITS) - 1)) as u16,
        })
    }

    /// Whether the segment number fits the packed form.
    pub fn segment_fits(segment: u32) -> bool {
        segment < 1 << SEGMENT_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn positions_round_trip(
            segment in 0u32..(1 << SEGMENT_BITS),
            offset in 0u32..(1 << OFFSET_BITS),
            index in 0u16..(1 << INDEX_BITS),
        ) {
            let position = Position { segment, offset, index };
            let packed = position.pack();
            proptest::prop_assert!(packed >= 0);
            proptest::prop_assert_eq!(Position::unpack(packed), Some(position));
        }
    }

    #[test]
    fn order_is_journal_order() {
        let a = Position {
            segment: 1,
            offset: 900,
            index: 5,
        }
        .pack();
        let b = Position {
            segment: 2,
            offset: 64,
            index: 0,
        }
        .pack();
        assert!(a < b);
        assert_eq!(Position::unpack(-1), None);
    }
}
