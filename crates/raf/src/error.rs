//! The engine's errors.

use crate::checkpoint::CheckpointError;
use crate::record::RecordError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RafError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Offsets and lengths are multiples of the block size.
    #[error("offset {offset} or length {len} is not a multiple of 4096")]
    Unaligned { offset: u64, len: u64 },
    #[error("{len} bytes at {offset} run past the end of the volume ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// A volume only grows (as ResizeDisk on Alibaba Cloud).
    #[error("cannot shrink the volume from {size} to {requested} bytes")]
    Shrink { size: u64, requested: u64 },
    #[error("corrupt log record: {0}")]
    Record(#[from] RecordError),
    #[error("corrupt checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Replay found a record out of sequence: a record or segment of the log is missing.
    #[error("log gap in segment {segment}: expected record {expected}, found {found}")]
    SeqGap { segment: u64, expected: u64, found: u64 },
    /// The index points into a segment the volume does not have.
    #[error("the index points into missing segment {0}")]
    MissingSegment(u64),
    #[error("checkpoint does not cover the position the registry says")]
    CheckpointMismatch,
    #[error("the store returned {got} bytes where {want} were asked")]
    ShortRead { want: u64, got: u64 },
    #[error("parent volume {0} is not frozen")]
    ParentNotFrozen(String),
    #[error("the chain of parents is deeper than {0}")]
    ParentChainTooDeep(usize),
    /// An earlier append failed (this writer was fenced, or the store failed mid-append):
    /// the volume takes no more writes until it is opened again.
    #[error("the volume failed earlier and must be reopened: {0}")]
    Failed(StoreError),
    #[error("volume {volume} has no pin {pin}")]
    NoSuchPin { volume: String, pin: String },
    #[error("the volume is closed")]
    Closed,
}
