//! Reading through layers: a volume's own index (its live one, or a pin's copy), then its
//! frozen parents', nearest first. The open engine ([`crate::Raf`]) and a pin's read-only
//! view ([`crate::PinnedView`]) resolve and fetch blocks with this one code, so a pinned
//! read and a live read cannot disagree on what a hole, a zero or a parent's block is.
//!
//! Resolving is pure (index lookups into a list of store reads); fetching merges the reads
//! into spans ([`crate::coalesce`]) and reads them from the store.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::coalesce;
use crate::error::RafError;
use crate::index::{Index, Mapping, BLOCK};
use crate::replay;
use crate::store::{FileId, LogStore};

/// How deep a chain of clones may go (a cycle in the registry would otherwise loop).
const MAX_PARENTS: usize = 16;
/// Spans of log (`coalesce`) one read fetches at once. A fragmented 32 MiB request maps to thousands of
/// pieces; issued all at once they open more connections to a chunkserver than it serves,
/// and the rest wait for idle ones to close (seconds). A few dozen keep the replicas busy.
const READ_FANOUT: usize = 32;

/// A frozen parent, read-only.
pub(crate) struct Layer {
    pub index: Index,
    pub files: HashMap<u64, FileId>,
}

/// One piece of a read that has data: `(first block, blocks, file, offset in file)`.
pub(crate) type Piece = (u64, u64, FileId, u64);

/// Checks that `len` bytes at `offset` are whole blocks within a volume of `size` bytes.
pub(crate) fn check_range(offset: u64, len: u64, size: u64) -> Result<(), RafError> {
    if offset % BLOCK != 0 || len % BLOCK != 0 {
        return Err(RafError::Unaligned { offset, len });
    }
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(RafError::OutOfRange { offset, len, size }),
    }
}

/// Loads the chain of frozen parents from `parent` up (through `describe`: a frozen volume
/// never changes, so no lease is needed).
pub(crate) async fn load_parents(store: &dyn LogStore, parent: Option<String>) -> Result<Vec<Layer>, RafError> {
    let mut parents = Vec::new();
    let mut next = parent;
    while let Some(parent) = next {
        if parents.len() == MAX_PARENTS {
            return Err(RafError::ParentChainTooDeep(MAX_PARENTS));
        }
        let plead = store.describe(&parent).await?;
        if !plead.frozen {
            return Err(RafError::ParentNotFrozen(parent));
        }
        let p = replay::load(store, &plead).await?;
        let files = p.segments.iter().map(|(&seq, s)| (seq, s.file)).collect();
        parents.push(Layer { index: p.index, files });
        next = plead.parent;
    }
    Ok(parents)
}

/// Looks `n` blocks from `first` up in `index`, whose segments' files `file_of` names:
/// the pieces with data go to `reads`, the holes are returned (zeros are neither).
pub(crate) fn lookup(
    index: &Index,
    file_of: impl Fn(u64) -> Option<FileId>,
    (first, n): (u64, u64),
    reads: &mut Vec<Piece>,
) -> Result<Vec<(u64, u64)>, RafError> {
    let mut holes = Vec::new();
    for p in index.lookup(first, n) {
        match p.mapping {
            Mapping::Data(loc) => {
                let file = file_of(loc.segment).ok_or(RafError::MissingSegment(loc.segment))?;
                reads.push((p.start, p.len, file, loc.offset));
            }
            Mapping::Zero => {}
            Mapping::Hole => holes.push((p.start, p.len)),
        }
    }
    Ok(holes)
}

/// Resolves the `holes` the volume's own index left through `parents`, nearest first; what
/// no layer has reads as zeros.
pub(crate) fn through_parents(
    parents: &[Layer],
    mut holes: Vec<(u64, u64)>,
    reads: &mut Vec<Piece>,
) -> Result<(), RafError> {
    for layer in parents {
        let mut deeper = Vec::new();
        for hole in holes {
            deeper.extend(lookup(&layer.index, |seq| layer.files.get(&seq).copied(), hole, reads)?);
        }
        holes = deeper;
    }
    Ok(())
}

/// Reads the pieces of `len` bytes from block `first` from the store; the rest is zeros.
pub(crate) async fn fetch(store: &dyn LogStore, first: u64, len: u64, reads: &[Piece]) -> Result<Bytes, RafError> {
    let wanted: Vec<(FileId, u64, u64)> = reads.iter().map(|&(_, n, file, at)| (file, at, n * BLOCK)).collect();
    let spans = coalesce::plan(&wanted);
    // Spans of one file go to the store together, a batch at a time (owned ranges: a
    // stream over borrowed spans would not be `Send` for every lifetime).
    let batches = coalesce::batches(&spans);
    let data: Vec<Vec<Bytes>> = stream::iter(batches.into_iter().map(|(file, ranges)| store.read_many(file, ranges)))
        .buffered(READ_FANOUT)
        .try_collect()
        .await?;
    let data = data.into_iter().flatten();
    let mut out = BytesMut::zeroed(len as usize);
    for (span, data) in spans.iter().zip(data) {
        if data.len() as u64 != span.len {
            return Err(RafError::ShortRead { want: span.len, got: data.len() as u64 });
        }
        for &(i, within) in &span.pieces {
            let (start, n, _, _) = reads[i];
            let at = ((start - first) * BLOCK) as usize;
            let from = within as usize;
            out[at..at + (n * BLOCK) as usize].copy_from_slice(&data[from..from + (n * BLOCK) as usize]);
        }
    }
    Ok(out.freeze())
}
