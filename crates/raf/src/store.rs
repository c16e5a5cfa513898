//! What the engine needs of Pangu, as a trait: the volume registry kept by the Pangu master
//! (a volume's root: size, epoch, parent, frozen flag, segment files, current checkpoint)
//! and append-only files. The registry also keeps a volume's *pins* (`docs/snapshots.md`):
//! index copies named by a snapshot id, which its writer must never compact away.
//!
//! # Why a trait
//!
//! The engine ([`crate::Raf`]) is written and tested against this trait alone: the tests
//! implement it in memory with Pangu's guarantees (acknowledged appends survive a crash, an
//! append in flight at a crash is lost, kept whole or cut, `acquire` fences earlier
//! writers), and the Pangu implementation is another implementation, not a branch in the
//! engine. Every call is async and fallible; the trait is object-safe (held as
//! `Arc<dyn LogStore>`), like Pangu's own `MasterClient`.
//!
//! # Fencing
//!
//! `acquire` bumps the volume's epoch and seals every segment file (at the length every
//! replica has) before it returns. A writer that lost the volume is therefore refused by
//! the files (appends to a sealed file fail) and by the registry (every mutation carries
//! the epoch): it can neither add to the log nor change the root.

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// A Pangu file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u64);

/// The answer to a call on the store.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer acquired the volume (or the file was sealed under this writer).
    #[error("stale epoch: another writer holds the volume")]
    StaleEpoch,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("volume is frozen")]
    Frozen,
    #[error("already exists: {0}")]
    Exists(String),
    /// The registry refused the call as made (a bad name or size, a shrink, a sealed file).
    #[error("refused: {0}")]
    Refused(String),
    /// The store could not do it now (a master or chunkservers unreachable, a disk error).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A volume's checkpoint as the registry records it: the file holding the encoded index
/// and the log position it covers (every record before it is reflected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    pub file: FileId,
    pub covers_seq: u64,
    pub covers_offset: u64,
}

/// A pin as the registry records it: the volume's contents at one instant, held for the
/// snapshot `name`. `file` holds the index then, in the checkpoint format; `next_seq` and
/// `size_bytes` are the log's next sequence number and the volume's size then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRef {
    pub name: String,
    pub file: FileId,
    pub next_seq: u64,
    pub size_bytes: u64,
}

/// One segment file of a volume's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    pub seq: u64,
    pub file: FileId,
    /// Its length: final for a sealed segment (every segment of an `acquire`d volume).
    pub len: u64,
}

/// A volume's root, as `acquire` and `describe` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    pub size_bytes: u64,
    pub parent: Option<String>,
    pub frozen: bool,
    pub checkpoint: Option<CheckpointRef>,
    /// In ascending `seq`.
    pub segments: Vec<SegmentRef>,
    /// Its pins (a new writer keeps every segment they name).
    pub pins: Vec<PinRef>,
}

/// The writer of one file. An append returns once every replica holds it: it survives the
/// death of any process. It survives power loss once a later `sync` (or `seal`) returned.
/// (Pangu writes volume segments so; a store may also make every append durable at once.)
pub trait Appender: Send {
    /// The file written.
    fn file(&self) -> FileId;

    /// Appends `data` and returns the offset it starts at.
    fn append(&mut self, data: Bytes) -> StoreFuture<'_, u64>;

    /// Makes every append acknowledged before it durable on every replica.
    fn sync(&mut self) -> StoreFuture<'_, ()>;

    /// The file's acknowledged length.
    fn len(&self) -> u64;

    /// Whether nothing was appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seals the file at its length: no more appends, and every append is durable.
    fn seal(&mut self) -> StoreFuture<'_, ()>;
}

/// The volume registry and the files, as the engine sees them.
pub trait LogStore: Send + Sync {
    /// Takes the volume for writing: bumps the epoch and seals every segment.
    fn acquire<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease>;

    /// The volume's root without taking it (for frozen parents).
    fn describe<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Lease>;

    /// A new, empty volume of `size` bytes, optionally a clone of frozen `parent`.
    fn create<'a>(&'a self, name: &'a str, size: u64, parent: Option<&'a str>) -> StoreFuture<'a, ()>;

    /// A new segment file at the end of the log: its seq and its writer.
    fn new_segment<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, (u64, Box<dyn Appender>)>;

    /// A new file to write a checkpoint into (made current by `set_checkpoint`).
    fn new_checkpoint_file<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, Box<dyn Appender>>;

    /// Makes `file` the volume's checkpoint, covering the log up to the position given.
    fn set_checkpoint<'a>(
        &'a self,
        name: &'a str,
        epoch: u64,
        file: FileId,
        covers_seq: u64,
        covers_offset: u64,
    ) -> StoreFuture<'a, ()>;

    /// Registers `pin.file` (a sealed file from `new_checkpoint_file`, not installed) as the
    /// pin `pin.name`. Idempotent: if the volume has a pin of that name, that one is answered
    /// (and the file given is not needed).
    fn add_pin<'a>(&'a self, name: &'a str, epoch: u64, pin: &'a PinRef) -> StoreFuture<'a, PinRef>;

    /// Deletes the pin `pin` and its file. No epoch: releasing can only let a writer keep
    /// segments longer than needed, never drop one a pin holds. A pin or volume that is not
    /// there is released already.
    fn release_pin<'a>(&'a self, name: &'a str, pin: &'a str) -> StoreFuture<'a, ()>;

    /// Removes segments (and their files) from the log.
    fn drop_segments<'a>(&'a self, name: &'a str, epoch: u64, seqs: &'a [u64]) -> StoreFuture<'a, ()>;

    /// Sets the volume's size.
    fn resize<'a>(&'a self, name: &'a str, epoch: u64, size: u64) -> StoreFuture<'a, ()>;

    /// Freezes the volume (it can then be a parent) and seals its segments.
    fn freeze<'a>(&'a self, name: &'a str, epoch: u64) -> StoreFuture<'a, ()>;

    /// `len` bytes of `file` from `offset` (checked end to end by Pangu).
    fn read(&self, file: FileId, offset: u64, len: u64) -> StoreFuture<'_, Bytes>;

    /// Several `(offset, len)` ranges of `file`, in the order asked: one call where the
    /// store can serve them together (Pangu: one hand-off per chunk, not one per range).
    fn read_many(&self, file: FileId, ranges: Vec<(u64, u64)>) -> StoreFuture<'_, Vec<Bytes>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ranges.len());
            for (offset, len) in ranges {
                out.push(self.read(file, offset, len).await?);
            }
            Ok(out)
        })
    }
}
