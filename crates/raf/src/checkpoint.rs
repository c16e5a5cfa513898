//! The checkpoint codec: a volume's index written out, with the log position it covers, so
//! that opening a volume replays only the log after it.
//!
//! ```text
//! header (48 bytes, little-endian)
//!  0  4  magic "RAFC"
//!  4  4  version (2; 1 is read too: it has no change sequences)
//!  8  8  total length of the checkpoint, trailer included
//! 16  8  next_seq: the seq of the first record after the covered position
//! 24  8  covered segment
//! 32  8  covered offset in it
//! 40  8  extent count
//! extents, 33 bytes each, in block order
//!  0  1  kind: 1 data, 2 zero
//!  1  8  first block
//!  9  8  block count
//! 17  8  segment (0 for zero)
//! 25  8  offset (0 for zero)
//! change sequences (version 2): a count (8 bytes), then 16 bytes each, in range order
//!  0  8  range (of `changes::RANGE_BLOCKS` blocks)
//!  8  8  seq of the last guest record that touched it
//! trailer
//!  0  4  CRC32C of everything before it
//! ```
//!
//! The total length is in the header so that a reader reads the header, then the rest.
//! Live bytes per segment are not stored: they follow from the extents. A version 1
//! checkpoint decodes with no change sequences, which is right: they matter only against a
//! snapshot's instant, and every snapshot is taken by code that records them.
//!
//! Pure: no I/O.

use crate::changes::Changes;
use crate::index::{Extent, Index, IndexError, Location, Target};
use feitian_pangu::crc::crc32c;

pub const HEADER_LEN: usize = 48;
const MAGIC: [u8; 4] = *b"RAFC";
const VERSION: u32 = 2;
/// The version before change sequences, still read.
const VERSION_1: u32 = 1;
const EXTENT_LEN: usize = 33;
const CHANGE_LEN: usize = 16;

/// A log position: the segment and byte offset the next record would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub index: Index,
    pub changes: Changes,
    pub next_seq: u64,
    pub covers: Position,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint too short")]
    Short,
    #[error("not a checkpoint (bad magic)")]
    Magic,
    #[error("unknown checkpoint version {0}")]
    Version(u32),
    #[error("checkpoint length {0} does not match its extents")]
    Length(u64),
    #[error("checkpoint checksum mismatch")]
    Crc,
    #[error("unknown extent kind {0}")]
    Kind(u8),
    #[error("bad extents: {0}")]
    Extents(#[from] IndexError),
}

/// Encodes `index` and `changes` as covering the log up to `covers`, with `next_seq` the
/// next record's.
pub fn encode(index: &Index, changes: &Changes, next_seq: u64, covers: Position) -> Vec<u8> {
    let count = index.extent_count();
    let total = HEADER_LEN + count * EXTENT_LEN + 8 + changes.len() * CHANGE_LEN + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for v in [total as u64, next_seq, covers.segment, covers.offset, count as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for e in index.extents() {
        let (kind, loc) = match e.target {
            Target::Data(loc) => (1u8, loc),
            Target::Zero => (2u8, Location { segment: 0, offset: 0 }),
        };
        out.push(kind);
        for v in [e.start, e.len, loc.segment, loc.offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&(changes.len() as u64).to_le_bytes());
    for (range, seq) in changes.entries() {
        out.extend_from_slice(&range.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The total length of a checkpoint, from its first [`HEADER_LEN`] bytes.
pub fn total_len(header: &[u8]) -> Result<u64, CheckpointError> {
    if header.len() < HEADER_LEN {
        return Err(CheckpointError::Short);
    }
    if header[..4] != MAGIC {
        return Err(CheckpointError::Magic);
    }
    let version = version_of(header);
    if version != VERSION && version != VERSION_1 {
        return Err(CheckpointError::Version(version));
    }
    let total = le64(&header[8..16]);
    if total < (HEADER_LEN + 4) as u64 {
        return Err(CheckpointError::Length(total));
    }
    Ok(total)
}

/// Decodes a whole checkpoint.
pub fn decode(buf: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let total = total_len(buf)?;
    if buf.len() as u64 != total {
        return Err(CheckpointError::Length(total));
    }
    let (body, trailer) = buf.split_at(buf.len() - 4);
    if crc32c(body) != u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) {
        return Err(CheckpointError::Crc);
    }
    let next_seq = le64(&body[16..24]);
    let covers = Position { segment: le64(&body[24..32]), offset: le64(&body[32..40]) };
    let count = le64(&body[40..48]);
    let rest = &body[HEADER_LEN..];
    let extents_len = count.checked_mul(EXTENT_LEN as u64).filter(|&n| n <= rest.len() as u64);
    let Some(extents_len) = extents_len else {
        return Err(CheckpointError::Length(total));
    };
    let (extents, tail) = rest.split_at(extents_len as usize);
    let changes = if version_of(body) == VERSION_1 {
        if !tail.is_empty() {
            return Err(CheckpointError::Length(total));
        }
        Changes::new()
    } else {
        let Some((n, entries)) = tail.split_first_chunk::<8>() else {
            return Err(CheckpointError::Length(total));
        };
        if u64::from_le_bytes(*n).checked_mul(CHANGE_LEN as u64) != Some(entries.len() as u64) {
            return Err(CheckpointError::Length(total));
        }
        Changes::from_entries(entries.chunks_exact(CHANGE_LEN).map(|e| (le64(&e[..8]), le64(&e[8..]))))
    };
    let mut parsed = Vec::with_capacity(extents.len() / EXTENT_LEN);
    for e in extents.chunks_exact(EXTENT_LEN) {
        let target = match e[0] {
            1 => Target::Data(Location { segment: le64(&e[17..25]), offset: le64(&e[25..33]) }),
            2 => Target::Zero,
            kind => return Err(CheckpointError::Kind(kind)),
        };
        parsed.push(Extent { start: le64(&e[1..9]), len: le64(&e[9..17]), target });
    }
    let index = Index::from_extents(parsed)?;
    Ok(Checkpoint { index, changes, next_seq, covers })
}

fn version_of(header: &[u8]) -> u32 {
    u32::from_le_bytes([header[4], header[5], header[6], header[7]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut index = Index::new();
        index.map(0, 10, Target::Data(Location { segment: 2, offset: 48 }));
        index.map(4, 2, Target::Zero);
        index.map(100, 1, Target::Data(Location { segment: 7, offset: 4096 * 9 }));
        index
    }

    fn changes() -> Changes {
        Changes::from_entries([(0, 3), (1, 40), (9, 41)])
    }

    #[test]
    fn round_trip() {
        let index = sample();
        let covers = Position { segment: 7, offset: 123_456 };
        let buf = encode(&index, &changes(), 42, covers);
        assert_eq!(total_len(&buf[..HEADER_LEN]), Ok(buf.len() as u64));
        let cp = decode(&buf).expect("decodes");
        assert_eq!(cp, Checkpoint { index: index.clone(), changes: changes(), next_seq: 42, covers });
        assert_eq!(cp.index.live_bytes(2), 8 * 4096);
        let nothing = encode(&Index::new(), &Changes::new(), 0, Position { segment: 0, offset: 0 });
        let empty = decode(&nothing).expect("decodes");
        assert_eq!((empty.index.extent_count(), empty.changes.len()), (0, 0));
    }

    #[test]
    fn a_version_1_checkpoint_reads_with_no_change_sequences() {
        let covers = Position { segment: 7, offset: 9 };
        let v2 = encode(&sample(), &Changes::new(), 42, covers);
        // Version 1: the same without the (empty) change section, its own length and CRC.
        let mut v1 = v2[..v2.len() - 4 - 8].to_vec();
        v1[4..8].copy_from_slice(&VERSION_1.to_le_bytes());
        let total = (v1.len() + 4) as u64;
        v1[8..16].copy_from_slice(&total.to_le_bytes());
        let crc = crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let cp = decode(&v1).expect("decodes");
        assert_eq!(cp, Checkpoint { index: sample(), changes: Changes::new(), next_seq: 42, covers });
        // A version 1 checkpoint with bytes after its extents is refused.
        let mut longer = v1[..v1.len() - 4].to_vec();
        longer.extend_from_slice(&[0; 8]);
        let total = (longer.len() + 4) as u64;
        longer[8..16].copy_from_slice(&total.to_le_bytes());
        let crc = crc32c(&longer);
        longer.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&longer), Err(CheckpointError::Length(total)));
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let buf = encode(&sample(), &changes(), 42, Position { segment: 7, offset: 1 });
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
