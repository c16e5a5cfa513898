//! The log record codec: what a segment file holds, records back to back.
//!
//! ```text
//! offset size field
//!  0      4   magic "RAFR"
//!  4      1   version (1)
//!  5      1   kind: 1 Write, 2 Zero, 3 Move
//!  6      2   reserved (0)
//!  8      4   nblocks: blocks the record covers (at least 1; at most MAX_RECORD_BLOCKS
//!             for records with data)
//! 12      8   epoch of the writer
//! 20      8   seq: the record's number in the volume's log (consecutive, from 0)
//! 28      8   lba: first block
//! 36      4   CRC32C of the payload
//! 40      4   reserved (0)
//! 44      4   CRC32C of bytes 0..44
//! 48          payload: Write: the blocks; Zero: none;
//!                      Move: source segment (8), source offset (8), the blocks
//! ```
//!
//! Kinds: a Write gives blocks new data; a Zero makes them read as zeros (trim,
//! write-zeroes); a Move is compaction's copy of live blocks, applied only where the index
//! still points at its source (a guest write may have overwritten them since they were
//! copied, and may lie earlier in the log than the Move).
//!
//! `seq` is consecutive across segments, so replay notices a missing record or segment.
//!
//! Decoding stops cleanly at an incomplete last record: a writer that died during an
//! append (or whose append was cut when its file was sealed) never had it acknowledged.
//! Anything else that does not check (magic, version, kind, CRCs) is corruption, an error:
//! the store verified the bytes end to end, so a bad record means a bug or a lost piece.
//!
//! Pure: no I/O.

use feitian_pangu::crc::crc32c;
use crate::index::{Location, BLOCK};

pub const HEADER_LEN: usize = 48;
const MAGIC: [u8; 4] = *b"RAFR";
const VERSION: u8 = 1;
/// The most blocks one record with data covers (32 MiB: NBD's largest request).
pub const MAX_RECORD_BLOCKS: u32 = 8192;
/// A Move's payload starts with its source location.
const MOVE_PREFIX: usize = 16;

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Write,
    Zero,
    Move { from: Location },
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Write => 1,
            Kind::Zero => 2,
            Kind::Move { .. } => 3,
        }
    }
}

/// A decoded record, pointing into the decoded buffer for its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub kind: Kind,
    pub epoch: u64,
    pub seq: u64,
    pub lba: u64,
    pub nblocks: u32,
    /// Where the record starts in the buffer.
    pub at: usize,
    /// Where its blocks start in the buffer (Write and Move).
    pub data_at: usize,
}

/// The records of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<Decoded>,
    /// Bytes of whole records; past it lies an incomplete record, if anything.
    pub valid_len: usize,
}

/// A buffer that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record at {at}: bad magic")]
    Magic { at: usize },
    #[error("record at {at}: header checksum mismatch")]
    HeaderCrc { at: usize },
    #[error("record at {at}: unknown version {version}")]
    Version { at: usize, version: u8 },
    #[error("record at {at}: unknown kind {kind}")]
    Kind { at: usize, kind: u8 },
    #[error("record at {at}: bad block count {nblocks}")]
    Blocks { at: usize, nblocks: u32 },
    #[error("record at {at}: data checksum mismatch")]
    DataCrc { at: usize },
}

/// Appends one record to `out`; `data` is the blocks (empty for Zero) and must be
/// `nblocks` blocks for Write and Move. Returns the offset in `out` where its blocks start.
pub fn encode(out: &mut Vec<u8>, kind: Kind, epoch: u64, seq: u64, lba: u64, nblocks: u32, data: &[u8]) -> usize {
    let at = out.len();
    let mut prefix = [0u8; MOVE_PREFIX];
    let prefix: &[u8] = match kind {
        Kind::Move { from } => {
            prefix[..8].copy_from_slice(&from.segment.to_le_bytes());
            prefix[8..].copy_from_slice(&from.offset.to_le_bytes());
            &prefix
        }
        _ => &[],
    };
    let data_crc = feitian_pangu::crc::crc32c_append(crc32c(prefix), data);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.code());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&nblocks.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&lba.to_le_bytes());
    out.extend_from_slice(&data_crc.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    let header_crc = crc32c(&out[at..at + 44]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(prefix);
    let data_at = out.len();
    out.extend_from_slice(data);
    data_at
}

/// The size of a record of this kind and block count.
pub fn encoded_len(kind: Kind, nblocks: u32) -> usize {
    HEADER_LEN + payload_len(kind, nblocks)
}

fn payload_len(kind: Kind, nblocks: u32) -> usize {
    let blocks = nblocks as usize * BLOCK as usize;
    match kind {
        Kind::Write => blocks,
        Kind::Zero => 0,
        Kind::Move { .. } => MOVE_PREFIX + blocks,
    }
}

/// Decodes the records of `buf`, stopping at an incomplete last record.
pub fn decode(buf: &[u8]) -> Result<Scan, RecordError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while buf.len() - at >= HEADER_LEN {
        let h = &buf[at..at + HEADER_LEN];
        if h[..4] != MAGIC {
            return Err(RecordError::Magic { at });
        }
        if crc32c(&h[..44]) != le32(&h[44..48]) {
            return Err(RecordError::HeaderCrc { at });
        }
        if h[4] != VERSION {
            return Err(RecordError::Version { at, version: h[4] });
        }
        let nblocks = le32(&h[8..12]);
        // Zero records carry no blocks, so only data records are bounded.
        if nblocks == 0 || (h[5] != 2 && nblocks > MAX_RECORD_BLOCKS) {
            return Err(RecordError::Blocks { at, nblocks });
        }
        let epoch = le64(&h[12..20]);
        let seq = le64(&h[20..28]);
        let lba = le64(&h[28..36]);
        if lba.checked_add(u64::from(nblocks)).is_none() {
            return Err(RecordError::Blocks { at, nblocks });
        }
        let data_crc = le32(&h[36..40]);
        let code = h[5];
        // The Move's source is read from the payload once it is known to be whole.
        let provisional = match code {
            1 => Kind::Write,
            2 => Kind::Zero,
            3 => Kind::Move { from: Location { segment: 0, offset: 0 } },
            kind => return Err(RecordError::Kind { at, kind }),
        };
        let payload_at = at + HEADER_LEN;
        let payload_end = payload_at + payload_len(provisional, nblocks);
        if payload_end > buf.len() {
            break;
        }
        let payload = &buf[payload_at..payload_end];
        if crc32c(payload) != data_crc {
            return Err(RecordError::DataCrc { at });
        }
        let (kind, data_at) = match provisional {
            Kind::Move { .. } => {
                let from = Location { segment: le64(&payload[..8]), offset: le64(&payload[8..16]) };
                (Kind::Move { from }, payload_at + MOVE_PREFIX)
            }
            kind => (kind, payload_at),
        };
        records.push(Decoded { kind, epoch, seq, lba, nblocks, at, data_at });
        at = payload_end;
    }
    Ok(Scan { records, valid_len: at })
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n * BLOCK as usize]
    }

    fn sample() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let a = encode(&mut out, Kind::Write, 7, 0, 100, 2, &blocks(2, 0xAA));
        let b = encode(&mut out, Kind::Zero, 7, 1, 5, 1000, &[]);
        let from = Location { segment: 3, offset: 48 };
        let c = encode(&mut out, Kind::Move { from }, 8, 2, 9, 1, &blocks(1, 0x55));
        (out, vec![a, b, c])
    }

    #[test]
    fn round_trip() {
        let (buf, data_at) = sample();
        let scan = decode(&buf).expect("decodes");
        assert_eq!(scan.valid_len, buf.len());
        let r = &scan.records;
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].kind, r[0].epoch, r[0].seq, r[0].lba, r[0].nblocks), (Kind::Write, 7, 0, 100, 2));
        assert_eq!(r[0].data_at, data_at[0]);
        assert!(buf[r[0].data_at..r[0].data_at + 8192].iter().all(|&b| b == 0xAA));
        assert_eq!((r[1].kind, r[1].lba, r[1].nblocks), (Kind::Zero, 5, 1000));
        assert_eq!(r[2].kind, Kind::Move { from: Location { segment: 3, offset: 48 } });
        assert_eq!(r[2].data_at, data_at[2]);
        assert_eq!(buf[r[2].data_at], 0x55);
        assert_eq!(r[1].at, encoded_len(Kind::Write, 2));
        assert_eq!(buf.len(), r[2].at + encoded_len(Kind::Move { from: Location { segment: 0, offset: 0 } }, 1));
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_clean_stop() {
        let (buf, _) = sample();
        let last = decode(&buf).expect("decodes").records[2].at;
        for cut in last..buf.len() {
            let scan = decode(&buf[..cut]).expect("a torn tail is not an error");
            assert_eq!(scan.records.len(), 2, "cut at {cut}");
            assert_eq!(scan.valid_len, last);
        }
        assert_eq!(decode(&[]).expect("empty").records.len(), 0);
    }

    #[test]
    fn a_flipped_byte_in_a_whole_record_is_corruption() {
        let (buf, _) = sample();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            let err = decode(&bad).expect_err(&format!("flip at {i} must be found"));
            assert!(
                matches!(err, RecordError::Magic { .. } | RecordError::HeaderCrc { .. } | RecordError::DataCrc { .. }),
                "flip at {i}: {err:?}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_corruption() {
        let (mut buf, _) = sample();
        buf.extend_from_slice(&[0u8; HEADER_LEN]);
        assert!(matches!(decode(&buf), Err(RecordError::Magic { .. })));
    }
}
