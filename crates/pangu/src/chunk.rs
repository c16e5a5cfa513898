//! One chunk replica as a chunkserver stores it on its local disk: append-only, a CRC32C
//! per 64 KiB block, every block verified on every read.
//!
//! # Model
//!
//! A chunk is a byte string that only grows, up to a maximum size fixed at creation, until it
//! is sealed. Its *committed length* is the length of the last durable commit; bytes past it
//! do not exist as far as any caller can tell. The chunk is cut into blocks of
//! [`BLOCK_SIZE`] bytes, and each block (the last one possibly partial) has a CRC32C of the
//! bytes of it that are committed.
//!
//! End-to-end checksums: a writer sends the CRC32C of the bytes it appends ([`checksum`]),
//! and the chunk refuses the append before writing anything if the bytes do not match it.
//! Reads verify every block they touch and never return bytes from a block that fails.
//!
//! A handle ([`ChunkFile`]) is the only writer of its chunk: the chunkserver opens a chunk
//! once and serialises appends and seals on it (`&mut self`); reads take `&self` and may run
//! concurrently with each other.
//!
//! # On-disk format (version 1)
//!
//! A chunk with id `ID` lives in two files in the chunkserver's directory, named by the id
//! as 16 lower-case hex digits (`ChunkId`'s `Display`):
//!
//! - `ID.chunk`, the data: byte `i` of the chunk at file offset `i`. After a crash it may
//!   hold uncommitted bytes past the committed length; `open` cuts them off.
//! - `ID.meta`, the metadata: a header, then a log of records. Replaying the log gives the
//!   committed length, every block's CRC32C, and whether the chunk is sealed.
//!
//! All integers are little-endian; "CRC" is CRC32C (Castagnoli).
//!
//! Header, 36 bytes, written once at creation:
//!
//! | offset | size | field                                        |
//! |-------:|-----:|----------------------------------------------|
//! |      0 |    8 | magic `PANGUCHK`                             |
//! |      8 |    4 | format version, `1`                          |
//! |     12 |    4 | block size, `65536`                          |
//! |     16 |    8 | chunk id                                     |
//! |     24 |    8 | maximum size in bytes                        |
//! |     32 |    4 | CRC of bytes 0..32                           |
//!
//! Then records, back to back, each `32 + 4n` bytes (kinds below):
//!
//! | offset | size | field                                                  |
//! |-------:|-----:|--------------------------------------------------------|
//! |      0 |    1 | kind: `1` append, `2` seal, `3` cached, `4` sync       |
//! |      1 |    3 | zero                                                   |
//! |      4 |    4 | `n`, the number of block CRCs that follow the head     |
//! |      8 |    8 | `new_len`, the committed length after this record      |
//! |     16 |    8 | `first_block`, the first block whose CRC is replaced   |
//! |     24 |    4 | head CRC, over bytes 0..24                             |
//! |     28 |   4n | CRCs of blocks `first_block .. first_block + n`        |
//! | 28+4n  |    4 | record CRC, over bytes 0..28+4n                        |
//!
//! Applying a record: drop the CRCs of blocks `first_block..`, append the record's `n` CRCs,
//! set the length to `new_len`; a seal record also seals the chunk. A record must satisfy
//! `first_block + n == ceil(new_len / 65536)`; an append must start at the block holding the
//! old end (`first_block == old_len / 65536`: it replaces the partial last block's CRC, which
//! grew) and grow the length within the maximum size (a cached record likewise); a seal
//! sets a length no greater than the current one, carries the CRC of its new partial last
//! block if there is one, and is the last record; a sync keeps the length and carries no
//! CRC (`first_block` is the block count). A record that breaks these rules is corruption, never skipped.
//!
//! A long log (1 MiB, or four times its compacted size for chunks over about 2 GiB) is
//! compacted before the next commit: the same state is written as at most two records (one
//! append from block 0 carrying every CRC, and a seal if sealed) to `ID.meta.tmp`, which is
//! fsynced and renamed over `ID.meta`; then the directory is fsynced. This bounds the log's
//! size and `open`'s replay time however small the appends are.
//!
//! | kind | record     | written                                                          |
//! |-----:|------------|------------------------------------------------------------------|
//! |    1 | append     | after its data was fsynced; fsynced itself                       |
//! |    2 | seal       | after cached data was fsynced; fsynced itself                    |
//! |    3 | cached     | an append whose data and record were written, neither fsynced    |
//! |    4 | sync       | `n = 0`, `new_len` the length: everything before it is durable   |
//!
//! Kinds 1, 2 and 4 are *durable* records.
//!
//! # Durability and the fsync policy
//!
//! A durable append (or a seal) returns only once it is durable:
//!
//! 1. the data is written past the committed length (never over committed bytes) and the
//!    data file is `fdatasync`ed;
//! 2. only then is the record appended to the metadata log and the log `fdatasync`ed. The
//!    record is the commit point.
//!
//! So a durable record on disk implies its data is on disk. This is what most writers rest
//! on (OSS objects, checkpoints, copies made by repair): a replica says "appended" only when
//! the bytes and their checksums survive power loss.
//!
//! # Cached appends
//!
//! A volume's log (`crates/raf`) is written like a disk with a volatile write cache: its
//! writes must survive the death of any process at once, and power loss only after the
//! guest's flush (`docs/disks.md`). For it an append may be *cached*: the data is written,
//! then its record (kind 3), and neither is fsynced. The kernel holds both, so a `kill -9`
//! of the chunkserver loses nothing. [`ChunkFile::sync`] makes them durable: `fdatasync` the
//! data, then write a sync record and `fdatasync` the log. A seal, a durable append and a log
//! compaction sync first, so a durable record always follows a durable one (a sync record
//! is written before a durable record that follows cached ones, in the same write).
//!
//! Files are created, renamed (compaction) and removed with the directory `fsync`ed after,
//! so that an acknowledged create survives and a compacted log is the one found on restart.
//!
//! If a write or an fsync fails, the handle is *poisoned*: a failed fsync may have dropped
//! dirty pages while reporting them clean (Linux does), so nothing written through the
//! handle can be trusted to be durable any more. Appends and seals then fail with
//! [`ChunkError::Poisoned`] until the chunk is reopened, which recovers from what the disk
//! really holds. Reads stay allowed: they only serve committed, verified blocks.
//!
//! # Recovery (`open`)
//!
//! A crash (kill -9, power loss) can leave uncommitted data bytes past the committed length
//! and a torn last record. `open` replays the log up to its last intact record, truncates
//! the log there and the data file to the committed length, and fsyncs both. Every
//! acknowledged durable append is intact, since its record was durable before it was
//! acknowledged.
//!
//! Up to the last durable record, only the last record can be torn (each durable record is
//! fsynced before the next is written), so a damaged record counts as a torn tail only if it
//! may be the last write: its bytes reach the end of the file (or, when its head is damaged
//! and its length unknown, no more than one maximal record follows it and no intact record
//! starts anywhere in those bytes). Damage followed by further records is bit rot, and
//! `open` fails with [`ChunkError::BadMetadata`] rather than silently dropping acknowledged
//! appends: the replica is lost and must be re-replicated.
//!
//! The cached records after the last durable one are the *unsynced tail*. After a power
//! loss any of them may be torn or missing, and so may any page of their data, in any
//! order. So the tail is cut at its first damaged record (unless an intact durable record
//! lies anywhere after the damage: then the damage was fsynced once, and is rot), and then
//! each remaining cached record is kept only if every block it wrote verifies against the
//! checksums it committed; the first that fails ends the chunk there. What is kept is made
//! durable at once (fsync the data, write a sync record). After a `kill -9` everything
//! verifies and nothing is cut; after a power loss the chunk keeps a prefix of its cached
//! appends, which is what a replicated writer needs (the replicas are then sealed at the
//! shortest one: see "Sealing").
//!
//! A data file shorter than the committed length (a disk that lied about a flush) is not an
//! open error: the missing blocks fail verification like any other corruption, so reads
//! and the scrub ([`ChunkFile::verify_all`]) report them.
//!
//! # Sealing
//!
//! [`ChunkFile::seal`] ends a chunk. With no length it seals at the committed length. With
//! a shorter length it truncates: this is what the client does when the replica set broke
//! mid-append and the replicas disagree on the tail. An append is acknowledged only when
//! every replica has it, so the length all replicas share contains every acknowledged
//! append, and sealing each replica at that length makes them identical again (the bytes
//! cut off were never acknowledged). The chunk cannot check that rule; the client must
//! seal at a length it knows every live replica has.

mod block;
mod format;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tracing::warn;

pub use block::BLOCK_SIZE;
use block::{block_count, blocks_extent, blocks_touched, tail_bytes, BLOCK_BYTES};
use format::{FormatError, Header, Kind, Record, State};

/// The cluster's default maximum chunk size.
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// The largest maximum size a chunk may have (it keeps the in-memory checksum table and any
/// single read bounded).
pub const MAX_CHUNK_SIZE: u64 = 4 * 1024 * 1024 * 1024;

/// The metadata log is compacted when it grows past this (or past four times its compacted
/// size, for very large chunks), which bounds both its size and the replay time of `open`.
const COMPACT_LOG_BYTES: u64 = 1024 * 1024;

/// How many blocks the scrub reads at a time.
const SCRUB_BLOCKS: u64 = 16;

/// The CRC32C a writer sends with an append (the end-to-end checksum).
pub fn checksum(data: &[u8]) -> u32 {
    crate::crc::crc32c(data)
}

/// A chunk's id, unique in the cluster (the master allocates it). Displayed as 16 lower-case
/// hex digits, which is also how its files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub u64);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Parses the `Display` form (1 to 16 hex digits).
impl FromStr for ChunkId {
    type Err = ChunkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match u64::from_str_radix(s, 16) {
            Ok(id) if ok => Ok(ChunkId(id)),
            _ => Err(ChunkError::BadChunkId(s.to_string())),
        }
    }
}

/// Chunk ids travel as their `Display` form, as in URLs and file names: a JSON number would
/// lose precision above 2^53 in many readers.
impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ChunkId, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a chunk operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {id} already exists")]
    AlreadyExists { id: ChunkId },
    #[error("chunk {id} does not exist")]
    NotFound { id: ChunkId },
    #[error("{0:?} is not a chunk id (1 to 16 hex digits)")]
    BadChunkId(String),
    #[error("maximum chunk size {max_size} is not between 1 and {MAX_CHUNK_SIZE}")]
    InvalidMaxSize { max_size: u64 },
    #[error("checksum mismatch: the writer sent {expected:#010x} but the data's CRC32C is {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    /// The writer's idea of the end is wrong: neither the end nor a retry of bytes already
    /// there.
    #[error("append at offset {expected}, but the chunk ends at {actual}")]
    OffsetMismatch { expected: u64, actual: u64 },
    /// The append's range is already committed, but with different bytes: not a retry.
    #[error("{len} bytes at offset {offset} are already committed with different contents")]
    RetryMismatch { offset: u64, len: u64 },
    #[error("appending {requested} bytes to {len} would exceed the chunk's maximum size {max_size}")]
    ChunkFull { len: u64, requested: u64, max_size: u64 },
    #[error("chunk is sealed at length {len}")]
    Sealed { len: u64 },
    #[error("cannot seal at {requested}: the chunk is only {len} bytes long")]
    SealBeyondEnd { requested: u64, len: u64 },
    #[error("range {offset}+{len} is outside the chunk's {chunk_len} committed bytes")]
    OutOfRange { offset: u64, len: u64, chunk_len: u64 },
    /// A block failed its checksum (or is missing from the data file). Its bytes are never
    /// returned; the replica needs repair.
    #[error("block {block_index} (at offset {offset}) is corrupt")]
    Corrupt { block_index: u64, offset: u64 },
    #[error("chunk metadata {} is damaged at offset {offset}: {reason}", path.display())]
    BadMetadata { path: PathBuf, offset: u64, reason: String },
    #[error("chunk metadata {} has format version {version}; this feitian reads version {}", path.display(), format::VERSION)]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("an earlier write or fsync on this chunk failed; reopen it to recover")]
    Poisoned,
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

pub type Result<T, E = ChunkError> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ChunkError + '_ {
    move |source| ChunkError::Io { path: path.to_path_buf(), source }
}

/// The files of one chunk.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    meta: PathBuf,
    meta_tmp: PathBuf,
}

impl Paths {
    fn new(dir: &Path, id: ChunkId) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            data: dir.join(format!("{id}.chunk")),
            meta: dir.join(format!("{id}.meta")),
            meta_tmp: dir.join(format!("{id}.meta.tmp")),
        }
    }
}

/// An open chunk replica.
#[derive(Debug)]
pub struct ChunkFile {
    id: ChunkId,
    paths: Paths,
    header: Header,
    state: State,
    data: File,
    meta: File,
    /// Where the next record goes: the end of the intact log.
    meta_len: u64,
    /// Compact the log before a commit once it is at least this long.
    compact_at: u64,
    /// Cached appends were made since the last durable record: their data and records are
    /// written but not fsynced.
    unsynced: bool,
    poisoned: bool,
}

/// How durable an append is when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Data and record fsynced: survives power loss.
    Durable,
    /// Data and record written, not fsynced: survives the death of any process (the kernel
    /// holds them), and power loss only after a [`ChunkFile::sync`] (or a seal, or a durable
    /// append) that follows it.
    Cached,
}

impl ChunkFile {
    /// Creates an empty chunk in `dir`. Fails with `AlreadyExists` if the chunk exists.
    ///
    /// The metadata file appears (by rename) only once it is complete, so a crash leaves
    /// either no chunk or an empty one; a data file without metadata is the leftover of a
    /// crashed create and is overwritten. Two creates of the same id must not race (ids are
    /// unique and the chunkserver serialises operations per chunk).
    pub fn create(dir: &Path, id: ChunkId, max_size: u64) -> Result<ChunkFile> {
        if max_size == 0 || max_size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidMaxSize { max_size });
        }
        let paths = Paths::new(dir, id);
        if paths.meta.try_exists().map_err(io_error(&paths.meta))? {
            return Err(ChunkError::AlreadyExists { id });
        }
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&paths.data)
            .map_err(io_error(&paths.data))?;
        data.sync_all().map_err(io_error(&paths.data))?;
        sync_dir(dir)?;

        let header = Header { chunk_id: id.0, max_size };
        write_durably(&paths.meta_tmp, &header.encode())?;
        fs::rename(&paths.meta_tmp, &paths.meta).map_err(io_error(&paths.meta))?;
        sync_dir(dir)?;
        let meta = open_rw(&paths.meta)?;
        let state = State::default();
        Ok(ChunkFile::assemble(id, paths, header, state, data, meta))
    }

    /// Opens an existing chunk, recovering from a crash: a torn last record and uncommitted
    /// data bytes are cut off (see the module docs). `NotFound` if the chunk's metadata file
    /// does not exist; damaged metadata is `BadMetadata` (the replica is lost); a missing
    /// data file next to existing metadata is an `Io` error.
    pub fn open(dir: &Path, id: ChunkId) -> Result<ChunkFile> {
        let paths = Paths::new(dir, id);
        let mut meta = match OpenOptions::new().read(true).write(true).open(&paths.meta) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkError::NotFound { id }),
            Err(e) => return Err(io_error(&paths.meta)(e)),
        };
        let mut bytes = Vec::new();
        meta.read_to_end(&mut bytes).map_err(io_error(&paths.meta))?;
        let replay = format::replay(&bytes).map_err(|e| match e {
            FormatError::UnsupportedVersion(version) => {
                ChunkError::UnsupportedVersion { path: paths.meta.clone(), version }
            }
            FormatError::Bad { offset, reason } => ChunkError::BadMetadata { path: paths.meta.clone(), offset, reason },
        })?;
        if replay.header.chunk_id != id.0 {
            return Err(ChunkError::BadMetadata {
                path: paths.meta.clone(),
                offset: 16,
                reason: format!("the file belongs to chunk {}", ChunkId(replay.header.chunk_id)),
            });
        }
        let file_len = bytes.len() as u64;

        let data = open_rw(&paths.data)?;
        let durable = (replay.state, replay.valid_end);
        let (state, valid_end) =
            keep_verified_tail(id, (&paths.data, &data), replay.header.max_size, durable, replay.tail)?;
        if valid_end < file_len {
            warn!(chunk = %id, bytes = file_len - valid_end, "discarding a torn or unsynced tail of the metadata log");
            meta.set_len(valid_end).map_err(io_error(&paths.meta))?;
            meta.sync_data().map_err(io_error(&paths.meta))?;
        }
        let data_len = data.metadata().map_err(io_error(&paths.data))?.len();
        if data_len > state.len {
            warn!(chunk = %id, bytes = data_len - state.len, "discarding uncommitted data past the committed length");
            data.set_len(state.len).map_err(io_error(&paths.data))?;
            data.sync_data().map_err(io_error(&paths.data))?;
        } else if data_len < state.len {
            warn!(
                chunk = %id,
                committed = state.len,
                on_disk = data_len,
                "data file is shorter than the committed length; its missing blocks will read as corrupt"
            );
        }
        // A leftover of a compaction that crashed before its rename.
        remove_if_exists(&paths.meta_tmp)?;

        let kept_cached = valid_end > replay.valid_end;
        let mut chunk = ChunkFile::assemble(id, paths, replay.header, state, data, meta);
        chunk.meta_len = valid_end;
        if kept_cached {
            // What survived of the unsynced tail is made durable now, so that it is never
            // verified again and a later torn write cannot be mistaken for it.
            chunk.unsynced = true;
            chunk.sync()?;
        }
        Ok(chunk)
    }

    /// Removes a chunk's files. Removing a chunk that does not exist succeeds, so that a
    /// retried delete is harmless. The metadata goes first: once it is gone, the chunk is.
    pub fn delete(dir: &Path, id: ChunkId) -> Result<()> {
        let paths = Paths::new(dir, id);
        remove_if_exists(&paths.meta)?;
        remove_if_exists(&paths.data)?;
        remove_if_exists(&paths.meta_tmp)?;
        sync_dir(dir)
    }

    fn assemble(id: ChunkId, paths: Paths, header: Header, state: State, data: File, meta: File) -> ChunkFile {
        let compacted = format::HEADER_LEN as u64 + 2 * header.max_record_len();
        ChunkFile {
            id,
            paths,
            header,
            state,
            data,
            meta,
            meta_len: format::HEADER_LEN as u64,
            compact_at: COMPACT_LOG_BYTES.max(4 * compacted),
            unsynced: false,
            poisoned: false,
        }
    }

    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// The committed length in bytes.
    pub fn len(&self) -> u64 {
        self.state.len
    }

    pub fn is_empty(&self) -> bool {
        self.state.len == 0
    }

    pub fn max_size(&self) -> u64 {
        self.header.max_size
    }

    pub fn is_sealed(&self) -> bool {
        self.state.sealed
    }

    /// Appends `data` at `expected_offset`, where the writer believes the chunk ends, and
    /// returns the new committed length once the bytes and their checksums are durable.
    ///
    /// `checksum` is the CRC32C the writer computed over `data`; a mismatch is refused with
    /// `ChecksumMismatch` before anything is written.
    ///
    /// A retry is detected: if the whole range `expected_offset..+data.len()` is already
    /// committed, the stored bytes are read (verified) and compared. Equal bytes mean an
    /// earlier attempt committed and only its acknowledgement was lost: `Ok` with the current
    /// length, nothing written (also on a sealed chunk, since the bytes are there). Different
    /// bytes are `RetryMismatch`. Otherwise the chunk must not be sealed (`Sealed`),
    /// `expected_offset` must be the committed length (`OffsetMismatch`), and the result must
    /// fit the maximum size (`ChunkFull`).
    pub fn append(&mut self, expected_offset: u64, data: &[u8], checksum: u32) -> Result<u64> {
        self.append_with(expected_offset, data, checksum, Durability::Durable)
    }

    /// [`ChunkFile::append`], durable or cached as `durability` says.
    pub fn append_with(
        &mut self,
        expected_offset: u64,
        data: &[u8],
        checksum: u32,
        durability: Durability,
    ) -> Result<u64> {
        self.append_inner(expected_offset, &[data], Some(checksum), None, durability)
    }

    /// [`ChunkFile::append`] of the concatenation of `parts`, without a writer's checksum to
    /// compare with: for a writer in this process, whose buffers are the very memory written
    /// (there is no transport between them to check). The blocks' checksums are computed
    /// from those buffers, and from then on protect the bytes end to end.
    ///
    /// `block_crcs` are the writer's CRC32Cs of the data's blocks (see
    /// [`crate::parts::Parts::with_block_crcs`]), taken when it received the bytes. When the
    /// append starts at a block boundary of the chunk they are recorded as they are, and the
    /// bytes are not read again before they are written; otherwise (or if there are not one
    /// per block) they are ignored and computed here.
    pub fn append_trusted(
        &mut self,
        expected_offset: u64,
        parts: &[&[u8]],
        block_crcs: Option<&[u32]>,
        durability: Durability,
    ) -> Result<u64> {
        let len = self.state.len;
        let requested: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let given = block_crcs
            .filter(|c| expected_offset == len && tail_bytes(len) == 0 && c.len() as u64 == block_count(requested));
        let Some(given) = given else {
            return self.append_inner(expected_offset, parts, None, None, durability);
        };
        debug_assert_eq!(
            given,
            block::extend_checksums(len, 0, parts.iter().copied(), false).1,
            "a writer's block checksums are wrong"
        );
        self.append_inner(expected_offset, parts, None, Some((block::block_of(len), given.to_vec())), durability)
    }

    /// An append; `blocks` are the new blocks' first index and checksums when they are
    /// already known (else they are computed from `parts`, with the writer's `checksum`
    /// compared in the same pass).
    fn append_inner(
        &mut self,
        expected_offset: u64,
        parts: &[&[u8]],
        checksum: Option<u32>,
        blocks: Option<(u64, Vec<u32>)>,
        durability: Durability,
    ) -> Result<u64> {
        let len = self.state.len;
        // One pass over the bytes gives both the blocks' checksums and the writer's.
        let (first_block, crcs, actual) = match blocks {
            Some((first, crcs)) => (first, crcs, None),
            None => block::extend_checksums(len, self.state.tail_crc(), parts.iter().copied(), checksum.is_some()),
        };
        if let (Some(expected), Some(actual)) = (checksum, actual) {
            if expected != actual {
                return Err(ChunkError::ChecksumMismatch { expected, actual });
            }
        }
        let requested: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if expected_offset.checked_add(requested).is_some_and(|end| end <= len) {
            let stored = self.read(expected_offset, requested)?;
            let mut at = 0;
            let same = parts.iter().all(|p| {
                at += p.len();
                stored[at - p.len()..at] == **p
            });
            return if same {
                Ok(len)
            } else {
                Err(ChunkError::RetryMismatch { offset: expected_offset, len: requested })
            };
        }
        if self.state.sealed {
            return Err(ChunkError::Sealed { len });
        }
        if expected_offset != len {
            return Err(ChunkError::OffsetMismatch { expected: expected_offset, actual: len });
        }
        let max_size = self.header.max_size;
        let Some(new_len) = len.checked_add(requested).filter(|&n| n <= max_size) else {
            return Err(ChunkError::ChunkFull { len, requested, max_size });
        };
        self.check_not_poisoned()?;
        self.compact_if_long()?;

        match durability {
            Durability::Durable => {
                let record = Record { kind: Kind::Append, new_len, first_block, crcs };
                let records = self.durable_records(record);
                let next = self.check_records(&records)?;
                // Data first, durably, then the record that commits it.
                let written = write_all_at(&self.data, parts, len).and_then(|()| self.data.sync_data());
                if let Err(e) = written {
                    return Err(self.poison(io_error(&self.paths.data)(e)));
                }
                self.commit(&records, next, true)?;
                self.unsynced = false;
            }
            Durability::Cached => {
                let records = [Record { kind: Kind::Cached, new_len, first_block, crcs }];
                let next = self.check_records(&records)?;
                // Data first, then the record: after a crash the record never names bytes
                // the kernel was not given (a power loss is what `open`'s check is for).
                if let Err(e) = write_all_at(&self.data, parts, len) {
                    return Err(self.poison(io_error(&self.paths.data)(e)));
                }
                self.commit(&records, next, false)?;
                self.unsynced = true;
            }
        }
        Ok(new_len)
    }

    /// Makes every cached append durable: the data is fsynced, then a sync record is
    /// written and fsynced. Returns the length. Nothing to do when nothing is cached.
    pub fn sync(&mut self) -> Result<u64> {
        if !self.unsynced {
            return Ok(self.state.len);
        }
        self.check_not_poisoned()?;
        if let Err(e) = self.data.sync_data() {
            return Err(self.poison(io_error(&self.paths.data)(e)));
        }
        let records = [format::sync_record(&self.state)];
        let next = self.check_records(&records)?;
        self.commit(&records, next, true)?;
        self.unsynced = false;
        Ok(self.state.len)
    }

    /// Whether cached appends wait for a sync.
    pub fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// A durable record, preceded by a sync record when cached ones came before it: so a
    /// durable record always follows a durable one, and damage to it is never taken for
    /// the torn tail of a cached run (see "Cached appends" in the module docs). The caller
    /// fsyncs the data before it writes these.
    fn durable_records(&self, record: Record) -> Vec<Record> {
        if self.unsynced {
            vec![format::sync_record(&self.state), record]
        } else {
            vec![record]
        }
    }

    /// Reads `len` committed bytes at `offset`. Every block the range touches is read whole
    /// and verified; if one fails, the read fails with `Corrupt` and returns none of the
    /// bytes. A range past the committed length is `OutOfRange`.
    pub fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let chunk_len = self.state.len;
        let out_of_range = ChunkError::OutOfRange { offset, len, chunk_len };
        let Some(end) = offset.checked_add(len).filter(|&end| end <= chunk_len) else {
            return Err(out_of_range);
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let blocks = blocks_touched(offset, len);
        let span = blocks_extent(&blocks, chunk_len);
        let mut buf = self.read_verified(blocks.start, span.clone())?;
        // Both are within a span of at most MAX_CHUNK_SIZE bytes that was just allocated.
        let (Ok(from), Ok(to)) = (usize::try_from(offset - span.start), usize::try_from(end - span.start)) else {
            return Err(out_of_range);
        };
        buf.truncate(to);
        buf.drain(..from);
        Ok(buf)
    }

    /// The scrub: verifies every committed block, and reports the first corrupt one as
    /// `Corrupt`.
    pub fn verify_all(&self) -> Result<()> {
        let blocks = block_count(self.state.len);
        let mut first = 0;
        while first < blocks {
            let batch = first..(first + SCRUB_BLOCKS).min(blocks);
            self.read_verified(batch.start, blocks_extent(&batch, self.state.len))?;
            first = batch.end;
        }
        Ok(())
    }

    /// Seals the chunk, durably: no more appends. `final_len` of `None` seals at the
    /// committed length; `Some(n)` with `n` at most the length truncates the chunk to `n`
    /// bytes first (see "Sealing" in the module docs for when that is right). Returns the
    /// sealed length.
    ///
    /// Sealing a sealed chunk again at its length (or with `None`) succeeds, so a retried
    /// seal is harmless; a different length is `Sealed`. When truncating into the middle of
    /// a block, that block is verified before its new, shorter checksum is computed, so a
    /// corrupt block is never given a fresh checksum (`Corrupt` instead).
    pub fn seal(&mut self, final_len: Option<u64>) -> Result<u64> {
        let len = self.state.len;
        let target = final_len.unwrap_or(len);
        if self.state.sealed {
            return if target == len { Ok(len) } else { Err(ChunkError::Sealed { len }) };
        }
        if target > len {
            return Err(ChunkError::SealBeyondEnd { requested: target, len });
        }
        self.check_not_poisoned()?;
        self.compact_if_long()?;

        let first_block = block::block_of(target);
        let crcs = if tail_bytes(target) == 0 {
            Vec::new()
        } else if target == len {
            vec![self.state.tail_crc()]
        } else {
            let block = first_block..first_block + 1;
            let mut bytes = self.read_verified(first_block, blocks_extent(&block, len))?;
            bytes.truncate(usize::try_from(tail_bytes(target)).unwrap_or(BLOCK_BYTES));
            vec![crate::crc::crc32c(&bytes)]
        };
        let record = Record { kind: Kind::Seal, new_len: target, first_block, crcs };
        let records = self.durable_records(record);
        let next = self.check_records(&records)?;
        // A sealed chunk is durable: cached appends are fsynced before the seal commits.
        if self.unsynced {
            if let Err(e) = self.data.sync_data() {
                return Err(self.poison(io_error(&self.paths.data)(e)));
            }
        }
        self.commit(&records, next, true)?;
        self.unsynced = false;
        if target < len {
            // The seal is committed; the bytes past it are dead whatever happens here, and
            // `open` cuts them off if this does not.
            if let Err(e) = self.data.set_len(target).and_then(|()| self.data.sync_data()) {
                warn!(chunk = %self.id, error = %e, "could not truncate a sealed chunk's data file");
            }
        }
        Ok(target)
    }

    /// Reads the blocks from `first_block` that cover `span` (block-aligned at the start,
    /// cut at the chunk's end) and verifies each against its checksum.
    fn read_verified(&self, first_block: u64, span: std::ops::Range<u64>) -> Result<Vec<u8>> {
        read_blocks_verified(self.id, &self.paths.data, &self.data, &self.state, first_block, span)
    }

    fn check_not_poisoned(&self) -> Result<()> {
        if self.poisoned {
            Err(ChunkError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison(&mut self, e: ChunkError) -> ChunkError {
        warn!(chunk = %self.id, error = %e, "chunk handle poisoned");
        self.poisoned = true;
        e
    }

    /// The state after `records`. Records this code builds must be valid; if not, that is
    /// a bug, reported without writing anything.
    fn check_records(&self, records: &[Record]) -> Result<State> {
        let mut next = self.state.clone();
        for record in records {
            next.apply(record, self.header.max_size).map_err(|reason| ChunkError::BadMetadata {
                path: self.paths.meta.clone(),
                offset: self.meta_len,
                reason: format!("refusing to write an invalid record: {reason}"),
            })?;
        }
        Ok(next)
    }

    /// Appends `records` to the log in one write, fsyncs it when `durable`, and takes
    /// `next` (what [`ChunkFile::check_records`] made of them) as the state: the commit point.
    fn commit(&mut self, records: &[Record], next: State, durable: bool) -> Result<()> {
        let bytes: Vec<u8> = records.iter().flat_map(Record::encode).collect();
        let mut written = self.meta.write_all_at(&bytes, self.meta_len);
        if durable {
            written = written.and_then(|()| self.meta.sync_data());
        }
        if let Err(e) = written {
            return Err(self.poison(io_error(&self.paths.meta)(e)));
        }
        self.meta_len += bytes.len() as u64;
        self.state = next;
        Ok(())
    }

    fn compact_if_long(&mut self) -> Result<()> {
        if self.meta_len < self.compact_at {
            return Ok(());
        }
        self.compact().map_err(|e| self.poison(e))
    }

    /// Rewrites the log as a snapshot of the state: write a temporary file, fsync, rename
    /// it over the log, fsync the directory, and continue on the new file.
    fn compact(&mut self) -> Result<()> {
        // The snapshot commits everything durably, so cached data is fsynced first.
        if self.unsynced {
            self.data.sync_data().map_err(io_error(&self.paths.data))?;
        }
        let bytes = format::snapshot(&self.header, &self.state);
        write_durably(&self.paths.meta_tmp, &bytes)?;
        fs::rename(&self.paths.meta_tmp, &self.paths.meta).map_err(io_error(&self.paths.meta))?;
        sync_dir(&self.paths.dir)?;
        self.meta = open_rw(&self.paths.meta)?;
        self.meta_len = bytes.len() as u64;
        self.unsynced = false;
        Ok(())
    }
}

/// Reads the blocks from `first_block` that cover `span` (block-aligned at the start, cut
/// at the chunk's end) and verifies each against `state`'s checksums.
fn read_blocks_verified(
    id: ChunkId,
    path: &Path,
    data: &File,
    state: &State,
    first_block: u64,
    span: std::ops::Range<u64>,
) -> Result<Vec<u8>> {
    let size = usize::try_from(span.end - span.start).map_err(|_| ChunkError::OutOfRange {
        offset: span.start,
        len: span.end - span.start,
        chunk_len: state.len,
    })?;
    let mut buf = read_new(data, size, span.start).map_err(io_error(path))?;
    let got = buf.len();
    // A short file (a torn or truncated replica): the missing blocks fail below.
    buf.resize(size, 0);
    for (i, (block, index)) in buf.chunks(BLOCK_BYTES).zip(first_block..).enumerate() {
        let present = got.saturating_sub(i * BLOCK_BYTES) >= block.len();
        let expected = usize::try_from(index).ok().and_then(|i| state.crcs.get(i));
        if !present || expected != Some(&crate::crc::crc32c(block)) {
            let offset = index * BLOCK_SIZE;
            warn!(chunk = %id, block = index, offset, present, "block failed verification");
            return Err(ChunkError::Corrupt { block_index: index, offset });
        }
    }
    Ok(buf)
}

/// Recovery of the unsynced tail (`open`): applies the cached records after the durable
/// state one at a time, keeping each only if every block it wrote verifies against the
/// checksums it committed; the first that does not ends the tail (a power loss took its
/// data). Returns the state and where the kept records end in the log.
fn keep_verified_tail(
    id: ChunkId,
    (path, data): (&Path, &File),
    max_size: u64,
    (mut state, mut valid_end): (State, u64),
    tail: Vec<(Record, u64)>,
) -> Result<(State, u64)> {
    for (record, end) in tail {
        let mut next = state.clone();
        if next.apply(&record, max_size).is_err() {
            break;
        }
        let blocks = block::block_of(state.len)..block_count(next.len);
        match read_blocks_verified(id, path, data, &next, blocks.start, blocks_extent(&blocks, next.len)) {
            Ok(_) => {
                state = next;
                valid_end = end;
            }
            Err(ChunkError::Corrupt { block_index, .. }) => {
                warn!(chunk = %id, block = block_index, "an unsynced append lost its data; the chunk ends before it");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((state, valid_end))
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).open(path).map_err(io_error(path))
}

/// Creates (or replaces) `path` with `bytes`, fsynced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = File::create(path).map_err(io_error(path))?;
    file.write_all_at(bytes, 0).and_then(|()| file.sync_data()).map_err(io_error(path))
}

/// Makes creations, renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Writes the concatenation of `parts` at `offset`: `pwritev` of up to 1024 buffers at a
/// time, so many small buffers (a group commit of small objects) cost one system call.
fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    const MAX_IOVECS: usize = 1024;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let iovecs: Vec<libc::iovec> = parts[first..parts.len().min(first + MAX_IOVECS)]
            .iter()
            .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
            .collect();
        let at = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: each iovec describes a live, readable slice of `parts`; pwritev only reads
        // them. The count is at most MAX_IOVECS (Linux's IOV_MAX).
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iovecs.as_ptr(), iovecs.len() as libc::c_int, at) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        // Skip what was written: whole buffers, then the front of a partly written one.
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            let p = parts[first];
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                parts[first] = &p[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// Reads up to `size` bytes at `offset` into a new buffer, cut to what the file had. The
/// buffer is not zeroed first (the read fills it; zeroing would be one more pass over every
/// byte served).
fn read_new(file: &File, size: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(size);
    while buf.len() < size {
        let at = offset + buf.len() as u64;
        let at = libc::off_t::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let spare = buf.spare_capacity_mut();
        // SAFETY: the pointer and length are the vector's spare capacity, valid for writes of
        // that many bytes; pread writes at most that many.
        let n = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            0 => break,
            n if n > 0 => {
                // SAFETY: the kernel initialized the next `n` bytes (n <= spare.len()).
                unsafe { buf.set_len(buf.len() + n as usize) };
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}
