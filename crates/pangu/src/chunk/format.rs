//! The metadata file's encoding: a header, then a log of records that each commit a new
//! chunk length and the checksums of the blocks that changed. Encoding, decoding and replay
//! are plain functions over bytes; the layout is documented in the parent module.

use super::block::{block_count, block_of, tail_bytes, BLOCK_SIZE};

/// First bytes of every metadata file.
pub const MAGIC: [u8; 8] = *b"PANGUCHK";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Size of the header.
pub const HEADER_LEN: usize = 36;
/// Size of a record with no checksums: the 24-byte head, its CRC, and the record CRC.
pub const RECORD_OVERHEAD: usize = 32;
/// Size of the part of a record covered by the head CRC.
const HEAD_LEN: usize = 24;

const KIND_APPEND: u8 = 1;
const KIND_SEAL: u8 = 2;
const KIND_CACHED: u8 = 3;
const KIND_SYNC: u8 = 4;

/// Why a metadata file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Written by a format this code does not know.
    UnsupportedVersion(u32),
    /// The bytes at `offset` are damaged or inconsistent (not a torn tail).
    Bad { offset: u64, reason: String },
}

fn bad(offset: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Bad { offset: offset as u64, reason: reason.into() }
}

/// The chunk's identity and limits, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub chunk_id: u64,
    pub max_size: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // BLOCK_SIZE is 64 KiB; it is stored so that a future block size is detected.
        b[12..16].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.chunk_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.max_size.to_le_bytes());
        let crc = crate::crc::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, FormatError> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(bad(0, format!("file is {} bytes, shorter than the header", bytes.len())));
        };
        if b[0..8] != MAGIC {
            return Err(bad(0, "not a Pangu chunk metadata file (bad magic)"));
        }
        if crate::crc::crc32c(&b[0..32]) != le_u32(&b[32..36]) {
            return Err(bad(0, "header checksum mismatch"));
        }
        let version = le_u32(&b[8..12]);
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let block_size = le_u32(&b[12..16]);
        if u64::from(block_size) != BLOCK_SIZE {
            return Err(bad(12, format!("block size {block_size} is not {BLOCK_SIZE}")));
        }
        Ok(Header { chunk_id: le_u64(&b[16..24]), max_size: le_u64(&b[24..32]) })
    }

    /// The largest record a chunk of this size can hold: one that carries the checksum of
    /// every block (an append of the whole chunk, or a compacted log).
    pub fn max_record_len(&self) -> u64 {
        RECORD_OVERHEAD as u64 + 4 * block_count(self.max_size)
    }
}

/// What a record does to the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bytes were appended: the length grows to `new_len`.
    Append,
    /// The chunk is sealed at `new_len` (at most the current length) and takes no more
    /// appends.
    Seal,
    /// Bytes were appended as by `Append`, but neither they nor this record were fsynced
    /// when it was written: until a durable record follows, a power loss may take it.
    Cached,
    /// Everything before this record (cached appends included, data and records) is
    /// durable. Carries no checksums; `new_len` is the current length.
    Sync,
}

impl Kind {
    /// Whether a record of this kind was fsynced, with the data it commits and every
    /// record before it, before anything after it was written.
    pub fn is_durable(self) -> bool {
        !matches!(self, Kind::Cached)
    }
}

/// One commit: the new length, and the checksums of blocks `first_block..` up to the new
/// block count (the blocks from `first_block` on are replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub new_len: u64,
    pub first_block: u64,
    pub crcs: Vec<u32>,
}

impl Record {
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD + 4 * self.crcs.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.push(match self.kind {
            Kind::Append => KIND_APPEND,
            Kind::Seal => KIND_SEAL,
            Kind::Cached => KIND_CACHED,
            Kind::Sync => KIND_SYNC,
        });
        b.extend_from_slice(&[0, 0, 0]);
        // The count is bounded by the chunk's block count, which MAX_CHUNK_SIZE keeps far
        // below u32::MAX; State::check refuses anything larger before a record is written.
        b.extend_from_slice(&u32::try_from(self.crcs.len()).unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(&self.new_len.to_le_bytes());
        b.extend_from_slice(&self.first_block.to_le_bytes());
        let head_crc = crate::crc::crc32c(&b);
        b.extend_from_slice(&head_crc.to_le_bytes());
        for crc in &self.crcs {
            b.extend_from_slice(&crc.to_le_bytes());
        }
        let crc = crate::crc::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// The result of decoding the bytes at one position of the log.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// A whole, intact record of this many bytes.
    Record(Record, usize),
    /// The unfinished last write of a crash: everything from here on is discarded.
    Torn,
    /// Damage that a crash cannot explain: refuse to guess.
    Corrupt(String),
}

/// Decodes the record at the start of `rest`, which runs to the end of the file.
///
/// Only the last record can be torn, because every record is fsynced before the next one is
/// written. So a damaged record is taken for a torn tail only when it could be the last
/// write: its bytes reach the end of the file. Damage followed by more bytes is corruption.
fn decode_record(rest: &[u8], max_record_len: u64) -> Decoded {
    if rest.len() < HEAD_LEN + 4 {
        return Decoded::Torn;
    }
    let head = &rest[..HEAD_LEN];
    if crate::crc::crc32c(head) != le_u32(&rest[HEAD_LEN..HEAD_LEN + 4]) {
        // The head is damaged, so its length cannot be trusted. It can be the last write
        // only if no more than one record's worth of bytes follows, and none of them is an
        // intact record (a torn write is followed by nothing).
        let last_write = rest.len() as u64 <= max_record_len
            && !(1..rest.len()).any(|at| is_intact_record(&rest[at..], max_record_len));
        return if last_write { Decoded::Torn } else { Decoded::Corrupt("record head checksum mismatch".into()) };
    }
    let n = u64::from(le_u32(&head[4..8]));
    let size = RECORD_OVERHEAD as u64 + 4 * n;
    if size > max_record_len {
        return Decoded::Corrupt(format!("record holds {n} checksums, more than the chunk has blocks"));
    }
    if size > rest.len() as u64 {
        return Decoded::Torn;
    }
    // size <= rest.len(), so it fits in usize.
    let size = size as usize;
    let body_end = size - 4;
    if crate::crc::crc32c(&rest[..body_end]) != le_u32(&rest[body_end..size]) {
        return if size == rest.len() { Decoded::Torn } else { Decoded::Corrupt("record checksum mismatch".into()) };
    }
    let kind = match kind_of(head[0]) {
        Some(kind) => kind,
        None => return Decoded::Corrupt(format!("unknown record kind {}", head[0])),
    };
    if head[1..4] != [0, 0, 0] {
        return Decoded::Corrupt("reserved record bytes are not zero".into());
    }
    let crcs = rest[HEAD_LEN + 4..body_end].chunks_exact(4).map(le_u32).collect();
    let record = Record { kind, new_len: le_u64(&head[8..16]), first_block: le_u64(&head[16..24]), crcs };
    Decoded::Record(record, size)
}

fn kind_of(byte: u8) -> Option<Kind> {
    match byte {
        KIND_APPEND => Some(Kind::Append),
        KIND_SEAL => Some(Kind::Seal),
        KIND_CACHED => Some(Kind::Cached),
        KIND_SYNC => Some(Kind::Sync),
        _ => None,
    }
}

/// Whether an intact record (both of its checksums good) starts at the start of `rest`.
fn is_intact_record(rest: &[u8], max_record_len: u64) -> bool {
    intact_kind(rest, max_record_len).is_some()
}

/// The kind byte of the intact record at the start of `rest`, if one starts there.
fn intact_kind(rest: &[u8], max_record_len: u64) -> Option<u8> {
    let head = rest.get(..HEAD_LEN + 4)?;
    if crate::crc::crc32c(&head[..HEAD_LEN]) != le_u32(&head[HEAD_LEN..]) {
        return None;
    }
    let size = RECORD_OVERHEAD as u64 + 4 * u64::from(le_u32(&head[4..8]));
    let record = usize::try_from(size).ok().filter(|_| size <= max_record_len).and_then(|s| rest.get(..s))?;
    let body_end = record.len() - 4;
    (crate::crc::crc32c(&record[..body_end]) == le_u32(&record[body_end..])).then_some(head[0])
}

/// Whether an intact record of a durable kind starts anywhere in `rest`: then the damage
/// before it was fsynced once, and is rot, not a torn write.
fn durable_record_in(rest: &[u8], max_record_len: u64) -> bool {
    (0..rest.len()).any(|at| intact_kind(&rest[at..], max_record_len).and_then(kind_of).is_some_and(|k| k.is_durable()))
}

/// The committed state of a chunk: what replaying its log yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Committed length in bytes.
    pub len: u64,
    /// One CRC32C per block, `block_count(len)` of them; the last covers only the bytes of
    /// the partial last block.
    pub crcs: Vec<u32>,
    pub sealed: bool,
}

impl State {
    /// The CRC of the bytes in the partial last block; `0` (the CRC of nothing) when the
    /// length is block-aligned.
    pub fn tail_crc(&self) -> u32 {
        if tail_bytes(self.len) == 0 {
            0
        } else {
            self.crcs.last().copied().unwrap_or(0)
        }
    }

    /// Whether `record` is a valid next commit for this state.
    pub fn check(&self, record: &Record, max_size: u64) -> Result<(), String> {
        let n = record.crcs.len() as u64;
        if self.sealed {
            return Err("record after the chunk was sealed".into());
        }
        match record.kind {
            Kind::Append | Kind::Cached => {
                if record.new_len <= self.len {
                    return Err(format!("append to {} does not grow length {}", record.new_len, self.len));
                }
                if record.new_len > max_size {
                    return Err(format!("append to {} exceeds the maximum size {max_size}", record.new_len));
                }
                if record.first_block != block_of(self.len) {
                    return Err(format!(
                        "append starts at block {} but the chunk ends in block {}",
                        record.first_block,
                        block_of(self.len)
                    ));
                }
            }
            Kind::Seal => {
                if record.new_len > self.len {
                    return Err(format!("seal at {} beyond length {}", record.new_len, self.len));
                }
                if record.first_block != block_of(record.new_len) {
                    return Err(format!("seal rewrites block {} instead of its last", record.first_block));
                }
                if record.new_len == self.len && record.crcs.last().is_some_and(|c| *c != self.tail_crc()) {
                    return Err("seal at the current length changes the last block's checksum".into());
                }
            }
            Kind::Sync => {
                if record.new_len != self.len || !record.crcs.is_empty() {
                    return Err(format!(
                        "sync at {} with {n} checksums, the length being {}",
                        record.new_len, self.len
                    ));
                }
                if record.first_block != block_count(self.len) {
                    return Err(format!("sync names block {} instead of the block count", record.first_block));
                }
            }
        }
        if record.first_block.checked_add(n) != Some(block_count(record.new_len)) {
            return Err(format!(
                "{n} checksums from block {} do not end at block count {}",
                record.first_block,
                block_count(record.new_len)
            ));
        }
        Ok(())
    }

    /// Applies `record` after checking it; on error the state is unchanged.
    pub fn apply(&mut self, record: &Record, max_size: u64) -> Result<(), String> {
        self.check(record, max_size)?;
        // check() bounds first_block by the block count of a length <= max_size.
        let keep = usize::try_from(record.first_block).map_err(|_| "block index out of range".to_string())?;
        self.crcs.truncate(keep);
        self.crcs.extend_from_slice(&record.crcs);
        self.len = record.new_len;
        self.sealed = record.kind == Kind::Seal;
        Ok(())
    }
}

/// A sync record for `state`: it commits nothing new, it says everything before is durable.
pub fn sync_record(state: &State) -> Record {
    Record { kind: Kind::Sync, new_len: state.len, first_block: block_count(state.len), crcs: Vec::new() }
}

/// A replayed metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub header: Header,
    /// The state the durable records commit (the last durable record's, or empty).
    pub state: State,
    /// Where the durable records end.
    pub valid_end: u64,
    /// The intact cached records after the last durable one, each with where it ends: the
    /// unsynced tail. Their data may be missing after a power loss, so the chunk keeps the
    /// longest prefix of them whose blocks verify (see the parent module).
    pub tail: Vec<(Record, u64)>,
}

/// Replays a whole metadata file.
///
/// Records up to the last durable one (append, seal, sync) are all intact, or the file is
/// refused: each was fsynced before anything after it was written, so damage there is rot,
/// except in the last record, which a crash may have torn. The cached records after the
/// last durable one were never fsynced, so after a power loss any of them may be torn or
/// lost, in any order at page granularity: the tail is cut at its first damaged record,
/// unless an intact durable record lies anywhere after the damage (then the damage was
/// once fsynced, and is rot).
pub fn replay(bytes: &[u8]) -> Result<Replay, FormatError> {
    let header = Header::decode(bytes)?;
    let max_record_len = header.max_record_len();
    let mut state = State::default();
    // The state at the last durable record, kept only while cached records follow it.
    let mut durable: Option<State> = None;
    let mut valid_end = HEADER_LEN as u64;
    let mut tail = Vec::new();
    let mut pos = HEADER_LEN;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        match decode_record(rest, max_record_len) {
            Decoded::Record(record, size) => {
                if !record.kind.is_durable() && durable.is_none() {
                    durable = Some(state.clone());
                }
                state.apply(&record, header.max_size).map_err(|reason| bad(pos, reason))?;
                pos += size;
                if record.kind.is_durable() {
                    valid_end = pos as u64;
                    tail.clear();
                    durable = None;
                } else {
                    tail.push((record, pos as u64));
                }
            }
            Decoded::Torn => break,
            Decoded::Corrupt(_) if !tail.is_empty() && !durable_record_in(&rest[1..], max_record_len) => break,
            Decoded::Corrupt(reason) => return Err(bad(pos, reason)),
        }
    }
    Ok(Replay { header, state: durable.unwrap_or(state), valid_end, tail })
}

/// A fresh metadata file that commits `state` in at most two records: the compacted form
/// of a long log.
pub fn snapshot(header: &Header, state: &State) -> Vec<u8> {
    let mut out = header.encode().to_vec();
    if state.len > 0 {
        let append = Record { kind: Kind::Append, new_len: state.len, first_block: 0, crcs: state.crcs.clone() };
        out.extend_from_slice(&append.encode());
    }
    if state.sealed {
        let crcs = if tail_bytes(state.len) == 0 { vec![] } else { vec![state.tail_crc()] };
        let seal = Record { kind: Kind::Seal, new_len: state.len, first_block: block_of(state.len), crcs };
        out.extend_from_slice(&seal.encode());
    }
    out
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = BLOCK_SIZE;
    const HEADER: Header = Header { chunk_id: 0xabc, max_size: 4 * B };

    fn append(old: &State, new_len: u64, crcs: Vec<u32>) -> Record {
        Record { kind: Kind::Append, new_len, first_block: block_of(old.len), crcs }
    }

    /// A log of three appends (5 bytes, to 1 block + 1 byte, to 2 blocks) and its states.
    fn sample_log() -> (Vec<u8>, Vec<usize>, State) {
        let mut state = State::default();
        let mut bytes = HEADER.encode().to_vec();
        let mut ends = vec![bytes.len()];
        for (new_len, crcs) in [(5, vec![1]), (B + 1, vec![2, 3]), (2 * B, vec![4])] {
            let r = append(&state, new_len, crcs);
            state.apply(&r, HEADER.max_size).unwrap();
            bytes.extend_from_slice(&r.encode());
            ends.push(bytes.len());
        }
        (bytes, ends, state)
    }

    #[test]
    fn header_round_trip() {
        let h = HEADER.encode();
        assert_eq!(h.len(), HEADER_LEN);
        assert_eq!(&h[..8], b"PANGUCHK");
        assert_eq!(Header::decode(&h), Ok(HEADER));
    }

    #[test]
    fn header_damage_is_refused() {
        let h = HEADER.encode();
        assert!(matches!(Header::decode(&h[..20]), Err(FormatError::Bad { .. })));
        for i in 0..HEADER_LEN {
            let mut d = h;
            d[i] ^= 0x10;
            assert!(Header::decode(&d).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn other_versions_are_reported_as_such() {
        let mut h = HEADER.encode();
        h[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crate::crc::crc32c(&h[..32]);
        h[32..36].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::decode(&h), Err(FormatError::UnsupportedVersion(2)));
    }

    #[test]
    fn record_round_trip() {
        let r = Record { kind: Kind::Seal, new_len: B + 3, first_block: 1, crcs: vec![0xdead_beef] };
        let bytes = r.encode();
        assert_eq!(bytes.len(), r.encoded_len());
        assert_eq!(decode_record(&bytes, HEADER.max_record_len()), Decoded::Record(r, bytes.len()));
    }

    #[test]
    fn replay_applies_every_record() {
        let (bytes, ends, state) = sample_log();
        let r = replay(&bytes).unwrap();
        assert_eq!(r.state, state);
        assert_eq!(r.state.crcs, vec![2, 4]);
        assert_eq!(r.state.len, 2 * B);
        assert_eq!(r.valid_end, *ends.last().unwrap() as u64);
    }

    #[test]
    fn every_torn_tail_falls_back_to_the_previous_commit() {
        let (bytes, ends, _) = sample_log();
        let full = replay(&bytes).unwrap();
        for cut in ends[ends.len() - 2]..bytes.len() {
            let r = replay(&bytes[..cut]).unwrap();
            assert_eq!(r.valid_end, ends[ends.len() - 2] as u64, "cut at {cut}");
            assert_eq!(r.state.len, B + 1);
            assert_eq!(r.state.crcs, vec![2, 3]);
        }
        // A last record that reached its full length with garbage inside is torn too.
        for i in ends[ends.len() - 2]..bytes.len() {
            let mut d = bytes.clone();
            d[i] ^= 1;
            let r = replay(&d).unwrap();
            assert_eq!(r.state.len, B + 1, "flip at {i}");
        }
        // Zeros where the last record should be (a file extended but never written).
        let mut z = bytes[..ends[ends.len() - 2]].to_vec();
        z.resize(bytes.len(), 0);
        assert_eq!(replay(&z).unwrap().state.len, B + 1);
        assert_eq!(full.state.len, 2 * B);
    }

    #[test]
    fn damage_before_the_last_record_is_corruption() {
        let (bytes, ends, _) = sample_log();
        // Flip bytes in the second record's body (its checksums or record CRC).
        for i in ends[1] + 28..ends[2] {
            let mut d = bytes.clone();
            d[i] ^= 1;
            match replay(&d) {
                Err(FormatError::Bad { offset, .. }) => assert_eq!(offset, ends[1] as u64),
                other => panic!("flip at {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_head_far_from_the_end_is_corruption() {
        // Enough records after the damaged one that it cannot be the last write.
        let header = Header { chunk_id: 1, max_size: B };
        let mut state = State::default();
        let mut bytes = header.encode().to_vec();
        for len in 1..=20u64 {
            let r = append(&state, len, vec![len as u32]);
            state.apply(&r, header.max_size).unwrap();
            bytes.extend_from_slice(&r.encode());
        }
        let mut d = bytes.clone();
        d[HEADER_LEN + 5] ^= 0x40;
        assert!(matches!(replay(&d), Err(FormatError::Bad { .. })));
    }

    #[test]
    fn a_damaged_head_followed_by_an_intact_record_is_corruption() {
        // A chunk whose maximal record (96 bytes) is longer than the last two records
        // together (76 bytes): the length alone cannot tell, the intact record after can.
        let header = Header { chunk_id: 1, max_size: 16 * B };
        let mut state = State::default();
        let mut bytes = header.encode().to_vec();
        let mut starts = Vec::new();
        for (new_len, crcs) in [(5, vec![1]), (B + 1, vec![2, 3]), (2 * B, vec![4])] {
            let r = append(&state, new_len, crcs);
            state.apply(&r, header.max_size).unwrap();
            starts.push(bytes.len());
            bytes.extend_from_slice(&r.encode());
        }
        assert!(((bytes.len() - starts[1]) as u64) < header.max_record_len());
        for i in starts[1]..starts[1] + HEAD_LEN + 4 {
            let mut d = bytes.clone();
            d[i] ^= 0x08;
            match replay(&d) {
                Err(FormatError::Bad { offset, .. }) => assert_eq!(offset, starts[1] as u64),
                other => panic!("flip at {i}: {other:?}"),
            }
        }
        // The same damage in the last record is a torn tail.
        let mut d = bytes.clone();
        d[starts[2] + 3] ^= 0x08;
        assert_eq!(replay(&d).unwrap().state.len, B + 1);
    }

    #[test]
    fn a_valid_but_inconsistent_record_is_corruption() {
        let mut bytes = HEADER.encode().to_vec();
        // Starts at block 1 of an empty chunk.
        let r = Record { kind: Kind::Append, new_len: 2 * B, first_block: 1, crcs: vec![1] };
        bytes.extend_from_slice(&r.encode());
        assert!(matches!(replay(&bytes), Err(FormatError::Bad { .. })));
    }

    #[test]
    fn state_checks() {
        let max = 4 * B;
        let mut s = State::default();
        // Too few checksums for the blocks.
        assert!(s.check(&append(&s, B + 1, vec![1]), max).is_err());
        // Beyond max size.
        assert!(s.check(&append(&s, max + 1, vec![0; 5]), max).is_err());
        // Must grow.
        assert!(s.check(&append(&s, 0, vec![]), max).is_err());
        s.apply(&append(&s, 10, vec![7]), max).unwrap();
        assert_eq!(s.tail_crc(), 7);
        // Seal at the current length must keep the tail checksum.
        let seal =
            |len: u64, crcs: Vec<u32>| Record { kind: Kind::Seal, new_len: len, first_block: block_of(len), crcs };
        assert!(s.check(&seal(10, vec![8]), max).is_err());
        assert!(s.check(&seal(11, vec![7]), max).is_err());
        let mut t = s.clone();
        t.apply(&seal(4, vec![9]), max).unwrap();
        assert_eq!((t.len, t.crcs.clone(), t.sealed), (4, vec![9], true));
        assert!(t.check(&append(&t, 5, vec![1]), max).is_err());
        s.apply(&seal(10, vec![7]), max).unwrap();
        assert!(s.sealed);
    }

    #[test]
    fn snapshot_replays_to_the_same_state() {
        let (_, _, mut state) = sample_log();
        let r = replay(&snapshot(&HEADER, &state)).unwrap();
        assert_eq!(r.state, state);
        state
            .apply(&Record { kind: Kind::Seal, new_len: B + 9, first_block: 1, crcs: vec![42] }, HEADER.max_size)
            .unwrap();
        assert_eq!(replay(&snapshot(&HEADER, &state)).unwrap().state, state);
        let empty_sealed = State { len: 0, crcs: vec![], sealed: true };
        assert_eq!(replay(&snapshot(&HEADER, &empty_sealed)).unwrap().state, empty_sealed);
        assert_eq!(replay(&snapshot(&HEADER, &State::default())).unwrap().state, State::default());
    }
}
